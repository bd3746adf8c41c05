"""The district and city grade rows of a scaled-out set, from every instance's estates.

An instance that owns some streets scores only their estates, so none of them can count a
whole district.  Each instance writes its estates' ``estate_score`` points to the one
InfluxDB; the instance given ``[alerts] score_aggregate`` (in ``--workers``, worker 1)
reads back the latest grade of every estate and writes the district and city rows from
them, the same rows one instance owning every street would write.
"""

from __future__ import annotations

from dataclasses import dataclass

from jiayuan.influx import InfluxClient, quote_identifier
from score.config import Targets
from score.grades import ALL, Distribution, Grade, distributions
from score.points import ESTATE_SCORE, grade_distribution_line


@dataclass(frozen=True)
class LatestGrade:
    district: str
    street: str
    grade: Grade


def latest_grades(client: InfluxClient, since_ms: int, until_ms: int) -> list[LatestGrade]:
    """Each estate's last grade written between ``since_ms`` and ``until_ms``."""
    series = client.query(
        f'SELECT last("grade_level") FROM {quote_identifier(ESTATE_SCORE)} '
        f"WHERE time >= {since_ms}ms AND time <= {until_ms}ms "
        'GROUP BY "district", "street", "estate"'
    )
    return [
        LatestGrade(s.tags["district"], s.tags["street"], Grade.from_level(int(s.values[0][1])))
        for s in series
    ]


def aggregate_rows(
    client: InfluxClient, targets: Targets, since_ms: int, until_ms: int
) -> list[Distribution]:
    """The city row and each district's row (street ``all``) over every estate scored in
    the window, by whichever instance."""
    graded = latest_grades(client, since_ms, until_ms)
    if not graded:  # nothing scored yet: no row rather than a city of no estates
        return []
    return [d for d in distributions(graded, targets) if d.street == ALL]


def write_aggregate_rows(client: InfluxClient, targets: Targets, since_ms: int, now_ms: int) -> int:
    """Write the rows at ``now_ms``; how many."""
    rows = aggregate_rows(client, targets, since_ms, now_ms)
    if rows:
        client.write([grade_distribution_line(row, now_ms) for row in rows])
    return len(rows)
