"""What the estate score's periodic computation adds to a gateway's resident memory at a
district's cardinality, in one process and without timing (the host's load does not move
it).

A district's registry (``simulators/district.py``, as ``bench/throughput.py
--memory-devices`` stores it) and its first readings, which go through one in-process
``Pipeline`` as ``bench/memory_breakdown.py --rss-only`` drains them.  At 5 % and 55 % of
the messages (the alert service's first tick, and the next one a minute later) the score
computes every estate's points as the gateway's score service does, with an empty alert
store: ``--score store`` reads each estate in turn from the registry's SQLite
(``RegistryStore.estate_upkeep``, what the service runs), ``--score load`` loads the whole
registry and scores it (``score_report``, what the HTTP API does on a request), ``--score
none`` does not score.  Printed: resident memory grown per device when drained, after a
heap trim and at the peak (VmHWM), and one computation's CPU time.  The score runs on a
thread of its own while the drain goes on, as the alert service's timer thread does beside
the gateway's processing thread.  ``--malloc gateway`` sets glibc's malloc as a gateway
does at start (``gateway.heap.tune_malloc`` with the ``[gateway]`` defaults), ``--malloc
glibc`` leaves glibc's own settings.

    .venv/bin/python bench/score_memory.py [--devices 100000] [--score store|load|none]
        [--malloc gateway|glibc]
"""

from __future__ import annotations

import argparse
import gc
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.store import AlertStore
from bench.memory_breakdown import WINDOW_S, _status_kb, _write
from bench.sites import AS_OF
from gateway.collector import tune_collector
from gateway.detection.detector import Detector
from gateway.heap import trim_heap, tune_malloc
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from jiayuan.config import GatewayConfig
from jiayuan.registry.store import RegistryStore
from score.config import ScoreConfig
from score.estate import score_report
from score.points import score_lines, scored_points
from simulators.district import build_district
from tools.registry_generate import generate_registry

SCORED_AT = (0.05, 0.55)  # of the messages drained


def scorer(store: RegistryStore, alerts: AlertStore, how: str) -> Callable[[], int]:
    """One computation of every estate's points, the way ``how`` names; lines made."""
    config = ScoreConfig()

    def from_store() -> int:
        now = int(time.time() * 1000)
        return len(scored_points(store.estate_upkeep(), alerts, now, config).lines)

    def from_load() -> int:
        now = int(time.time() * 1000)
        report = score_report(store.load(), alerts, now, config)
        return len(score_lines(report.cards, report.distributions, now))

    return {"store": from_store, "load": from_load, "none": lambda: 0}[how]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--score", choices=("store", "load", "none"), default="store")
    parser.add_argument("--malloc", choices=("gateway", "glibc"), default="gateway")
    args = parser.parse_args()
    if args.malloc == "gateway":
        gateway = GatewayConfig()
        tune_malloc(gateway.malloc_mmap_threshold_bytes, gateway.malloc_arena_max)
    tune_collector()  # as the gateway runs (gateway/collector.py)
    workdir = Path(tempfile.mkdtemp(prefix="score-memory-"))
    district = build_district(args.devices, seed=1)
    store = RegistryStore(workdir / "registry.sqlite")
    store.replace(generate_registry(district.registry, seed=1, as_of=AS_OF))
    alerts = AlertStore(workdir / "alerts.sqlite")
    score = scorer(store, alerts, args.score)
    cpu = time.process_time()
    score()  # its code, and SQLite's caches, in place before the baseline (as in a gateway)
    cpu = time.process_time() - cpu
    end_ms = int(time.time() * 1000) - 5_000
    wires = district.traffic(end_ms - int(WINDOW_S * 1000), end_ms).wires
    received_ms = int(time.time() * 1000)
    messages = [Message(topic, payload, 1, 1, received_ms) for topic, payload, _ in wires]
    devices = district.devices
    del district, wires
    pipeline = Pipeline(Detector(), GatewayMetrics(), clock=lambda: received_ms)
    max_readings = GatewayConfig().batch_max_readings
    scored_at = {int(len(messages) * share) for share in SCORED_AT}
    gc.collect()
    trim_heap()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM from now
    rss_before = _status_kb("VmRSS")
    asked: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def score_when_asked() -> None:
        while asked.get():
            score()

    scoring = threading.Thread(target=score_when_asked, name="alerts-timer")
    scoring.start()
    batch = Batch()
    for n, message in enumerate(messages):
        pipeline.add(message, batch)
        if batch.readings >= max_readings:
            pipeline.detect(batch)
            _write(batch)
            batch = Batch()
        if n in scored_at:
            asked.put(True)
    pipeline.detect(batch)
    _write(batch)
    asked.put(False)
    scoring.join()
    gc.collect()
    rss_after, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    trim_heap()
    rss_trimmed = _status_kb("VmRSS")

    def per_device(kb: int) -> str:
        return f"{(kb - rss_before) * 1024 / devices:,.0f}"

    print(
        f"score {args.score}, malloc {args.malloc}: {devices:,} devices of "
        f"{store.estate_count():,} estates, "
        f"{len(messages):,} messages, scored {len(scored_at) if args.score != 'none' else 0} "
        f"times while drained ({cpu:.2f} s CPU a computation): VmRSS grown "
        f"{per_device(rss_after)} B/device, after a heap trim {per_device(rss_trimmed)}, "
        f"peak (VmHWM) {per_device(hwm)}"
    )
    store.close()
    alerts.close()


if __name__ == "__main__":
    main()
