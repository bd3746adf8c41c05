"""Alert lifecycle: every step the model allows, the refused ones, history, restarts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.model import (
    ALLOWED_STEPS,
    TERMINAL_STATES,
    Alert,
    AlertAction,
    AlertNotFound,
    AlertState,
    TransitionRefused,
)
from alerts.policy import AlertPolicy
from alerts.store import AlertFilter, AlertStore
from tests.support.alerts_dispatch_support import make_alert
from tests.support.alerts_lifecycle_support import (
    MINUTE,
    T0,
    FakeClock,
    Recorder,
    anomaly,
    closed,
    make_engine,
)

Step = Callable[[AlertEngine, str], Alert]

# The engine's step for each target state (auto_resolved is the condition's, not a person's).
STEPS: dict[AlertState, Step] = {
    AlertState.ACKNOWLEDGED: lambda e, i: e.acknowledge(i, "王工", "on my way"),
    AlertState.DISPATCHED: lambda e, i: e.dispatch(i, "opscentre", "", work_order_id="WO-1"),
    AlertState.RESOLVED: lambda e, i: e.resolve(i, "王工", "door sensor replaced"),
    AlertState.CLOSED: lambda e, i: e.close(i, "李主任", "checked on site"),
    AlertState.CANCELLED: lambda e, i: e.cancel(i, "李主任", "test of the alarm"),
    AlertState.OPEN: lambda e, i: e.reopen(i, "李主任", "still stuck"),
}
ACTION_OF = {
    AlertState.ACKNOWLEDGED: AlertAction.ACKNOWLEDGED,
    AlertState.DISPATCHED: AlertAction.DISPATCHED,
    AlertState.RESOLVED: AlertAction.RESOLVED,
    AlertState.CLOSED: AlertAction.CLOSED,
    AlertState.CANCELLED: AlertAction.CANCELLED,
    AlertState.OPEN: AlertAction.REOPENED,
}
# How to bring a fresh alert into each state.
PATHS: dict[AlertState, tuple[AlertState, ...]] = {
    AlertState.OPEN: (),
    AlertState.ACKNOWLEDGED: (AlertState.ACKNOWLEDGED,),
    AlertState.DISPATCHED: (AlertState.DISPATCHED,),
    AlertState.RESOLVED: (AlertState.RESOLVED,),
    AlertState.CLOSED: (AlertState.RESOLVED, AlertState.CLOSED),
    AlertState.CANCELLED: (AlertState.CANCELLED,),
}


def _alert_in(state: AlertState, tmp_path: Path) -> tuple[AlertEngine, Alert, FakeClock, Recorder]:
    clock = FakeClock()
    recorder = Recorder()
    engine, _ = make_engine(tmp_path / f"{state.value}.db", clock, sinks=[recorder])
    if state is AlertState.AUTO_RESOLVED:
        # A warning clears by itself when its condition does.
        opened = anomaly("lift.stuck")
        engine.on_anomalies([opened])
        clock.advance(MINUTE)
        (cleared, auto) = engine.on_anomalies([closed(opened, T0 + MINUTE)])
        assert (cleared.action, auto.action) == (
            AlertAction.CONDITION_CLEARED,
            AlertAction.AUTO_RESOLVED,
        )
        return engine, auto.alert, clock, recorder
    (raised,) = engine.on_anomalies([anomaly()])
    alert = raised.alert
    for step in PATHS[state]:
        clock.advance(MINUTE)
        alert = STEPS[step](engine, alert.id)
    assert alert.state is state
    return engine, alert, clock, recorder


@pytest.mark.parametrize("start", list(AlertState), ids=lambda s: s.value)
def test_every_step_is_taken_or_refused_as_the_lifecycle_says(
    start: AlertState, tmp_path: Path
) -> None:
    for wanted, step in STEPS.items():
        engine, alert, clock, recorder = _alert_in(start, tmp_path / wanted.value)
        before_history = engine.store.history(alert.id)
        clock.advance(MINUTE)
        if wanted in ALLOWED_STEPS[start]:
            after = step(engine, alert.id)
            assert after.state is wanted
            assert engine.store.get(alert.id) == after
            last = engine.store.history(alert.id)[-1]
            assert (last.from_state, last.to_state) == (start, wanted)
            assert last.action is ACTION_OF[wanted]
            assert last.at_ms == clock.now_ms
            assert last.actor in ("王工", "李主任", "opscentre")
            assert recorder.events[-1].action is ACTION_OF[wanted]
            assert recorder.events[-1].alert == after
        else:
            with pytest.raises(TransitionRefused) as refused:
                step(engine, alert.id)
            assert refused.value.state is start and refused.value.wanted is wanted
            assert alert.id in refused.value.reason and start.value in refused.value.reason
            # Nothing changed: not the alert, not its history.
            assert engine.store.get(alert.id) == alert
            assert engine.store.history(alert.id) == before_history


def test_final_states_say_so_in_the_reason(tmp_path: Path) -> None:
    for state in TERMINAL_STATES:
        engine, alert, _, _ = _alert_in(state, tmp_path / state.value)
        with pytest.raises(TransitionRefused, match="final"):
            engine.reopen(alert.id, "someone")


def test_step_times_and_work_order_are_recorded(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    (raised,) = engine.on_anomalies([anomaly()])
    assert raised.alert.created_ms == T0
    assert raised.alert.ack_deadline_ms == T0 + 5 * MINUTE  # critical: 5 min
    assert raised.alert.resolve_deadline_ms == T0 + 120 * MINUTE  # critical: 2 h
    clock.advance(2 * MINUTE)
    engine.acknowledge(raised.alert.id, "王工")
    clock.advance(MINUTE)
    engine.dispatch(raised.alert.id, "opscentre", work_order_id="WO-77")
    clock.advance(MINUTE)
    engine.resolve(raised.alert.id, "opscentre", "rescued")
    clock.advance(MINUTE)
    done = engine.close(raised.alert.id, "李主任")
    assert (done.acknowledged_ms, done.dispatched_ms) == (T0 + 2 * MINUTE, T0 + 3 * MINUTE)
    assert (done.resolved_ms, done.closed_ms) == (T0 + 4 * MINUTE, T0 + 5 * MINUTE)
    assert done.work_order_id == "WO-77"
    actions = [h.action for h in store.history(done.id)]
    assert actions == [
        AlertAction.RAISED,
        AlertAction.ACKNOWLEDGED,
        AlertAction.DISPATCHED,
        AlertAction.RESOLVED,
        AlertAction.CLOSED,
    ]
    assert store.history(done.id)[3].note == "rescued"


def test_steps_need_an_actor_and_dispatch_a_work_order_id(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path / "a.db", FakeClock())
    (raised,) = engine.on_anomalies([anomaly()])
    with pytest.raises(ValueError, match="actor"):
        engine.acknowledge(raised.alert.id, "  ")
    with pytest.raises(ValueError, match="work_order_id"):
        engine.dispatch(raised.alert.id, "opscentre")
    with pytest.raises(AlertNotFound):
        engine.acknowledge("al-nope", "王工")
    assert engine.store.get(raised.alert.id).state is AlertState.OPEN


def test_reopen_gives_fresh_deadlines_and_clears_the_step_times(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, _ = make_engine(tmp_path / "a.db", clock)
    (raised,) = engine.on_anomalies([anomaly()])
    engine.acknowledge(raised.alert.id, "王工")
    engine.resolve(raised.alert.id, "王工")
    clock.advance(30 * MINUTE)
    again = engine.reopen(raised.alert.id, "李主任", "still stuck")
    assert again.state is AlertState.OPEN
    assert (again.acknowledged_ms, again.resolved_ms) == (0, 0)
    assert again.ack_deadline_ms == clock.now_ms + 5 * MINUTE


def test_restart_keeps_state_and_raises_no_second_alert(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "alerts.db"
    engine, store = make_engine(path, clock)
    first = anomaly()
    (raised,) = engine.on_anomalies([first])
    engine.acknowledge(raised.alert.id, "王工", "coming")
    store.close()

    # A new process on the same file: the redelivered anomaly and the condition re-detected
    # after the restart (a later start) both belong to the alert that is already there.
    clock.advance(10 * MINUTE)
    recorder = Recorder()
    engine2, store2 = make_engine(path, clock, sinks=[recorder])
    assert engine2.on_anomalies([first]) == []
    events = engine2.on_anomalies([anomaly(start_ms=T0 + 10 * MINUTE)])
    assert [e.action for e in events] == [AlertAction.REPEATED]
    assert not events[0].routed and not events[0].work_order
    alerts = store2.list_alerts(AlertFilter())
    assert len(alerts) == 1
    assert alerts[0].id == raised.alert.id
    assert alerts[0].state is AlertState.ACKNOWLEDGED
    assert alerts[0].repeat_count == 2
    assert [h.action for h in store2.history(raised.alert.id)] == [
        AlertAction.RAISED,
        AlertAction.ACKNOWLEDGED,
        AlertAction.REPEATED,
    ]


def test_store_filters_and_estate_listing(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = make_engine(tmp_path / "a.db", clock)
    engine.on_anomalies([anomaly("lift.trapped", device="L1")])
    clock.advance(MINUTE)
    engine.on_anomalies([anomaly("fire.alarm", device="F1", building="b02")])
    clock.advance(MINUTE)
    (water,) = engine.on_anomalies([anomaly("water_tank.ph_out_of_range", estate="other-e02")])
    engine.resolve(water.alert.id, "王工")
    engine.close(water.alert.id, "李主任")

    def ids(**kwargs: object) -> list[str]:
        return [a.code for a in store.list_alerts(AlertFilter(**kwargs))]  # type: ignore[arg-type]

    assert ids() == ["water_tank.ph_out_of_range", "fire.alarm", "lift.trapped"]  # newest first
    assert ids(severity="critical") == ["fire.alarm", "lift.trapped"]
    assert ids(kind="fire") == ["fire.alarm"]
    assert ids(estate="other-e02") == ["water_tank.ph_out_of_range"]
    assert ids(states=(AlertState.CLOSED,)) == ["water_tank.ph_out_of_range"]
    assert ids(since_ms=T0 + MINUTE) == ["water_tank.ph_out_of_range", "fire.alarm"]
    assert ids(until_ms=T0 + MINUTE) == ["lift.trapped"]
    assert ids(limit=1, offset=1) == ["fire.alarm"]
    # The score's view: recent alerts plus every live one, however old.
    assert [a.code for a in store.list_for_estate("songjiang-e01", T0 + MINUTE)] == [
        "lift.trapped",
        "fire.alarm",
    ]
    assert store.list_for_estate("other-e02", T0 + 10 * MINUTE) == []


def test_a_batch_of_anomalies_is_kept_only_once_its_messages_are(tmp_path: Path) -> None:
    """One commit a batch, the sinks' (the outbox's) first: when it fails, the store keeps
    nothing of the batch, so the redelivered anomalies raise their alerts again."""
    failing = True

    @contextmanager
    def outbox_batch() -> Iterator[None]:
        yield
        if failing:
            raise OSError("disk full")

    store = AlertStore(tmp_path / "a.db")
    heard = Recorder()
    engine = AlertEngine(store, AlertPolicy(), FakeClock(), [heard], sink_batch=outbox_batch)
    batch = [anomaly("lift.trapped"), anomaly("fire.alarm", device="F1")]
    with pytest.raises(OSError):
        engine.on_anomalies(batch)
    assert store.list_alerts() == []
    failing = False
    raised = engine.on_anomalies(batch)
    assert [e.action for e in raised] == [AlertAction.RAISED] * 2
    assert sorted(a.code for a in store.list_alerts()) == ["fire.alarm", "lift.trapped"]
    assert len(heard.events) == 4  # the sinks heard both tries; the outbox keys dedupe


def test_a_failed_save_in_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.db")
    kept, unknown = make_alert(1), make_alert(2)
    with store.batch():
        store.save(kept, [], condition_key="k1")
        with pytest.raises(AlertNotFound):
            store.save(unknown, [])  # an update of an alert never raised
        assert [a.id for a in store.list_alerts()] == [kept.id]
    assert [a.id for a in AlertStore(tmp_path / "a.db").list_alerts()] == [kept.id]


def test_engine_and_store_are_safe_across_threads(tmp_path: Path) -> None:
    """The processing thread raises while the API thread steps and reads: no error, no
    alert lost or doubled, every step recorded."""
    engine, store = make_engine(tmp_path / "a.db", FakeClock())
    devices = [f"L{n}" for n in range(200)]
    errors: list[BaseException] = []
    acknowledged: list[str] = []

    def raise_all() -> None:
        try:
            for device in devices:
                engine.on_anomalies([anomaly(device=device)])
                engine.on_anomalies([anomaly(device=device)])  # redelivered
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def acknowledge_what_appears() -> None:
        try:
            while len(acknowledged) < len(devices):
                for alert in store.list_alerts(AlertFilter(states=(AlertState.OPEN,), limit=50)):
                    engine.acknowledge(alert.id, "王工")
                    acknowledged.append(alert.id)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=raise_all),
        threading.Thread(target=acknowledge_what_appears, daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    alerts = store.list_alerts(AlertFilter(limit=1000))
    assert len(alerts) == len(devices) == len(set(acknowledged))
    assert all(a.state is AlertState.ACKNOWLEDGED and a.repeat_count == 1 for a in alerts)
    assert all(len(store.history(a.id)) == 2 for a in alerts)
