"""What an outage's open alerts cost in resident memory: ``--devices`` lifts (as in
``bench/alert_storm.py``) fall silent together, and their offline anomalies go the way the
gateway's commit thread takes them: each anomaly's InfluxDB line is made, then the batch
goes to the alert service (its real SQLite store and outbox, its timer and deliverer
threads running, storm grouping on).  InfluxDB is a writer that discards what the alert
service writes; no work order destination is set, so every work order is parked, as in
``bench/throughput.py --memory-devices``.

Printed, per open alert, after a heap trim: the resident memory grown, and where it is:
glibc's heap (``mallinfo2``, all arenas: blocks in use, and free chunks, whose whole pages
the trim gave back and so are mostly not resident), SQLite's own allocations
(``sqlite3_memory_used``, inside glibc's), Python's small-object arenas (mapped apart
from glibc's heap, and given back only when wholly empty) and the live blocks in them.

    .venv/bin/python bench/alert_memory.py [--devices 20000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts import service as alert_service
from bench.alert_storm import outage
from gateway.census import DeviceCensus
from gateway.detection.detector import Detector
from gateway.heap import trim_heap
from gateway.storage.points import anomaly_line
from jiayuan.config import Config


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
_LIBC.mallinfo2.restype = _Mallinfo2
# The library Python's sqlite3 module is linked to (one allocator count per process).
_SQLITE = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
_SQLITE.sqlite3_memory_used.restype = ctypes.c_int64


def _resident_kb() -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def _pymalloc_kb() -> tuple[int, int]:
    """(live blocks, arenas mapped) of Python's small-object allocator, in KiB."""
    fd, name = tempfile.mkstemp()
    saved = os.dup(2)
    os.dup2(fd, 2)  # sys._debugmallocstats writes to the C stderr
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    text = Path(name).read_text()
    os.unlink(name)

    def count(label: str) -> int:
        found = re.search(rf"# {label}\s*=\s*([\d,]+)", text)
        assert found is not None, label
        return int(found.group(1).replace(",", ""))

    return count("bytes in allocated blocks") // 1024, count("arenas allocated current") * 1024


def glibc_heap_bytes() -> tuple[int, int]:
    """glibc's heap now: bytes in use (its mapped blocks too) and bytes free."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def heap_kb() -> dict[str, int]:
    """The process's memory now, in KiB, after a collection and a heap trim."""
    gc.collect()
    trim_heap()
    info = _LIBC.mallinfo2()
    live, arenas = _pymalloc_kb()
    return {
        "resident (VmRSS)": _resident_kb(),
        "glibc heap in use": (info.uordblks + info.hblkhd) // 1024,
        "  of which SQLite's": _SQLITE.sqlite3_memory_used() // 1024,
        # Address space more than memory: the trim just above gave back the whole pages
        # of these free chunks (a chunk's edges and header stay resident).
        "glibc heap free, pages trimmed": info.fordblks // 1024,
        "Python arenas mapped": arenas,
        "  live Python blocks in them": live,
    }


class DiscardingInflux:
    """InfluxDB for the alert service's points: takes every request, keeps nothing."""

    def __init__(self) -> None:
        self.requests = 0

    def write(self, lines: Sequence[str] | bytes) -> None:
        self.requests += 1

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000, help="lifts gone offline")
    parser.add_argument("--batch", type=int, default=5000, help="anomalies a gateway batch")
    parser.add_argument(
        "--engine-call",
        type=int,
        default=alert_service.ENGINE_CALL_MAX,
        help="anomalies a call of the alert engine at most (alerts.service.ENGINE_CALL_MAX)",
    )
    args = parser.parse_args()
    alert_service.ENGINE_CALL_MAX = args.engine_call
    detector = Detector()
    anomalies = outage(args.devices, detector)
    with tempfile.TemporaryDirectory(prefix="jiayuan-bench-alert-memory-") as workdir:
        config = Config()
        config = replace(config, gateway=replace(config.gateway, state_dir=workdir))
        service = alert_service.AlertService(
            config, population=DeviceCensus(detector.offline.places)
        )
        influx = DiscardingInflux()
        service._influx = influx  # type: ignore[assignment]
        service.start()
        before = heap_kb()

        def commit_thread() -> None:
            for first in range(0, len(anomalies), args.batch):
                batch = anomalies[first : first + args.batch]
                for anomaly in batch:
                    anomaly_line(anomaly)
                service.on_anomalies(batch)

        committer = threading.Thread(target=commit_thread, name="gateway-commit")
        committer.start()
        committer.join()
        service.tick_once()  # the last points written
        after = heap_kb()
        live = len(service.store.live_alerts())
        service.stop()
    print(
        f"{len(anomalies):,} offline anomalies in batches of {args.batch:,}, "
        f"{args.engine_call:,} an engine call at most: {live:,} open alerts "
        f"(group alerts included), {influx.requests:,} point requests"
    )
    for label, kb in after.items():
        grown = kb - before[label]
        print(f"  {label:<32} {grown / 1024:7.1f} MiB, {grown * 1024 / len(anomalies):6,.0f} B")


if __name__ == "__main__":
    main()
