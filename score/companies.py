"""Property companies ranked by their estates' scores, with the scheme's top-ten rule.

Songjiang's scheme (2022): a company enters the "ten best property companies" list only if
at least one estate it serves is graded 示范 and none is graded 不达标; the ten best of
those are named.  Here "best" is the mean score of its estates (ties: more estates first,
then id).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from score.grades import Grade

TOP = 10


class CompanyEstate(Protocol):
    """What the ranking needs of one estate's result (a ScoreCard has it)."""

    @property
    def company(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def grade(self) -> Grade: ...


@dataclass(frozen=True)
class CompanyRanking:
    rank: int  # 1 = highest mean score, over all companies
    company: str
    name_zh: str
    estates: int
    mean_score: float
    min_score: float
    grades: Mapping[Grade, int]
    eligible: bool  # may enter the top ten: ≥1 示范 and no 不达标
    top_ten: bool
    reason: str  # why not eligible, in words; empty when eligible


def rank_companies(
    results: Iterable[CompanyEstate], names: Mapping[str, str]
) -> list[CompanyRanking]:
    by_company: dict[str, list[CompanyEstate]] = defaultdict(list)
    for result in results:
        by_company[result.company].append(result)
    rows = []
    for company, estates in by_company.items():
        counts = dict.fromkeys(Grade, 0)
        for estate in estates:
            counts[estate.grade] += 1
        reasons = []
        if not counts[Grade.SHIFAN]:
            reasons.append("无示范小区 no exemplary estate")
        if counts[Grade.BUDABIAO]:
            reasons.append(f"{counts[Grade.BUDABIAO]} 个不达标小区 non-compliant estate(s)")
        scores = [e.score for e in estates]
        rows.append((company, statistics.fmean(scores), min(scores), counts, "; ".join(reasons)))
    rows.sort(key=lambda row: (-row[1], -sum(row[3].values()), row[0]))
    ranking = []
    top_left = TOP
    for rank, (company, mean, low, counts, reason) in enumerate(rows, start=1):
        eligible = not reason
        top = eligible and top_left > 0
        top_left -= top
        ranking.append(
            CompanyRanking(
                rank=rank,
                company=company,
                name_zh=names.get(company, company),
                estates=sum(counts.values()),
                mean_score=round(mean, 2),
                min_score=low,
                grades=counts,
                eligible=eligible,
                top_ten=top,
                reason=reason,
            )
        )
    return ranking
