"""电动自行车充电 E-bike charging dashboard: ports in use, port temperatures and currents
against the cut-offs, over-current events and smoke."""

from __future__ import annotations

from typing import Any

from dashboards.builder import at_most, grafana_unit, row_sum, state_panel, timeseries_panel
from dashboards.family import DEVICE_FILTER, family_dashboard, port_fields, signal_panel
from jiayuan.catalogue import EBIKE_CHARGER, Kind, port_field

OVER_CURRENT = EBIKE_CHARGER.event("ebike_charger.over_current")


def _per_port(name: str) -> str:
    return (
        f'SELECT max({port_fields(name)}) FROM "ebike_charger" '
        f"WHERE {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )


def ports_in_use() -> str:
    # Each port's plugged flag (a pile has 8-12 ports, so only the ports it has), added up
    # per row by the panel's row_sum transformation.
    return (
        f'SELECT last({port_fields("plugged")}) FROM "ebike_charger" '
        f"WHERE {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )


def dashboard() -> dict[str, Any]:
    unit = EBIKE_CHARGER.signal(port_field(1, "temp"))
    current = EBIKE_CHARGER.signal(port_field(1, "current"))
    assert unit is not None and current is not None  # per-port signals of the catalogue
    over_current = (
        f'SELECT count("value") AS "events" FROM "anomaly" WHERE "code" = '
        f"'{OVER_CURRENT.code}' AND {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )
    smoke = (
        'SELECT max("smoke") AS "烟感 smoke" FROM "ebike_charger" '
        f"WHERE {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )
    panels = [
        timeseries_panel(
            "在用充电口 Ports in use",
            [ports_in_use()],
            description="Ports with a bike plugged in, per pile.",
            transformations=[row_sum("ports_in_use")],
        ),
        timeseries_panel(
            "充电口温度 Port temperatures",
            [_per_port("temp")],
            unit=grafana_unit(unit.unit),
            band=at_most(EBIKE_CHARGER.threshold("port_temp_max")),
            description="Hottest reading of each port per interval; the line is the cut-off.",
        ),
        timeseries_panel(
            "充电口电流 Port currents",
            [_per_port("current")],
            unit=grafana_unit(current.unit),
            band=at_most(EBIKE_CHARGER.threshold("port_current_max")),
            description="Highest current of each port per interval.",
        ),
        timeseries_panel(
            f"{OVER_CURRENT.title_zh}事件 {OVER_CURRENT.title_en} events",
            [over_current],
            bars=True,
            description="Over-current anomalies per pile by the time they opened.",
            empty_means="无过流事件 No over-current",
        ),
        signal_panel(EBIKE_CHARGER, "total_power", "总功率 Pile power"),
        state_panel("烟感 Smoke at the site", [smoke]),
    ]
    return family_dashboard(
        Kind.EBIKE_CHARGER, panels, "E-bike charging piles: use, heat and electrical faults."
    )
