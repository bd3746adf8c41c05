"""The preview PNGs' layout, checked on the drawn figure: tables inside their panel with the
"more rows" note clear of them, legend labels that tell series apart, and times in the
dashboard's zone (Asia/Shanghai) written for people."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from dashboards.collection import all_dashboards
from dashboards.preview import PanelResult
from dashboards.render import draw_dashboard, series_labels
from dashboards.transform import UnknownTransformation, transform
from jiayuan.influx import Series

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 16, 9, 0, tzinfo=SHANGHAI)
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + 600_000
FAMILIES = ("lift", "fire", "water_tank", "ebike_charger", "waterlogging")
TOLERANCE_PX = 1.0


def _board(uid: str) -> dict[str, Any]:
    return next(d for d in all_dashboards() if d["uid"] == uid)


def _panel(model: dict[str, Any], title_part: str) -> dict[str, Any]:
    return next(p for p in model["panels"] if title_part in p["title"])


@pytest.fixture()
def drawn() -> Iterator[list[Figure]]:
    figures: list[Figure] = []
    yield figures
    for figure in figures:
        plt.close(figure)


def _draw(
    figures: list[Figure], model: dict[str, Any], results: Sequence[PanelResult]
) -> tuple[Figure, dict[str, Axes]]:
    figure = draw_dashboard(model, results, {"estate": "e1"}, START_MS, END_MS)
    figures.append(figure)
    return figure, {ax.get_title(loc="left"): ax for ax in figure.axes}


def _inside(inner: Bbox, outer: Bbox) -> bool:
    return (
        inner.x0 >= outer.x0 - TOLERANCE_PX
        and inner.x1 <= outer.x1 + TOLERANCE_PX
        and inner.y0 >= outer.y0 - TOLERANCE_PX
        and inner.y1 <= outer.y1 + TOLERANCE_PX
    )


def _cells(ax: Axes) -> list[str]:
    return [cell.get_text().get_text() for cell in ax.tables[0].get_celld().values()]


def _events(rows: int) -> PanelResult:
    """The alerts board's recent events table with ``rows`` rows."""
    panel = _panel(_board("jiayuan-alerts"), "Recent alert events")
    columns = ["time", "alert_id", "state", "title_zh", "title_en", "repeat_count"]
    values: list[list[Any]] = [
        [START_MS + i * 1000, f"a{i:03d}", "open", "困人", "Passenger trapped", 1]
        for i in range(rows)
    ]
    tags = {"estate": "e1", "device": "e1-L01", "severity": "critical", "action": "raised"}
    return PanelResult(panel, series=[Series("alert", tags, columns, values)])


@pytest.mark.parametrize("rows", [3, 40])
def test_a_table_stays_inside_its_panel_and_the_figure(drawn: list[Figure], rows: int) -> None:
    result = _events(rows)
    figure, axes = _draw(drawn, _board("jiayuan-alerts"), [result])
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = axes[result.title]
    table = ax.tables[0].get_window_extent(renderer)
    assert _inside(table, ax.get_window_extent(renderer)), (table, ax.bbox)
    assert _inside(table, figure.bbox), (table, figure.bbox)


def test_the_more_rows_note_counts_the_rest_and_is_clear_of_the_table(
    drawn: list[Figure],
) -> None:
    result = _events(40)
    figure, axes = _draw(drawn, _board("jiayuan-alerts"), [result])
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = axes[result.title]
    notes = [t for t in ax.texts if "more rows" in t.get_text()]
    assert len(notes) == 1
    shown = sum(1 for (row, column) in ax.tables[0].get_celld() if row > 0 and column == 0)
    assert f"{40 - shown} more rows" in notes[0].get_text()
    note = notes[0].get_window_extent(renderer)
    table = ax.tables[0].get_window_extent(renderer)
    assert not note.overlaps(table), (note, table)
    assert _inside(note, figure.bbox)


def _readings_by_family() -> PanelResult:
    panel = _panel(_board("jiayuan-estate"), "Readings by family")
    series = [
        Series(family, {}, ["time", "readings"], [[START_MS, 2], [START_MS + 60_000, 3]])
        for family in FAMILIES
    ]
    return PanelResult(panel, series=series)


def test_legend_labels_name_the_family_and_are_unique(drawn: list[Figure]) -> None:
    result = _readings_by_family()
    _, axes = _draw(drawn, _board("jiayuan-estate"), [result])
    legend = axes[result.title].get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert len(labels) == len(set(labels)) == len(FAMILIES), labels
    for family, label in zip(FAMILIES, labels, strict=True):
        assert family in label and "readings" in label


def test_series_labels_stay_unique_when_series_look_alike() -> None:
    twins = [Series("lift", {"device": "L01"}, ["time", "speed"], [[START_MS, 1.0]])] * 2
    labels = series_labels(twins)
    assert len(set(labels)) == 2 and all("L01" in label for label in labels)
    # One measurement only: its name would be noise, the device tells them apart.
    devices = [
        Series("lift", {"device": d}, ["time", "speed"], [[START_MS, 1.0]]) for d in ("L1", "L2")
    ]
    assert series_labels(devices) == ["L1 speed", "L2 speed"]


def test_table_times_are_shanghai_time_for_people(drawn: list[Figure]) -> None:
    model = _board("jiayuan-overview")
    offline = PanelResult(
        _panel(model, "Offline devices"),
        series=[
            Series(
                "anomaly",
                {"street": "s", "estate": "e1", "kind": "waterlogging", "device": "e1-G02"},
                ["time", "start", "title_zh", "title_en"],
                [[START_MS + 42_000, START_MS + 42_000, "设备离线", "Device offline"]],
            )
        ],
    )
    critical = PanelResult(
        _panel(model, "critical events"),
        series=[
            Series(
                "anomaly",
                {"estate": "e1", "device": "e1-L01", "code": "lift.trapped"},
                ["time", "title_zh", "title_en", "state", "value", "end"],
                [
                    [START_MS, "困人", "Passenger trapped", "open", 1, 0],
                    [START_MS, "困人", "Passenger trapped", "closed", 1, START_MS + 90_000],
                ],
            )
        ],
    )
    figure, axes = _draw(drawn, model, [offline, critical])
    texts = _cells(axes[offline.title]) + _cells(axes[critical.title])
    assert "2026-03-16 09:00:42" in texts  # time and start, 01:00:42 UTC
    assert "2026-03-16 09:01:30" in texts  # a closed event's end
    assert any("未结束" in text for text in texts)  # end 0: still open, not 1970
    assert not [t for t in texts if "UTC" in t or re.fullmatch(r"\d{12,}", t) or "1970" in t]
    header = figure.get_suptitle()
    assert "2026-03-16 09:00" in header and "+08:00" in header and "T09" not in header


def test_a_transformation_the_preview_cannot_apply_is_an_error_not_skipped() -> None:
    panel = {"transformations": [{"id": "merge", "options": {}}]}
    with pytest.raises(UnknownTransformation, match="merge"):
        transform(panel, [])
    summed = transform(
        {"transformations": [{"id": "calculateField", "options": {
            "mode": "reduceRow", "reduce": {"reducer": "sum"}, "alias": "n", "replaceFields": True,
        }}]},
        [Series("c", {"device": "C1"}, ["time", "a", "b"], [[1, 1, None], [2, None, None]])],
    )  # fmt: skip
    assert summed == [Series("c", {"device": "C1"}, ["time", "n"], [[1, 1], [2, None]])]
