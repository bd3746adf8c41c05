"""Every rule fires on a hand-built sequence, clears with hysteresis, and stays quiet on
look-alike normal sequences.  Timed by device timestamps; no servers needed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from gateway.detection.rules import FamilyRules, all_rules
from jiayuan.catalogue import EBIKE_CHARGER, FIRE, LIFT, WATER_TANK, Kind, port_field
from jiayuan.contract import Reading
from jiayuan.places import Place

T0 = 1_700_000_000_000
Step = tuple[float, dict[str, Any]]


def place(kind: Kind, device: str = "d1") -> Place:
    return Place("songjiang", "fangsong", "e1", "b1", kind.value, device)


def run(
    kind: Kind, steps: Sequence[Step], rules: FamilyRules | None = None
) -> list[tuple[float, str, bool]]:
    """Feed (seconds, values) steps; return (seconds, code, opened) for every change."""
    rules = rules if rules is not None else all_rules()[kind]
    where = place(kind)
    changes = []
    for seq, (seconds, values) in enumerate(steps, start=1):
        reading = Reading(
            device=where.device,
            kind=kind.value,
            seq=seq,
            ts=T0 + int(seconds * 1000),
            values=values,
        )
        for change in rules.evaluate(where, reading):
            changes.append(((change.ts_ms - T0) / 1000, change.code, change.opened))
    return changes


def every(start: float, stop: float, step: float, values: dict[str, Any]) -> list[Step]:
    steps, t = [], start
    while t <= stop + 1e-9:
        steps.append((t, dict(values)))
        t += step
    return steps


LIFT_IDLE = {
    "car_status": 0,
    "car_direction": 0,
    "door_zone": 1,
    "car_position": 3,
    "door_status": 0,
    "passenger_status": 2,
    "service_mode": 1,
    "up_limit": 0,
    "down_limit": 0,
    "power_status": 1,
    "speed": 0.0,
    "rated_speed": 1.75,
    "fault_code": 0,
}


def lift(**changes: Any) -> dict[str, Any]:
    return {**LIFT_IDLE, **changes}


# --- lift -----------------------------------------------------------------------------------


def test_trapped_in_zone_fires_after_hold_and_clears_when_door_opens() -> None:
    hold = LIFT.threshold("trapped_in_zone_s")
    steps = [(0, lift()), *every(5, 40, 5, lift(passenger_status=1))]
    steps.append((41, lift(passenger_status=1, door_status=1)))
    changes = run(Kind.LIFT, steps)
    assert changes == [(5 + hold, "lift.trapped", True), (41, "lift.trapped", False)]


def test_trapped_out_of_zone_waits_longer() -> None:
    hold = LIFT.threshold("trapped_out_of_zone_s")
    trapped = lift(passenger_status=1, door_zone=2)
    steps = [*every(0, 60, 5, trapped), (61, lift(door_zone=2, passenger_status=2))]
    opened = [c for c in run(Kind.LIFT, steps) if c[1] == "lift.trapped"]
    assert opened == [(hold, "lift.trapped", True), (61, "lift.trapped", False)]


def test_trapped_only_from_changed_values_uses_remembered_state() -> None:
    # An event reading carries only what changed; the heartbeats fill in the rest.
    steps = [(0, lift()), (1, {"passenger_status": 1})] + [(t, {}) for t in range(5, 30, 5)]
    steps = [(t, v or {"speed": 0.0}) for t, v in steps]
    assert "lift.trapped" in {c[1] for c in run(Kind.LIFT, steps)}


def test_trapped_suppressed_in_inspection() -> None:
    steps = every(0, 60, 5, lift(passenger_status=1, service_mode=2))
    assert run(Kind.LIFT, steps) == []


def test_no_trapped_when_parked_with_door_open_or_passenger_leaving() -> None:
    parked_open = every(0, 120, 5, lift(passenger_status=1, door_status=1))
    assert run(Kind.LIFT, parked_open) == []
    leaving = [
        (0, lift(passenger_status=1, door_status=1)),
        (8, lift(passenger_status=2, door_status=1)),
        *every(10, 120, 5, lift(passenger_status=2, door_status=0)),
    ]
    assert run(Kind.LIFT, leaving) == []
    # A short stop with someone inside before the car moves off is a normal ride.
    ride = [
        *every(0, 15, 5, lift(passenger_status=1)),
        *every(16, 60, 2, lift(passenger_status=1, car_status=1, speed=1.7, door_zone=2)),
    ]
    assert run(Kind.LIFT, ride) == []


def test_door_open_moving_needs_two_readings() -> None:
    moving = lift(car_status=1, speed=1.0, door_zone=2)
    once = [(0, moving), (1, {**moving, "door_status": 1}), (1.2, moving)]
    assert run(Kind.LIFT, once) == []
    twice = [
        (0, moving),
        (1, {**moving, "door_status": 1}),
        (1.3, {**moving, "door_status": 1}),
        (3, moving),
    ]
    assert run(Kind.LIFT, twice) == [
        (1.3, "lift.door_open_moving", True),
        (3, "lift.door_open_moving", False),
    ]


def test_overspeed_sustained_uses_remembered_rated_speed_and_clears_at_rated() -> None:
    rated = 1.75
    limit = LIFT.threshold("overspeed_ratio") * rated
    steps = [
        (0, lift()),
        (1, {"car_status": 1, "speed": 1.7}),
        (2, {"speed": limit + 0.05}),
        (3, {"speed": limit + 0.1}),
        (4, {"speed": limit + 0.1}),
        (5, {"speed": limit - 0.01}),  # still above rated
        (6, {"speed": rated - 0.1}),
    ]
    assert run(Kind.LIFT, steps) == [(4, "lift.overspeed", True), (6, "lift.overspeed", False)]
    # A single fast sample is not overspeed; without a rated speed there is no comparison.
    blip = [(0, lift(car_status=1, speed=1.7)), (1, {"speed": limit + 0.5}), (1.5, {"speed": 1.7})]
    assert run(Kind.LIFT, blip) == []
    assert run(Kind.LIFT, [(0, {"car_status": 1, "speed": 5.0}), (5, {"speed": 5.0})]) == []


@pytest.mark.parametrize(
    ("code", "bad", "good"),
    [
        ("lift.power_loss", {"power_status": 2}, {"power_status": 1}),
        ("lift.overtravel_top", {"up_limit": 1}, {"up_limit": 0}),
        ("lift.overtravel_bottom", {"down_limit": 1}, {"down_limit": 0}),
        ("lift.fault_code", {"fault_code": 3}, {"fault_code": 0}),
    ],
)
def test_lift_state_alarms(code: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    steps = [(0, lift()), (1, lift(**bad)), (2, lift(**bad)), (3, lift(**good))]
    assert run(Kind.LIFT, steps) == [(1, code, True), (3, code, False)]


def test_fault_code_40_is_back_to_normal() -> None:
    assert run(Kind.LIFT, [(0, lift(fault_code=40))]) == []


def test_stop_out_of_zone_after_hold_but_not_while_passing_through() -> None:
    hold = LIFT.threshold("stop_out_of_zone_s")
    passing = every(0, 30, 1, lift(car_status=1, door_zone=2, speed=1.5))
    assert run(Kind.LIFT, passing) == []
    stuck = [*every(0, 15, 1, lift(door_zone=2)), (16, lift(door_zone=1))]
    assert run(Kind.LIFT, stuck) == [
        (hold, "lift.stop_out_of_zone", True),
        (16, "lift.stop_out_of_zone", False),
    ]


# --- fire -----------------------------------------------------------------------------------

FIRE_OK = {
    "fire_alarm": 0,
    "fault": 0,
    "supervisory": 0,
    "isolated": 0,
    "sprinkler_pressure": 0.35,
    "hydrant_pressure": 0.3,
    "tank_level": 3.0,
    "pump_commanded": 0,
    "pump_running": 0,
}


@pytest.mark.parametrize(
    ("code", "signal"),
    [
        ("fire.alarm", "fire_alarm"),
        ("fire.fault", "fault"),
        ("fire.supervisory", "supervisory"),
        ("fire.isolated", "isolated"),
    ],
)
def test_fire_state_bits(code: str, signal: str) -> None:
    steps = [(0, FIRE_OK), (10, {**FIRE_OK, signal: 1}), (20, FIRE_OK)]
    assert run(Kind.FIRE, steps) == [(10, code, True), (20, code, False)]


@pytest.mark.parametrize(
    ("code", "signal", "low", "recovered", "hovering"),
    [
        ("fire.sprinkler_pressure_low", "sprinkler_pressure", 0.05, 0.3, 0.105),
        ("fire.hydrant_pressure_low", "hydrant_pressure", 0.03, 0.3, 0.075),
        ("fire.tank_level_low", "tank_level", 0.5, 3.0, 1.05),
    ],
)
def test_fire_low_values_hold_and_hysteresis(
    code: str, signal: str, low: float, recovered: float, hovering: float
) -> None:
    hold = FIRE.threshold("pressure_low_s")
    steps = [
        (0, FIRE_OK),
        *every(10, 10 + hold + 10, 5, {**FIRE_OK, signal: low}),
        (40, {**FIRE_OK, signal: hovering}),  # above the limit, inside the margin
        (50, {**FIRE_OK, signal: recovered}),
    ]
    assert run(Kind.FIRE, steps) == [(10 + hold, code, True), (50, code, False)]
    brief_dip = [
        (0, FIRE_OK),
        (10, {**FIRE_OK, signal: low}),
        (15, FIRE_OK),
        (20, {**FIRE_OK, signal: low}),
        (25, FIRE_OK),
    ]
    assert run(Kind.FIRE, brief_dip) == []


def test_pump_not_started() -> None:
    hold = FIRE.threshold("pump_start_s")
    commanded = {**FIRE_OK, "pump_commanded": 1}
    steps = [*every(0, hold, 10, commanded), (hold + 5, {**commanded, "pump_running": 1})]
    assert run(Kind.FIRE, steps) == [
        (hold, "fire.pump_not_started", True),
        (hold + 5, "fire.pump_not_started", False),
    ]
    starts = [
        (0, commanded),
        (10, {**commanded, "pump_running": 1}),
        *every(20, 100, 10, {**commanded, "pump_running": 1}),
    ]
    assert run(Kind.FIRE, starts) == []


# --- water tank -----------------------------------------------------------------------------

TANK_OK = {
    "free_chlorine": 0.4,
    "turbidity": 0.3,
    "ph": 7.2,
    "level_pct": 70.0,
    "supply_pressure": 0.3,
    "pump_running": 1,
    "lid_open": 0,
}


@pytest.mark.parametrize(
    ("code", "bad", "hovering"),
    [
        ("water_tank.chlorine_low", {"free_chlorine": 0.02}, {"free_chlorine": 0.055}),
        ("water_tank.turbidity_high", {"turbidity": 2.5}, {"turbidity": 0.95}),
        ("water_tank.ph_out_of_range", {"ph": 9.1}, {"ph": 8.45}),
        ("water_tank.ph_out_of_range", {"ph": 5.9}, {"ph": 6.55}),
    ],
)
def test_water_quality_held(code: str, bad: dict[str, Any], hovering: dict[str, Any]) -> None:
    hold = WATER_TANK.threshold("quality_hold_s")
    steps = [
        (0, TANK_OK),
        *every(10, 10 + hold, 5, {**TANK_OK, **bad}),
        (10 + hold + 5, {**TANK_OK, **hovering}),
        (60, TANK_OK),
    ]
    assert run(Kind.WATER_TANK, steps) == [(10 + hold, code, True), (60, code, False)]
    blip = [(0, TANK_OK), (10, {**TANK_OK, **bad}), (15, TANK_OK)]
    assert run(Kind.WATER_TANK, blip) == []


def test_tank_level_low_and_overflow_held_with_margin() -> None:
    hold = WATER_TANK.threshold("quality_hold_s")
    steps = [
        (0, TANK_OK),
        *every(10, 10 + hold, 5, {"level_pct": 15.0}),
        (30, {"level_pct": 21.0}),  # above 20 % but inside the margin
        (35, {"level_pct": 40.0}),
        *every(40, 40 + hold, 5, {"level_pct": 99.5}),
        (60, {"level_pct": 97.0}),
        (65, {"level_pct": 90.0}),
        (70, {"level_pct": 10.0}),  # a single low reading while a pump starts: sloshing
        (75, {"level_pct": 50.0}),
    ]
    assert run(Kind.WATER_TANK, steps) == [
        (10 + hold, "water_tank.level_low", True),
        (35, "water_tank.level_low", False),
        (40 + hold, "water_tank.overflow", True),
        (65, "water_tank.overflow", False),
    ]


def test_lid_open_held() -> None:
    hold = WATER_TANK.threshold("lid_open_s")
    steps = [(0, TANK_OK), *every(10, 10 + hold, 5, {"lid_open": 1}), (40, {"lid_open": 0})]
    assert run(Kind.WATER_TANK, steps) == [
        (10 + hold, "water_tank.lid_open", True),
        (40, "water_tank.lid_open", False),
    ]
    quick_look: list[Step] = [(0, TANK_OK), (10, {"lid_open": 1}), (15, {"lid_open": 0})]
    assert run(Kind.WATER_TANK, quick_look) == []


# --- e-bike charger -------------------------------------------------------------------------


def charger(**ports: float) -> dict[str, Any]:
    values: dict[str, Any] = {"port_count": 4, "smoke": 0, "total_power": 800.0}
    for port in range(1, 5):
        values[port_field(port, "plugged")] = 1
        values[port_field(port, "current")] = 2.0
        values[port_field(port, "power")] = 200.0
        values[port_field(port, "temp")] = 35.0
    values.update(ports)
    return values


@pytest.mark.parametrize(
    ("code", "signal", "over", "hovering"),
    [
        ("ebike_charger.over_temperature", "temp", 80.0, 64.0),
        ("ebike_charger.over_current", "current", 10.0, 7.8),
        ("ebike_charger.over_power", "power", 1300.0, 980.0),
    ],
)
def test_port_over_limits_held_and_cleared(
    code: str, signal: str, over: float, hovering: float
) -> None:
    hold = EBIKE_CHARGER.threshold("over_hold_s")
    name = port_field(3, signal)
    steps = [
        (0, charger()),
        *every(10, 10 + hold, 1, charger(**{name: over})),
        (20, charger(**{name: hovering})),
        (25, charger()),
    ]
    assert run(Kind.EBIKE_CHARGER, steps) == [(10 + hold, code, True), (25, code, False)]
    spike = [(0, charger()), (10, charger(**{name: over})), (11, charger())]
    assert run(Kind.EBIKE_CHARGER, spike) == []


def test_two_ports_make_one_anomaly_until_both_clear() -> None:
    rules = all_rules()[Kind.EBIKE_CHARGER]
    hot3, hot5 = port_field(3, "temp"), port_field(1, "temp")
    steps = [
        *every(0, 10, 1, charger(**{hot3: 90.0})),
        *every(11, 20, 1, charger(**{hot3: 90.0, hot5: 90.0})),
        (21, charger(**{hot5: 90.0})),
        (30, charger()),
    ]
    where = place(Kind.EBIKE_CHARGER)
    details = []
    for seq, (seconds, values) in enumerate(steps, start=1):
        reading = Reading(
            device=where.device,
            kind="ebike_charger",
            seq=seq,
            ts=T0 + int(seconds * 1000),
            values=values,
        )
        details += [
            (c.opened, c.detail, (c.ts_ms - T0) / 1000) for c in rules.evaluate(where, reading)
        ]
    assert details == [(True, "p03", 5.0), (False, "p01", 30.0)]


def test_smoke_at_charging_site() -> None:
    steps = [(0, charger()), (5, charger(smoke=1)), (9, charger(smoke=0))]
    assert run(Kind.EBIKE_CHARGER, steps) == [
        (5, "ebike_charger.smoke", True),
        (9, "ebike_charger.smoke", False),
    ]


# --- waterlogging ---------------------------------------------------------------------------


def test_depth_thresholds_with_clear_margin() -> None:
    depths = [(0, 2.0), (10, 16.0), (20, 14.0), (30, 31.0), (40, 29.0), (50, 27.0), (60, 12.0)]
    steps = [(t, {"depth": d, "rain_rate": 20.0}) for t, d in depths]
    assert run(Kind.WATERLOGGING, steps) == [
        (10, "waterlogging.depth_15", True),
        (30, "waterlogging.depth_30", True),
        (50, "waterlogging.depth_30", False),
        (60, "waterlogging.depth_15", False),
    ]


def test_devices_are_independent() -> None:
    rules = all_rules()[Kind.WATERLOGGING]
    wet, dry = place(Kind.WATERLOGGING, "w1"), place(Kind.WATERLOGGING, "w2")
    opened = rules.evaluate(wet, Reading("w1", "waterlogging", 1, T0, {"depth": 20.0}))
    quiet = rules.evaluate(dry, Reading("w2", "waterlogging", 1, T0, {"depth": 1.0}))
    assert [c.code for c in opened] == ["waterlogging.depth_15"] and quiet == []


def test_overrides_change_thresholds() -> None:
    rules = all_rules({Kind.WATERLOGGING: {"depth_warning_cm": 5.0}})[Kind.WATERLOGGING]
    assert [c[1] for c in run(Kind.WATERLOGGING, [(0, {"depth": 6.0})], rules)] == [
        "waterlogging.depth_15"
    ]
