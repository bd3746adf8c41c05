"""The rules keep per-device state in arrays: every value a check or ``derive`` reads is
kept between readings (and nothing else), values come back with their own type, a row
per device, and forgetting a device clears its row."""

from __future__ import annotations

import math
import sys
from typing import ClassVar

import pytest

from gateway.detection.rules import all_rules
from gateway.detection.rules.table import TableRules
from jiayuan.catalogue import Kind, port_field
from jiayuan.contract import Reading, Value
from jiayuan.places import Place, estate_names
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tools.replay import as_gateway_input

T0 = 1_750_000_000_000


class Recording(dict[str, Value]):
    """A device's merged values that note every name the checks ask for, and every name
    ``derive`` writes."""

    asked: ClassVar[set[str]] = set()
    written: ClassVar[set[str]] = set()

    def __setitem__(self, name: str, value: Value) -> None:
        Recording.written.add(name)
        super().__setitem__(name, value)

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        Recording.asked.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> Value:
        Recording.asked.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        Recording.asked.add(str(name))
        return super().__contains__(name)


def test_every_value_the_rules_read_is_kept_per_device() -> None:
    registry = build_registry(3, 5)
    plan = plan_faults(registry, T0, 300.0, seed=5)
    for vectorised in (True, False):
        rules = all_rules(vectorised=vectorised)
        asked: dict[Kind, set[str]] = {}
        written: dict[Kind, set[str]] = {}
        for _, place, reading in as_gateway_input(generate(registry, plan, T0, T0 + 300_000, 5)):
            family = rules[Kind(reading.kind)]
            assert isinstance(family, TableRules)
            Recording.asked, Recording.written = set(), set()
            family.mapping = Recording
            family.evaluate(place, reading)
            asked.setdefault(Kind(reading.kind), set()).update(Recording.asked)
            # What derive wrote (loading a device's kept values writes kept names only).
            written.setdefault(Kind(reading.kind), set()).update(Recording.written)
        assert set(asked) == set(rules)  # every family's rules were exercised
        assert written[Kind.EBIKE_CHARGER] and written[Kind.FIRE]  # their derive ran
        for kind, names in asked.items():
            family = rules[kind]
            assert isinstance(family, TableRules)
            kept = set(family.columns) | family.recomputed  # recomputed: derived afresh
            assert names <= kept, (kind, names - kept)
            # Only these are dropped after a reading (with the reading's own unkept ones).
            assert written[kind] <= kept, (kind, written[kind] - kept)


def lift(device: str = "L1") -> Place:
    return Place("d", "s", "e", "b", "lift", device)


def test_values_come_back_with_their_type_and_strings_are_kept() -> None:
    rules = all_rules()[Kind.LIFT]
    assert isinstance(rules, TableRules)
    seen: list[dict[str, Value]] = []

    class Keep(dict[str, Value]):
        def __init__(self) -> None:
            super().__init__()
            seen.append(self)

    rules.mapping = Keep
    odd: dict[str, Value] = {"fault_code": "E7", "speed": 1.5, "door_status": 1}
    rules.evaluate(lift(), Reading("L1", "lift", 1, T0, odd))
    rules.evaluate(lift(), Reading("L1", "lift", 2, T0 + 1000, {"car_status": 0}))
    loaded = seen[-1]
    assert loaded["fault_code"] == "E7"
    assert type(loaded["speed"]) is float and loaded["speed"] == 1.5
    assert type(loaded["door_status"]) is int and loaded["door_status"] == 1
    assert "up_limit" not in loaded  # never reported stays absent, not NaN or 0
    rules.evaluate(lift(), Reading("L1", "lift", 3, T0 + 2000, {"fault_code": 3}))
    rules.evaluate(lift(), Reading("L1", "lift", 4, T0 + 3000, {}))
    assert type(seen[-1]["fault_code"]) is int and seen[-1]["fault_code"] == 3


def test_held_state_survives_between_readings_in_arrays_and_forget_clears_it() -> None:
    rules = all_rules()[Kind.LIFT]
    assert isinstance(rules, TableRules)
    trapped: dict[str, Value] = {
        "passenger_status": 1,
        "door_status": 0,
        "car_status": 0,
        "door_zone": 1,
    }
    assert rules.evaluate(lift(), Reading("L1", "lift", 1, T0, trapped)) == []
    # Only a heartbeat-like reading later: the merged values and the hold carry on.
    changes = rules.evaluate(lift(), Reading("L1", "lift", 2, T0 + 20_000, {"speed": 0.0}))
    assert [(c.code, c.opened) for c in changes] == [("lift.trapped", True)]
    rules.forget(lift())
    # Forgotten: its row cleared, nothing merged and nothing held.
    assert rules.evaluate(lift(), Reading("L1", "lift", 3, T0 + 40_000, {"speed": 0.0})) == []
    again = rules.evaluate(lift(), Reading("L1", "lift", 4, T0 + 41_000, trapped))
    assert again == []


