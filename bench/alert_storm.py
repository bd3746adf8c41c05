"""The alert engine in a district's outage: ``--devices`` lifts fall silent together and
their offline anomalies go through the gateway's alert service (its real SQLite alert
store and outbox, a work order queued for each) in batches of ``--batch``, as the gateway's
commit thread hands them over.

Baseline, in the same run: as many rows of the alerts' values inserted into a plain SQLite
table in one transaction (the least the store has to do).

    .venv/bin/python bench/alert_storm.py [--devices 20000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import astuple, replace
from pathlib import Path

from alerts.service import AlertService
from gateway.anomalies import Anomaly
from gateway.detection import Detector
from gateway.rules import Place
from jiayuan.config import Config
from jiayuan.contract import Reading

LIFTS_PER_ESTATE = 50
LIFTS_PER_BUILDING = 10


def outage(devices: int) -> list[Anomaly]:
    """The offline anomalies of ``devices`` lifts that reported once and then fell silent."""
    detector = Detector()
    start_ms = time.time_ns() // 1_000_000 - 600_000
    for number in range(devices):
        estate = number // LIFTS_PER_ESTATE
        place = Place(
            "bench",
            f"street-{estate % 10}",
            f"estate-{estate}",
            f"b{number % LIFTS_PER_ESTATE // LIFTS_PER_BUILDING}",
            "lift",
            f"L{number}",
        )
        reading = Reading(place.device, "lift", 1, start_ms, {"car_status": 0})
        detector.reading(place, reading, start_ms)
    return detector.tick(start_ms + 300_000)


def engine_seconds(anomalies: list[Anomaly], batch: int, state_dir: Path) -> float:
    """Seconds the alert service takes for the anomalies; checks each raised its alert and
    queued its work order."""
    config = Config()
    config = replace(config, gateway=replace(config.gateway, state_dir=str(state_dir)))
    service = AlertService(config)
    started = time.perf_counter()
    for first in range(0, len(anomalies), batch):
        service.on_anomalies(anomalies[first : first + batch])
    elapsed = time.perf_counter() - started
    alerts, queued = (
        len(service.store.live_alerts()),
        sum(service.dispatcher.outbox.counts().values()),
    )
    if alerts != len(anomalies) or queued < len(anomalies):
        raise SystemExit(f"{len(anomalies)} anomalies: {alerts} alerts, {queued} messages queued")
    return elapsed


def baseline_seconds(anomalies: list[Anomaly], path: Path) -> float:
    rows = [astuple(anomaly) for anomaly in anomalies]
    marks = ", ".join("?" * len(rows[0]))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"CREATE TABLE alerts ({', '.join(f'c{i}' for i in range(len(rows[0])))})")
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(f"INSERT INTO alerts VALUES ({marks})", rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000, help="lifts gone offline")
    parser.add_argument("--batch", type=int, default=5000, help="anomalies a call")
    args = parser.parse_args()
    anomalies = outage(args.devices)
    with tempfile.TemporaryDirectory(prefix="jiayuan-bench-alerts-") as workdir:
        engine = engine_seconds(anomalies, args.batch, Path(workdir) / "state")
        baseline = baseline_seconds(anomalies, Path(workdir) / "baseline.sqlite")
    count = len(anomalies)
    print(f"{count:,} offline anomalies of {args.devices:,} lifts, in calls of {args.batch:,}")
    print(f"baseline  one SQLite transaction of {count:,} rows: {count / baseline:12,.0f} rows/s")
    print(
        f"alert engine, store and outbox: {count / engine:12,.0f} alerts/s, "
        f"{1e6 * engine / count:,.0f} µs an alert; {engine:.2f} s in all"
    )
    print(f"ratio engine / baseline: {baseline / engine:.4f}")


if __name__ == "__main__":
    main()
