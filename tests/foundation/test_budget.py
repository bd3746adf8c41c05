"""The early warning both spools give before their disk budget is reached."""

from __future__ import annotations

import pytest

from jiayuan.budget import BudgetWarning


def test_the_warning_comes_on_once_per_crossing_and_goes_off_below_the_mark() -> None:
    budget = BudgetWarning(0.8, "edge.spool_warn_fraction")
    seen = [(budget.crossed(usage), budget.on) for usage in (0.1, 0.79, 0.8, 0.95, 0.81, 0.5, 0.9)]
    assert seen == [
        (False, False),
        (False, False),
        (True, True),  # reached: warn
        (False, True),  # still above: no second warning
        (False, True),
        (False, False),  # fell below: off
        (True, True),  # reached again: warn again
    ]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, float("nan")])
def test_a_fraction_outside_zero_to_one_is_refused_naming_the_setting(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"gateway.spool_warn_fraction must be in \(0, 1\]"):
        BudgetWarning(fraction, "gateway.spool_warn_fraction")
