"""The ``estate_score`` and ``grade_distribution`` points (schema: docs/score.md).

Tag sets are fixed: estate_score (district, street, estate, company) and
grade_distribution (district, street; "all" for the whole city or district).  A family
the estate has no device of has no sub-score field in its point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from jiayuan.influx import InfluxClient, format_line, format_line_once
from score.config import ScoreConfig
from score.estate import AlertSource, EstateFacts, ScoreCard, score_estate, window_start_ms
from score.grades import ALL, Distribution, Grade, distributions

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
    # Once a minute an estate: its tag set kept in the readings' line caches would stay
    # there for good (some 800 bytes an estate).
    return format_line_once(ESTATE_SCORE, tags, fields, ts_ms)


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


class _Graded(NamedTuple):
    district: str
    street: str
    grade: Grade


class ScoredPoints(NamedTuple):
    lines: list[str]
    estates: int  # how many were scored


def scored_points(
    estates: Iterable[EstateFacts],
    source: AlertSource,
    now_ms: int,
    config: ScoreConfig,
    city_rows: bool = True,
) -> ScoredPoints:
    """The points of one computation over ``estates``, each estate scored in turn: only
    its line and its grade are kept, not its card (lines, open alerts), so a district's
    estates never hold their cards all at once.  The same lines as ``score_lines`` of
    those cards and their distributions.  ``city_rows`` False leaves out the district and
    city rows (street "all"): over some streets' estates they would be partial."""
    since = window_start_ms(now_ms, config)
    lines: list[str] = []
    graded: list[_Graded] = []
    for estate in estates:
        card = score_estate(estate, source.list_for_estate(estate.estate.id, since), now_ms, config)
        lines.append(estate_score_line(card, now_ms))
        graded.append(_Graded(card.district, card.street, card.grade))
    if graded:
        targets = config.targets_at(now_ms).targets
        lines += [
            grade_distribution_line(d, now_ms)
            for d in distributions(graded, targets)
            if city_rows or d.street != ALL
        ]
    return ScoredPoints(lines, len(graded))


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