def test_many_devices_each_get_a_row_of_a_few_hundred_bytes() -> None:
    rules = all_rules()
    for kind, family in rules.items():
        assert isinstance(family, TableRules)
        # A pile: 38 kept values, 13 checks, and its threshold table's 12 port currents and
        # 36 open flags (the temperatures and powers it reads from the kept values).
        limit = 450 if kind is Kind.EBIKE_CHARGER else 256
        assert family.bytes_per_device <= limit, (kind, family.bytes_per_device)
    family = rules[Kind.WATERLOGGING]
    assert isinstance(family, TableRules)
    opened = 0
    for n in range(300):  # past the first growth of the arrays
        place = Place("d", "s", "e", "b", "waterlogging", f"G{n}")
        reading = Reading(f"G{n}", "waterlogging", 1, T0, {"depth": 20.0 if n % 3 else 5.0})
        opened += len(family.evaluate(place, reading))
    assert opened == 200
    # Each device's state is its own: a deep one closes without touching the others.
    place = Place("d", "s", "e", "b", "waterlogging", "G1")
    closed = family.evaluate(place, Reading("G1", "waterlogging", 2, T0 + 1000, {"depth": 1.0}))
    assert [(c.code, c.opened) for c in closed] == [("waterlogging.depth_15", False)]


def pile(device: str = "P1") -> Place:
    return Place("d", "s", "e", "b", "ebike_charger", device)


def test_a_pile_threshold_held_halfway_is_forgotten_with_the_device() -> None:
    rules = all_rules()[Kind.EBIKE_CHARGER]
    assert isinstance(rules, TableRules) and rules.table is not None
    hot: dict[str, Value] = {"p01_temp": 90.0, "p01_power": 0.0}
    assert rules.evaluate(pile(), Reading("P1", "ebike_charger", 1, T0, hot)) == []
    assert rules.table.since  # the over-temperature hold has started
    rules.forget(pile())
    assert not rules.table.since
    # Held afresh from here: 4 s is not the 5 s hold, 5 s is.
    assert rules.evaluate(pile(), Reading("P1", "ebike_charger", 2, T0 + 4000, hot)) == []
    assert rules.evaluate(pile(), Reading("P1", "ebike_charger", 3, T0 + 8000, hot)) == []
    changes = rules.evaluate(pile(), Reading("P1", "ebike_charger", 4, T0 + 9000, hot))
    assert [(c.code, c.opened, c.detail) for c in changes] == [
        ("ebike_charger.over_temperature", True, "p01")
    ]


def test_places_share_the_names_that_repeat_across_devices() -> None:
    # As decoded from two messages: equal names, distinct string objects.
    first, second = ("".join(["浦东", "新区", str(n)]) for n in (1, 1))
    assert first is not second
    a = Place(first, "s", "e", "b", "lift", "L1")
    b = Place(second, "s", "e", "b", "lift", "L2")
    assert a.district is b.district and a.key[0] is b.key[0]


def test_places_within_an_estate_equal_places_made_from_every_name() -> None:
    names = ("".join(["浦东", "新区"]), "".join(["s", "1"]), "".join(["e", "1"]))
    estate = estate_names(*names)
    kind, building = "".join(["li", "ft"]), "".join(["b", "1"])
    within = Place.within(estate, building, kind, "L1")
    assert within == Place(*names, "b1", "lift", "L1")
    assert within.key[0] is Place("浦东新区", "s", "e", "b", "lift", "L2").key[0]
    assert within.kind is Kind.LIFT.value and within.building is sys.intern("b1")
    with pytest.raises(AttributeError):
        within.building = "b2"  # type: ignore[misc]


def test_a_batch_forgets_a_derived_excess_as_a_store_and_reload_would() -> None:
    # Port 1 runs 15 °C above four peers, then reports a temperature that is not a
    # number: from then on it has no excess over its peers. Judged one reading at a time,
    # the excess derived from its last good temperature is not stored; a batch must drop
    # it after each reading too, or the port keeps "holding" on a stale excess and opens.
    rules = all_rules()[Kind.EBIKE_CHARGER]
    readings = []
    for k in range(120):
        hot = 45.0 if k < 3 else math.nan
        values: dict[str, Value] = {
            port_field(port, "temp"): hot if port == 1 else 30.0 for port in range(1, 6)
        }
        values.update({port_field(port, "power"): 100.0 for port in range(1, 6)})
        readings.append((pile(), Reading("P1", "ebike_charger", k + 1, T0 + k * 1000, values)))
    one_by_one = [changes for item in readings for changes in rules.evaluate_many([item])]
    batched = all_rules()[Kind.EBIKE_CHARGER].evaluate_many(readings)
    assert not any(one_by_one)  # 3 s hot is far from the 60 s hold
    assert batched == one_by_one
