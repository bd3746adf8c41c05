"""Songjiang grades (示范 / 规范 / 达标 / 不达标) and their distribution against the targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from score.config import ScoreConfig, Targets

ALL = "all"  # district or street value meaning "every one" in a distribution


class Grade(Enum):
    """The four grades; ``level`` orders them (3 best), ``key`` is the pinyin field name."""

    SHIFAN = ("示范", 3, "shifan", "exemplary")
    GUIFAN = ("规范", 2, "guifan", "well-run")
    DABIAO = ("达标", 1, "dabiao", "compliant")
    BUDABIAO = ("不达标", 0, "budabiao", "non-compliant")

    def __init__(self, zh: str, level: int, key: str, en: str) -> None:
        self.zh = zh
        self.level = level
        self.key = key
        self.en = en

    @property
    def label(self) -> str:
        return f"{self.zh} {self.en}"

    @classmethod
    def from_level(cls, level: int) -> Grade:
        return next(g for g in cls if g.level == level)


def grade_for_score(score: float, config: ScoreConfig) -> Grade:
    if score >= config.shifan_from:
        return Grade.SHIFAN
    if score >= config.guifan_from:
        return Grade.GUIFAN
    if score >= config.dabiao_from:
        return Grade.DABIAO
    return Grade.BUDABIAO


def capped(grade: Grade, cap: Grade | None) -> Grade:
    """``grade``, lowered to ``cap`` when a cap applies."""
    if cap is None or grade.level <= cap.level:
        return grade
    return cap


class GradedEstate(Protocol):
    """What a distribution needs of one estate's result (a ScoreCard has it)."""

    @property
    def district(self) -> str: ...
    @property
    def street(self) -> str: ...
    @property
    def grade(self) -> Grade: ...


@dataclass(frozen=True)
class Distribution:
    district: str  # ALL for the whole city
    street: str  # ALL for the whole district
    counts: Mapping[Grade, int]
    targets: Targets

    @property
    def estates(self) -> int:
        return sum(self.counts.values())

    def pct(self, at_least: Grade) -> float:
        """% of estates graded ``at_least`` or better."""
        if not self.estates:
            return 0.0
        good = sum(n for grade, n in self.counts.items() if grade.level >= at_least.level)
        return 100.0 * good / self.estates

    @property
    def pct_dabiao_or_better(self) -> float:
        return self.pct(Grade.DABIAO)

    @property
    def pct_guifan_or_better(self) -> float:
        return self.pct(Grade.GUIFAN)

    @property
    def pct_shifan(self) -> float:
        return self.pct(Grade.SHIFAN)

    def shortfalls(self) -> list[str]:
        """Each target missed, in words (empty when all are met)."""
        checks = (
            (
                "达标及以上 compliant or better",
                self.pct_dabiao_or_better,
                self.targets.dabiao_or_better,
            ),
            (
                "规范及以上 well-run or better",
                self.pct_guifan_or_better,
                self.targets.guifan_or_better,
            ),
            ("示范 exemplary", self.pct_shifan, self.targets.shifan),
        )
        return [f"{name}: {have:.1f}% < {want:g}%" for name, have, want in checks if have < want]

    @property
    def meets_targets(self) -> bool:
        return not self.shortfalls()


def distributions(graded: Iterable[GradedEstate], targets: Targets) -> list[Distribution]:
    """The city, then each district, then each of its streets (sorted by id)."""
    groups: dict[tuple[str, str], dict[Grade, int]] = {}
    for item in graded:
        for key in ((ALL, ALL), (item.district, ALL), (item.district, item.street)):
            counts = groups.setdefault(key, dict.fromkeys(Grade, 0))
            counts[item.grade] += 1
    if not groups:
        groups[(ALL, ALL)] = dict.fromkeys(Grade, 0)

    def order(key: tuple[str, str]) -> tuple[bool, str, bool, str]:
        return (key[0] != ALL, key[0], key[1] != ALL, key[1])

    return [Distribution(d, s, groups[(d, s)], targets) for d, s in sorted(groups, key=order)]
