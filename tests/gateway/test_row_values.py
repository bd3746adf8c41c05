"""The checks read a device's kept values straight from its row of the rules' arrays
(``RowValues``): what they see is what a dict of the device's merged values would hold."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from gateway.detection.rules import all_rules
from gateway.detection.rules.table import RowValues, TableRules
from jiayuan.contract import Value
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tools.replay import as_gateway_input

T0 = 1_750_000_000_000


def row_values(columns: Mapping[str, int], rows: int = 4) -> RowValues:
    view = RowValues(columns)
    numbers = np.full((rows, len(columns)), np.nan)
    view.bind(numbers, np.zeros((rows, len(columns)), dtype=np.uint8), {})
    return view


def test_a_value_comes_back_as_it_was_written_and_an_unwritten_one_is_absent() -> None:
    view = row_values({"a": 0, "b": 1, "c": 2})
    view.row = 2
    huge = (1 << 53) + 1  # not exact as a float: kept as it is
    beyond = 1 << 70  # beyond a C integer too
    for value in (1.5, -0.0, 7, -(1 << 53), huge, -huge, beyond, -beyond, "E7", True, math.inf):
        view["b"] = value
        back = view.get("b")
        assert type(back) is type(value) and back == value, value
    assert view.get("a") is None and view.get("a", 0.0) == 0.0
    assert "a" not in view and "b" in view
    with pytest.raises(KeyError):
        view["a"]
    view.row = 1  # another device's row: nothing of row 2
    assert view.as_dict() == {}
    view.row = 2
    assert view.as_dict() == {"b": math.inf}
    del view["b"]
    assert "b" not in view


def test_a_string_replaced_by_a_number_leaves_the_side_table() -> None:
    others: dict[tuple[int, int], Value] = {}
    view = row_values({"code": 0})
    view.bind(np.full((2, 1), np.nan), np.zeros((2, 1), dtype=np.uint8), others)
    view.row = 1
    view["code"] = "E7"
    assert others == {(1, 0): "E7"}
    view["code"] = 3
    assert others == {} and view["code"] == 3 and type(view["code"]) is int


def test_a_name_that_is_not_kept_lives_until_the_reading_is_done() -> None:
    view = row_values({"kept": 0})
    view["_excess"] = 2.5
    assert view["_excess"] == 2.5 and set(view) == {"_excess"}
    view.clear_derived()
    assert "_excess" not in view


class Copied(dict[str, Value]):
    """A dict of a device's values, filled from its row for each reading: the other path."""


def test_the_checks_see_in_the_row_what_they_see_in_a_dict_of_it() -> None:
    registry = build_registry(3, 5)
    plan = plan_faults(registry, T0, 600.0, seed=7)
    items = [
        (place, reading)
        for _, place, reading in as_gateway_input(generate(registry, plan, T0, T0 + 600_000, 7))
    ]
    row, copied = all_rules(), all_rules()
    for family in copied.values():
        assert isinstance(family, TableRules)
        family.mapping = Copied
    opened = 0
    for start in range(0, len(items), 500):  # batches: a device comes many times in one
        for kind in row:
            batch = [item for item in items[start : start + 500] if item[1].kind == kind]
            expected = copied[kind].evaluate_many(batch)
            assert row[kind].evaluate_many(batch) == expected, kind
            opened += sum(change.opened for changes in expected for change in changes)
    assert opened >= 10  # the faults opened anomalies in both
