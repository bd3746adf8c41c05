"""Evaluation scenarios: seeded, labelled, and the hard faults and look-alikes show in the
samples as described."""

from __future__ import annotations

from itertools import pairwise

import pytest

from jiayuan.catalogue import Kind, family, port_field
from simulators.base import Sample
from simulators.driver import build_model
from simulators.faults import HARD_SPECS, LOOK_ALIKE, NOISY, Fault
from simulators.fire import CUT_IN_DROP
from simulators.scenarios import SCENARIOS, Scenario, build

SHORT_S = 600.0


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_are_seeded(name: str) -> None:
    assert build(name, seed=3) == build(name, seed=3)
    assert build(name, seed=3).faults != build(name, seed=4).faults


def test_scenarios_have_the_faults_they_promise() -> None:
    hard = build("hard")
    assert {f.fault_type for f in hard.faults} == {s.fault_type for s in HARD_SPECS}
    assert hard.duration_s >= 1.5 * 3600  # a drift needs hours
    healthy = build("healthy")
    assert {f.expected_code for f in healthy.faults} == {LOOK_ALIKE}
    assert {f.kind for f in healthy.faults if f.fault_type == NOISY} == set(Kind)
    standard = build("standard")
    assert all(f.expected_code for f in standard.faults)


def test_labels_expect_catalogue_codes_and_fit_the_run() -> None:
    for name in SCENARIOS:
        scenario = build(name)
        for fault in scenario.faults:
            fam = family(fault.kind)
            for code in (fault.expected_code, *fault.also_codes):
                if code != LOOK_ALIKE:
                    fam.event(code)  # raises for a code the catalogue does not know
            assert scenario.start_ms <= fault.start_ms < fault.end_ms <= scenario.end_ms


def test_intermittent_bursts_are_separate_labels_on_one_device() -> None:
    bursts = [f for f in build("hard").faults if f.fault_type == "intermittent_door_open_moving"]
    by_device: dict[str, list[Fault]] = {}
    for burst in bursts:
        by_device.setdefault(burst.device, []).append(burst)
    for mine in by_device.values():
        assert len(mine) == 3
        for before, after in pairwise(mine):
            assert after.start_ms - before.end_ms >= 60_000  # normal minutes between


def _samples(scenario: Scenario, fault: Fault) -> list[Sample]:
    """The faulty device's samples while the fault lasts, from a model started with the
    scenario (a model's history depends on its start)."""
    device = scenario.registry.device(fault.device)
    model = build_model(device, scenario.start_ms, scenario.seed, scenario.faults)
    return [s for s in model.advance(fault.end_ms - 1) if s.ts >= fault.start_ms]


def _one(scenario: Scenario, fault_type: str) -> Fault:
    return next(f for f in scenario.faults if f.fault_type == fault_type)


def test_pressure_bleed_falls_slowly_and_stays_above_the_minimum_for_long() -> None:
    scenario = build("hard")
    fault = _one(scenario, "pressure_bleed")
    samples = _samples(scenario, fault)
    pressure = [(s.ts, float(s.values["sprinkler_pressure"])) for s in samples]
    first_30_min = [p for ts, p in pressure if ts < fault.start_ms + 30 * 60_000]
    assert min(first_30_min) > 0.10
    assert pressure[-1][1] < pressure[0][1] - 0.15
    assert all(s.values["pump_running"] == 0 for s in samples)


def test_stuck_chlorine_repeats_one_value() -> None:
    scenario = build("hard")
    fault = _one(scenario, "chlorine_stuck")
    values = {s.values["free_chlorine"] for s in _samples(scenario, fault)}
    assert len(values) == 1


def test_hot_port_runs_hotter_at_similar_power_but_under_the_rule() -> None:
    scenario = build("hard")
    limit = family(Kind.EBIKE_CHARGER).threshold("port_temp_max")
    for fault in (f for f in scenario.faults if f.fault_type == "hot_port"):
        samples = _samples(scenario, fault)
        first, later = samples[0].values, samples[120].values  # about two minutes in
        ports = range(1, int(first["port_count"]) + 1)
        rise = {p: float(later[port_field(p, "temp")]) - float(first[port_field(p, "temp")])
                for p in ports}  # fmt: skip
        hot = max(rise, key=lambda p: rise[p])
        assert rise[hot] > 10.0
        assert sorted(rise.values())[-2] < 3.0  # the neighbours do not warm up with it
        power = [float(s.values[port_field(hot, "power")]) for s in samples]
        assert min(power) > 0.8 * max(power)  # at similar power all along
        for sample in samples:
            assert max(float(sample.values[port_field(p, "temp")]) for p in ports) < limit


def test_look_alikes_show_what_they_imitate() -> None:
    scenario = build("healthy")
    parked = _one(scenario, "parked_open_cleaning")
    samples = _samples(scenario, parked)
    assert any(s.values["door_status"] == 1 and s.values["car_status"] == 0 for s in samples)
    assert all(s.values["passenger_status"] == 2 for s in samples)
    refill = _one(scenario, "refill_after_draw")
    levels = [float(s.values["level_pct"]) for s in _samples(scenario, refill)]
    low = family(Kind.WATER_TANK).threshold("level_low_pct")
    assert min(levels) > low and min(levels) < levels[0] - 5


def test_noisy_devices_are_noisier() -> None:
    scenario = build("healthy", duration_s=SHORT_S)
    noisy = next(f for f in scenario.faults if f.fault_type == NOISY and f.kind is Kind.FIRE)
    hydrant = [float(s.values["hydrant_pressure"]) for s in _samples(scenario, noisy)]
    spread = max(hydrant) - min(hydrant)
    assert spread > 0.02  # the models' own noise stays within about ±0.007 MPa


def test_the_default_hard_run_has_ten_labels_of_every_hard_fault_type() -> None:
    hard = build("hard")
    for spec in HARD_SPECS:
        assert sum(1 for f in hard.faults if f.fault_type == spec.fault_type) >= 10, spec


def test_a_bleed_is_labelled_from_when_it_falls_below_the_pump_start_pressure() -> None:
    scenario = build("hard", estates=2)
    for fault in (f for f in scenario.faults if f.fault_type == "pressure_bleed"):
        device = scenario.registry.device(fault.device)
        model = build_model(device, scenario.start_ms, scenario.seed, scenario.faults)
        start_pressure = model.setpoint - CUT_IN_DROP  # type: ignore[attr-defined]
        samples = model.advance(fault.end_ms - 1)
        # The pump started at least once before the fault: there was a start to learn.
        assert any(s.values["pump_commanded"] == 1 for s in samples if s.ts < fault.start_ms)
        during = [s for s in samples if s.ts >= fault.start_ms]
        before = [s for s in during if s.ts < fault.condition_ms]
        at = next(s for s in during if s.ts == fault.condition_ms)
        assert fault.start_ms < fault.condition_ms < fault.end_ms
        assert float(at.values["sprinkler_pressure"]) < start_pressure - 0.005
        assert all(float(s.values["sprinkler_pressure"]) >= start_pressure - 0.005 for s in before)
