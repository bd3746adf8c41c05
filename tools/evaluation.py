"""Measure the detection core on labelled simulator scenarios, without servers.

``run(scenario)`` feeds every simulated sample through ``gateway.detection.detector.Detector`` the
way the gateway does (a contract ``Reading`` and a rules ``Place`` per sample, the offline
timer ticked every simulated second), so whatever detectors the ``Detector`` holds are
measured.  ``score(labels, anomalies, ...)`` matches the anomalies that opened to the
labels:

- a label is detected by an anomaly on its device with its expected code starting within
  [onset, end + tolerance], or with one of its also_codes (earlier or later stages of the
  same fault) starting within [start, end + tolerance]; the delay is the anomaly's start
  minus the moment the condition's own duration was met (onset + hold; statistical faults
  have no hold, so it counts from onset, the moment the fault became detectable); the
  delay from the fault's start is reported beside it;
- an anomaly that detects some label is a true positive;
- a statistical anomaly (level shift, drift…) on a device during one of its real faults is
  a side alert: another detector flagging the same fault, neither true nor false;
- any other anomaly is a false positive, charged to the label whose window holds it on
  that device (a look-alike, say) or to "(no fault)".

Precision = TP / (TP + FP), recall = detected labels / labels (look-alikes expect nothing
and do not count), F1 their harmonic mean, per family and per fault type.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.detection.detector import Detector
from jiayuan.anomaly import OPEN, Anomaly
from jiayuan.catalogue import STATISTICAL_EVENTS, Kind, family
from jiayuan.contract import Reading
from jiayuan.places import Place
from simulators.driver import generate
from simulators.faults import LOOK_ALIKE, Fault
from simulators.scenarios import Scenario
from tools.replay import as_gateway_input

TICK_MS = 1000  # the offline timer's period in simulated time, as in the gateway
TOLERANCE_S = 10.0
NO_FAULT = "(no fault)"
ALL = "*"
_STATISTICAL = {name for name, _, _ in STATISTICAL_EVENTS}


@dataclass(frozen=True)
class Run:
    anomalies: tuple[Anomaly, ...]  # as they opened, in order
    samples: int
    seconds: float  # wall-clock time the run took


def run(scenario: Scenario, detector: Detector | None = None) -> Run:
    """Every anomaly the detector opens on the scenario's samples."""
    began = time.perf_counter()
    detector = detector if detector is not None else Detector()
    opened: list[Anomaly] = []
    next_tick = scenario.start_ms
    samples = 0
    # Like the gateway, judge readings in batches (here: each simulated second's samples)
    # with the offline timer ticking between batches.
    pending: list[tuple[Place, Reading, int]] = []
    samples_in = generate(
        scenario.registry, scenario.faults, scenario.start_ms, scenario.end_ms, scenario.seed
    )
    for _, place, reading in as_gateway_input(samples_in):
        if next_tick <= reading.ts:
            opened += _opened(detector.readings(pending))
            pending = []
        while next_tick <= reading.ts:
            opened += _opened(detector.tick(next_tick))
            next_tick += TICK_MS
        samples += 1
        pending.append((place, reading, reading.ts))
    opened += _opened(detector.readings(pending))
    while next_tick < scenario.end_ms:
        opened += _opened(detector.tick(next_tick))
        next_tick += TICK_MS
    return Run(tuple(opened), samples, time.perf_counter() - began)


def _opened(changes: Iterable[Anomaly]) -> list[Anomaly]:
    return [a for a in changes if a.state == OPEN]


@dataclass
class Row:
    """The scores of one family (fault_type ``*``) or one fault type of it."""

    kind: str
    fault_type: str
    labels: int = 0
    detected: int = 0
    tp: int = 0
    fp: int = 0
    side: int = 0
    delays_s: list[float] = field(default_factory=list)
    # From the fault's start (the delay counts from when it became detectable).
    from_start_s: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def delay_median_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    @property
    def delay_worst_s(self) -> float | None:
        return max(self.delays_s) if self.delays_s else None

    @property
    def from_start_median_s(self) -> float | None:
        return statistics.median(self.from_start_s) if self.from_start_s else None

    @property
    def from_start_worst_s(self) -> float | None:
        return max(self.from_start_s) if self.from_start_s else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["delays_s"], data["from_start_s"]
        for name in (
            "precision",
            "recall",
            "f1",
            "delay_median_s",
            "delay_worst_s",
            "from_start_median_s",
            "from_start_worst_s",
        ):
            data[name] = getattr(self, name)
        return data


@dataclass(frozen=True)
class Score:
    rows: tuple[Row, ...]  # per family (fault_type "*") then its fault types
    false_alerts: int
    device_hours: float

    @property
    def false_alerts_per_1000_device_hours(self) -> float:
        return 1000.0 * self.false_alerts / self.device_hours if self.device_hours else 0.0


