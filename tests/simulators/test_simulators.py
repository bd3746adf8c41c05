"""Simulators: registry, determinism, the wire contract, timing and healthy behaviour."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import pairwise

import pytest

from edge.drivers import DriverSample
from jiayuan.catalogue import Kind, family, port_field
from jiayuan.contract import BATCH, Channel, Reading, Topic, check_reading, normalise_values
from jiayuan.timezone import parse_start
from simulators.clock import HOUR_MS, SHANGHAI, local_hour
from simulators.driver import SimulatedDriver, build_model, generate
from simulators.faults import OFFLINE, Fault, plan_faults
from simulators.registry import Estate, Registry, build_registry

SEED = 7
START = int(datetime(2025, 6, 2, 18, 0, tzinfo=SHANGHAI).timestamp() * 1000)
Run = list[tuple[Estate, DriverSample]]


def by_device(run: Iterable[tuple[Estate, DriverSample]]) -> dict[str, list[DriverSample]]:
    grouped: dict[str, list[DriverSample]] = defaultdict(list)
    for _, sample in run:
        grouped[sample.device].append(sample)
    return grouped


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(5, SEED)


@pytest.fixture(scope="module")
def faults(registry: Registry) -> tuple[Fault, ...]:
    return plan_faults(registry, START, 60, SEED).faults


@pytest.fixture(scope="module")
def run(registry: Registry, faults: Sequence[Fault]) -> Run:
    return list(generate(registry, faults, START, START + 60_000, SEED))


# --- registry --------------------------------------------------------------------------
def test_every_estate_has_every_kind_and_plausible_devices() -> None:
    registry = build_registry(40, 3)
    ids = [d.id for d in registry.devices()]
    assert len(ids) == len(set(ids))
    for estate in registry.estates:
        assert {d.kind for d in estate.devices} == set(Kind), estate.id
        assert 3 <= len(estate.buildings) <= 12
        assert estate.edge_id and estate.district and estate.street and estate.name_zh
        assert 1 <= len(estate.of_kind(Kind.WATER_TANK)) <= 2
        assert 1 <= len(estate.of_kind(Kind.EBIKE_CHARGER)) <= 3
        assert 1 <= len(estate.of_kind(Kind.WATERLOGGING)) <= 2
        for charger in estate.of_kind(Kind.EBIKE_CHARGER):
            assert 8 <= int(charger.params["ports"]) <= 12
        lifts_per_building: dict[str, int] = defaultdict(int)
        for lift in estate.of_kind(Kind.LIFT):
            assert 1.0 <= float(lift.params["rated_speed"]) <= 2.5
            assert int(lift.params["top_floor"]) >= 11  # lifts only in high-rises
            lifts_per_building[lift.building] += 1
        assert set(lifts_per_building.values()) <= {1, 2}
        # One fire panel per high-rise, i.e. per building with lifts.
        assert {f.building for f in estate.of_kind(Kind.FIRE)} == set(lifts_per_building)


def test_registry_json_round_trip_and_lookups(registry: Registry) -> None:
    again = Registry.from_json(registry.to_json())
    assert again == registry
    device = next(iter(registry.devices()))
    assert again.device(device.id) == device
    assert again.estate(device.estate).devices[0] == device
    with pytest.raises(KeyError):
        again.device("nope")


def test_registry_is_seeded(registry: Registry) -> None:
    assert build_registry(5, SEED) == registry
    assert build_registry(5, SEED + 1) != registry


# --- determinism -------------------------------------------------------------------------
def test_same_seed_same_samples_different_seed_different(
    registry: Registry, faults: Sequence[Fault], run: Run
) -> None:
    assert list(generate(registry, faults, START, START + 60_000, SEED)) == run
    other = list(generate(registry, faults, START, START + 60_000, SEED + 1))
    assert [s for _, s in other] != [s for _, s in run]


def test_driver_polled_in_any_steps_matches_generate(
    registry: Registry, faults: Sequence[Fault], run: Run
) -> None:
    estate = registry.estates[0]
    driver = SimulatedDriver(registry, estate.id, faults, START, SEED)
    polled: list[DriverSample] = []
    now = START
    for step in (1, 999, 5000, 7, 20_000, 333, 40_000):
        now += step
        polled.extend(driver.poll(min(now, START + 59_999)))
    expected = [s for e, s in run if e.id == estate.id]
    assert sorted(polled, key=lambda s: (s.device, s.ts)) == sorted(
        expected, key=lambda s: (s.device, s.ts)
    )
    assert driver.poll(START + 59_999) == []


# --- the wire contract ---------------------------------------------------------------------
def test_every_sample_passes_the_contract(registry: Registry, run: Run) -> None:
    seq: dict[str, int] = defaultdict(int)
    for estate, s in run:
        seq[s.device] += 1
        reading = Reading(
            device=s.device,
            kind=s.kind.value,
            seq=seq[s.device],
            ts=s.ts,
            values=s.values,
            building=s.building,
            event=s.event,
        )
        topic = Topic(
            estate.district, estate.street, estate.id, BATCH, estate.edge_id, Channel.TELEMETRY
        )
        assert check_reading(reading, topic, now_ms=START + 60_000) is None, s
        normalised = normalise_values(s.kind, s.values)
        assert normalised == s.values
        assert all(type(normalised[k]) is type(v) for k, v in s.values.items()), s


def test_samples_carry_a_full_snapshot_of_the_catalogue_signals(
    registry: Registry, run: Run
) -> None:
    for _, s in run:
        fam = family(s.kind)
        expected = {sig.name for sig in fam.signals if not sig.per_port}
        if s.kind is Kind.EBIKE_CHARGER:
            ports = int(registry.device(s.device).params["ports"])
            assert s.values["port_count"] == ports
            expected |= {
                port_field(p, sig.name)
                for p in range(1, ports + 1)
                for sig in fam.signals
                if sig.per_port
            }
        assert set(s.values) == expected


def test_timestamps_increase_and_heartbeats_are_kept(
    registry: Registry, faults: Sequence[Fault], run: Run
) -> None:
    assert [s.ts for _, s in run] == sorted(s.ts for _, s in run)  # global time order
    silences = {f.device: (f.start_ms, f.end_ms) for f in faults if f.fault_type == OFFLINE}
    samples = by_device(run)
    assert set(samples) == {d.id for d in registry.devices()}  # every device reports
    for device, series in samples.items():
        heartbeat_ms = family(series[0].kind).heartbeat_s * 1000
        assert series[0].ts < START + 2000  # first report within 2 s
        times = [s.ts for s in series]
        assert all(b > a for a, b in pairwise(times)), device
        gaps = [(a, b) for a, b in pairwise(times) if b - a > heartbeat_ms]
        if device in silences:
            start, end = silences[device]
            assert gaps == [(max(t for t in times if t < start), end)], device
        else:
            assert gaps == [], device
        assert START + 60_000 - times[-1] <= heartbeat_ms


# --- healthy behaviour over hours ------------------------------------------------------------
@pytest.fixture(scope="module")
def healthy() -> dict[str, list[DriverSample]]:
    registry = build_registry(2, 11)
    start = int(datetime(2025, 6, 2, 16, 0, tzinfo=SHANGHAI).timestamp() * 1000)
    return by_device(generate(registry, (), start, start + 4 * 3600_000, 11))


def _longest(series: Sequence[DriverSample], condition: object) -> int:
    """Longest stretch (ms) over which consecutive samples all meet ``condition``."""
    assert callable(condition)
    longest, since = 0, None
    for s in series:
        if condition(s.values):
            since = s.ts if since is None else since
            longest = max(longest, s.ts - since)
        else:
            since = None
    return longest


def test_healthy_lifts_move_and_never_alarm(healthy: dict[str, list[DriverSample]]) -> None:
    lifts = [v for v in healthy.values() if v[0].kind is Kind.LIFT]
    trips = 0
    for series in lifts:
        for s in series:
            v = s.values
            assert not (v["car_status"] == 1 and v["door_status"] != 0), s
            assert float(v["speed"]) <= 1.1 * float(v["rated_speed"])
            assert v["power_status"] == 1
            if v["car_status"] == 0:
                assert v["speed"] == 0.0 and v["door_zone"] == 1
        trapped = _longest(
            series,
            lambda v: v["passenger_status"] == 1 and v["door_status"] == 0 and v["car_status"] == 0,
        )
        assert trapped < 15_000
        # Cars run, and report about every second while they do.
        running = [s.ts for s in series if s.values["car_status"] == 1]
        trips += sum(1 for a, b in pairwise(running) if b - a > 1100)
    assert trips > 50 * len(lifts) / 4


def test_healthy_fire_panels_cycle_the_jockey_pump(
    healthy: dict[str, list[DriverSample]],
) -> None:
    panels = [v for v in healthy.values() if v[0].kind is Kind.FIRE]
    for series in panels:
        assert all(s.values["fire_alarm"] == 0 and s.event is None for s in series)
        pressures = [float(s.values["sprinkler_pressure"]) for s in series]
        assert min(pressures) > 0.22 and max(pressures) < 0.45
        assert any(s.values["pump_running"] == 1 for s in series)
        assert all(0.38 < float(s.values["hydrant_pressure"]) < 0.52 for s in series)


def test_healthy_tanks_stay_in_range(healthy: dict[str, list[DriverSample]]) -> None:
    for series in (v for v in healthy.values() if v[0].kind is Kind.WATER_TANK):
        for s in series:
            v = s.values
            assert float(v["free_chlorine"]) >= 0.15
            assert float(v["turbidity"]) < 0.5
            assert 6.9 < float(v["ph"]) < 7.7
            assert 30.0 < float(v["level_pct"]) < 95.0
        assert len({s.values["pump_running"] for s in series}) == 2  # the pump cycles


def test_healthy_chargers_charge_without_alarms(healthy: dict[str, list[DriverSample]]) -> None:
    for series in (v for v in healthy.values() if v[0].kind is Kind.EBIKE_CHARGER):
        ports = int(series[0].values["port_count"])
        sessions = 0
        for s in series:
            v = s.values
            assert v["smoke"] == 0
            powers = [float(v[port_field(p, "power")]) for p in range(1, ports + 1)]
            assert abs(sum(powers) - float(v["total_power"])) < 1.0
            for p in range(1, ports + 1):
                assert float(v[port_field(p, "temp")]) < 60.0
                assert float(v[port_field(p, "current")]) <= 4.1
                if v[port_field(p, "plugged")] == 0:
                    assert powers[p - 1] == 0.0
        for p in range(1, ports + 1):
            plugged = [int(s.values[port_field(p, "plugged")]) for s in series]
            sessions += sum(1 for a, b in pairwise(plugged) if b > a)
        assert sessions > 0


def test_healthy_gauges_stay_shallow(healthy: dict[str, list[DriverSample]]) -> None:
    for series in (v for v in healthy.values() if v[0].kind is Kind.WATERLOGGING):
        assert all(float(s.values["depth"]) < 15.0 for s in series)
        for s in series:
            if float(s.values["rain_rate"]) > 0:
                assert 4.0 <= float(s.values["rain_rate"]) <= 50.0


def test_lifts_show_normal_moments_that_look_alarming() -> None:
    # A working day on ten lifts: cleaners park cars with the door open, passengers
    # linger in a closed car for a few seconds; neither lasts like a fault.
    registry = build_registry(3, 21)
    lifts = [d for d in registry.devices() if d.kind is Kind.LIFT][:10]
    start = int(datetime(2025, 6, 3, 9, 0, tzinfo=SHANGHAI).timestamp() * 1000)
    parked = lingered = 0
    for lift in lifts:
        series = build_model(lift, start, 21).advance(start + 8 * 3600_000)
        values = [DriverSample(lift.id, lift.kind, lift.building, s.ts, s.values) for s in series]
        open_empty = _longest(
            values,
            lambda v: v["door_status"] == 1 and v["passenger_status"] == 2 and v["car_status"] == 0,
        )
        parked += open_empty >= 60_000
        closed_inside = _longest(
            values,
            lambda v: v["door_status"] == 0 and v["passenger_status"] == 1 and v["car_status"] == 0,
        )
        lingered += closed_inside >= 2500
        assert closed_inside < 15_000
    assert parked >= 1 and lingered >= 1


def test_clock_reads_shanghai_time() -> None:
    assert parse_start("2025-06-02T18:00:00") == START
    assert parse_start("2025-06-02T10:00:00+00:00") == START
    assert parse_start(str(START)) == START
    assert local_hour(START) == 18.0
    assert local_hour(START + 7 * HOUR_MS) == 1.0
    with pytest.raises(ValueError):
        parse_start("tomorrow")
