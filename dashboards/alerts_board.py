"""告警处置 Alerts board: open alerts, time to acknowledge and to resolve, escalations."""

from __future__ import annotations

from typing import Any

from alerts.model import AlertAction
from dashboards.builder import (
    GREEN,
    ORANGE,
    RED,
    Band,
    new_dashboard,
    place_filter,
    place_variables,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "jiayuan-alerts"
WHERE = place_filter()
RESOLVED = "/^(" + "|".join((AlertAction.RESOLVED.value, AlertAction.AUTO_RESOLVED.value)) + ")$/"
# alert_open holds one gauge per (estate, severity), written every 10 s: take each one's
# latest value, then add them up.
GAUGES = (
    ("open", "未关闭告警 Open alerts", Band(GREEN, ((1, ORANGE),))),
    ("unacknowledged", "未确认 Unacknowledged", Band(GREEN, ((1, ORANGE),))),
    ("overdue", "超时 Overdue", Band(GREEN, ((1, RED),))),
    ("escalated", "已升级 Escalated", Band(GREEN, ((1, RED),))),
)


def gauge_total(field: str) -> str:
    return (
        f'SELECT sum("{field}") AS "{field}" FROM (SELECT last("{field}") AS "{field}" '
        f'FROM "alert_open" WHERE {WHERE} AND $timeFilter GROUP BY "estate", "severity")'
    )


OPEN_TREND = (
    'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM "alert_open" '
    f'WHERE {WHERE} AND $timeFilter GROUP BY time($__interval), "estate", "severity") '
    'WHERE $timeFilter GROUP BY time($__interval), "severity" fill(none)'
)
TTA = (
    'SELECT mean("tta_s") AS "tta_s" FROM "alert" '
    f"WHERE \"action\" = '{AlertAction.ACKNOWLEDGED.value}' AND {WHERE} AND $timeFilter "
    'GROUP BY time($__interval), "severity" fill(none)'
)
TTR = (
    'SELECT mean("ttr_s") AS "ttr_s" FROM "alert" '
    f'WHERE "action" =~ {RESOLVED} AND {WHERE} AND $timeFilter '
    'GROUP BY time($__interval), "severity" fill(none)'
)
TTA_P90 = (
    'SELECT percentile("tta_s", 90) AS "tta_p90" FROM "alert" '
    f"WHERE \"action\" = '{AlertAction.ACKNOWLEDGED.value}' AND {WHERE} AND $timeFilter"
)
TTR_P90 = (
    'SELECT percentile("ttr_s", 90) AS "ttr_p90" FROM "alert" '
    f'WHERE "action" =~ {RESOLVED} AND {WHERE} AND $timeFilter'
)
ESCALATIONS = (
    'SELECT count("alert_id") AS "escalations" FROM "alert" '
    f"WHERE \"action\" = '{AlertAction.ESCALATED.value}' AND {WHERE} AND $timeFilter "
    'GROUP BY time($__interval), "escalation" fill(none)'
)
EVENTS = (
    'SELECT "alert_id", "state", "title_zh", "title_en", "repeat_count" FROM "alert" '
    f"WHERE {WHERE} AND $timeFilter "
    'GROUP BY "estate", "device", "severity", "action" ORDER BY time DESC LIMIT 20'
)


def dashboard() -> dict[str, Any]:
    panels = [
        *(
            stat_panel(title, gauge_total(field), band=band, empty_means="0")
            for field, title, band in GAUGES
        ),
        timeseries_panel(
            "未关闭告警趋势 Open alerts by severity",
            [OPEN_TREND],
            stacked=True,
            width=24,
            empty_means="无未关闭告警 No open alerts",
        ),
        timeseries_panel(
            "确认用时 Time to acknowledge",
            [TTA],
            unit="s",
            bars=True,
            description="Mean seconds from an alert's creation to its acknowledgement.",
            empty_means="无已确认告警 Nothing acknowledged",
        ),
        timeseries_panel(
            "处置用时 Time to resolve",
            [TTR],
            unit="s",
            bars=True,
            description="Mean seconds from an alert's creation to its resolution.",
            empty_means="无已处置告警 Nothing resolved",
        ),
        stat_panel(
            "确认用时 P90 Time to acknowledge, 90th pct",
            TTA_P90,
            unit="s",
            width=12,
            empty_means="无已确认告警 Nothing acknowledged",
        ),
        stat_panel(
            "处置用时 P90 Time to resolve, 90th pct",
            TTR_P90,
            unit="s",
            width=12,
            empty_means="无已处置告警 Nothing resolved",
        ),
        timeseries_panel(
            "告警升级 Escalations",
            [ESCALATIONS],
            bars=True,
            stacked=True,
            width=24,
            description="Alerts escalated per interval, by the level they reached.",
            empty_means="无升级 No escalations",
        ),
        table_panel(
            "最近告警事件 Recent alert events",
            EVENTS,
            description="The latest lifecycle events of each device, action and severity.",
            empty_means="无告警 No alerts",
        ),
    ]
    return new_dashboard(
        UID,
        "告警处置 Alerts board",
        description="Open alerts, time to acknowledge and resolve, and escalations.",
        tags=["alerts"],
        variables=place_variables(),
        panels=panels,
    )
