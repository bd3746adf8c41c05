"""The alert engine in a district's outage: ``--devices`` lifts (50 an estate, 10 a
building) fall silent together and their offline anomalies go through the gateway's alert
service (its real SQLite alert store and outbox) in batches of ``--batch``, as the
gateway's commit thread hands them over.

Cost: with storm grouping off, an alert and a work order queued for each device.
Baseline, in the same run: as many rows of the alerts' values inserted into a plain SQLite
table in one transaction (the least the store has to do).

District-wide cut, with the grouping of docs/alerts.md ("Alert storms"): every estate's
uplink fails.  ``will``: each edge agent's last will reaches the gateway first (the broker
sees each connection break); ``silence``: no edge status arrives, only the devices'
silence.  Printed: work orders sent against devices offline.

    .venv/bin/python bench/alert_storm.py [--devices 20000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import astuple, replace
from pathlib import Path

from alerts.engine import AlertEvent
from alerts.policy import AlertPolicy, NoisePolicy
from alerts.service import AlertService
from gateway.census import DeviceCensus
from gateway.detection.detector import Detector
from jiayuan.anomaly import Anomaly
from jiayuan.config import Config
from jiayuan.contract import Reading
from jiayuan.places import Place

LIFTS_PER_ESTATE = 50
LIFTS_PER_BUILDING = 10


def outage(devices: int, detector: Detector | None = None) -> list[Anomaly]:
    """The offline anomalies of ``devices`` lifts that reported once and then fell silent."""
    detector = detector or Detector()
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
    service.engine.policy = AlertPolicy(noise=NoisePolicy(storm_window_s=0))  # grouping off
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


class WorkOrderCount:
    """A sink counting the work orders the engine routes (create, update or cancel)."""

    def __init__(self) -> None:
        self.created: list[AlertEvent] = []

    def __call__(self, event: AlertEvent) -> None:
        if event.work_order:
            self.created.append(event)


def district_cut(devices: int, batch: int, state_dir: Path, cause: str) -> dict[str, float]:
    """Every estate's uplink fails; the work orders sent once the storm window passed."""
    detector = Detector()
    anomalies = outage(devices, detector)
    config = Config()
    config = replace(config, gateway=replace(config.gateway, state_dir=str(state_dir)))
    now = [time.time_ns() // 1_000_000]
    service = AlertService(
        config, clock=lambda: now[0], population=DeviceCensus(detector.offline.places)
    )
    orders = WorkOrderCount()
    service.engine.add_sink(orders)
    started = time.perf_counter()
    if cause == "will":
        for estate in sorted({(a.district, a.street, a.estate) for a in anomalies}):
            service.engine.on_edge_status(*estate, f"edge-{estate[2]}", "offline")
    for first in range(0, len(anomalies), batch):
        service.on_anomalies(anomalies[first : first + batch])
    now[0] += int(service.engine.policy.noise.storm_window_s * 1000) + 1000
    service.engine.tick()
    elapsed = time.perf_counter() - started
    alerts = service.store.live_alerts()
    return {
        "devices_offline": len(anomalies),
        "estates": len({a.estate for a in anomalies}),
        "work_orders": len(orders.created),
        "group_alerts": sum(1 for a in alerts if a.kind == "estate"),
        "held": sum(1 for a in alerts if a.parent_id),
        "seconds": elapsed,
    }


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
        cuts = {
            cause: district_cut(args.devices, args.batch, Path(workdir) / cause, cause)
            for cause in ("will", "silence")
        }
    count = len(anomalies)
    print(f"{count:,} offline anomalies of {args.devices:,} lifts, in calls of {args.batch:,}")
    print(f"baseline  one SQLite transaction of {count:,} rows: {count / baseline:12,.0f} rows/s")
    print(
        f"alert engine, store and outbox: {count / engine:12,.0f} alerts/s, "
        f"{1e6 * engine / count:,.0f} µs an alert; {engine:.2f} s in all"
    )
    print(f"ratio engine / baseline: {baseline / engine:.4f}")
    for cause, cut in cuts.items():
        print(
            f"district-wide cut ({cause}): {cut['devices_offline']:,.0f} devices offline in "
            f"{cut['estates']:,.0f} estates → {cut['work_orders']:,.0f} work orders sent "
            f"({cut['group_alerts']:,.0f} group alerts, {cut['held']:,.0f} device alerts "
            f"held under them); {cut['seconds']:.2f} s"
        )
        if cut["work_orders"] > cut["estates"]:
            raise SystemExit(f"alert storm not grouped: {cut}")


if __name__ == "__main__":
    main()
