"""小区安全 Estate dashboard: the safety score and its breakdown over time, open alerts,
and the health of every device family."""

from __future__ import annotations

from typing import Any

from dashboards.builder import (
    GRADE_BAND,
    GRADES,
    SCORE_BAND,
    TELEMETRY,
    bargauge_panel,
    new_dashboard,
    place_filter,
    place_variables,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from jiayuan.catalogue import FAMILIES

UID = "jiayuan-estate"
WHERE = place_filter()


def _family_columns(aggregate: str) -> str:
    return ", ".join(
        f'{aggregate}("{kind.value}") AS "{fam.title_zh} {fam.title_en}"'
        for kind, fam in FAMILIES.items()
    )


SCORE = f'SELECT last("score") AS "score" FROM "estate_score" WHERE {WHERE} AND $timeFilter'
GRADE = f'SELECT last("grade_level") AS "grade" FROM "estate_score" WHERE {WHERE} AND $timeFilter'
FAMILY_SCORES = (
    f'SELECT {_family_columns("last")} FROM "estate_score" WHERE {WHERE} AND $timeFilter'
)
TREND = (
    f'SELECT mean("score") AS "总分 Score", {_family_columns("mean")} FROM "estate_score" '
    f"WHERE {WHERE} AND $timeFilter GROUP BY time($__interval) fill(none)"
)
OPEN_ALERTS = (
    'SELECT last("open") AS "未关闭 open", last("unacknowledged") AS "未确认 unacknowledged", '
    'last("overdue") AS "超时 overdue", last("escalated") AS "已升级 escalated" '
    f'FROM "alert_open" WHERE {WHERE} AND $timeFilter GROUP BY "severity"'
)
ANOMALIES = (
    f'SELECT count("value") AS "anomalies" FROM "anomaly" WHERE {WHERE} AND $timeFilter '
    'GROUP BY time($__interval), "kind" fill(none)'
)
READINGS = (
    f'SELECT count("seq") AS "readings" FROM {TELEMETRY} WHERE {WHERE} AND $timeFilter '
    "GROUP BY time($__interval) fill(none)"
)


def dashboard() -> dict[str, Any]:
    panels = [
        stat_panel("安全评分 Safety score", SCORE, band=SCORE_BAND),
        stat_panel("等级 Grade", GRADE, band=GRADE_BAND, mappings=GRADES),
        bargauge_panel(
            "各类设施评分 Family sub-scores",
            FAMILY_SCORES,
            band=SCORE_BAND,
            maximum=100,
            description="Latest 0-100 sub-score per device family.",
        ),
        timeseries_panel(
            "评分及分项趋势 Score and breakdown over time",
            [TREND],
            minimum=0,
            width=24,
        ),
        table_panel(
            "未关闭告警 Open alerts by severity",
            OPEN_ALERTS,
            width=12,
            empty_means="无未关闭告警 No open alerts",
        ),
        timeseries_panel(
            "各类设施异常 Anomalies by family",
            [ANOMALIES],
            bars=True,
            stacked=True,
            description="Anomalies by the time they opened, per device family.",
            empty_means="无异常 No anomalies",
        ),
        timeseries_panel(
            "设备上报 Readings by family",
            [READINGS],
            width=24,
            description="Readings stored per interval, per family: a family that falls "
            "silent shows here first.",
        ),
    ]
    return new_dashboard(
        UID,
        "小区安全 Estate safety",
        description="One estate's safety score with its breakdown, open alerts and the "
        "health of each device family.",
        tags=["estate"],
        variables=place_variables(),
        panels=panels,
    )
