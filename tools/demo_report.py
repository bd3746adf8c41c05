"""What a demo run did, measured where it counts: InfluxDB and the ground-truth labels.

Stored readings are counted by querying InfluxDB, not by trusting the gateway's counters,
and every injected fault is matched against the anomalies InfluxDB holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jiayuan.catalogue import FAMILIES, Kind
from jiayuan.influx import InfluxClient

# A fault counts as detected by an anomaly of its device and expected code that starts
# no earlier than this before the fault (clock skew between simulator and gateway) ...
EARLY_TOLERANCE_MS = 5_000
# ... and no later than the fault's end plus the family's offline time plus this.
LATE_TOLERANCE_MS = 15_000


@dataclass(frozen=True)
class StoredAnomaly:
    device: str
    kind: str
    code: str
    start_ms: int


@dataclass(frozen=True)
class FaultLabel:
    fault_id: str
    kind: str
    fault_type: str
    expected_code: str
    estate: str
    device: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class FaultOutcome:
    label: FaultLabel
    detected: bool
    delay_s: float | None


def stored_readings_by_kind(client: InfluxClient) -> dict[str, int]:
    """Readings InfluxDB holds per kind; ``seq`` is a field every telemetry point carries."""
    return {kind.value: client.count(kind.value, "seq") for kind in Kind}


def stored_anomalies(client: InfluxClient) -> list[StoredAnomaly]:
    anomalies: list[StoredAnomaly] = []
    for series in client.query('SELECT "start", "device", "kind", "code" FROM "anomaly"'):
        index = {name: i for i, name in enumerate(series.columns)}
        for row in series.values:
            anomalies.append(
                StoredAnomaly(
                    device=str(row[index["device"]]),
                    kind=str(row[index["kind"]]),
                    code=str(row[index["code"]]),
                    start_ms=int(row[index["start"]]),
                )
            )
    return anomalies


def match_faults(
    labels: Iterable[FaultLabel], anomalies: Sequence[StoredAnomaly]
) -> list[FaultOutcome]:
    by_device_code: dict[tuple[str, str], list[int]] = {}
    for anomaly in anomalies:
        by_device_code.setdefault((anomaly.device, anomaly.code), []).append(anomaly.start_ms)
    outcomes = []
    for label in labels:
        offline_ms = int(FAMILIES[Kind(label.kind)].offline_after_s * 1000)
        earliest = label.start_ms - EARLY_TOLERANCE_MS
        latest = label.end_ms + offline_ms + LATE_TOLERANCE_MS
        starts = [
            start
            for start in by_device_code.get((label.device, label.expected_code), [])
            if earliest <= start <= latest
        ]
        if starts:
            delay = max(0, min(starts) - label.start_ms) / 1000
            outcomes.append(FaultOutcome(label, True, delay))
        else:
            outcomes.append(FaultOutcome(label, False, None))
    return outcomes


def build_report(
    *,
    estates: int,
    duration_s: float,
    seed: int,
    published_by_kind: Mapping[str, int],
    stored_by_kind: Mapping[str, int],
    pending_in_spools: int,
    dead_letters: int,
    outcomes: Sequence[FaultOutcome],
    skipped_faults: Sequence[str],
    anomalies: Sequence[StoredAnomaly],
    where: Mapping[str, str],
) -> dict[str, Any]:
    kinds = [kind.value for kind in Kind]
    injected = Counter(outcome.label.kind for outcome in outcomes)
    detected = Counter(outcome.label.kind for outcome in outcomes if outcome.detected)
    by_kind = {
        kind: {
            "published": published_by_kind.get(kind, 0),
            "stored": stored_by_kind.get(kind, 0),
            "faults_injected": injected.get(kind, 0),
            "faults_detected": detected.get(kind, 0),
            "anomalies": sum(1 for a in anomalies if a.kind == kind),
        }
        for kind in kinds
    }
    all_stored = all(row["published"] == row["stored"] for row in by_kind.values())
    all_detected = all(outcome.detected for outcome in outcomes)
    return {
        "estates": estates,
        "duration_s": duration_s,
        "seed": seed,
        "readings_published": sum(published_by_kind.values()),
        "readings_stored": sum(stored_by_kind.values()),
        "pending_in_spools": pending_in_spools,
        "dead_letters": dead_letters,
        "faults_injected": len(outcomes),
        "faults_detected": sum(1 for outcome in outcomes if outcome.detected),
        "faults_skipped": list(skipped_faults),
        "by_kind": by_kind,
        "faults": [
            {
                "fault_id": outcome.label.fault_id,
                "kind": outcome.label.kind,
                "fault_type": outcome.label.fault_type,
                "expected_code": outcome.label.expected_code,
                "device": outcome.label.device,
                "detected": outcome.detected,
                "delay_s": outcome.delay_s,
            }
            for outcome in outcomes
        ],
        "ok": all_stored and all_detected and dead_letters == 0 and pending_in_spools == 0,
        "where": dict(where),
    }


def format_summary(report: Mapping[str, Any]) -> str:
    lines = [
        f"{'kind':<14}{'published':>10}{'stored':>10}{'faults':>8}{'detected':>10}{'anomalies':>11}"
    ]
    for kind, row in report["by_kind"].items():
        mark = "" if row["published"] == row["stored"] else "  ← stored ≠ published"
        lines.append(
            f"{kind:<14}{row['published']:>10}{row['stored']:>10}{row['faults_injected']:>8}"
            f"{row['faults_detected']:>10}{row['anomalies']:>11}{mark}"
        )
    lines.append(
        f"total: {report['readings_published']} published, {report['readings_stored']} stored, "
        f"{report['dead_letters']} dead letters, faults {report['faults_detected']}/"
        f"{report['faults_injected']} detected"
    )
    for fault in report["faults"]:
        if not fault["detected"]:
            lines.append(
                f"  MISSED {fault['fault_id']}: {fault['kind']} {fault['fault_type']} on "
                f"{fault['device']} (expected {fault['expected_code']})"
            )
    for skipped in report["faults_skipped"]:
        lines.append(f"  not injected: {skipped}")
    lines.append("RESULT: " + ("OK" if report["ok"] else "PROBLEMS — see above"))
    return "\n".join(lines)
