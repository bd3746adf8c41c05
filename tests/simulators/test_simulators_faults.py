"""Fault injection: the plan, the labels, and each fault's condition in the samples."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from edge.drivers import DriverSample
from jiayuan.catalogue import Kind, family, port_field
from simulators.base import FIRST_SAMPLE_SPREAD_MS
from simulators.clock import SHANGHAI
from simulators.driver import generate
from simulators.faults import (
    EARLIEST_START_S,
    FAULT_SPECS,
    OFFLINE,
    TAIL_S,
    Fault,
    FaultPlan,
    plan_faults,
    read_labels,
    write_labels,
)
from simulators.registry import Registry, build_registry

SEED = 5
START = int(datetime(2025, 7, 1, 9, 30, tzinfo=SHANGHAI).timestamp() * 1000)
Values = dict[str, float | int | str]


def _ports(v: Values) -> range:
    return range(1, int(v["port_count"]) + 1)


# What each fault type must show in every sample from its onset to its end.
CONDITIONS: dict[str, Callable[[Values], bool]] = {
    "trapped": lambda v: (
        (v["passenger_status"], v["door_status"], v["car_status"], v["door_zone"], v["speed"])
        == (1, 0, 0, 1, 0.0)
    ),
    "door_open_moving": lambda v: v["car_status"] == 1 and v["door_status"] == 1,
    "overspeed": lambda v: float(v["speed"]) > 1.15 * float(v["rated_speed"]),
    "power_loss": lambda v: v["power_status"] == 2 and v["passenger_status"] == 2,
    "fire_alarm": lambda v: v["fire_alarm"] == 1,
    "low_pressure": lambda v: float(v["sprinkler_pressure"]) < 0.10,
    "low_chlorine": lambda v: float(v["free_chlorine"]) < 0.05,
    "low_level": lambda v: float(v["level_pct"]) < 20.0,
    "over_temperature": lambda v: any(float(v[port_field(p, "temp")]) > 65.0 for p in _ports(v)),
    "over_current": lambda v: any(float(v[port_field(p, "current")]) > 8.0 for p in _ports(v)),
    "deep_water": lambda v: float(v["depth"]) > 30.0,
}
EVENTS = {"power_loss": "lift.power_loss", "fire_alarm": "fire.alarm"}
# Conditions clear within this after end_ms (a hot port cools, water drains, a tank refills).
CLEAR_MS = 5000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(6, SEED)


@pytest.fixture(scope="module")
def plan(registry: Registry) -> FaultPlan:
    return plan_faults(registry, START, 60, SEED)


@pytest.fixture(scope="module")
def samples(registry: Registry, plan: FaultPlan) -> dict[str, list[DriverSample]]:
    grouped: dict[str, list[DriverSample]] = defaultdict(list)
    # Run past the plan's 60 s to see every device back to normal.
    for _, s in generate(registry, plan.faults, START, START + 90_000, SEED):
        grouped[s.device].append(s)
    return grouped


def test_a_60_second_plan_holds_every_fault_type(registry: Registry, plan: FaultPlan) -> None:
    assert plan.skipped == ()
    planned = {(f.kind, f.fault_type) for f in plan.faults}
    assert planned == {(k, t) for k, types in FAULT_SPECS.items() for t in types}
    devices = [f.device for f in plan.faults]
    assert len(devices) == len(set(devices))  # at most one fault per device
    assert len({f.estate for f in plan.faults}) == len(registry.estates)  # spread round-robin
    for fault in plan.faults:
        device = registry.device(fault.device)
        assert (device.kind, device.estate) == (fault.kind, fault.estate)
        family(fault.kind).event(fault.expected_code)  # the code is in the catalogue
        assert fault.start_ms >= START + EARLIEST_START_S * 1000
        assert fault.end_ms <= START + (60 - TAIL_S) * 1000
        spec = FAULT_SPECS[fault.kind][fault.fault_type]
        assert fault.end_ms - fault.condition_ms >= (spec.hold_s + spec.margin_s) * 1000


def test_hold_times_come_from_the_catalogue() -> None:
    lift, fire = family(Kind.LIFT), family(Kind.FIRE)
    assert FAULT_SPECS[Kind.LIFT]["trapped"].hold_s == lift.threshold("trapped_in_zone_s")
    assert FAULT_SPECS[Kind.FIRE]["low_pressure"].hold_s == fire.threshold("pressure_low_s")
    for kind in Kind:
        offline = FAULT_SPECS[kind][OFFLINE]
        assert offline.expected_code == f"{kind.value}.offline"
        assert offline.duration_s > family(kind).offline_after_s + 10


def test_short_runs_skip_what_does_not_fit_and_say_why(registry: Registry) -> None:
    plan = plan_faults(registry, START, 20, SEED)
    skipped = {(s.kind, s.fault_type) for s in plan.skipped}
    assert (Kind.LIFT, "trapped") in skipped and (Kind.FIRE, OFFLINE) in skipped
    assert (Kind.LIFT, "door_open_moving") not in skipped
    assert all("needs a run of" in s.reason for s in plan.skipped)
    assert all(f.end_ms <= START + 18_000 for f in plan.faults)


def test_chosen_types_and_repeats(registry: Registry) -> None:
    plan = plan_faults(registry, START, 3600, SEED, {Kind.LIFT: ["trapped"]}, repeats=4)
    assert [f.fault_type for f in plan.faults] == ["trapped"] * 4
    assert len({f.device for f in plan.faults}) == 4
    assert len({f.estate for f in plan.faults}) == 4
    # Over a long run the starts spread out instead of bunching at the beginning.
    assert max(f.start_ms for f in plan.faults) - START > 60_000
    one_estate = build_registry(1, SEED)
    few = plan_faults(one_estate, START, 60, SEED, {Kind.WATER_TANK: ["low_chlorine"] * 3})
    tanks = len(one_estate.estates[0].of_kind(Kind.WATER_TANK))
    assert len(few.faults) == tanks and len(few.skipped) == 3 - tanks


def test_plans_are_seeded(registry: Registry, plan: FaultPlan) -> None:
    assert plan_faults(registry, START, 60, SEED) == plan
    assert plan_faults(registry, START, 60, SEED + 1) != plan


def test_labels_round_trip(tmp_path: Path, plan: FaultPlan) -> None:
    path = tmp_path / "labels.json"
    write_labels(path, plan.faults)
    assert tuple(read_labels(path)) == plan.faults


@pytest.mark.parametrize(
    "fault_type", sorted({t for types in FAULT_SPECS.values() for t in types} - {OFFLINE})
)
def test_each_fault_shows_its_condition_then_clears(
    fault_type: str, plan: FaultPlan, samples: dict[str, list[DriverSample]]
) -> None:
    condition = CONDITIONS[fault_type]
    faults = [f for f in plan.faults if f.fault_type == fault_type]
    assert faults
    for fault in faults:
        series = samples[fault.device]
        during = [s for s in series if fault.condition_ms <= s.ts < fault.end_ms]
        assert during[0].ts == fault.condition_ms or fault.onset_ms != fault.start_ms
        assert all(condition(s.values) for s in during), fault
        # Held long enough for the rule: the last sample showing it is at least
        # hold_s after the condition began.
        assert during[-1].ts - fault.condition_ms >= fault.hold_s * 1000
        before = [s for s in series if s.ts < fault.start_ms]
        assert before and not any(condition(s.values) for s in before)
        after = [s for s in series if s.ts >= fault.end_ms + CLEAR_MS]
        assert after and not any(condition(s.values) for s in after)
        if fault_type in EVENTS:
            at_start = next(s for s in series if s.ts == fault.start_ms)
            assert at_start.event == EVENTS[fault_type]
            assert [s.event for s in series if s.event] == [EVENTS[fault_type]]


def test_faulty_sensor_readings_stay_on_one_port(
    plan: FaultPlan, samples: dict[str, list[DriverSample]]
) -> None:
    for fault in plan.faults:
        if fault.fault_type not in ("over_temperature", "over_current"):
            continue
        name = "temp" if fault.fault_type == "over_temperature" else "current"
        limit = 65.0 if name == "temp" else 8.0
        hot_ports = {
            p
            for s in samples[fault.device]
            for p in _ports(s.values)
            if float(s.values[port_field(p, name)]) > limit
        }
        assert len(hot_ports) == 1


def test_trapped_lasts_beyond_the_trapped_time(
    plan: FaultPlan, samples: dict[str, list[DriverSample]]
) -> None:
    fault = next(f for f in plan.faults if f.fault_type == "trapped")
    threshold = family(Kind.LIFT).threshold("trapped_in_zone_s")
    series = samples[fault.device]
    during = [s for s in series if fault.start_ms <= s.ts < fault.end_ms]
    assert during[-1].ts - during[0].ts >= (threshold + 5) * 1000
    # Rescue: the door opens and the passenger leaves.
    after = [s.values for s in series if s.ts >= fault.end_ms]
    assert after[0]["door_status"] == 3
    assert any(v["passenger_status"] == 2 and v["door_status"] == 1 for v in after)


def test_offline_devices_fall_silent_for_long_enough(
    plan: FaultPlan, samples: dict[str, list[DriverSample]]
) -> None:
    offline = [f for f in plan.faults if f.fault_type == OFFLINE]
    assert {f.kind for f in offline} == set(Kind)
    for fault in offline:
        times = [s.ts for s in samples[fault.device]]
        assert not [t for t in times if fault.start_ms <= t < fault.end_ms]
        last = max(t for t in times if t < fault.start_ms)
        assert fault.end_ms - last > (family(fault.kind).offline_after_s + 10) * 1000
        assert fault.end_ms in times  # it reports again at once


def test_unfaulted_devices_show_no_fault_condition(
    registry: Registry, plan: FaultPlan, samples: dict[str, list[DriverSample]]
) -> None:
    faulted = {f.device for f in plan.faults}
    for device in registry.devices():
        if device.id in faulted:
            continue
        for fault_type, condition in CONDITIONS.items():
            if fault_type in FAULT_SPECS[device.kind] and fault_type != "trapped":
                assert not any(condition(s.values) for s in samples[device.id])
        assert all(s.event is None for s in samples[device.id])


def test_faults_apply_to_their_device_only(registry: Registry) -> None:
    lift = registry.estates[0].of_kind(Kind.LIFT)[0]
    fault = Fault(
        "x1", Kind.LIFT, "trapped", "lift.trapped", lift.estate, lift.id, START + 1000, START + 2000
    )
    wrong = Fault(
        "x2", Kind.LIFT, "melted", "lift.trapped", lift.estate, lift.id, START + 5000, START + 6000
    )
    from simulators.driver import build_model

    build_model(lift, START, SEED, [fault])
    with pytest.raises(ValueError, match="unknown lift fault"):
        build_model(lift, START, SEED, [wrong])
    overlapping = Fault(
        "x3",
        Kind.LIFT,
        "overspeed",
        "lift.overspeed",
        lift.estate,
        lift.id,
        START + 1500,
        START + 2500,
    )
    with pytest.raises(ValueError, match="overlap"):
        build_model(lift, START, SEED, [fault, overlapping])


def test_first_samples_come_before_any_fault(plan: FaultPlan) -> None:
    assert FIRST_SAMPLE_SPREAD_MS < EARLIEST_START_S * 1000
    assert all(f.start_ms >= START + FIRST_SAMPLE_SPREAD_MS for f in plan.faults)


def test_several_faults_in_sequence_on_one_device() -> None:
    registry = build_registry(1, 2)
    lift = registry.estates[0].of_kind(Kind.LIFT)[0]
    types = ["overspeed", "door_open_moving", "trapped", "power_loss", "overspeed"]
    faults: list[Fault] = []
    t = START + 5000
    for n, fault_type in enumerate(types):
        spec = FAULT_SPECS[Kind.LIFT][fault_type]
        end = t + round(spec.duration_s * 1000)
        faults.append(
            Fault(f"s{n}", Kind.LIFT, fault_type, spec.expected_code, lift.estate, lift.id, t, end)
        )
        t = end + 20_000
    series = [s for _, s in generate(registry, faults, START, t, 2) if s.device == lift.id]
    for fault in faults:
        during = [s for s in series if fault.start_ms <= s.ts < fault.end_ms]
        assert during and all(CONDITIONS[fault.fault_type](s.values) for s in during)
    _all_floors_valid(series, lift.params)


def _all_floors_valid(series: Sequence[DriverSample], params: object) -> None:
    assert isinstance(params, dict)
    floors = set(range(int(params["lowest_floor"]), int(params["top_floor"]) + 1)) - {0}
    assert all(s.values["car_position"] in floors for s in series)
