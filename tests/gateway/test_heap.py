"""Free C-heap pages given back to the system (gateway/heap.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from gateway.heap import HeapTrimmer, can_trim, trim_heap, tune_malloc
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


# A fresh interpreter for each malloc setting: mallopt is process-wide and cannot be undone.
# It builds a Gateway (not started) from a [gateway] section, then reports how glibc serves
# a large block after a larger one was freed, and how many arenas six allocating threads
# end up in.
_MALLOC_PROBE = """
import ctypes, ctypes.util, json, re, sys, tempfile, threading
from pathlib import Path
from gateway.service import Gateway
from jiayuan.config import Config, GatewayConfig

given = json.loads(sys.argv[1])
state_dir = tempfile.mkdtemp()
Gateway(Config(gateway=GatewayConfig(state_dir=state_dir, **given)), serve_api=False)

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    )]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

libc.free(libc.malloc(8 << 20))  # freeing a mapped block raises glibc's own threshold
maps_before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
mapped = libc.mallinfo2().hblks - maps_before
libc.free(block)

all_in = threading.Barrier(6)
def allocate() -> None:
    kept = bytes(200_000)  # past Python's allocator: malloc in this thread
    all_in.wait()
    del kept
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
out = Path(state_dir) / "malloc.xml"
stream = libc.fopen(str(out).encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
arenas = len(re.findall(r"<heap nr=", out.read_text()))
print(json.dumps({"mapped": mapped, "arenas": arenas}))
"""


def _malloc_probe(**gateway: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _MALLOC_PROBE, json.dumps(gateway)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    probe: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return probe


@pytest.mark.slow
def test_a_gateway_keeps_large_blocks_mapped_and_its_arenas_few() -> None:
    # The defaults: a 1 MiB block is mapped apart (and unmapped when freed) even after an
    # 8 MiB one was freed, and six threads share the two arenas.
    assert _malloc_probe() == {"mapped": 1, "arenas": 2}
    # 0 leaves glibc's own: the 1 MiB block comes from the heap, each thread gets an arena.
    own = _malloc_probe(malloc_mmap_threshold_bytes=0, malloc_arena_max=0)
    assert own["mapped"] == 0
    assert own["arenas"] > 2
    assert _malloc_probe(malloc_mmap_threshold_bytes=4 << 20, malloc_arena_max=3) == {
        "mapped": 0,
        "arenas": 3,
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"malloc_mmap_threshold_bytes": -1},
            r"malloc_mmap_threshold_bytes must be 0 to 33554432, not -1",
        ),
        (
            {"malloc_mmap_threshold_bytes": 64 << 20},
            r"malloc_mmap_threshold_bytes must be 0 to 33554432, not 67108864",
        ),
        ({"malloc_arena_max": -2}, r"malloc_arena_max must be ≥ 0, not -2"),
    ],
)
def test_a_malloc_setting_out_of_range_is_refused_by_name(
    config: Config, setting: dict[str, int], message: str
) -> None:
    wrong = replace(config, gateway=replace(config.gateway, **setting))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        Gateway(wrong, serve_api=False)
    with pytest.raises(ValueError, match=message):
        tune_malloc(
            setting.get("malloc_mmap_threshold_bytes", 0), setting.get("malloc_arena_max", 0)
        )
