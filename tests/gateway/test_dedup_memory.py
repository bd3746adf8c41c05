"""The duplicate window's memory a device: its arrays and one dictionary entry, with the
edge's name kept once per edge, however many messages decoded it."""

from __future__ import annotations

import tracemalloc

from gateway.transport.dedup import NEW, SeqWindow

TS = 1_764_000_000_000


def test_a_device_costs_its_arrays_and_one_entry() -> None:
    devices = [f"device-{n:06d}" for n in range(20_000)]
    # Each message decodes its edge's name anew: a new string object each time.
    edges = ["".join(("edge-", str(n // 20))) for n in range(len(devices))]
    seen = SeqWindow()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for edge, device in zip(edges, devices, strict=True):
            assert seen.offer(edge, device, 1, TS) == NEW
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(seen) == len(devices)
    assert len(seen.export_state()["_index"]) == len(devices) // 20  # one entry an edge
    # 64 B of arrays, the entry and its index; an (edge, device) tuple a device was 56 B more.
    assert (after - before) / len(devices) < 150
    assert seen.offer(edges[0], devices[0], 1, TS) != NEW
