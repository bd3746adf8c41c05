"""End to end without servers: a passenger trapped in a simulated lift is detected by the
detection core, raised by the alert engine, and the estate's score and grade fall; once a
person resolves the alert the cap lifts and the score comes back (less the documented
penalty for a recent critical fault)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.policy import AlertPolicy
from alerts.store import AlertStore
from gateway.detection.detector import Detector
from jiayuan.catalogue import Kind
from jiayuan.timezone import parse_start
from score.config import ScoreConfig
from score.estate import SHANGHAI, score_registry
from score.grades import Grade
from simulators.driver import generate
from simulators.faults import fault_spec, make_fault
from simulators.registry import build_registry
from tools.registry_generate import generate_registry
from tools.replay import as_gateway_input

SEED = 21


def test_score_falls_with_an_injected_trapped_passenger_and_recovers_once_resolved(
    tmp_path: Path,
) -> None:
    simulated = build_registry(1, seed=SEED)
    start = parse_start("2026-06-01T10:00:00")
    registry = generate_registry(
        simulated, seed=SEED, as_of=datetime.fromtimestamp(start / 1000, SHANGHAI).date()
    )
    estate_id = simulated.estates[0].id
    lift = simulated.estates[0].of_kind(Kind.LIFT)[0]
    fault = make_fault("f1", fault_spec(Kind.LIFT, "trapped"), lift, start + 20_000, 40_000)
    now = [start]
    store = AlertStore(tmp_path / "alerts.sqlite")
    engine = AlertEngine(store, AlertPolicy(), clock=lambda: now[0])
    detector = Detector()
    config = ScoreConfig()

    before = score_registry(registry, store, now[0], config)[0]
    raised = None
    samples = generate(simulated, [fault], start, start + 90_000, SEED)
    for _, place, reading in as_gateway_input(samples):
        now[0] = reading.ts
        changes = detector.tick(reading.ts) + detector.reading(place, reading, reading.ts)
        events = engine.on_anomalies(changes)
        if raised is None and any(e.alert.code == "lift.trapped" for e in events):
            raised = score_registry(registry, store, now[0], config)[0]
    assert raised is not None, "the trapped passenger was not raised as an alert"
    (trapped,) = [a for a in store.list_for_estate(estate_id, 0) if a.code == "lift.trapped"]
    assert trapped.device == lift.id
    # 25 (unresolved critical) + 3 (recent critical) off the lift family, 30 % of the score.
    assert raised.score == pytest.approx(before.score - 28 * 0.3, abs=0.02)
    assert [a.code for a in raised.open_alerts] == ["lift.trapped"]
    assert raised.grade.level <= Grade.DABIAO.level
    assert raised.capped == (raised.score_grade.level > Grade.DABIAO.level)
    # The fault is over, but a trapped passenger never resolves itself: still open.
    during = score_registry(registry, store, now[0], config)[0]
    assert store.get(trapped.id).state is AlertState.OPEN
    assert during.score == raised.score
    engine.resolve(trapped.id, "王师傅", "passenger released, lift checked")
    after = score_registry(registry, store, now[0], config)[0]
    assert after.open_alerts == ()
    assert not after.capped
    assert after.score == pytest.approx(before.score - 3 * 0.3, abs=0.02)  # recent only
    assert after.grade is after.score_grade
    store.close()
