"""Free C-heap pages given back to the system (gateway/heap.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from gateway.heap import HeapTrimmer, can_trim, trim_heap
from gateway.service import Gateway
from jiayuan.config import Config

MIB = 1024 * 1024


def resident_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_this_c_library_can_trim() -> None:
    # Debian's glibc: the gateway's machines and CI.  Elsewhere trimming is a no-op.
    assert can_trim()


def test_freed_blocks_between_live_ones_go_back_only_when_trimmed() -> None:
    # 4 KiB blocks come from malloc (past Python's small-object allocator), and one kept in
    # every 64 stops glibc from giving anything back on its own, as a gateway's long-lived
    # per-device objects do between the freed batches.
    trim_heap()
    start = resident_bytes()
    blocks = [bytes(4096) for _ in range(24_000)]  # 94 MiB
    kept = blocks[::64]
    del blocks
    before = resident_bytes()
    assert before - start > 60 * MIB, "freed, and still resident until trimmed"
    assert trim_heap()
    after = resident_bytes()
    assert before - after > 60 * MIB, (start / MIB, before / MIB, after / MIB)
    assert all(len(block) == 4096 for block in kept)  # the live ones are untouched


def test_the_trimmer_runs_on_its_own_thread_until_stopped() -> None:
    trimmer = HeapTrimmer(0.02)
    trimmer.start()
    deadline = time.monotonic() + 5
    while trimmer.trims < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    done = trimmer.trims
    assert done >= 3
    time.sleep(0.1)
    assert trimmer.trims == done  # stopped for good


@pytest.mark.parametrize("interval_s", [-1.0, float("nan")])
def test_an_interval_that_is_not_positive_is_refused_by_name(interval_s: float) -> None:
    with pytest.raises(ValueError, match="heap_trim_interval_s"):
        HeapTrimmer(interval_s)


def test_a_gateway_trims_unless_told_not_to(config: Config) -> None:
    for interval_s, trims in ((1.0, True), (0.0, False)):
        own = replace(config, gateway=replace(config.gateway, heap_trim_interval_s=interval_s))
        gateway = Gateway(own, serve_api=False)
        assert (gateway.heap_trimmer is not None) is trims
        gateway.stop()
    wrong = replace(config, gateway=replace(config.gateway, heap_trim_interval_s=-5.0))
    with pytest.raises(ValueError, match=r"heap_trim_interval_s must be > 0, not -5\.0"):
        Gateway(wrong, serve_api=False)
