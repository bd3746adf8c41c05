"""Shared pieces of every dashboard: place variables, filters, panels with threshold bands.

Panels are built with the Grafana foundation SDK's builders (Grafana 11.6 types); this
module only fixes the house conventions: the InfluxDB datasource, Chinese-first titles,
variables used inside regular expressions (so "All" works), and threshold bands whose
values come from the catalogue the detectors use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, geomap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

from dashboards.influxql import DATASOURCE, InfluxQL
from dashboards.macros import ALL
from dashboards.transform import ROW_SUM
from jiayuan.catalogue import Kind

TIMEZONE = "Asia/Shanghai"
PLACE_LEVELS = ("district", "street", "estate")
LEVEL_LABELS = {"district": "区 District", "street": "街镇 Street", "estate": "小区 Estate"}
# Every telemetry measurement, as an InfluxQL regex: the places that have devices.
TELEMETRY = "/^(" + "|".join(kind.value for kind in Kind) + ")$/"

RED, ORANGE, YELLOW, GREEN, BLUE = "red", "orange", "yellow", "green", "blue"


# --- thresholds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """Grafana thresholds: the colour below the first step, then (value, colour) steps.

    On a time series the step values are drawn as threshold lines; stats and gauges are
    coloured by the band their value falls in.
    """

    base: str
    steps: tuple[tuple[float, str], ...] = ()

    def build(self) -> dashboard_builders.ThresholdsConfig:
        steps = [dashboard.Threshold(value=None, color=self.base)]
        steps += [dashboard.Threshold(value=value, color=color) for value, color in self.steps]
        return (
            dashboard_builders.ThresholdsConfig()
            .mode(dashboard.ThresholdsMode.ABSOLUTE)
            .steps(steps)
        )


def at_least(minimum: float) -> Band:
    """Below the minimum is the fault (pressures, chlorine, levels)."""
    return Band(RED, ((minimum, GREEN),))


def at_most(maximum: float) -> Band:
    """Above the maximum is the fault (turbidity, temperatures, currents)."""
    return Band(GREEN, ((maximum, RED),))


def between(low: float, high: float) -> Band:
    """Outside [low, high] is the fault (pH, tank level)."""
    return Band(RED, ((low, GREEN), (high, RED)))


def warn_then_alarm(warning: float, alarm: float) -> Band:
    return Band(GREEN, ((warning, YELLOW), (alarm, RED)))


# --- variables and filters ----------------------------------------------------------------


def place_variables(
    source: str = TELEMETRY, levels: Sequence[str] = PLACE_LEVELS
) -> list[dashboard_builders.QueryVariable]:
    """district → street → estate, each listing the values under the ones before it."""
    variables = []
    for depth, level in enumerate(levels):
        query = f'SHOW TAG VALUES FROM {source} WITH KEY = "{level}"'
        if depth:
            query += " WHERE " + place_filter(levels[:depth])
        variables.append(
            dashboard_builders.QueryVariable(level)
            .label(LEVEL_LABELS[level])
            .datasource(DATASOURCE)
            .query(query)
            .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .all_value(ALL)
        )
    return variables


def place_filter(levels: Sequence[str] = PLACE_LEVELS) -> str:
    """``"district" =~ /^$district$/ AND …``: the chosen places, or all of them."""
    return " AND ".join(f'"{level}" =~ /^${level}$/' for level in levels)


# --- panels -------------------------------------------------------------------------------
#
# ``empty_means`` marks a panel of events (anomalies, alerts, escalations) for which nothing
# happening is the healthy state: the words Grafana shows instead of "No data"
# (fieldConfig.defaults.noValue), and what lets ``dashboards preview`` pass it when empty.
# Panels without it (telemetry, scores) must have data.

PanelBuilder = cogbuilder.Builder[dashboard.Panel]


def _targets(queries: Sequence[str], table_format: bool = False) -> list[InfluxQL]:
    targets = []
    for index, query in enumerate(queries):
        target = InfluxQL(query).ref_id(chr(ord("A") + index))
        targets.append(target.table() if table_format else target)
    return targets


def timeseries_panel(
    title: str,
    queries: Sequence[str],
    *,
    unit: str = "",
    band: Band | None = None,
    description: str = "",
    bars: bool = False,
    stacked: bool = False,
    width: int = 12,
    height: int = 8,
    minimum: float | None = None,
    empty_means: str = "",
    transformations: Sequence[dashboard.DataTransformerConfig] = (),
) -> timeseries.Panel:
    """Lines (or bars) over time; a band's steps are drawn as threshold lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries)))
        .span(width)
        .height(height)
        .unit(unit)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .span_nulls(True)
    )
    if minimum is not None:
        panel = panel.min(minimum)
    for transformation in transformations:
        panel = panel.with_transformation(transformation)
    if empty_means:
        panel = panel.no_value(empty_means)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if band is not None:
        panel = panel.thresholds(band.build()).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    return panel


