"""Draw a dashboard's query results as one PNG (matplotlib, Agg), laid out on its grid.

Time series and state timelines become lines with the panel's threshold steps as dashed
lines, stats a big number (through the panel's value mappings), bar gauges horizontal
bars, tables text, and the geomap a lon/lat scatter coloured through its thresholds.
Chinese titles need a CJK font; without one the text is drawn with boxes, after a single
warning naming the Debian package to install.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display here

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.transforms import Bbox

from dashboards.emptiness import empty_means

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dashboards.preview import PanelResult
    from jiayuan.influx import Series

# The WenQuanYi fonts have only a "Book"/medium weight: matplotlib logs a warning for
# every text it draws in them, though it draws them correctly.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

# Fonts with Simplified Chinese glyphs, best first; Debian packages them as
# fonts-noto-cjk and fonts-wqy-zenhei / fonts-wqy-microhei.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Source Han Sans SC",
    "Droid Sans Fallback",
)
CJK_PACKAGE = "fonts-wqy-zenhei"
ROW_INCHES = 0.32  # one Grafana grid row (30 px)
WIDTH_INCHES = 22.0
MAX_LEGEND = 10
TABLE_FONT_PT = 7
TABLE_ROW_PT = 11  # one table line: the font and some air
DPI = 110  # table text (7 pt) legible
_COLOURS = {"dark-green": "darkgreen", "dark-red": "darkred", "transparent": "none"}


@cache
def cjk_font() -> str | None:
    """The first installed CJK font family, or None (warned about once)."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            return name
    warnings.warn(
        "no Chinese (CJK) font found: preview titles will show boxes; install one, e.g. "
        f"'apt-get install {CJK_PACKAGE}'",
        stacklevel=2,
    )
    return None


def _colour(name: str) -> str:
    return _COLOURS.get(name, name)


def _thresholds(panel: Mapping[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    return [(step.get("value"), str(step.get("color", "green"))) for step in steps or []]


def _band_colour(panel: Mapping[str, Any], value: float) -> str:
    colour = "tab:blue"
    for limit, step_colour in _thresholds(panel):
        if limit is None or value >= limit:
            colour = _colour(step_colour)
    return colour


def _mapping(panel: Mapping[str, Any], value: Any) -> tuple[str, str] | None:
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        found = mapping.get("options", {}).get(str(value))
        if found:
            return str(found.get("text", value)), _colour(str(found.get("color", "")))
    return None


def series_labels(series: Sequence[Series]) -> list[str]:
    """A label per value column of every series, in order, each one different.

    The measurement is named when the series come from more than one (a query over every
    family's measurement); then the group-by tags and the column.  Labels that would still
    be equal are numbered.
    """
    several = len({one.name for one in series}) > 1
    labels = [
        " ".join([*([one.name] if several else []), *one.tags.values(), column]).strip()
        for one in series
        for column in one.columns
        if column != "time"
    ]
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def _numeric_columns(result: PanelResult) -> list[tuple[str, list[Any]]]:
    """(label, values) for every non-time column of every series."""
    columns = [
        [row[index] for row in series.values]
        for series in result.series
        for index, column in enumerate(series.columns)
        if column != "time"
    ]
    return list(zip(series_labels(result.series), columns, strict=True))


def _draw_timeseries(ax: Axes, result: PanelResult, step: bool, zone: dt.tzinfo) -> None:
    lines = 0
    labels = iter(series_labels(result.series))
    for series in result.series:
        if "time" not in series.columns:
            continue
        t_index = series.columns.index("time")
        times = [dt.datetime.fromtimestamp(row[t_index] / 1000, dt.UTC) for row in series.values]
        for index, column in enumerate(series.columns):
            if index == t_index:
                continue
            label = next(labels) if column != "time" else column
            points = [
                (t, row[index])
                for t, row in zip(times, series.values, strict=True)
                if isinstance(row[index], int | float)
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs,
                ys,
                linewidth=1.2,
                label=label,
                drawstyle="steps-post" if step else "default",
                marker="." if len(xs) < 3 else "",
            )
            lines += 1
    for limit, colour in _thresholds(result.panel):
        if limit is not None:
            ax.axhline(limit, color=_colour(colour), linestyle="--", linewidth=1.2)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=zone))  # type: ignore[no-untyped-call]
    ax.tick_params(labelsize=7)
    if 0 < lines <= MAX_LEGEND:
        ax.legend(fontsize=6, loc="upper left")


