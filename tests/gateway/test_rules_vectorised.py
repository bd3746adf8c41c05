"""The vectorised threshold table gives exactly what the per-reading checks give: on
simulated traffic with faults (every family, batches with and without a device twice) and
on random value sequences (hypothesis), including out-of-order device time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detection.detector import Detector
from gateway.detection.rules import all_rules
from gateway.detection.rules.base import AnomalyChange, FamilyRules
from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import Kind, port_field
from jiayuan.contract import Reading, Value
from jiayuan.places import Place
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tools.replay import as_gateway_input

T0 = 1_750_000_000_000


def simulated(window_ms: int) -> Iterator[list[tuple[Place, Reading, int]]]:
    """Ten minutes of four estates with every classic fault, in batches of ``window_ms``
    of device time (a long window holds several readings of a device)."""
    registry = build_registry(4, 5)
    plan = plan_faults(registry, T0, 600.0, seed=5)
    batch: list[tuple[Place, Reading, int]] = []
    end = T0 + window_ms
    for _, place, reading in as_gateway_input(generate(registry, plan, T0, T0 + 600_000, 5)):
        if reading.ts >= end:
            yield batch
            batch, end = [], reading.ts - (reading.ts - T0) % window_ms + window_ms
        batch.append((place, reading, reading.ts))
    yield batch


def anomalies(vectorised: bool, window_ms: int) -> list[Anomaly]:
    detector = Detector(rules=all_rules(vectorised=vectorised))
    out: list[Anomaly] = []
    for batch in simulated(window_ms):
        out += detector.readings(batch)
    return out


def test_simulated_traffic_gives_the_same_anomalies_in_the_same_order() -> None:
    for window_ms in (1000, 30_000):
        vectorised = anomalies(True, window_ms)
        reference = anomalies(False, window_ms)
        codes = {a.code for a in reference}
        # The faults exercise the thresholds of every family that has some.
        assert {"fire.sprinkler_pressure_low", "water_tank.chlorine_low"} <= codes
        assert {"ebike_charger.over_temperature", "waterlogging.depth_30"} <= codes
        assert vectorised == reference


def changes(
    rules: FamilyRules, batches: Sequence[Sequence[tuple[Place, Reading]]]
) -> list[list[AnomalyChange]]:
    return [changes for batch in batches for changes in rules.evaluate_many(batch)]


PORT_TEMP = [port_field(p, "temp") for p in (1, 2, 3)]
values_st = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            PORT_TEMP[0]: st.sampled_from([30.0, 64.0, 65.0, 66.5, 70.0]),
            PORT_TEMP[1]: st.sampled_from([30.0, 61.9, 62.0, 66.0]),
            PORT_TEMP[2]: st.sampled_from([65.001, 64.999, 90.0, float("nan")]),
            port_field(1, "current"): st.sampled_from([0.0, 8.0, 8.25, 12.0]),
        },
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    values=values_st,
    devices=st.lists(st.integers(0, 2), min_size=40, max_size=40),
    gaps=st.lists(st.sampled_from([0, 500, 1000, 2500, 6000, -3000]), min_size=40, max_size=40),
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=40),
)
def test_random_sequences_match_the_per_reading_checks(
    values: list[dict[str, Value]], devices: list[int], gaps: list[int], cuts: list[int]
) -> None:
    items: list[tuple[Place, Reading]] = []
    ts = T0
    for k, reading_values in enumerate(values):
        ts += gaps[k]  # a negative gap is an older reading arriving late
        name = f"C{devices[k]}"
        place = Place("d", "s", "e", "b", "ebike_charger", name)
        items.append((place, Reading(name, "ebike_charger", k + 1, ts, reading_values)))
    batches: list[list[tuple[Place, Reading]]] = []
    start = 0
    for cut in cuts:
        if start < len(items):
            batches.append(items[start : start + cut])
            start += cut
    if start < len(items):
        batches.append(items[start:])
    one_by_one = [[item] for item in items]
    reference = changes(all_rules(vectorised=False)[Kind.EBIKE_CHARGER], one_by_one)
    assert changes(all_rules(vectorised=True)[Kind.EBIKE_CHARGER], batches) == reference