def row_sum(alias: str) -> dashboard.DataTransformerConfig:
    """Grafana's "add field from calculation": each row's numeric fields summed into one
    field named ``alias``, which replaces them (InfluxQL cannot add up fields that only
    some series have: one missing field makes the sum null)."""
    return dashboard.DataTransformerConfig(
        id_val=ROW_SUM,
        options={
            "mode": "reduceRow",
            "reduce": {"reducer": "sum"},
            "alias": alias,
            "replaceFields": True,
        },
    )


def state_panel(
    title: str,
    queries: Sequence[str],
    *,
    description: str = "",
    width: int = 12,
    height: int = 8,
    empty_means: str = "",
) -> statetimeline.Panel:
    """On/off states over time (fire panel bits, pumps): green 0, red 1."""
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries)))
        .span(width)
        .height(height)
        .thresholds(Band(GREEN, ((1, RED),)).build())
        .line_width(0)
        .fill_opacity(70)
        .color_scheme(dashboard_builders.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS))
    )
    return panel.no_value(empty_means) if empty_means else panel


def stat_panel(
    title: str,
    query: str,
    *,
    unit: str = "",
    band: Band | None = None,
    mappings: Sequence[tuple[int, str, str]] = (),
    description: str = "",
    width: int = 6,
    height: int = 5,
    empty_means: str = "",
) -> stat.Panel:
    """One big number; ``mappings`` turn codes into words (value, text, colour)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query])))
        .span(width)
        .height(height)
        .unit(unit)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    if band is not None:
        panel = panel.thresholds(band.build())
    if mappings:
        panel = panel.mappings([value_map(mappings)])
    if empty_means:
        panel = panel.no_value(empty_means)
    return panel


def value_map(mappings: Sequence[tuple[int, str, str]]) -> dashboard.ValueMap:
    return dashboard.ValueMap(
        options={
            str(value): dashboard.ValueMappingResult(text=text, color=color or None, index=index)
            for index, (value, text, color) in enumerate(mappings)
        }
    )


def bargauge_panel(
    title: str,
    query: str,
    *,
    unit: str = "",
    band: Band | None = None,
    minimum: float = 0,
    maximum: float | None = None,
    description: str = "",
    width: int = 12,
    height: int = 8,
    empty_means: str = "",
) -> bargauge.Panel:
    """One bar per series (per severity, per family, per district)."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query])))
        .span(width)
        .height(height)
        .unit(unit)
        .min(minimum)
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    if maximum is not None:
        panel = panel.max(maximum)
    if band is not None:
        panel = panel.thresholds(band.build())
    if empty_means:
        panel = panel.no_value(empty_means)
    return panel


@dataclass(frozen=True)
class TimeColumn:
    """A table column of epoch milliseconds, shown as a time in the dashboard's zone."""

    name: str
    zero: str = ""  # what 0 means instead (an anomaly's end while it is still open)

    def properties(self) -> list[dashboard.DynamicConfigValue]:
        found = [dashboard.DynamicConfigValue("unit", "dateTimeAsIso")]
        if self.zero:
            found.append(
                dashboard.DynamicConfigValue("mappings", [value_map([(0, self.zero, "")])])
            )
        return found


