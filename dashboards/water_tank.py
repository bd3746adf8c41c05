"""二次供水 Secondary water-supply dashboard: tank level, residual chlorine, turbidity and
pH against the GB 5749 limits, supply pressure and the tank lid."""

from __future__ import annotations

from typing import Any

from dashboards.builder import at_least, at_most, between, state_panel
from dashboards.family import DEVICE_FILTER, family_dashboard, signal_panel
from jiayuan.catalogue import WATER_TANK, Kind


def dashboard() -> dict[str, Any]:
    t = WATER_TANK.threshold
    lid = (
        'SELECT max("lid_open") AS "水箱盖/泵房门 lid or door open" FROM "water_tank" '
        f"WHERE {DEVICE_FILTER} AND $timeFilter "
        'GROUP BY time($__interval), "device" fill(none)'
    )
    panels = [
        signal_panel(
            WATER_TANK,
            "level_pct",
            "水箱水位 Tank level",
            band=between(t("level_low_pct"), t("level_overflow_pct")),
        ),
        signal_panel(
            WATER_TANK,
            "free_chlorine",
            "余氯 Residual free chlorine",
            aggregate="min",
            band=at_least(t("free_chlorine_min")),
        ),
        signal_panel(
            WATER_TANK,
            "turbidity",
            "浑浊度 Turbidity",
            aggregate="max",
            band=at_most(t("turbidity_max")),
        ),
        signal_panel(WATER_TANK, "ph", "pH", band=between(t("ph_min"), t("ph_max"))),
        signal_panel(WATER_TANK, "supply_pressure", "供水压力 Supply pressure"),
        state_panel("水箱盖 Tank lid", [lid], description="Red while the lid or door is open."),
    ]
    return family_dashboard(
        Kind.WATER_TANK, panels, "Secondary water-supply tanks: level and water quality."
    )