def _draw_stat(ax: Axes, result: PanelResult) -> None:
    ax.axis("off")
    values = [v for _, rows in _numeric_columns(result) for v in rows if v is not None]
    if not values:
        return
    value = values[-1]
    mapped = _mapping(result.panel, value)
    if mapped is not None:
        text, colour = mapped
    else:
        unit = result.panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        text += {"s": " s", "percent": " %"}.get(str(unit), "")
        colour = _band_colour(result.panel, value) if isinstance(value, int | float) else "k"
    ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=26, color=colour,
            transform=ax.transAxes)  # fmt: skip


def _draw_bars(ax: Axes, result: PanelResult) -> None:
    labels, values, colours = [], [], []
    for label, rows in _numeric_columns(result):
        last = next((v for v in reversed(rows) if isinstance(v, int | float)), None)
        if last is None:
            continue
        labels.append(label)
        values.append(float(last))
        colours.append(_band_colour(result.panel, float(last)))
    if values:
        ax.barh(labels, values, color=colours)
        ax.invert_yaxis()
    ax.tick_params(labelsize=7)


def _draw_table(ax: Axes, result: PanelResult, zone: dt.tzinfo) -> None:
    """As many rows as fit the panel at a readable size, from its top; below them, on a
    line of its own, how many more there are."""
    ax.axis("off")
    rows: list[list[str]] = []
    header: list[str] = []
    for series in result.series:
        header = [*series.tags, *series.columns]
        for row in series.values:
            cells = [
                _cell(result.panel, column, value, zone)
                for column, value in zip(series.columns, row, strict=True)
            ]
            rows.append([*series.tags.values(), *cells])
    if not rows:
        return
    figure = ax.get_figure()
    assert figure is not None
    height_pt = ax.bbox.height * 72 / figure.dpi
    lines = max(2, int(height_pt // TABLE_ROW_PT))  # the header and at least one row
    shown = rows if len(rows) < lines else rows[: lines - 2]  # a line left for the note
    line = TABLE_ROW_PT / height_pt  # one line in axes coordinates
    top = (len(shown) + 1) * line
    table = ax.table(
        cellText=shown, colLabels=header, cellLoc="left", bbox=Bbox.from_bounds(0, 1 - top, 1, top)
    )
    table.auto_set_font_size(False)
    table.set_fontsize(TABLE_FONT_PT)
    if len(shown) < len(rows):
        ax.text(0, 1 - top - line / 2, f"… {len(rows) - len(shown)} more rows",
                fontsize=TABLE_FONT_PT + 1, va="center", transform=ax.transAxes)  # fmt: skip


def _field_config(panel: Mapping[str, Any], column: str) -> dict[str, Any]:
    """The panel's field defaults with its overrides for ``column`` (matched by name)."""
    config = dict(panel.get("fieldConfig", {}).get("defaults", {}))
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byName" and matcher.get("options") == column:
            config.update({p["id"]: p.get("value") for p in override.get("properties", [])})
    return config


def _cell(panel: Mapping[str, Any], column: str, value: Any, zone: dt.tzinfo) -> str:
    if value is None:
        return ""
    config = _field_config(panel, column)
    for mapping in config.get("mappings") or []:
        found = mapping.get("options", {}).get(str(value))
        if found:
            return str(found.get("text", value))
    is_time = column == "time" or str(config.get("unit", "")).startswith("dateTime")
    if is_time and isinstance(value, int | float) and not isinstance(value, bool):
        return human_time(int(value), zone)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def human_time(ms: int, zone: dt.tzinfo) -> str:
    """Epoch milliseconds as people read them in ``zone``: 2026-03-16 09:04:42."""
    return dt.datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")


def _span_text(span: tuple[dt.datetime, dt.datetime]) -> str:
    """``2026-03-16 08:59 → 09:11 (Asia/Shanghai, +08:00)``: the day once if it is one."""
    start, end = span
    same_day = start.date() == end.date()
    finish = end.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")
    offset = start.strftime("%z")
    return f"{start:%Y-%m-%d %H:%M} → {finish} ({start.tzinfo}, {offset[:3]}:{offset[3:]})"


def _draw_geomap(ax: Axes, result: PanelResult) -> None:
    layers = result.panel.get("options", {}).get("layers", [{}])
    colour_field = layers[0].get("config", {}).get("style", {}).get("color", {}).get("field")
    for series in result.series:
        columns = series.columns
        if "lat" not in columns or "lon" not in columns:
            continue
        for row in series.values:
            lat, lon = row[columns.index("lat")], row[columns.index("lon")]
            if lat is None or lon is None:
                continue
            value = row[columns.index(colour_field)] if colour_field in columns else None
            colour = _band_colour(result.panel, value) if value is not None else "tab:blue"
            ax.scatter([lon], [lat], s=60, color=colour, edgecolors="k")
            name = row[columns.index("name")] if "name" in columns else ""
            ax.annotate(str(name or series.tags.get("estate", "")), (lon, lat), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("lon", fontsize=7)
    ax.set_ylabel("lat", fontsize=7)
    ax.tick_params(labelsize=7)


def _draw(ax: Axes, result: PanelResult, span: tuple[dt.datetime, dt.datetime]) -> None:
    kind = result.panel.get("type")
    if kind in ("timeseries", "state-timeline"):
        _draw_timeseries(ax, result, step=kind == "state-timeline", zone=span[0].tzinfo or dt.UTC)
        # The whole range, as Grafana shows it, even around a single point.
        limits = mdates.date2num(list(span))  # type: ignore[no-untyped-call]
        ax.set_xlim(float(limits[0]), float(limits[1]))
    elif kind == "stat":
        _draw_stat(ax, result)
    elif kind == "bargauge":
        _draw_bars(ax, result)
    elif kind == "table":
        _draw_table(ax, result, span[0].tzinfo or dt.UTC)
    elif kind == "geomap":
        _draw_geomap(ax, result)


def render_dashboard(
    model: Mapping[str, Any],
    panels: Sequence[PanelResult],
    variables: Mapping[str, str],
    start_ms: int,
    end_ms: int,
    path: Path,
) -> None:
    """Write the PNG: every panel at its gridPos, empty ones marked 无数据 No data."""
    figure = draw_dashboard(model, panels, variables, start_ms, end_ms)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            if cjk_font() is None:  # warned once already, as in draw_dashboard
                warnings.filterwarnings("ignore", message="Glyph .* missing")
            figure.savefig(path, dpi=DPI)
    finally:
        plt.close(figure)


def draw_dashboard(
    model: Mapping[str, Any],
    panels: Sequence[PanelResult],
    variables: Mapping[str, str],
    start_ms: int,
    end_ms: int,
) -> Figure:
    """The dashboard drawn on one matplotlib figure (the caller saves and closes it)."""
    font = cjk_font()
    zone = ZoneInfo(str(model.get("timezone") or "UTC"))
    span = (
        dt.datetime.fromtimestamp(start_ms / 1000, zone),
        dt.datetime.fromtimestamp(end_ms / 1000, zone),
    )
    rows = max((p.panel["gridPos"]["y"] + p.panel["gridPos"]["h"] for p in panels), default=8)
    header_rows = 2
    height = (rows + header_rows) * ROW_INCHES
    families = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    with plt.rc_context({"font.family": families}), warnings.catch_warnings():
        if font is None:  # already warned once: not again for every missing glyph
            warnings.filterwarnings("ignore", message="Glyph .* missing")
        figure = plt.figure(figsize=(WIDTH_INCHES, height), dpi=DPI)
        chosen = ", ".join(f"{k}={v}" for k, v in variables.items()) or "no variables"
        figure.suptitle(f"{model.get('title')}    [{chosen}]    {_span_text(span)}", fontsize=13)
        total = rows + header_rows
        for result in panels:
            grid = result.panel["gridPos"]
            left, width = grid["x"] / 24, grid["w"] / 24
            bottom = 1 - (grid["y"] + grid["h"] + header_rows) / total
            ax = figure.add_axes(
                (
                    left + 0.035 * width,
                    bottom + 0.12 * grid["h"] / total,
                    width * 0.9,
                    grid["h"] / total * 0.72,
                )
            )
            ax.set_title(result.title, fontsize=9, loc="left")
            if result.error or result.empty:
                # Quiet (nothing happened) in grey with the panel's own words; a failure in red.
                text = result.error[:120] or empty_means(result.panel)
                colour = "dimgrey" if result.quiet else "red"
                ax.axis("off")
                ax.text(0.5, 0.5, text, ha="center", va="center", color=colour,
                        transform=ax.transAxes)  # fmt: skip
                continue
            _draw(ax, result, span)
        # Text is laid out (and fonts chosen) when drawn: draw now, inside the font context.
        figure.canvas.draw()
    return figure
