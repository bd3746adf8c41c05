"""Where a gateway's memory per device goes, in this process, at a district's cardinality.

The first readings of a district (``simulators/district.py``: N devices of a registry's
family mix, ``--window-s`` of their live traffic, as ``bench/throughput.py
--memory-devices`` publishes them) go through a ``Pipeline`` in processor batches of
``batch_max_readings`` readings, each judged in one detection call and its lines joined
into request bodies as the writer sends them, then dropped.  Printed: the live Python
state per device by ``tracemalloc`` (what the traffic left allocated) and its largest
allocation sites by file and line; with ``--rss-only`` instead, without tracemalloc,
this process's resident memory (VmRSS) grown per device before and after a heap trim:
the difference between resident and traced bytes is what the allocators hold beyond
live objects; with ``--census`` instead, the live Python objects grown per device by
type (count and ``sys.getsizeof`` bytes, every object reachable from the collector's,
untracked ones too) and the containers holding a per-device entry.

    .venv/bin/python bench/memory_breakdown.py [--devices 100000] [--top 25]
        [--rss-only | --census]
"""

from __future__ import annotations

import argparse
import gc
import queue
import sys
import threading
import time
import tracemalloc

from jiayuan import compiled

if __name__ == "__main__" and "--source" in sys.argv:  # before any hot module is imported
    compiled.import_sources_first()

from gateway.collector import tune_collector
from gateway.detection.detector import Detector
from gateway.heap import trim_heap
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.storage.writer import MAX_LINES_PER_WRITE
from jiayuan.config import GatewayConfig
from simulators.district import build_district

WINDOW_S = 20.0  # as bench/throughput.py's MEMORY_WINDOW_S


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _write(batch: Batch) -> None:
    """What the writer makes of a batch: bodies of at most MAX_LINES_PER_WRITE lines."""
    lines = [pending.line for pending in batch.lines]
    for first in range(0, len(lines), MAX_LINES_PER_WRITE):
        body = "\n".join(lines[first : first + MAX_LINES_PER_WRITE]).encode()
        del body


def drain(pipeline: Pipeline, messages: list[Message], max_readings: int) -> int:
    """The messages through the pipeline as the processor takes them; dead letters."""
    dead = 0
    batch = Batch()
    for message in messages:
        pipeline.add(message, batch)
        if batch.readings >= max_readings:
            pipeline.detect(batch)
            _write(batch)
            dead += len(batch.dead)
            batch = Batch()
    pipeline.detect(batch)
    _write(batch)
    return dead + len(batch.dead)


def drain_threaded(pipeline: Pipeline, messages: list[Message], max_readings: int) -> int:
    """``drain`` on the gateway's three threads: messages arrive on one (a copy of each
    payload made there, as the MQTT client reads it), are processed on this one, and
    written on a third, so each thread allocates and frees what it does in the gateway
    (glibc gives each thread an arena of its own)."""
    inbox: queue.Queue[Message | None] = queue.Queue(maxsize=1000)  # Mosquitto's in flight
    ready: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
    dead = [0]

    def receive() -> None:
        for m in messages:
            inbox.put(Message(m.topic, bytes(bytearray(m.payload)), 1, 1, m.received_ms))
        inbox.put(None)

    def commit() -> None:
        while (batch := ready.get()) is not None:
            _write(batch)
            dead[0] += len(batch.dead)

    threads = [threading.Thread(target=receive), threading.Thread(target=commit)]
    for thread in threads:
        thread.start()
    batch = Batch()
    while (message := inbox.get()) is not None:
        pipeline.add(message, batch)
        if batch.readings >= max_readings:
            pipeline.detect(batch)
            ready.put(batch)
            batch = Batch()
    pipeline.detect(batch)
    ready.put(batch)
    ready.put(None)
    for thread in threads:
        thread.join()
    return dead[0]


def go_offline(pipeline: Pipeline, clock: list[int], max_readings: int) -> int:
    """Every device silent for ten minutes: the offline check's anomalies, in batches of
    ``max_readings`` as the processor takes them, their lines written; how many opened."""
    clock[0] += 600_000
    opened = 0
    while True:
        batch = Batch()
        more = pipeline.tick(batch, max_readings)
        opened += len(batch.lines)
        _write(batch)
        if not more:
            return opened


def _live_objects() -> list[object]:
    """Every object reachable from those the cyclic collector tracks, untracked ones
    (strings, ints, tuples and dicts of atoms) included."""
    gc.collect()
    found = gc.get_objects()
    seen = {id(o) for o in found}
    at = 0
    while at < len(found):
        for referent in gc.get_referents(found[at]):
            if id(referent) not in seen:
                seen.add(id(referent))
                found.append(referent)
        at += 1
    return found


