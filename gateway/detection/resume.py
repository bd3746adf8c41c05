"""What a restarted gateway remembers, read back from InfluxDB before it takes traffic.

A clean stop leaves a snapshot of the whole detection state
(``gateway.detection.snapshot``); this is for a start without one (after a crash, or a
stop that gave up on InfluxDB).  Without
either, a gateway restarted while a device was already silent never learns that the device
exists, so it is never reported offline; and an anomaly open at the restart stays "open"
in InfluxDB for ever, because the new book does not know it.  InfluxDB already holds both
facts: each device's last reading and the anomalies still open.  Reading them back costs
one query per kind plus one for anomalies.

Only offline anomalies are taken back: the offline monitor closes them when the device
returns.  Another open anomaly would need its rule's own state restored too (a fresh rule
that never opened the condition never closes it), which only the snapshot carries; so on
this path neither those, nor a rule's half-met hold (a condition held for 10 of its 20 s
starts its hold again), nor the statistical baselines (they learn again) come back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.detection.detector import Detector
from gateway.storage.points import NO_BUILDING
from jiayuan.anomaly import OPEN, Anomaly
from jiayuan.catalogue import Kind, offline_code
from jiayuan.influx import InfluxClient, quote_identifier
from jiayuan.places import Place

log = logging.getLogger(__name__)

PLACE_TAGS = ("district", "street", "estate", "building", "device")
# Devices silent for longer than this before the restart are not looked for: a device
# gone for a week is a registry matter, not a live alert.
LOOKBACK_S = 24 * 3600


@dataclass(frozen=True)
class Resumed:
    devices: int
    open_anomalies: int


def resume_detector(
    detector: Detector, client: InfluxClient, wall_ms: int, streets: Sequence[str] = ("+",)
) -> Resumed:
    """Seed ``detector`` with each device's last reading and the anomalies still open, of
    the streets this gateway owns (another instance owns the others' devices)."""
    since = f"time > {wall_ms - LOOKBACK_S * 1000}ms"
    if "+" not in streets:
        # Street ids were checked by the ingest (no quotes can occur).
        since += " AND (" + " OR ".join(f"\"street\" = '{s}'" for s in streets) + ")"
    devices = 0
    for kind in Kind:
        query = (
            f'SELECT last("seq") FROM {quote_identifier(kind.value)} WHERE {since} '
            "GROUP BY " + ", ".join(f'"{tag}"' for tag in PLACE_TAGS)
        )
        for series in client.query(query):
            place = _place(series.tags, kind.value)
            last_ts = int(series.values[0][0])
            # Received "now": the device is judged only after a full silence on the wall
            # clock from the restart, so devices get time to report again.
            detector.offline.seen(place, last_ts, wall_ms)
            devices += 1
    restored = 0
    anomalies = client.query(f'SELECT * FROM "anomaly" WHERE {since} AND "state" = \'{OPEN}\'')
    for series in anomalies:
        columns = series.columns
        for values in series.values:
            row = dict(zip(columns, values, strict=True))
            anomaly = _anomaly(row)
            if anomaly.code != offline_code(Kind(anomaly.kind)):
                continue  # see the module's docstring
            if detector.book.restore(anomaly):
                restored += 1
                detector.offline.mark_offline(_place(row, anomaly.kind))
    log.info("resumed %d devices and %d open anomalies from InfluxDB", devices, restored)
    return Resumed(devices, restored)


def _place(tags: dict[str, str], kind: str) -> Place:
    building = tags.get("building") or ""
    return Place(
        tags["district"],
        tags["street"],
        tags["estate"],
        "" if building == NO_BUILDING else building,
        kind,
        tags["device"],
    )


def _anomaly(row: dict[str, object]) -> Anomaly:
    building = str(row.get("building") or "")
    return Anomaly(
        district=str(row["district"]),
        street=str(row["street"]),
        estate=str(row["estate"]),
        building="" if building == NO_BUILDING else building,
        device=str(row["device"]),
        kind=str(row["kind"]),
        code=str(row["code"]),
        severity=str(row["severity"]),
        title_zh=str(row.get("title_zh") or ""),
        title_en=str(row.get("title_en") or ""),
        value=float(row.get("value") or 0.0),  # type: ignore[arg-type]
        threshold=float(row.get("threshold") or 0.0),  # type: ignore[arg-type]
        start_ms=int(row.get("start") or row["time"]),  # type: ignore[call-overload]
        end_ms=0,
        state=OPEN,
        detail=str(row.get("detail") or ""),
        explanation=str(row.get("explanation") or ""),
    )
