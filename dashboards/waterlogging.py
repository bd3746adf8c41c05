"""积水 Waterlogging dashboard: water depth against the 15 cm and 30 cm alert levels."""

from __future__ import annotations

from typing import Any

from dashboards.builder import warn_then_alarm
from dashboards.family import family_dashboard, signal_panel
from jiayuan.catalogue import WATERLOGGING, Kind


def dashboard() -> dict[str, Any]:
    panels = [
        signal_panel(
            WATERLOGGING,
            "depth",
            "积水深度 Water depth",
            aggregate="max",
            band=warn_then_alarm(
                WATERLOGGING.threshold("depth_warning_cm"), WATERLOGGING.threshold("depth_high_cm")
            ),
        ),
        signal_panel(WATERLOGGING, "rain_rate", "降雨强度 Rain rate", aggregate="max"),
    ]
    return family_dashboard(
        Kind.WATERLOGGING, panels, "Waterlogging gauges: depth against the alert levels."
    )
