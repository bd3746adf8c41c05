"""A device at rest whose readings repeat the values its rules keep is not asked its
openers again (``TableRules._quiet``), and a reading that changes any of them (value or
type) is judged as before."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from gateway.detection.rules.base import Values
from gateway.detection.rules.lift import LiftRules
from gateway.detection.rules.table import RowJudge, RowValues
from jiayuan.contract import Reading, Value
from jiayuan.places import Place

T0 = 1_750_000_000_000
PLACE = Place("pudong", "huamu", "e1", "b1", "lift", "lift-1")
IDLE: dict[str, Value] = {
    "car_status": 0,
    "door_status": 1,
    "passenger_status": 0,
    "door_zone": 1,
    "service_mode": 0,
    "fault_code": 0,
    "speed": 0.0,
    "car_position": 3.0,
}


def _reading(seq: int, **changes: Value) -> Reading:
    return Reading("lift-1", "lift", seq, T0 + seq * 1000, {**IDLE, **changes})


def _counting(rules: LiftRules, judged: bool) -> list[int]:
    """Count each time the rules ask whether a check may open: through the lift's judge
    (``judged``) or, without it, the openers (one count a reading asked)."""
    asked = [0]
    if judged:
        assert rules.judge is not None
        rules.judge = _Counted(rules.judge, asked)
        return asked
    rules.judge = None

    def counted(opens: Callable[[Values], bool], first: bool) -> Callable[[Values], bool]:
        def opener(values: Values) -> bool:
            asked[0] += first
            return opens(values)

        return opener

    rules._openers = [
        (signal, counted(opens, index == 0), suppressed)
        for index, (signal, opens, suppressed) in enumerate(rules._openers)
    ]
    return asked


class _Counted(RowJudge):
    """A judge that counts its verdicts."""

    def __init__(self, judge: RowJudge, asked: list[int]) -> None:
        self._judge = judge
        self._asked = asked

    def judge(self, view: RowValues, ts: int, present: Mapping[str, Value]) -> bool:
        self._asked[0] += 1
        return self._judge.judge(view, ts, present)

    def fill(self, view: RowValues) -> None:
        self._judge.fill(view)


@pytest.mark.parametrize("judged", [True, False])
def test_repeated_values_are_not_judged_again_and_a_change_is(judged: bool) -> None:
    rules = LiftRules()
    asked = _counting(rules, judged)
    assert rules.evaluate_many([(PLACE, _reading(seq)) for seq in range(1, 4)]) == [[], [], []]
    assert asked[0] == 1  # the first reading only
    assert rules.evaluate_many([(PLACE, _reading(4))]) == [[]]
    assert asked[0] == 1  # nor in the next batch
    rules.evaluate_many([(PLACE, _reading(5, car_position=4.0))])
    assert asked[0] == 2  # a changed value: asked again


@pytest.mark.parametrize("judged", [True, False])
def test_a_value_of_another_type_counts_as_changed(judged: bool) -> None:
    rules = LiftRules()
    asked = _counting(rules, judged)
    rules.evaluate_many([(PLACE, _reading(1)), (PLACE, _reading(2, car_position=3))])
    assert asked[0] == 2  # 3 (an int) after 3.0 (a float)


def test_a_fault_after_repeated_readings_opens_and_closes() -> None:
    rules = LiftRules()
    idle = [(PLACE, _reading(seq)) for seq in range(1, 4)]
    moving_open = [(PLACE, _reading(seq, car_status=1, speed=1.0)) for seq in range(4, 7)]
    changes = rules.evaluate_many([*idle, *moving_open, (PLACE, _reading(7))])
    opened = [c.code for per in changes for c in per if c.opened]
    closed = [c.code for per in changes for c in per if not c.opened]
    assert opened == ["lift.door_open_moving"]
    assert closed == ["lift.door_open_moving"]
    # At rest again on values it was quiet with before: still judged on the next change.
    again = rules.evaluate_many([(PLACE, _reading(8)), (PLACE, _reading(9, car_status=1))])
    assert [c.code for per in again for c in per] == []
    assert rules.evaluate_many([(PLACE, _reading(10, car_status=1))])[0][0].opened


@pytest.mark.parametrize("judged", [True, False])
def test_forgetting_a_device_forgets_that_it_was_quiet(judged: bool) -> None:
    rules = LiftRules()
    asked = _counting(rules, judged)
    rules.evaluate_many([(PLACE, _reading(1))])
    rules.forget(PLACE)
    rules.evaluate_many([(PLACE, _reading(2))])
    assert asked[0] == 2
