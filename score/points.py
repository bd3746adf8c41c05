"""The ``estate_score`` and ``grade_distribution`` points (schema: docs/score.md).

Tag sets are fixed: estate_score (district, street, estate, company) and
grade_distribution (district, street; "all" for the whole city or district).  A family
the estate has no device of has no sub-score field in its point.
"""

from __future__ import annotations

from collections.abc import Iterable

from jiayuan.influx import InfluxClient, format_line
from score.estate import ScoreCard
from score.grades import Distribution, Grade

ESTATE_SCORE = "estate_score"
GRADE_DISTRIBUTION = "grade_distribution"


def estate_score_line(card: ScoreCard, ts_ms: int) -> str:
    fields: dict[str, float | int | str | bool] = {
        "score": float(card.score),
        "grade": card.grade.zh,
        "grade_level": card.grade.level,
        "capped": card.capped,
        "lat": float(card.lat),
        "lon": float(card.lon),
        "name": card.name_zh,
    }
    fields.update({family: float(value) for family, value in card.families.items()})
    tags = {
        "district": card.district,
        "street": card.street,
        "estate": card.estate,
        "company": card.company,
    }
    return format_line(ESTATE_SCORE, tags, fields, ts_ms)


def grade_distribution_line(distribution: Distribution, ts_ms: int) -> str:
    counts = distribution.counts
    targets = distribution.targets
    fields: dict[str, float | int | str | bool] = {
        "estates": distribution.estates,
        **{grade.key: counts.get(grade, 0) for grade in Grade},
        "pct_dabiao_or_better": float(distribution.pct_dabiao_or_better),
        "pct_guifan_or_better": float(distribution.pct_guifan_or_better),
        "pct_shifan": float(distribution.pct_shifan),
        "target_dabiao_or_better": float(targets.dabiao_or_better),
        "target_guifan": float(targets.guifan_or_better),
        "target_shifan": float(targets.shifan),
    }
    tags = {"district": distribution.district, "street": distribution.street}
    return format_line(GRADE_DISTRIBUTION, tags, fields, ts_ms)


def score_lines(
    cards: Iterable[ScoreCard], distributions: Iterable[Distribution], ts_ms: int
) -> list[str]:
    return [estate_score_line(c, ts_ms) for c in cards] + [
        grade_distribution_line(d, ts_ms) for d in distributions
    ]


def write_score_points(
    client: InfluxClient,
    cards: Iterable[ScoreCard],
    distributions: Iterable[Distribution],
    ts_ms: int,
) -> int:
    """Write one computation's points in one request; returns how many were written."""
    lines = score_lines(cards, distributions, ts_ms)
    client.write(lines)
    return len(lines)
