"""电梯 Lift dashboard: trips, door cycles, speed against the overspeed trip, faults,
trapped-passenger events and time to rescue."""

from __future__ import annotations

from typing import Any

from dashboards.builder import GREEN, RED, Band, at_most, stat_panel, timeseries_panel
from dashboards.family import DEVICE_FILTER, code_count, family_dashboard, signal_panel
from jiayuan.catalogue import LIFT, Kind

TRAPPED = LIFT.event("lift.trapped")
# A trip is the car starting to move: each rise of car_status from 0 to 1.
TRIPS = (
    'SELECT sum("starts") AS "trips" FROM (SELECT non_negative_difference("car_status") '
    f'AS "starts" FROM "lift" WHERE {DEVICE_FILTER} AND $timeFilter GROUP BY "device") '
    'WHERE $timeFilter GROUP BY time($__interval), "device" fill(none)'
)
# The lift reports each door step once as it begins, so readings with door_status 3
# (opening) count door cycles.
DOOR_CYCLES = (
    'SELECT count("door_status") AS "door_openings" FROM "lift" WHERE "door_status" = 3 '
    f"AND {DEVICE_FILTER} AND $timeFilter "
    'GROUP BY time($__interval), "device" fill(none)'
)
SPEED_RATIO = (
    'SELECT max("speed") / max("rated_speed") AS "speed_ratio" FROM "lift" '
    f"WHERE {DEVICE_FILTER} AND $timeFilter "
    'GROUP BY time($__interval), "device" fill(none)'
)
RESCUE = (
    'SELECT ("end" - "start") / 1000 AS "rescue_s" FROM "anomaly" '
    f"WHERE \"code\" = '{TRAPPED.code}' AND \"state\" = 'closed' "
    f'AND {DEVICE_FILTER} AND $timeFilter GROUP BY "device"'
)


def dashboard() -> dict[str, Any]:
    overspeed = LIFT.threshold("overspeed_ratio")
    panels = [
        timeseries_panel(
            "运行次数 Trips",
            [TRIPS],
            bars=True,
            description="Times each car started moving (car_status 0 → 1) per interval.",
        ),
        timeseries_panel(
            "开门次数 Door cycles",
            [DOOR_CYCLES],
            bars=True,
            description="Door openings per interval (readings with door_status 3, opening).",
        ),
        timeseries_panel(
            "速度/额定速度 Speed against rated speed",
            [SPEED_RATIO],
            band=at_most(overspeed),
            description=f"Highest speed ÷ rated speed; the line is the overspeed trip "
            f"({overspeed:g} × rated, {LIFT.event('lift.overspeed').source}).",
        ),
        signal_panel(LIFT, "fault_code", "控制器故障码 Controller fault code", aggregate="max"),
        stat_panel(
            f"{TRAPPED.title_zh}事件 {TRAPPED.title_en} events",
            code_count(TRAPPED.code),
            band=Band(GREEN, ((1, RED),)),
            description="Trapped-passenger anomalies that opened in the time range.",
            empty_means="0",
        ),
        timeseries_panel(
            "救援用时 Time to rescue",
            [RESCUE],
            unit="s",
            bars=True,
            width=18,
            description="Seconds from a trapped-passenger anomaly opening to the car "
            "moving or the door opening again (its end), per closed event.",
            empty_means="无困人事件 Nobody trapped",
        ),
    ]
    return family_dashboard(
        Kind.LIFT, panels, "Lift operation and faults per device (GB/T 24476-2017 signals)."
    )
