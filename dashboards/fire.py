"""消防 Fire-system dashboard: panel states, pipe pressures against their minimums, the
fire tank level and the pumps."""

from __future__ import annotations

from typing import Any

from dashboards.builder import at_least, state_panel
from dashboards.family import DEVICE_FILTER, family_dashboard, signal_panel
from jiayuan.catalogue import FIRE, Kind

STATE_BITS = (
    ("fire_alarm", "火警 alarm"),
    ("fault", "故障 fault"),
    ("supervisory", "监管 supervisory"),
    ("isolated", "屏蔽 isolated"),
)
PUMP_BITS = (("pump_commanded", "启泵指令 commanded"), ("pump_running", "运行反馈 running"))


def _states(bits: tuple[tuple[str, str], ...]) -> str:
    selected = ", ".join(f'max("{name}") AS "{label}"' for name, label in bits)
    return (
        f'SELECT {selected} FROM "fire" WHERE {DEVICE_FILTER} AND $timeFilter '
        'GROUP BY time($__interval), "device" fill(none)'
    )


def dashboard() -> dict[str, Any]:
    panels = [
        state_panel(
            "控制器状态 Panel states",
            [_states(STATE_BITS)],
            width=24,
            description="Fire panel state bits per device (GB/T 26875.3): red while set.",
        ),
        signal_panel(
            FIRE,
            "sprinkler_pressure",
            "喷淋管网压力 Sprinkler pipe pressure",
            band=at_least(FIRE.threshold("sprinkler_pressure_min")),
        ),
        signal_panel(
            FIRE,
            "hydrant_pressure",
            "消火栓管网压力 Hydrant pipe pressure",
            band=at_least(FIRE.threshold("hydrant_pressure_min")),
        ),
        signal_panel(
            FIRE,
            "tank_level",
            "消防水箱水位 Fire tank level",
            band=at_least(FIRE.threshold("tank_level_min")),
        ),
        state_panel(
            "消防泵 Pumps",
            [_states(PUMP_BITS)],
            description="Pump start commanded against running feedback.",
        ),
    ]
    return family_dashboard(
        Kind.FIRE, panels, "Fire alarm panels, pipe pressures and water reserves per device."
    )
