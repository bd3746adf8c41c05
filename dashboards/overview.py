"""全市总览 City overview: grades against the year's targets, estates on a map, open alerts
by street, devices offline and today's critical events, for the city or one district."""

from __future__ import annotations

from typing import Any

from dashboards.builder import (
    GRADE_BAND,
    GRADES,
    GREEN,
    RED,
    Band,
    TimeColumn,
    bargauge_panel,
    geomap_panel,
    new_dashboard,
    place_filter,
    place_variables,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "jiayuan-overview"
LEVELS = ("district", "street")
WHERE = place_filter(LEVELS)
# grade_distribution rows: district "all" is the city, street "all" a whole district.
DISTRICT_ROWS = '"district" =~ /^$district$/ AND "street" = \'all\''
TODAY = "now/d"
OFFLINE = '"code" =~ /\\.offline$/ AND "state" = \'open\''

SHARES = (
    'SELECT last("pct_dabiao_or_better") AS "达标及以上 ≥ compliant %", '
    'last("target_dabiao_or_better") AS "目标 target ≥ compliant %", '
    'last("pct_guifan_or_better") AS "规范及以上 ≥ good %", '
    'last("target_guifan") AS "目标 target ≥ good %", '
    'last("pct_shifan") AS "示范 exemplary %", '
    'last("target_shifan") AS "目标 target exemplary %" '
    f'FROM "grade_distribution" WHERE {DISTRICT_ROWS} AND $timeFilter '
    'GROUP BY time($__interval), "district" fill(none)'
)
COUNTS = (
    'SELECT last("shifan") AS "示范 exemplary", last("guifan") AS "规范 good", '
    'last("dabiao") AS "达标 compliant", last("budabiao") AS "不达标 non-compliant" '
    f'FROM "grade_distribution" WHERE {DISTRICT_ROWS} AND $timeFilter GROUP BY "district"'
)
MAP = (
    'SELECT last("lat") AS "lat", last("lon") AS "lon", last("grade_level") AS '
    '"grade_level", last("score") AS "score", last("name") AS "name" FROM "estate_score" '
    f'WHERE {WHERE} AND $timeFilter GROUP BY "estate"'
)
OPEN_BY_STREET = (
    'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM "alert_open" '
    f'WHERE {WHERE} AND $timeFilter GROUP BY "street", "estate", "severity") '
    'GROUP BY "street", "severity"'
)
OFFLINE_COUNT = f'SELECT count("value") AS "offline" FROM "anomaly" WHERE {OFFLINE} AND {WHERE}'
OFFLINE_LIST = (
    f'SELECT "start", "title_zh", "title_en" FROM "anomaly" WHERE {OFFLINE} AND {WHERE} '
    'GROUP BY "street", "estate", "kind", "device"'
)
CRITICAL_ALERTS = (
    'SELECT count("alert_id") AS "critical" FROM "alert" '
    f"WHERE \"severity\" = 'critical' AND \"action\" = 'raised' AND {WHERE} AND $timeFilter"
)
CRITICAL_EVENTS = (
    'SELECT "title_zh", "title_en", "state", "value", "end" FROM "anomaly" '
    f"WHERE \"severity\" = 'critical' AND {WHERE} AND $timeFilter "
    'GROUP BY "estate", "device", "code"'
)


def dashboard() -> dict[str, Any]:
    panels = [
        timeseries_panel(
            "分级达标率与年度目标 Grade shares against the year's targets",
            [SHARES],
            unit="percent",
            minimum=0,
            description="Share of estates at each grade or better; district 'all' is the "
            "whole city. Targets are the year's from the configuration.",
        ),
        bargauge_panel(
            "各区分级分布 Estates per grade",
            COUNTS,
            description="Estates at each grade, per district ('all' = the city).",
        ),
        geomap_panel(
            "小区分级地图 Estates by grade",
            MAP,
            color_field="grade_level",
            band=GRADE_BAND,
            mappings=GRADES,
            description="Each estate at its location, coloured by its latest grade.",
        ),
        bargauge_panel(
            "各街道未处理告警 Open alerts by street and severity",
            OPEN_BY_STREET,
            description="Alerts not yet closed, from the latest alert_open gauge of each "
            "estate, summed per street and severity.",
            empty_means="无未处理告警 No open alerts",
        ),
        stat_panel(
            "离线设备 Devices offline",
            OFFLINE_COUNT,
            band=Band(GREEN, ((1, RED),)),
            description="Devices whose offline anomaly is still open (however long ago it "
            "began, so no time filter).",
            empty_means="0",
        ),
        stat_panel(
            "今日严重告警 Critical alerts today",
            CRITICAL_ALERTS,
            band=Band(GREEN, ((1, RED),)),
            description="Critical alerts raised since midnight (Asia/Shanghai).",
            empty_means="0",
        ).time_from(TODAY),
        table_panel(
            "离线设备清单 Offline devices",
            OFFLINE_LIST,
            width=12,
            time_columns=[TimeColumn("start")],
            empty_means="无离线设备 No device offline",
        ),
        table_panel(
            "今日严重事件 Today's critical events",
            CRITICAL_EVENTS,
            description="Critical anomalies that began today, and when each ended.",
            time_columns=[TimeColumn("end", zero="未结束 still open")],
            empty_means="今日无严重事件 No critical event today",
        ).time_from(TODAY),
    ]
    return new_dashboard(
        UID,
        "全市总览 City overview",
        description="Estate grades against targets, open alerts, offline devices and "
        "critical events for the city or one district.",
        tags=["overview"],
        variables=place_variables(levels=LEVELS),
        panels=panels,
    )