def _by_type(objects: list[object]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for o in objects:
        entry = counts.setdefault(type(o).__name__, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(o)
    return {name: (count, size) for name, (count, size) in counts.items()}


def census(pipeline: Pipeline, messages: list[Message], args: argparse.Namespace) -> None:
    """The live objects the traffic left, per device, by type; and the containers
    holding an entry for a twentieth of the devices or more (a kind's)."""
    before = _by_type(_live_objects())
    drain(pipeline, messages, args.batch_readings)
    messages.clear()
    live = _live_objects()
    after = _by_type(live)
    devices = args.devices
    print("  live objects grown per device by type (count, bytes by sys.getsizeof):")
    grown = {
        name: (count - before.get(name, (0, 0))[0], size - before.get(name, (0, 0))[1])
        for name, (count, size) in after.items()
    }
    for name, (count, size) in sorted(grown.items(), key=lambda item: -item[1][1])[: args.top]:
        print(f"  {size / devices:8.1f} {count / devices:6.2f}  {name}")
    print("  containers with entries for a twentieth of the devices or more (B per device):")
    for o in live:
        if isinstance(o, dict | list | set | bytearray) and len(o) >= devices // 20:
            sample = repr(next(iter(o)))[:60] if len(o) else ""
            print(
                f"  {sys.getsizeof(o) / devices:8.1f}  {type(o).__name__} of {len(o):,}: {sample}"
            )


def _sites(last: tracemalloc.Snapshot, first: tracemalloc.Snapshot, top: int, per: int) -> None:
    print("  largest allocation sites (B and objects per device or anomaly):")
    for stat in last.compare_to(first, "lineno")[:top]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / per:8.1f} {stat.count_diff / per:6.2f}  "
            f"{frame.filename.split('/wt/')[-1]}:{frame.lineno}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--window-s", type=float, default=WINDOW_S)
    parser.add_argument("--top", type=int, default=25, help="allocation sites to print")
    parser.add_argument(
        "--source",
        action="store_true",
        help="the hot modules interpreted, so allocation sites name their lines",
    )
    parser.add_argument(
        "--rss-only",
        action="store_true",
        help="resident memory only, without tracemalloc (whose own records inflate it)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="with --rss-only: receive, process and write on three threads, as the gateway",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="then every device falls silent: what its offline anomaly holds",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="live Python objects by type and the containers of per-device entries",
    )
    parser.add_argument("--batch-readings", type=int, default=GatewayConfig().batch_max_readings)
    args = parser.parse_args()
    tune_collector()  # as the gateway runs (gateway/collector.py)
    district = build_district(args.devices, seed=1)
    end_ms = int(time.time() * 1000) - 5_000
    wires = district.traffic(end_ms - int(args.window_s * 1000), end_ms).wires
    received_ms = int(time.time() * 1000)
    messages = [Message(topic, payload, 1, 1, received_ms) for topic, payload, _ in wires]
    devices = district.devices
    del district, wires
    clock = [received_ms]
    pipeline = Pipeline(Detector(), GatewayMetrics(), clock=lambda: clock[0])
    print(f"{devices:,} devices, {len(messages):,} messages; batches of {args.batch_readings:,}")
    gc.collect()
    trim_heap()
    if args.census:
        census(pipeline, messages, args)
        return
    if args.rss_only:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM from now: the traffic's own peak
        rss_before = _status_kb("VmRSS")
        dead = (drain_threaded if args.threads else drain)(pipeline, messages, args.batch_readings)
        gc.collect()
        rss_after, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
        trim_heap()
        rss_trimmed = _status_kb("VmRSS")
        print(
            f"drained ({dead:,} dead letters{', three threads' if args.threads else ''}): "
            f"VmRSS grown {(rss_after - rss_before) * 1024 / devices:,.0f} B/device, "
            f"after a heap trim {(rss_trimmed - rss_before) * 1024 / devices:,.0f} B/device, "
            f"peak (VmHWM) {(hwm - rss_before) * 1024 / devices:,.0f} B/device"
        )
        if args.offline:
            opened = go_offline(pipeline, clock, args.batch_readings)
            gc.collect()
            rss_offline = _status_kb("VmRSS")
            trim_heap()
            rss_offline_trimmed = _status_kb("VmRSS")
            print(
                f"{opened:,} offline anomalies: VmRSS grown "
                f"{(rss_offline - rss_trimmed) * 1024 / opened:,.0f} B an anomaly, after a "
                f"heap trim {(rss_offline_trimmed - rss_trimmed) * 1024 / opened:,.0f} B"
            )
        return
    tracemalloc.start(1)
    first = tracemalloc.take_snapshot()
    traced_before, _ = tracemalloc.get_traced_memory()
    dead = drain(pipeline, messages, args.batch_readings)
    gc.collect()
    traced_after, traced_peak = tracemalloc.get_traced_memory()
    drained = tracemalloc.take_snapshot()
    print(
        f"drained ({dead:,} dead letters): traced live state "
        f"{(traced_after - traced_before) / devices:,.0f} B/device; traced peak "
        f"{(traced_peak - traced_before) / devices:,.0f} B/device"
    )
    _sites(drained, first, args.top, devices)
    if args.offline:
        tracemalloc.reset_peak()
        opened = go_offline(pipeline, clock, args.batch_readings)
        gc.collect()
        traced_offline, traced_peak = tracemalloc.get_traced_memory()
        offline = tracemalloc.take_snapshot()
        print(
            f"{opened:,} offline anomalies: traced live state "
            f"{(traced_offline - traced_after) / opened:,.0f} B an anomaly; traced peak "
            f"{(traced_peak - traced_after) / opened:,.0f} B an anomaly"
        )
        _sites(offline, drained, args.top, opened)
    tracemalloc.stop()


if __name__ == "__main__":
    main()
