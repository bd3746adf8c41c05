"""A fire panel's derived values and openers judged on its row (``FireJudge``) give what
``FireRules.derive`` and the checks' openers give on a dict of its values: the same peak,
learned start pressure and sag limit kept, the same verdict whether a check may open, and
so the same anomalies."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.detection.rules.fire import FireRules
from jiayuan.catalogue import Kind
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

# Around the saw-tooth (0.30–0.37 MPa), the sag band and the minimums, with odd values.
PRESSURES: list[Value] = [
    0.37, 0.36, 0.33, 0.30, 0.29, 0.27, 0.25, 0.2, 0.09, 0.0, 0.35, 1, math.nan, -math.inf,
    math.inf, "low", True,
]  # fmt: skip
LEVELS: list[Value] = [0.5, 1.0, 1.05, 1.2, 3.0, 2, math.nan, "E"]
BITS: list[Value] = [0, 1, 1.0, True, False, "1", 2, -0.0]

panel_values = st.fixed_dictionaries(
    {},
    optional={
        "sprinkler_pressure": st.sampled_from(PRESSURES),
        "hydrant_pressure": st.sampled_from(PRESSURES),
        "tank_level": st.sampled_from(LEVELS),
        "pump_commanded": st.sampled_from(BITS),
        "pump_running": st.sampled_from(BITS),
        "fire_alarm": st.sampled_from(BITS),
        "fault": st.sampled_from(BITS),
        "supervisory": st.sampled_from(BITS),
        "isolated": st.sampled_from(BITS),
        "battery_voltage": st.sampled_from([24.1, "x"]),  # a value no check reads
    },
)
readings_st = st.lists(
    st.tuples(panel_values, st.sampled_from([0, 1000, 5000, 20_000, 60_000, -3000])),
    min_size=1,
    max_size=40,
)


# A second pump start exactly at the learned start pressure less its margin: learnt (>=),
# an edge random values do not land on.
AT_THE_MARGIN = 0.30 - FireRules().threshold("pump_start_margin_mpa")
LEARNT_AT_THE_MARGIN = [
    ({"sprinkler_pressure": 0.33, "pump_commanded": 0}, 1000),
    ({"sprinkler_pressure": 0.30, "pump_commanded": 1}, 1000),
    ({"sprinkler_pressure": 0.33, "pump_commanded": 0}, 1000),
    ({"sprinkler_pressure": AT_THE_MARGIN, "pump_commanded": 1}, 1000),
    ({"sprinkler_pressure": 0.33, "pump_commanded": 0}, 1000),
]


@pytest.mark.parametrize("vectorised", [None, True])
@settings(max_examples=80, deadline=None)
@given(sequence=readings_st)
@example(sequence=LEARNT_AT_THE_MARGIN)
def test_the_judge_derives_and_opens_as_derive_and_the_openers(
    vectorised: bool | None, sequence: list[tuple[dict[str, Value], int]]
) -> None:
    rules = FireRules(vectorised=vectorised)
    judge = rules.judge
    assert judge is not None
    columns = rules._column_of
    view = one_row_view(rules)
    values: dict[str, Value] = {}
    for reading in readings("F1", "fire", sequence):
        for name, value in reading.values.items():
            if name in columns:
                view[name] = value
                values[name] = value
        rules.derive(values, reading)
        expected = reference_opens(rules, values, reading)
        assert judge.judge(view, reading.ts, reading.values) == expected
        judge.fill(view)
        assert same_nans(view.as_dict()) == same_nans(values)


@settings(max_examples=40, deadline=None)
@given(sequence=readings_st, cuts=st.lists(st.integers(1, 8), min_size=1, max_size=40))
def test_judged_panels_give_the_anomalies_of_the_reference(
    sequence: list[tuple[dict[str, Value], int]], cuts: list[int]
) -> None:
    assert_judged_like_the_reference(
        Kind.FIRE, Place("d", "s", "e", "b", "fire", "F1"), readings("F1", "fire", sequence), cuts
    )


def test_a_sagging_pipe_opens_through_the_judge() -> None:
    """The pump starts at 0.30 MPa (learned), then the pipe bleeds with the pump off."""
    rules = FireRules()
    assert rules.judge is not None
    place = Place("d", "s", "e", "b", "fire", "F1")
    pressures = [0.37, 0.34, 0.31, 0.30, 0.37, 0.35, 0.31, 0.28, 0.27, 0.26, 0.26, 0.26, 0.26]
    commanded = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    opened = []
    for k, (pressure, pump) in enumerate(zip(pressures, commanded, strict=True)):
        values: dict[str, Value] = {
            "sprinkler_pressure": pressure,
            "pump_commanded": pump,
            "pump_running": pump,
        }
        reading = Reading("F1", "fire", k + 1, T0 + k * 10_000, values)
        opened += [c for c in rules.evaluate_many([(place, reading)])[0] if c.opened]
    assert [c.code for c in opened] == ["fire.sprinkler_pressure_sagging"]
    assert opened[0].threshold == pytest.approx(0.30 - rules.threshold("pump_start_margin_mpa"))
