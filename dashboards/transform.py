"""The Grafana transformations the dashboards use, applied the way Grafana applies them, so
a preview shows what Grafana will.  A transformation the preview does not know is an error,
never silently skipped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jiayuan.influx import Series

ROW_SUM = "calculateField"  # with mode reduceRow, reducer sum: see dashboards.builder.row_sum


class UnknownTransformation(ValueError):
    """A transformation the preview cannot apply."""


def transform(panel: Mapping[str, Any], series: Sequence[Series]) -> list[Series]:
    """The panel's series after each of its transformations, in order."""
    result = list(series)
    for step in panel.get("transformations") or []:
        if step.get("disabled"):
            continue
        options = step.get("options") or {}
        if step.get("id") == ROW_SUM and options.get("mode") == "reduceRow":
            result = [_row_sum(one, options) for one in result]
        else:
            raise UnknownTransformation(f"the preview cannot apply transformation {step!r}")
    return result


def _row_sum(series: Series, options: Mapping[str, Any]) -> Series:
    reducer = options.get("reduce", {}).get("reducer")
    if reducer != "sum":
        raise UnknownTransformation(f"reduceRow with reducer {reducer!r}")
    alias = str(options.get("alias") or "Total")
    kept = ["time"] if "time" in series.columns else []
    if not options.get("replaceFields"):
        kept = [c for c in series.columns]
    rows = []
    for row in series.values:
        by_column = dict(zip(series.columns, row, strict=True))
        numbers = [
            v
            for c, v in by_column.items()
            if c != "time" and isinstance(v, int | float) and not isinstance(v, bool)
        ]
        rows.append([*(by_column[c] for c in kept), sum(numbers) if numbers else None])
    return Series(series.name, series.tags, [*kept, alias], rows)
