"""Alert engine: deduplication, replay, grouping, flapping, silences, escalation, policy,
sinks and the InfluxDB points (against the real InfluxDB of the ``servers`` fixture)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import AlertEvent
from alerts.model import Alert, AlertAction, AlertState, EscalationLevel
from alerts.points import PointBuffer, alert_open_lines
from alerts.policy import AlertPolicy, NoisePolicy, PolicyError
from alerts.silences import SilenceError
from alerts.store import AlertFilter, AlertStore
from jiayuan.catalogue import Severity
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient
from tests.support.alerts_lifecycle_support import (
    MINUTE,
    T0,
    FakeClock,
    Recorder,
    anomaly,
    closed,
    make_engine,
)

HOUR = 60 * MINUTE


def test_same_condition_repeating_is_one_alert_with_a_repeat_count(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    first = anomaly("lift.trapped")
    (raised,) = engine.on_anomalies([first])
    assert raised.action is AlertAction.RAISED
    assert raised.routed and raised.work_order and raised.notify_manager
    # Critical: the clearing does not end it; the condition returns twice.
    for n in range(2):
        start = T0 + (2 * n + 1) * MINUTE
        clock.now_ms = start
        engine.on_anomalies([closed(first, start)])
        clock.now_ms = start + MINUTE
        (again,) = engine.on_anomalies([anomaly("lift.trapped", start_ms=start + MINUTE)])
        assert again.action is AlertAction.REPEATED
        assert not again.routed and not again.work_order
    (alert,) = store.list_alerts()
    assert alert.repeat_count == 3
    assert alert.last_seen_ms == T0 + 4 * MINUTE
    assert alert.condition_active and alert.state is AlertState.OPEN
    # Another port of the same charger is another condition; another code too.
    engine.on_anomalies([anomaly("ebike_charger.over_temperature", device="C1", detail="p01")])
    engine.on_anomalies([anomaly("ebike_charger.over_temperature", device="C1", detail="p02")])
    engine.on_anomalies([anomaly("lift.power_loss")])
    assert len(store.list_alerts()) == 4


def test_replaying_the_same_anomalies_changes_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    trapped = anomaly("lift.trapped")
    stuck = anomaly("lift.stuck", device="L2")
    batch = [trapped, stuck, closed(stuck, T0 + MINUTE)]
    first = engine.on_anomalies(batch)
    assert [e.action for e in first] == [
        AlertAction.RAISED,
        AlertAction.RAISED,
        AlertAction.CONDITION_CLEARED,
        AlertAction.AUTO_RESOLVED,
    ]
    snapshot = {a.id: (a, store.history(a.id)) for a in store.list_alerts()}
    clock.advance(5 * MINUTE)
    assert engine.on_anomalies(batch) == []
    assert engine.on_anomalies([trapped]) == []
    assert {a.id: (a, store.history(a.id)) for a in store.list_alerts()} == snapshot


def test_auto_resolve_follows_the_policy(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    codes = ["lift.offline", "lift.stuck", "fire.alarm", "ebike_charger.smoke", "fire.fault"]
    opened = [anomaly(code, device=f"D{i}") for i, code in enumerate(codes)]
    first_offline = engine.on_anomalies(opened)[0].alert
    clock.advance(MINUTE)
    engine.on_anomalies([closed(a, T0 + MINUTE) for a in opened])
    states = {a.code: a.state for a in store.list_alerts()}
    assert states == {
        "lift.offline": AlertState.AUTO_RESOLVED,
        "lift.stuck": AlertState.AUTO_RESOLVED,
        "fire.alarm": AlertState.OPEN,  # someone must check
        "ebike_charger.smoke": AlertState.OPEN,
        "fire.fault": AlertState.OPEN,
    }
    assert all(not a.condition_active for a in store.list_alerts())
    # After an auto-resolve the condition coming back is a new alert.
    clock.advance(MINUTE)
    (event,) = engine.on_anomalies([anomaly("lift.offline", device="D0", start_ms=T0 + 2 * MINUTE)])
    assert event.action is AlertAction.RAISED and event.alert.id != first_offline.id
    assert len(store.list_alerts(AlertFilter(kind="lift"))) == 3


def test_a_condition_returning_after_resolve_reopens_the_alert(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    first = anomaly("fire.alarm", device="F1")
    (raised,) = engine.on_anomalies([first])
    engine.on_anomalies([closed(first, T0 + MINUTE)])
    engine.resolve(raised.alert.id, "王工", "detector cleaned")
    clock.advance(10 * MINUTE)
    (event,) = engine.on_anomalies([anomaly("fire.alarm", device="F1", start_ms=clock.now_ms)])
    assert event.action is AlertAction.REOPENED
    assert event.routed and event.work_order and event.notify_manager
    assert event.alert.id == raised.alert.id and event.alert.state is AlertState.OPEN
    assert len(store.list_alerts()) == 1
    # Once closed (verified), the next occurrence is a new alert.
    engine.on_anomalies([closed(first, clock.now_ms + MINUTE)])
    engine.resolve(raised.alert.id, "王工")
    engine.close(raised.alert.id, "李主任")
    clock.advance(10 * MINUTE)
    (new,) = engine.on_anomalies([anomaly("fire.alarm", device="F1", start_ms=clock.now_ms)])
    assert new.action is AlertAction.RAISED and new.alert.id != raised.alert.id


def test_alerts_of_one_building_in_one_window_form_one_incident(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, _ = make_engine(tmp_path / "a.db", clock)
    fire = engine.on_anomalies([anomaly("fire.alarm", device="F1", building="b03")])[0]
    clock.advance(2 * MINUTE)
    engine.on_anomalies(
        [
            anomaly("fire.alarm", device="F2", building="b03", start_ms=T0 + MINUTE),
            anomaly(
                "fire.sprinkler_pressure_low", device="P1", building="b03", start_ms=T0 + 4 * MINUTE
            ),
            # Another building, and the same building after the window: other incidents.
            anomaly("fire.alarm", device="F9", building="b04", start_ms=T0 + 2 * MINUTE),
            anomaly(
                "fire.pump_not_started", device="P2", building="b03", start_ms=T0 + 11 * MINUTE
            ),
        ]
    )
    incidents = {i.building + "@" + str(i.start_ms - T0): i for i in engine.list_incidents()}
    assert set(incidents) == {"b03@0", "b04@120000", "b03@660000"}
    grouped = incidents["b03@0"]
    assert grouped.lead_alert_id == fire.alert.id
    assert len(grouped.alert_ids) == 3 and grouped.alert_ids[0] == fire.alert.id
    members = {engine.store.get(i).device for i in grouped.alert_ids}
    assert members == {"F1", "F2", "P1"}
    assert all(engine.store.get(i).incident_id == grouped.id for i in grouped.alert_ids)
    assert engine.list_incidents(estate="nowhere") == []


def test_flapping_holds_notifications_back_and_keeps_the_alert_open(tmp_path: Path) -> None:
    clock = FakeClock()
    noise = NoisePolicy(flap_cycles=3, flap_window_s=3600)
    engine, store = make_engine(tmp_path / "a.db", clock, noise=noise)
    routed: list[AlertEvent] = []
    t = T0
    for cycle in range(5):
        clock.now_ms = t
        events = engine.on_anomalies([anomaly("lift.stuck", start_ms=t)])
        routed += [e for e in events if e.routed]
        clock.now_ms = t + MINUTE
        engine.on_anomalies([closed(anomaly("lift.stuck", start_ms=t), t + MINUTE)])
        t += 2 * MINUTE
        if cycle < 3:
            # Each cycle so far: raised, routed, auto-resolved when it cleared.
            assert events[0].action is AlertAction.RAISED and events[0].routed
    # The fifth opening came after four clears within the hour: flapping, not routed, and it
    # does not end by itself any more.
    alerts = store.list_alerts()
    flapping = [a for a in alerts if a.flapping]
    assert len(flapping) == 1
    assert flapping[0].state is AlertState.OPEN and not flapping[0].condition_active
    assert len(routed) == 4
    assert AlertAction.FLAPPING in [h.action for h in store.history(flapping[0].id)]
    # Further cycles are repeats of the flapping alert, never routed.
    clock.now_ms = t
    (again,) = engine.on_anomalies([anomaly("lift.stuck", start_ms=t)])
    assert again.action is AlertAction.REPEATED and not again.routed
    assert len(store.list_alerts()) == 5
    # A person ends it.
    clock.advance(MINUTE)
    assert engine.resolve(flapping[0].id, "王工", "sensor replaced").state is AlertState.RESOLVED


def test_silences_by_estate_building_and_device_until_their_end(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    end = T0 + HOUR
    by_device = engine.silence("device", "songjiang-e01", end, "维保 Chen", device="L1")
    engine.silence("building", "songjiang-e01", end, "维保 Chen", "pump room", building="b02")
    engine.silence("estate", "other-e02", end, "物业 Liu")
    assert {s.scope.value for s in engine.silences()} == {"device", "building", "estate"}

    events = engine.on_anomalies(
        [
            anomaly("lift.trapped", device="L1", building="b01"),  # device silenced
            anomaly("fire.alarm", device="F7", building="b02"),  # building silenced
            anomaly("fire.alarm", device="F1", estate="other-e02"),  # estate silenced
            anomaly("lift.trapped", device="L2", building="b01"),  # not silenced
        ]
    )
    raised = [e for e in events if e.action is AlertAction.RAISED]
    assert [(e.alert.device, e.routed, e.work_order) for e in raised] == [
        ("L1", False, False),
        ("F7", False, False),
        ("F1", False, False),
        ("L2", True, True),
    ]
    assert all(not e.routed for e in events if e.alert.silenced)
    silenced = store.get(raised[0].alert.id)
    assert silenced.silenced and silenced.ack_deadline_ms == 0
    history = store.history(silenced.id)
    assert history[1].action is AlertAction.SILENCED and by_device.id in history[1].note
    # No escalation for work the estate declared as maintenance.
    assert [e.alert.device for e in engine.tick(T0 + 3 * HOUR)] == ["L2"] * 2

    # After the end, alerts are routed again; a deleted silence stops at once.
    clock.now_ms = end + 1
    (after,) = engine.on_anomalies([anomaly("lift.fault_code", device="L1", start_ms=end + 1)])
    assert after.routed and not after.alert.silenced
    estate_silence = engine.silences(active_only=False, estate="other-e02")[0]
    assert engine.delete_silence(estate_silence.id) and not engine.delete_silence("sil-nope")
    assert len(engine.silences(active_only=False)) == 2
    assert engine.silences() == []  # the rest ended


def test_a_silence_needs_its_target_and_a_later_end(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path / "a.db", FakeClock())
    with pytest.raises(SilenceError, match="building id"):
        engine.silence("building", "e01", T0 + HOUR, "Chen")
    with pytest.raises(SilenceError, match="device id"):
        engine.silence("device", "e01", T0 + HOUR, "Chen")
    with pytest.raises(SilenceError, match="scope 'street'"):
        engine.silence("street", "e01", T0 + HOUR, "Chen")
    with pytest.raises(SilenceError, match="after the start"):
        engine.silence("estate", "e01", T0 - 1, "Chen")
    with pytest.raises(SilenceError, match="actor"):
        engine.silence("estate", "e01", T0 + HOUR, " ")
    assert engine.silences(active_only=False) == []


def test_escalation_to_street_then_district_as_deadlines_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    recorder = Recorder()
    engine, store = make_engine(tmp_path / "a.db", clock, sinks=[recorder])
    (trapped,) = engine.on_anomalies([anomaly("lift.trapped")])  # ack 5 min, resolve 2 h
    (stuck,) = engine.on_anomalies([anomaly("lift.stuck", device="L2")])  # ack 2 h
    assert engine.tick(T0 + 5 * MINUTE - 1) == []
    clock.now_ms = T0 + 5 * MINUTE
    (first,) = engine.tick()
    assert first.action is AlertAction.ESCALATED and first.alert.id == trapped.alert.id
    assert first.alert.escalation is EscalationLevel.STREET
    assert first.routed and first.work_order and first.notify_manager
    assert engine.tick() == []  # nothing new at the same time
    # Acknowledged by the street centre before the second ack deadline: no ack escalation.
    clock.now_ms = T0 + 9 * MINUTE
    engine.acknowledge(trapped.alert.id, "街道中心 Zhao")
    assert engine.tick(T0 + 119 * MINUTE) == []
    # The resolve deadline (2 h) is the second miss: district.
    clock.now_ms = T0 + 120 * MINUTE
    escalated = [e for e in engine.tick() if e.alert.id == trapped.alert.id]
    assert [e.alert.escalation for e in escalated] == [EscalationLevel.DISTRICT]
    # The warning went to the street after 2 h without acknowledgement.
    assert store.get(stuck.alert.id).escalation is EscalationLevel.STREET
    # Top of the ladder: no more escalation.
    assert [e for e in engine.tick(T0 + 100 * HOUR) if e.alert.id == trapped.alert.id] == []
    history = store.history(trapped.alert.id)
    steps = [(h.action, h.at_ms - T0) for h in history if h.action is AlertAction.ESCALATED]
    assert steps == [(AlertAction.ESCALATED, 5 * MINUTE), (AlertAction.ESCALATED, 120 * MINUTE)]
    assert "街道" in history[1].note and "street" in history[1].note
    assert "区" in history[-1].note and "district" in history[-1].note


def test_unacknowledged_critical_climbs_one_level_per_missed_ack(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    (raised,) = engine.on_anomalies([anomaly("fire.alarm", device="F1")])
    # A late tick that finds two deadlines missed climbs both steps, each recorded.
    events = engine.tick(T0 + 10 * MINUTE)
    assert [e.alert.escalation for e in events] == [
        EscalationLevel.STREET,
        EscalationLevel.DISTRICT,
    ]
    escalations = [h for h in store.history(raised.alert.id) if h.action is AlertAction.ESCALATED]
    assert len(escalations) == 2
    # Resolved alerts wait for verification without escalating.
    engine.resolve(raised.alert.id, "王工")
    assert engine.tick(T0 + 100 * HOUR) == []


CODES = ("lift.trapped", "lift.stuck", "fire.alarm", "lift.offline", "water_tank.ph_out_of_range")
STEP_AT = st.integers(0, 60).map(lambda fives: T0 + fives * 5 * MINUTE)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    alerts=st.lists(
        st.tuples(st.sampled_from(CODES), STEP_AT, st.sampled_from(("", "ack", "resolve"))),
        min_size=1,
        max_size=6,
    ),
    ticks=st.lists(STEP_AT, min_size=1, max_size=6),
)
def test_escalating_the_candidates_is_escalating_every_live_alert(
    alerts: list[tuple[str, int, str]], ticks: list[int]
) -> None:
    """The timer reads only the alerts with a deadline passed; over any raises, steps and
    ticks it escalates exactly as reading every live alert (the code before) did."""

    def every_live(store: AlertStore) -> Callable[[int, EscalationLevel], list[Alert]]:
        def scan(now_ms: int, top: EscalationLevel) -> list[Alert]:
            live = store.live_alerts()
            return [a for a in live if not a.silenced and a.state is not AlertState.RESOLVED]

        return scan

    with tempfile.TemporaryDirectory() as workdir:
        runs = []
        for name in ("candidates", "every live"):
            clock = FakeClock()
            engine, store = make_engine(Path(workdir) / f"{name}.db", clock)
            if name == "every live":
                store.escalation_candidates = every_live(store)  # type: ignore[method-assign]
            events = []
            steps = sorted(
                [(at, "tick", "") for at in ticks]
                + [(at, "raise", code) for code, at, _ in alerts]
                + [(at + 7 * MINUTE, step, code) for code, at, step in alerts if step]
            )
            for number, (at, what, code) in enumerate(steps):
                clock.now_ms = at
                if what == "tick":
                    events += engine.tick()
                elif what == "raise":
                    events += engine.on_anomalies([anomaly(code, device=f"D{number}", start_ms=at)])
                else:
                    for alert in store.live_alerts():
                        if alert.code == code and alert.state is AlertState.OPEN:
                            getattr(engine, "acknowledge" if what == "ack" else "resolve")(
                                alert.id, "王工"
                            )
            runs.append([(e.alert.code, e.action, e.alert.escalation, e.at_ms) for e in events])
        assert runs[0] == runs[1]


def test_a_failing_sink_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: AlertEvent) -> None:
        raise RuntimeError("outbox disk full")

    recorder = Recorder()
    engine, store = make_engine(tmp_path / "a.db", FakeClock(), sinks=[broken, recorder])
    (raised,) = engine.on_anomalies([anomaly()])
    acked = engine.acknowledge(raised.alert.id, "王工")
    assert store.get(raised.alert.id) == acked
    assert [e.action for e in recorder.events] == [AlertAction.RAISED, AlertAction.ACKNOWLEDGED]
    assert "outbox disk full" in caplog.text


def test_policy_defaults_and_overrides_from_yaml_and_toml(tmp_path: Path) -> None:
    policy = AlertPolicy()
    trapped = policy.for_code("lift.trapped")
    assert (trapped.severity, trapped.ack_deadline_s, trapped.resolve_deadline_s) == (
        Severity.CRITICAL,
        300.0,
        7200.0,
    )
    assert trapped.work_order and trapped.notify_manager and not trapped.auto_resolve
    assert policy.for_code(
        "lift.offline"
    ).auto_resolve  # high, but the device coming back is the fix
    assert not policy.for_code("fire.fault").auto_resolve
    warning = policy.for_code("water_tank.ph_out_of_range")
    assert not warning.work_order and warning.notify_manager and warning.auto_resolve
    assert warning.ack_deadline_s == 7200.0 and warning.resolve_deadline_s == 72 * 3600.0

    yaml_file = tmp_path / "policy.yaml"
    yaml_file.write_text(
        "noise: {flap_cycles: 5}\n"
        "codes:\n"
        "  lift.power_loss: {severity: critical}\n"
        "  lift.stuck: {severity: info}\n"
        "  water_tank.overflow: {work_order: true, ack_deadline_s: 600}\n",
        encoding="utf-8",
    )
    loaded = AlertPolicy.from_file(yaml_file)
    assert loaded.noise.flap_cycles == 5
    assert loaded.for_code("lift.power_loss").ack_deadline_s == 300.0
    assert loaded.for_code("water_tank.overflow").work_order
    assert loaded.for_code("water_tank.overflow").ack_deadline_s == 600.0
    # Info: recorded as an anomaly only, no alert.
    engine, store = make_engine(tmp_path / "a.db", FakeClock(), policy=loaded)
    assert engine.on_anomalies([anomaly("lift.stuck")]) == []
    assert store.list_alerts() == []

    toml_file = tmp_path / "policy.toml"
    toml_file.write_text('[codes."fire.isolated"]\nnotify_manager = false\n', encoding="utf-8")
    assert not AlertPolicy.from_file(toml_file).for_code("fire.isolated").notify_manager


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("codes:\n  fire.alarm: {auto_resolve: true}\n", "never resolves by itself"),
        ("codes:\n  lift.trapped: {ack_deadline: 5}\n", "unknown key"),
        ("codes:\n  lift.trapped: {severity: urgent}\n", "'urgent' is not a severity"),
        ("codes:\n  lift.trapped: {ack_deadline_s: -1}\n", "codes.lift.trapped.ack_deadline_s"),
        ("codes:\n  lift.trapped: {work_order: maybe}\n", "not true or false"),
        ("codes:\n  acme.boom: {work_order: true}\n", "give its severity"),
        ("noise: {flap_cycles: 2.5}\n", "whole number"),
        ("colours: {}\n", "unknown section"),
        ("codes: [1, 2]\n", "'codes' must be a mapping"),
        ("codes:\n  lift.trapped: [\n", "policy.yaml"),
    ],
)
def test_bad_policy_files_name_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message) as error:
        AlertPolicy.from_file(path)
    assert str(path) in str(error.value)


def test_alert_points_in_influxdb(tmp_path: Path, influx_config: InfluxConfig) -> None:
    clock = FakeClock()
    points = PointBuffer()
    engine, _ = make_engine(tmp_path / "a.db", clock, sinks=[points])
    (trapped,) = engine.on_anomalies([anomaly("lift.trapped")])
    (stuck,) = engine.on_anomalies([anomaly("lift.stuck", device="L2")])
    # Two ports of one charger raised in the same millisecond: both points must survive.
    engine.on_anomalies(
        [
            anomaly("ebike_charger.over_temperature", device="C1", detail="p01"),
            anomaly("ebike_charger.over_temperature", device="C1", detail="p02"),
        ]
    )
    clock.advance(90_000)
    engine.acknowledge(trapped.alert.id, "王工")
    clock.advance(30 * MINUTE)
    engine.resolve(trapped.alert.id, "王工")
    clock.advance(MINUTE)
    engine.on_anomalies([closed(anomaly("lift.stuck", device="L2"), clock.now_ms)])
    lines = points.drain()
    gauge = alert_open_lines(engine.open_counts(T0 + 100 * HOUR), T0 + 100 * HOUR)
    with InfluxClient(influx_config) as client:
        client.write(lines + gauge)
        rows = _rows(client, 'SELECT * FROM "alert" ORDER BY time')
        gauge_rows = _rows(client, 'SELECT * FROM "alert_open"')
    assert len(rows) == len(lines) == 8
    by_action = {(r["action"], r["device"]): r for r in rows}
    acked = by_action[("acknowledged", "L1")]
    assert acked["tta_s"] == 90.0 and acked["ttr_s"] is None
    resolved = by_action[("resolved", "L1")]
    assert resolved["ttr_s"] == 90.0 + 1800.0 and resolved["state"] == "resolved"
    auto = by_action[("auto_resolved", "L2")]
    assert auto["ttr_s"] == (31 * MINUTE + 90_000) / 1000
    raised = by_action[("raised", "L1")]
    assert raised["tta_s"] is None and raised["repeat_count"] == 1
    assert (raised["title_zh"], raised["title_en"]) == ("困人", "Passenger trapped")
    assert (raised["severity"], raised["escalation"], raised["code"]) == (
        "critical",
        "estate",
        "lift.trapped",
    )
    charger = [r for r in rows if r["device"] == "C1"]
    assert len({r["alert_id"] for r in charger}) == 2
    assert stuck.alert.id in {r["alert_id"] for r in rows}
    # The gauge: one row per estate and severity; the critical ones overdue by now.
    by_severity = {r["severity"]: r for r in gauge_rows}
    assert by_severity["critical"]["open"] == 3  # trapped is resolved, not yet closed
    assert by_severity["critical"]["unacknowledged"] == 2
    assert by_severity["critical"]["overdue"] == 2
    assert by_severity["warning"]["open"] == 0  # zeros are written too


def _rows(client: InfluxClient, query: str) -> list[dict[str, object]]:
    return [dict(zip(s.columns, row, strict=True)) for s in client.query(query) for row in s.values]


def test_a_note_is_history_without_a_change_of_state(tmp_path: Path) -> None:
    # What the operations centre's "rejected" callback records: the estate keeps the alert.
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    (raised,) = engine.on_anomalies([anomaly("lift.trapped")])
    clock.advance(MINUTE)
    kept = engine.note(raised.alert.id, "opscentre", "运行中心退回工单 rejected: not ours")
    assert kept.state is AlertState.OPEN and kept == store.get(raised.alert.id)
    last = store.history(raised.alert.id)[-1]
    assert (last.action, last.actor, last.from_state, last.to_state) == (
        AlertAction.NOTED,
        "opscentre",
        AlertState.OPEN,
        AlertState.OPEN,
    )
    with pytest.raises(ValueError, match="needs the actor and the text"):
        engine.note(raised.alert.id, "opscentre", "  ")
