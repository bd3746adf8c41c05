"""Grade bands, the district/street distribution against the targets and the top-ten rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from score.companies import rank_companies
from score.config import ScoreConfig
from score.grades import ALL, Grade, distributions, grade_for_score


@dataclass(frozen=True)
class Result:
    estate: str
    district: str
    street: str
    company: str
    score: float
    grade: Grade


def test_bands() -> None:
    config = ScoreConfig()
    assert grade_for_score(100, config) is Grade.SHIFAN
    assert grade_for_score(95, config) is Grade.SHIFAN
    assert grade_for_score(94.99, config) is Grade.GUIFAN
    assert grade_for_score(85, config) is Grade.GUIFAN
    assert grade_for_score(84.9, config) is Grade.DABIAO
    assert grade_for_score(65, config) is Grade.DABIAO
    assert grade_for_score(64.9, config) is Grade.BUDABIAO


def test_distribution_by_city_district_and_street_against_2023_and_2024_targets() -> None:
    grades = [Grade.SHIFAN] + [Grade.GUIFAN] * 9 + [Grade.DABIAO] * 9 + [Grade.BUDABIAO]
    results = [
        Result(f"e{n}", "songjiang", "yongfeng" if n < 10 else "sijing", "c", 0, g)
        for n, g in enumerate(grades)
    ] + [Result("x1", "minhang", "qibao", "c", 0, Grade.SHIFAN)]
    city, minhang, qibao, songjiang, sijing, yongfeng = distributions(
        results, ScoreConfig().targets_for(2024).targets
    )
    assert (city.district, city.street, city.estates) == (ALL, ALL, 21)
    assert (songjiang.district, songjiang.street) == ("songjiang", ALL)
    assert (minhang.street, qibao.street) == (ALL, "qibao")
    assert (sijing.street, yongfeng.street, minhang.district) == ("sijing", "yongfeng", "minhang")
    assert songjiang.pct_dabiao_or_better == 95.0
    assert songjiang.pct_guifan_or_better == 50.0
    assert songjiang.pct_shifan == 5.0
    # 2024: 95 / 50 / 8 — only the exemplary share falls short.
    assert songjiang.shortfalls() == ["示范 exemplary: 5.0% < 8%"]
    assert not songjiang.meets_targets
    (songjiang_2023,) = [
        d
        for d in distributions(results, ScoreConfig().targets_for(2023).targets)
        if d.district == "songjiang" and d.street == ALL
    ]
    assert songjiang_2023.targets.dabiao_or_better == 90 and songjiang_2023.meets_targets
    assert yongfeng.counts[Grade.SHIFAN] == 1 and yongfeng.counts[Grade.GUIFAN] == 9
    assert sijing.counts[Grade.BUDABIAO] == 1 and sijing.pct_dabiao_or_better == 90.0
    assert minhang.pct_shifan == 100.0


def test_top_ten_needs_a_shifan_estate_and_no_budabiao_estate() -> None:
    results = [
        # Highest mean, but one non-compliant estate: not eligible.
        Result("a1", "d", "s", "alpha", 99, Grade.SHIFAN),
        Result("a2", "d", "s", "alpha", 99, Grade.SHIFAN),
        Result("a3", "d", "s", "alpha", 60, Grade.BUDABIAO),
        # Good everywhere but never exemplary: not eligible.
        Result("b1", "d", "s", "beta", 94, Grade.GUIFAN),
        Result("b2", "d", "s", "beta", 94, Grade.GUIFAN),
    ]
    # Twelve eligible companies with falling means: only ten make the list.
    for n in range(12):
        results.append(Result(f"g{n}", "d", "s", f"good{n:02d}", 95 - n, Grade.SHIFAN))
        results.append(Result(f"h{n}", "d", "s", f"good{n:02d}", 75, Grade.DABIAO))
    ranking = rank_companies(results, {"alpha": "阿尔法物业"})
    by_id = {r.company: r for r in ranking}
    assert by_id["alpha"].rank == 2 and not by_id["alpha"].eligible
    assert "不达标" in by_id["alpha"].reason and by_id["alpha"].name_zh == "阿尔法物业"
    assert by_id["beta"].rank == 1 and not by_id["beta"].eligible
    assert "无示范小区" in by_id["beta"].reason
    top = [r.company for r in ranking if r.top_ten]
    assert top == [f"good{n:02d}" for n in range(10)]
    assert by_id["good10"].eligible and not by_id["good10"].top_ten
    assert by_id["good00"].mean_score == pytest.approx(85.0)
    assert by_id["good00"].grades[Grade.SHIFAN] == 1 and by_id["good00"].estates == 2
