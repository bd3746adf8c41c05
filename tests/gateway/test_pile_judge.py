"""A pile's derived values and openers judged on its row (``PileJudge``) give what
``EbikeChargerRules.derive`` and the checks' openers give on a dict of its values: the same
lags kept, the same excesses, the same verdict whether a check may open, and so the same
anomalies."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detection.rules.ebike_charger import EbikeChargerRules
from jiayuan.catalogue import Kind, port_field
from jiayuan.contract import Reading, Value
from jiayuan.places import Place
from tests.support.rule_judges import (
    T0,
    assert_judged_like_the_reference,
    one_row_view,
    readings,
    reference_opens,
    same_nans,
)

TEMPS: list[Value] = [30.0, 31.5, 45.0, 47.25, 60.5, 25, 30.0, math.nan, math.inf, "hot", True]
POWERS: list[Value] = [0.0, 100.0, 250.5, 180, 0, math.nan, -1.0, False]
SMOKE: list[Value] = [0, 1, 1.0, True, "1", 2]

port_values = st.fixed_dictionaries(
    {},
    optional={
        **{port_field(p, "temp"): st.sampled_from(TEMPS) for p in range(1, 13)},
        **{port_field(p, "power"): st.sampled_from(POWERS) for p in range(1, 13)},
        "smoke": st.sampled_from(SMOKE),
    },
)
readings_st = st.lists(
    st.tuples(port_values, st.sampled_from([0, 1000, 5000, 60_000, -3000])),
    min_size=1,
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(sequence=readings_st)
def test_the_judge_derives_and_opens_as_derive_and_the_openers(
    sequence: list[tuple[dict[str, Value], int]],
) -> None:
    rules = EbikeChargerRules()
    judge = rules.judge
    assert judge is not None
    columns = rules._column_of
    view = one_row_view(rules)
    values: dict[str, Value] = {}
    for reading in readings("P1", "ebike_charger", sequence):
        for name, value in reading.values.items():
            if name in columns:
                view[name] = value
                values[name] = value
        rules.derive(values, reading)
        expected = reference_opens(rules, values, reading)
        assert judge.judge(view, reading.ts, reading.values) == expected
        judge.fill(view)
        derived = view.as_dict()
        kept = {name: value for name, value in values.items() if name in columns}
        recomputed = {name: value for name, value in values.items() if name not in columns}
        assert same_nans({n: v for n, v in derived.items() if n in columns}) == same_nans(kept)
        assert same_nans({n: v for n, v in derived.items() if n not in columns}) == same_nans(
            recomputed
        )
        for name in recomputed:  # gone after the reading, as from the reference's dict
            del values[name]
        view.clear_derived()


@settings(max_examples=40, deadline=None)
@given(sequence=readings_st, cuts=st.lists(st.integers(1, 8), min_size=1, max_size=30))
def test_judged_piles_give_the_anomalies_of_the_reference(
    sequence: list[tuple[dict[str, Value], int]], cuts: list[int]
) -> None:
    assert_judged_like_the_reference(
        Kind.EBIKE_CHARGER,
        Place("d", "s", "e", "b", "ebike_charger", "P1"),
        readings("P1", "ebike_charger", sequence),
        cuts,
    )


def test_a_hot_port_opens_through_the_judge() -> None:
    rules = EbikeChargerRules()
    assert rules.judge is not None
    place = Place("d", "s", "e", "b", "ebike_charger", "P1")
    opened = []
    for k in range(100):
        values: dict[str, Value] = {}
        for port in range(1, 7):
            values[port_field(port, "power")] = 150.0
            values[port_field(port, "temp")] = 50.0 if port == 2 else 35.0
        reading = Reading("P1", "ebike_charger", k + 1, T0 + k * 5000, values)
        opened += [c for c in rules.evaluate_many([(place, reading)])[0] if c.opened]
    assert [(c.code, c.detail) for c in opened] == [("ebike_charger.port_hotter_than_peers", "p02")]
    assert opened[0].value == 15.0
