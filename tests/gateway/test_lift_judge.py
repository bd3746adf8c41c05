"""A lift's openers judged on its row (``LiftJudge``) give what the checks' openers give on
a dict of its values (inspection mode suppressing some of them), and so the same
anomalies."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detection.rules.lift import LiftRules
from jiayuan.catalogue import Kind
from jiayuan.contract import Value
from jiayuan.places import Place
from tests.support.rule_judges import (
    assert_judged_like_the_reference,
    one_row_view,
    readings,
    reference_opens,
)

# Each state's codes, with the odd values a device might send (a bool, a float, a string).
STATES: list[Value] = [0, 1, 2, 1.0, True, False, "1", -0.0, 3]
FAULTS: list[Value] = [0, 40, 7, 40.0, 7.0, True, False, "E7", 1 << 60, -3]
SPEEDS: list[Value] = [0.0, 1.0, 1.7, 1.15, 1.16, 2.5, 2, math.nan, math.inf, "fast"]
RATED: list[Value] = [1.0, 1.5, 2.0, 1, 0.0, math.nan, "x"]

lift_values = st.fixed_dictionaries(
    {},
    optional={
        "passenger_status": st.sampled_from(STATES),
        "door_status": st.sampled_from(STATES),
        "car_status": st.sampled_from(STATES),
        "door_zone": st.sampled_from(STATES),
        "service_mode": st.sampled_from(STATES),
        "fault_code": st.sampled_from(FAULTS),
        "speed": st.sampled_from(SPEEDS),
        "rated_speed": st.sampled_from(RATED),
        "up_limit": st.sampled_from(STATES),
        "down_limit": st.sampled_from(STATES),
        "power_status": st.sampled_from(STATES),
        "car_position": st.sampled_from([3, 3.5, math.nan]),
        "load_pct": st.sampled_from([40, "x"]),  # a value no check reads
    },
)
readings_st = st.lists(
    st.tuples(lift_values, st.sampled_from([0, 500, 1000, 5000, 30_000, -3000])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(sequence=readings_st)
def test_the_judge_opens_as_the_openers(sequence: list[tuple[dict[str, Value], int]]) -> None:
    rules = LiftRules()
    judge = rules.judge
    assert judge is not None
    columns = rules._column_of
    view = one_row_view(rules)
    values: dict[str, Value] = {}
    for reading in readings("L1", "lift", sequence):
        for name, value in reading.values.items():
            if name in columns:
                view[name] = value
                values[name] = value
        expected = reference_opens(rules, values, reading)
        assert judge.judge(view, reading.ts, reading.values) == expected, values


@settings(max_examples=60, deadline=None)
@given(sequence=readings_st, cuts=st.lists(st.integers(1, 8), min_size=1, max_size=40))
def test_judged_lifts_give_the_anomalies_of_the_reference(
    sequence: list[tuple[dict[str, Value], int]], cuts: list[int]
) -> None:
    assert_judged_like_the_reference(
        Kind.LIFT, Place("d", "s", "e", "b", "lift", "L1"), readings("L1", "lift", sequence), cuts
    )
