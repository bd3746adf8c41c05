"""Alert storms grouped by cause: an estate's uplink or edge agent down, a building's
devices all silent at once — one alert and one work order, the devices' own offline
alerts held under it (visible, never dispatched) until the cause ends."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from alerts.engine import AlertEngine, AlertEvent
from alerts.grouping import BUILDING_DOWN, ESTATE_EDGE_STOPPED, ESTATE_UPLINK_DOWN
from alerts.model import Alert, AlertAction, AlertState
from alerts.policy import AlertPolicy, NoisePolicy, PolicyError
from alerts.store import AlertStore
from alerts.workorder import WORKORDER_SCHEMA, WorkOrderType, build_workorder
from jiayuan.anomaly import Anomaly
from tests.support.alerts_lifecycle_support import (
    T0,
    FakeClock,
    Recorder,
    anomaly,
    closed,
    make_engine,
)

SECOND = 1000
DISTRICT, STREET, ESTATE = "songjiang", "yongfeng", "songjiang-e01"
# 36 devices in six buildings of six; the estate's edge agent is "edge-e01".
BUILDINGS = [f"b0{n}" for n in range(1, 7)]
DEVICES = [(bldg, f"L{b * 6 + n + 1}") for b, bldg in enumerate(BUILDINGS) for n in range(6)]
NOISE = NoisePolicy(storm_window_s=30.0)
VALIDATOR = jsonschema.Draft202012Validator(
    WORKORDER_SCHEMA, format_checker=jsonschema.FormatChecker()
)


def population(district: str, street: str, estate: str, building: str) -> int:
    """Devices the gateway knows in the estate, or in one of its buildings."""
    if (district, street, estate) != (DISTRICT, STREET, ESTATE):
        return 0
    return sum(1 for b, _ in DEVICES if not building or b == building)


def engine_with(tmp_path: Path, clock: FakeClock) -> tuple[AlertEngine, AlertStore, Recorder]:
    recorder = Recorder()
    engine, store = make_engine(
        tmp_path / "a.db", clock, noise=NOISE, sinks=[recorder], population=population
    )
    return engine, store, recorder


def offline(building: str, device: str, start_ms: int) -> Anomaly:
    return anomaly("lift.offline", device=device, building=building, start_ms=start_ms)


def work_orders(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.work_order]


def children_of(store: AlertStore, parent: Alert) -> list[Alert]:
    return [a for a in store.list_alerts() if a.parent_id == parent.id]


def test_an_estate_whose_devices_all_go_silent_is_one_alert_and_one_work_order(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    # Lifts of every building fall silent over a few seconds (their last readings differ).
    engine.on_anomalies([offline(b, d, T0 + i * 100) for i, (b, d) in enumerate(DEVICES)])
    assert work_orders(recorder.events) == []  # held for the grouping window
    clock.advance(31 * SECOND)
    engine.tick()
    (order,) = work_orders(recorder.events)
    group = order.alert
    assert group.code == ESTATE_UPLINK_DOWN and group.estate == ESTATE and not group.parent_id
    assert group.title_zh.startswith("小区上行中断")
    assert "estate uplink down" in group.title_en.lower()
    assert order.action is AlertAction.RELEASED and order.notify_manager
    # The work order lists the devices.
    assert "36" in order.note and all(device in order.note for _, device in DEVICES)
    children = children_of(store, group)
    assert len(children) == 36 and {a.device for a in children} == {d for _, d in DEVICES}
    assert all(a.state is AlertState.OPEN and a.held_until_ms == 0 for a in children)
    # Visible with their parent in the history, never dispatched, never escalated.
    history = store.history(children[0].id)
    assert history[-1].action is AlertAction.INHIBITED and group.id in history[-1].note
    assert [e for e in recorder.events if e.routed and e.alert.parent_id] == []
    clock.advance(2 * 3600 * SECOND)
    engine.tick()
    assert all(e.alert.id == group.id for e in recorder.events if e.action is AlertAction.ESCALATED)
    # Only the estate's alert counts as a notification's or a work order's subject.
    assert {e.alert.id for e in recorder.events if e.routed} == {group.id}


def test_the_edge_status_offline_raises_the_estate_alert_and_holds_the_devices(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    # The broker publishes the edge's last will: the cause is known before any device
    # has been silent long enough.
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    (group,) = store.list_alerts()
    assert group.code == ESTATE_UPLINK_DOWN and group.held_until_ms > 0
    clock.advance(15 * SECOND)
    engine.on_anomalies([offline(b, d, T0 + 15 * SECOND) for b, d in DEVICES[:30]])
    clock.advance(16 * SECOND)
    engine.tick()
    (order,) = work_orders(recorder.events)
    assert order.alert.id == group.id and "edge-e01" in order.note
    # Devices silent after the work order went out join it, held too.
    engine.on_anomalies([offline(b, d, T0 + 35 * SECOND) for b, d in DEVICES[30:]])
    clock.advance(60 * SECOND)
    engine.tick()
    assert len(work_orders(recorder.events)) == 1
    assert len(children_of(store, group)) == 36
    # The edge's status repeated (retained, after a gateway restart) changes nothing.
    assert engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline") == []


def test_after_the_edge_returns_a_device_still_silent_gets_its_own_alert(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    opened = [offline(b, d, T0 + 15 * SECOND) for b, d in DEVICES]
    engine.on_anomalies(opened)
    clock.advance(31 * SECOND)
    engine.tick()
    (group_order,) = work_orders(recorder.events)
    group = group_order.alert
    clock.advance(10 * 60 * SECOND)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "online")
    # Every device but one reports again (the edge replays its spool).
    back = clock.now_ms
    engine.on_anomalies([closed(a, back) for a in opened if a.device != "L7"])
    assert len(work_orders(recorder.events)) == 1  # the returning devices send nothing
    clock.advance(31 * SECOND)
    engine.tick()
    orders = work_orders(recorder.events)
    assert len(orders) == 3, [(e.action, e.alert.code, e.alert.device) for e in orders]
    alone = [e for e in orders if e.alert.device == "L7"]
    assert [e.action for e in alone] == [AlertAction.RELEASED]
    assert alone[0].alert.parent_id == "" and alone[0].alert.ack_deadline_ms > clock.now_ms
    # The estate alert ends (its cause did): a cancellation follows its work order.
    ended = store.get(group.id)
    assert ended.state is AlertState.AUTO_RESOLVED
    assert [e.action for e in orders if e.alert.id == group.id][-1] is AlertAction.AUTO_RESOLVED
    # The others ended with it, their ends never sent anywhere.
    others = [a for a in children_of(store, group) if a.device != "L7"]
    assert len(others) == 35 and all(a.state is AlertState.AUTO_RESOLVED for a in others)
    assert store.get(alone[0].alert.id).state is AlertState.OPEN


def test_a_short_edge_blip_sends_no_work_order(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    clock.advance(5 * SECOND)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "online")
    clock.advance(60 * SECOND)
    engine.tick()
    assert work_orders(recorder.events) == []
    (group,) = store.list_alerts()
    assert group.state is AlertState.AUTO_RESOLVED


def test_a_clean_edge_stop_is_shown_but_dispatches_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    # Stopped for maintenance: its status says "stopped", not the last will's "offline".
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "stopped")
    (group,) = store.list_alerts()
    assert group.code == ESTATE_EDGE_STOPPED and group.device == "edge-e01"
    assert group.title == "边缘网关已停止 Edge stopped" and group.severity == "info"
    # Operations staff see it at once (the board, the stream), with nothing to do.
    (raised,) = recorder.events
    assert raised.routed and not raised.work_order and not raised.notify_manager
    assert "暂停监测" in raised.note and "no device of the estate is monitored" in raised.note
    # Its devices fall silent one by one: held under it, none dispatched on its own.
    for i, (b, d) in enumerate(DEVICES):
        engine.on_anomalies([offline(b, d, T0 + 15 * SECOND + i * 5 * SECOND)])
        clock.advance(5 * SECOND)
        engine.tick()
    clock.advance(8 * 3600 * SECOND)
    engine.tick()
    assert [e for e in recorder.events if e.work_order or e.notify_manager] == []
    assert [e for e in recorder.events if e.action is AlertAction.ESCALATED] == []
    assert len(children_of(store, group)) == 36
    assert ESTATE_UPLINK_DOWN not in {a.code for a in store.list_alerts()}
    # The retained status heard again after a gateway restart changes nothing.
    assert engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "stopped") == []


def test_after_a_stopped_edge_runs_again_a_device_still_silent_gets_its_own_alert(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "stopped")
    opened = [offline(b, d, T0 + 15 * SECOND) for b, d in DEVICES]
    engine.on_anomalies(opened)
    clock.advance(3600 * SECOND)
    engine.tick()
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "online")
    engine.on_anomalies([closed(a, clock.now_ms) for a in opened if a.device != "L7"])
    clock.advance(31 * SECOND)
    engine.tick()
    (alone,) = work_orders(recorder.events)
    assert (alone.action, alone.alert.device, alone.alert.parent_id) == (
        AlertAction.RELEASED,
        "L7",
        "",
    )
    group = next(a for a in store.list_alerts() if a.code == ESTATE_EDGE_STOPPED)
    assert group.state is AlertState.AUTO_RESOLVED


def test_an_outage_then_a_clean_stop_hands_the_silent_devices_over(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    engine.on_anomalies([offline(b, d, T0 + 15 * SECOND) for b, d in DEVICES])
    clock.advance(31 * SECOND)
    engine.tick()
    (outage,) = work_orders(recorder.events)
    # The uplink comes back only for the edge to be stopped for its repair.
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "online")
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "stopped")
    clock.advance(31 * SECOND)
    engine.tick()
    # The outage ended (its work order is cancelled); the silent devices stay held, now
    # under the stopped edge, and none is dispatched on its own.
    orders = work_orders(recorder.events)
    assert [(e.action, e.alert.id) for e in orders] == [
        (AlertAction.RELEASED, outage.alert.id),
        (AlertAction.AUTO_RESOLVED, outage.alert.id),
    ]
    stopped = next(a for a in store.list_alerts() if a.code == ESTATE_EDGE_STOPPED)
    assert len(children_of(store, stopped)) == 36


def test_a_building_whose_devices_all_fail_together_is_one_alert(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    b03 = [(b, d) for b, d in DEVICES if b == "b03"]
    engine.on_anomalies([offline(b, d, T0 + i * 200) for i, (b, d) in enumerate(b03)])
    # An unrelated device of another building, at the same time: its own alert.
    engine.on_anomalies([offline("b05", "L27", T0 + 2 * SECOND)])
    clock.advance(31 * SECOND)
    engine.tick()
    orders = work_orders(recorder.events)
    assert sorted((e.alert.code, e.alert.device) for e in orders) == sorted(
        [(BUILDING_DOWN, ""), ("lift.offline", "L27")]
    )
    (building,) = [e.alert for e in orders if e.alert.code == BUILDING_DOWN]
    assert building.building == "b03" and building.title_zh.startswith("楼栋设备全部离线")
    assert {a.device for a in children_of(store, building)} == {d for _, d in b03}


def test_a_single_device_offline_is_dispatched_alone_after_the_window(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, _ = engine_with(tmp_path, clock)
    (raised,) = engine.on_anomalies([offline("b01", "L1", T0)])
    assert raised.action is AlertAction.RAISED and not raised.work_order
    clock.advance(31 * SECOND)
    (released,) = engine.tick()
    assert released.action is AlertAction.RELEASED and released.work_order
    assert released.alert.id == raised.alert.id and released.alert.held_until_ms == 0
    assert len(store.list_alerts()) == 1


def test_an_alert_file_from_before_the_grouping_opens_with_every_alert_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    engine, store = make_engine(path, FakeClock())
    (raised,) = engine.on_anomalies([anomaly("lift.trapped")])
    store.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX alerts_parent; DROP INDEX alerts_held;"
        " ALTER TABLE alerts DROP COLUMN parent_id; ALTER TABLE alerts DROP COLUMN held_until_ms;"
    )
    db.close()
    with AlertStore(path) as reopened:
        alert = reopened.get(raised.alert.id)
    assert (alert.parent_id, alert.held_until_ms) == ("", 0)
    assert alert == replace(raised.alert)


def test_the_storm_settings_come_from_the_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("noise: {storm_window_s: 45, storm_fraction: 0.3, storm_min_devices: 5}\n")
    noise = AlertPolicy.from_file(policy).noise
    assert (noise.storm_window_s, noise.storm_fraction, noise.storm_min_devices) == (45, 0.3, 5)
    policy.write_text("noise: {storm_fraction: 1.5}\n")
    with pytest.raises(PolicyError, match=r"storm_fraction: 1.5 is not in \(0, 1\]"):
        AlertPolicy.from_file(policy)


def test_group_work_orders_match_the_published_schema(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, _, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, "songjiang-e02", "edge-e02", "offline")
    engine.on_anomalies([offline(b, d, T0 + i * 100) for i, (b, d) in enumerate(DEVICES)])
    clock.advance(31 * SECOND)
    engine.tick()
    orders = work_orders(recorder.events)
    # One by its edge's last will, one by its devices' silence (no edge named).
    assert sorted((e.alert.code, e.alert.device) for e in orders) == [
        (ESTATE_UPLINK_DOWN, ""),
        (ESTATE_UPLINK_DOWN, "edge-e02"),
    ]
    for event in orders:
        body = build_workorder(
            event.alert, WorkOrderType.CREATE, at_ms=event.at_ms, callback_url="", note=event.note
        )
        errors = [e.message for e in VALIDATOR.iter_errors(body)]
        assert errors == [], (event.alert.device, errors)


def test_an_estate_under_maintenance_sends_no_outage_work_order(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.silence("estate", ESTATE, T0 + 3600 * SECOND, "王工", "edge box replaced")
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    clock.advance(31 * SECOND)
    engine.tick()
    assert work_orders(recorder.events) == []
    (group,) = store.list_alerts()
    assert group.silenced and store.history(group.id)[1].action is AlertAction.SILENCED


def test_held_alerts_end_with_their_group_when_a_person_ends_it(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store, recorder = engine_with(tmp_path, clock)
    engine.on_edge_status(DISTRICT, STREET, ESTATE, "edge-e01", "offline")
    engine.on_anomalies([offline(b, d, T0 + 15 * SECOND) for b, d in DEVICES[:10]])
    clock.advance(31 * SECOND)
    engine.tick()
    (order,) = work_orders(recorder.events)
    engine.cancel(order.alert.id, "李主任", "测试 drill")
    children = children_of(store, order.alert)
    assert len(children) == 10 and all(a.terminal for a in children)
    assert all(group_id_in_last_note(store, a, order.alert.id) for a in children)
    # Ending them sent nothing: only the group's own cancellation.
    assert [e.action for e in work_orders(recorder.events)] == [
        AlertAction.RELEASED,
        AlertAction.CANCELLED,
    ]


def group_id_in_last_note(store: AlertStore, alert: Alert, group_id: str) -> bool:
    return group_id in store.history(alert.id)[-1].note
