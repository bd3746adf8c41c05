"""What every family dashboard shares: its variables, its signals' panels, its anomalies.

Signal names, units, titles and alert thresholds all come from ``jiayuan.catalogue``, the
same entries the simulators and the detection rules read, so a threshold changed there
moves the dashboard's threshold line too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboards.builder import (
    Band,
    PanelBuilder,
    grafana_unit,
    new_dashboard,
    place_filter,
    place_variables,
    timeseries_panel,
)
from jiayuan.catalogue import PORT_FIELD, Family, Kind, family, port_field

DEVICE_FILTER = place_filter()


def uid(kind: Kind) -> str:
    return f"jiayuan-{kind.value.replace('_', '-')}"


def signal_panel(
    fam: Family,
    name: str,
    title: str,
    *,
    aggregate: str = "mean",
    band: Band | None = None,
    width: int = 12,
) -> PanelBuilder:
    """One signal of every chosen device over time, with the family's limits as lines."""
    signal = fam.signal(name)
    if signal is None:
        raise KeyError(f"{fam.kind}: no signal named {name!r} in the catalogue")
    query = (
        f'SELECT {aggregate}("{name}") AS "{name}" FROM "{fam.kind.value}" '
        f"WHERE {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )
    return timeseries_panel(
        title,
        [query],
        unit=grafana_unit(signal.unit),
        band=band,
        width=width,
        description=f"{signal.description} ({signal.unit or 'code'}); "
        f"{aggregate} per device per interval",
    )


def port_fields(name: str) -> str:
    """InfluxQL regex over a per-port signal's fields (``p01_temp`` … ``p12_temp``)."""
    if PORT_FIELD.fullmatch(port_field(1, name)) is None:
        raise ValueError(f"{name!r} is not a per-port signal name")
    return "/^" + PORT_FIELD.pattern.replace("([a-z_]+)", name) + "$/"


def anomalies_panel(kind: Kind, *, width: int = 12) -> PanelBuilder:
    """Anomalies opened per interval, one bar series per event code (closed ones too)."""
    query = (
        f'SELECT count("value") FROM "anomaly" WHERE "kind" = \'{kind.value}\' '
        f"AND {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "code" fill(none)'
    )
    return timeseries_panel(
        "异常事件 Anomalies by type",
        [query],
        bars=True,
        stacked=True,
        width=width,
        description="Anomalies (rules and statistical detectors) by the time they opened.",
        empty_means="无异常 No anomalies",
    )


def code_count(code: str, *, state: str = "") -> str:
    """InfluxQL counting one event code's anomalies in the range (optionally by state)."""
    state_clause = f" AND \"state\" = '{state}'" if state else ""
    return (
        f'SELECT count("value") FROM "anomaly" WHERE "code" = \'{code}\'{state_clause} '
        f"AND {DEVICE_FILTER} AND $timeFilter"
    )


def family_dashboard(
    kind: Kind, panels: Sequence[PanelBuilder], description: str
) -> dict[str, Any]:
    fam = family(kind)
    return new_dashboard(
        uid(kind),
        f"{fam.title_zh} {fam.title_en}",
        description=description,
        tags=["family", kind.value],
        variables=place_variables(f'"{kind.value}"'),
        panels=[*panels, anomalies_panel(kind, width=24)],
    )
