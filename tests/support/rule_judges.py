"""What the tests of a family's compiled judge (``PileJudge``, ``LiftJudge``,
``FireJudge``) hold it to: the reference, ``derive`` and the Python openers run on a plain
mapping of the row's values."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gateway.detection.rules import all_rules
from gateway.detection.rules.base import AnomalyChange
from gateway.detection.rules.table import RowValues, TableRules
from jiayuan.catalogue import Kind
from jiayuan.contract import Reading, Value
from jiayuan.places import Place

T0 = 1_750_000_000_000


def readings(
    device: str, kind: str, sequence: Sequence[tuple[dict[str, Value], int]]
) -> list[Reading]:
    """One device's readings: each of ``sequence``'s values ``gap`` ms after the one before
    (a negative gap: an older reading arriving late)."""
    ts, out = T0, []
    for seq, (values, gap) in enumerate(sequence, 1):
        ts += gap
        out.append(Reading(device, kind, seq, ts, values))
    return out


def one_row_view(rules: TableRules) -> RowValues:
    """A view of one empty row of the family's columns, as a judge reads a device's."""
    columns = rules._column_of
    view = RowValues(columns)
    view.bind(np.full((1, len(columns)), np.nan), np.zeros((1, len(columns)), dtype=np.uint8), {})
    return view


def reference_opens(rules: TableRules, values: dict[str, Value], reading: Reading) -> bool:
    """Whether one of the family's Python openers (whose signal came, if it has one) holds
    on ``values`` and is not suppressed: what the judge must answer."""
    return any(
        opens(values) and (suppressed is None or not suppressed(values))
        for signal, opens, suppressed in rules._openers
        if not signal or signal in reading.values
    )


class Copied(dict[str, Value]):
    """A dict of a device's values: rules given it as their mapping run ``derive`` and the
    openers, not the judge."""


def same_nans(values: dict[str, Value]) -> dict[str, object]:
    """NaN as a marker (and the value's type beside it), so that dicts holding NaNs compare
    equal and an int does not pass for a float."""
    return {
        name: ("NaN" if isinstance(value, float) and math.isnan(value) else value, type(value))
        for name, value in values.items()
    }


def comparable(changes: list[list[AnomalyChange]]) -> list[list[tuple[object, ...]]]:
    """The changes as tuples with NaN as a marker (NaN objects compare unequal)."""
    return [
        [
            (
                c.code,
                c.opened,
                c.ts_ms,
                "NaN" if math.isnan(c.value) else c.value,
                "NaN" if math.isnan(c.threshold) else c.threshold,
                c.detail,
            )
            for c in per_reading
        ]
        for per_reading in changes
    ]


def assert_judged_like_the_reference(
    kind: Kind, place: Place, readings: Sequence[Reading], cuts: Sequence[int]
) -> None:
    """The family's rules give the anomalies of the reference over batches cut at
    ``cuts`` (then the rest in one)."""
    items = [(place, reading) for reading in readings]
    judged, reference = all_rules(), all_rules()
    reference_rules = reference[kind]
    assert isinstance(reference_rules, TableRules)
    reference_rules.mapping = Copied
    start = 0
    for cut in [*cuts, len(items)]:
        batch = items[start : start + cut]
        start += cut
        expected = reference_rules.evaluate_many(batch)
        assert comparable(judged[kind].evaluate_many(batch)) == comparable(expected)