def table_panel(
    title: str,
    query: str,
    *,
    description: str = "",
    width: int = 24,
    height: int = 8,
    empty_means: str = "",
    time_columns: Sequence[TimeColumn] = (),
) -> table.Panel:
    """Rows of a table-format query (tags become columns); ``time`` and ``time_columns``
    are shown as times in the dashboard's zone."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query], table_format=True)))
        .span(width)
        .height(height)
    )
    for column in time_columns:
        panel = panel.override_by_name(column.name, column.properties())
    if empty_means:
        # Field defaults on a table are decoded with the table's own custom defaults:
        # spell them out so the JSON survives Grafana's model unchanged.
        panel = panel.no_value(empty_means).align(common.FieldTextAlignment.AUTO).inspect(False)
    return panel


def geomap_panel(
    title: str,
    query: str,
    *,
    color_field: str,
    band: Band,
    mappings: Sequence[tuple[int, str, str]] = (),
    description: str = "",
    width: int = 12,
    height: int = 12,
) -> geomap.Panel:
    """Markers at each row's ``lat``/``lon``, coloured by ``color_field`` through the band."""
    markers = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("小区 Estates")
        .location(
            common_builders.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": color_field, "fixed": "dark-green"},
                    "size": {"fixed": 8, "min": 4, "max": 15},
                    "opacity": 0.8,
                },
            }
        )
        .tooltip(True)
    )
    panel = (
        geomap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query], table_format=True)))
        .span(width)
        .height(height)
        .view(geomap_view())
        .basemap(common_builders.MapLayerOptions().type("default").name("底图 Basemap"))
        .layers([markers])
        .thresholds(band.build())
        .color_scheme(dashboard_builders.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS))
    )
    if mappings:
        panel = panel.mappings([value_map(mappings)])
    return panel


def geomap_view() -> geomap.MapViewConfig:
    # Fit the view to the markers; zoom 9 shows the whole of Shanghai if there are none.
    return geomap.MapViewConfig().id("fit").zoom(9)


# --- dashboards ---------------------------------------------------------------------------


def new_dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    tags: Sequence[str],
    variables: Sequence[dashboard_builders.QueryVariable],
    panels: Sequence[PanelBuilder],
    time_from: str = "now-6h",
) -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana stores and the HTTP API takes)."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["jiayuan", *tags])
        .timezone(TIMEZONE)
        .time(time_from, "now")
        .refresh("30s")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    for variable in variables:
        board = board.with_variable(variable)
    for panel in panels:
        board = board.with_panel(panel)
    model = board.build()
    for index, built in enumerate(model.panels or [], start=1):
        built.id_val = index
    encoded: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return encoded


# --- catalogue-driven pieces --------------------------------------------------------------

# Estate grades as part C writes them (estate_score.grade_level): value, label, colour.
GRADES: tuple[tuple[int, str, str], ...] = (
    (0, "不达标 Non-compliant", RED),
    (1, "达标 Compliant", ORANGE),
    (2, "规范 Good", BLUE),
    (3, "示范 Exemplary", GREEN),
)
GRADE_BAND = Band(RED, ((1, ORANGE), (2, BLUE), (3, GREEN)))
# Display colours for 0-100 scores (not alert thresholds: those live in the catalogue).
SCORE_BAND = Band(RED, ((60, ORANGE), (80, GREEN)))

# Grafana's unit ids for the catalogue's units; any other unit is shown as a suffix.
_GRAFANA_UNITS = {
    "°C": "celsius",
    "%": "percent",
    "m/s": "velocityms",
    "A": "amp",
    "W": "watt",
    "m": "lengthm",
    "s": "s",
    "": "none",
}


def grafana_unit(unit: str) -> str:
    return _GRAFANA_UNITS.get(unit, f"suffix: {unit}")