def _detects(label: Fault, anomaly: Anomaly, tol: int) -> bool:
    # The expected code counts from the condition's onset; an also_code is an earlier or
    # later stage of the same fault (the 15 cm warning on the way to 30 cm), so from start.
    if anomaly.code == label.expected_code:
        since = label.condition_ms
    elif anomaly.code in label.also_codes:
        since = label.start_ms
    else:
        return False
    return since <= anomaly.start_ms <= label.end_ms + tol


def due_ms(label: Fault) -> int:
    """When the condition's own duration was met: onset + hold."""
    return label.condition_ms + round(label.hold_s * 1000)


def score(
    labels: Sequence[Fault],
    anomalies: Sequence[Anomaly],
    device_hours: float,
    tolerance_s: float = TOLERANCE_S,
) -> Score:
    tol = round(tolerance_s * 1000)
    by_device: dict[str, list[Fault]] = defaultdict(list)
    for label in labels:
        by_device[label.device].append(label)
    rows: dict[tuple[str, str], Row] = {}

    def row(kind: str, fault_type: str) -> Row:
        return rows.setdefault((kind, fault_type), Row(kind, fault_type))

    def in_window(label: Fault, anomaly: Anomaly, since: int) -> bool:
        return since <= anomaly.start_ms <= label.end_ms + tol

    first: dict[str, Anomaly] = {}  # label id → its earliest detecting anomaly
    false_alerts = 0
    for anomaly in anomalies:
        mine = by_device.get(anomaly.device, [])
        hits = [label for label in mine if _detects(label, anomaly, tol)]
        for label in hits:
            best = first.get(label.fault_id)
            if best is None or anomaly.start_ms < best.start_ms:
                first[label.fault_id] = anomaly
        if hits:
            row(anomaly.kind, hits[0].fault_type).tp += 1
            continue
        around = [label for label in mine if in_window(label, anomaly, label.start_ms)]
        real = [label for label in around if label.expected_code != LOOK_ALIKE]
        if real and anomaly.code.split(".", 1)[1] in _STATISTICAL:
            row(anomaly.kind, real[0].fault_type).side += 1
            continue
        row(anomaly.kind, around[0].fault_type if around else NO_FAULT).fp += 1
        false_alerts += 1
    for label in labels:
        if label.expected_code == LOOK_ALIKE:
            row(label.kind.value, label.fault_type)  # listed, to show its false alerts
            continue
        r = row(label.kind.value, label.fault_type)
        r.labels += 1
        found = first.get(label.fault_id)
        if found is not None:
            r.detected += 1
            r.delays_s.append((found.start_ms - due_ms(label)) / 1000)
            r.from_start_s.append((found.start_ms - label.start_ms) / 1000)
    return Score(_with_family_rows(rows), false_alerts, device_hours)


def _with_family_rows(rows: dict[tuple[str, str], Row]) -> tuple[Row, ...]:
    out: list[Row] = []
    for kind in Kind:
        types = sorted((r for (k, _), r in rows.items() if k == kind.value), key=_type_order)
        if not types:
            continue
        total = Row(kind.value, ALL)
        for r in types:
            total.labels += r.labels
            total.detected += r.detected
            total.tp += r.tp
            total.fp += r.fp
            total.side += r.side
            total.delays_s += r.delays_s
            total.from_start_s += r.from_start_s
        out += [total, *types]
    return tuple(out)


def _type_order(r: Row) -> tuple[bool, str]:
    return (r.fault_type == NO_FAULT, r.fault_type)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    run: Run
    score: Score

    def as_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "name": s.name,
            "description": s.description,
            "seed": s.seed,
            "estates": len(s.registry.estates),
            "devices": len(s.registry.devices()),
            "hours": s.duration_s / 3600,
            "device_hours": s.device_hours,
            "samples": self.run.samples,
            "seconds": round(self.run.seconds, 3),
            "labels": len(s.faults),
            "anomalies": len(self.run.anomalies),
            "false_alerts": self.score.false_alerts,
            "false_alerts_per_1000_device_hours": self.score.false_alerts_per_1000_device_hours,
            "rows": [{"title": family_title(r.kind), **r.as_json()} for r in self.score.rows],
        }


def evaluate(scenario: Scenario, tolerance_s: float = TOLERANCE_S) -> ScenarioResult:
    result = run(scenario)
    return ScenarioResult(
        scenario,
        result,
        score(scenario.faults, result.anomalies, scenario.device_hours, tolerance_s),
    )


def family_title(kind: str) -> str:
    return family(kind).title
