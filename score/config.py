"""Every weight and threshold of the estate safety score, in one place.

The defaults below are the documented configuration (``docs/score.md`` explains each and
why).  A TOML file may override any of them: top-level keys are the field names, the
mappings are tables, e.g.::

    window_days = 60
    [family_weights]
    lift = 40
    [targets.2025]
    dabiao_or_better = 97

Unknown keys and values of the wrong type are refused with the key named.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from jiayuan.catalogue import Kind

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Targets:
    """A year's district targets, in % of estates (Songjiang scheme, 2022)."""

    dabiao_or_better: float
    guifan_or_better: float  # "规范小区占比": 规范 and 示范 together (see docs/score.md)
    shifan: float


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ScoreConfig:
    # Share of the estate score per family; families the estate has no device of are left
    # out and the others' weights rescaled.
    family_weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {
                Kind.LIFT.value: 30.0,
                Kind.FIRE.value: 30.0,
                Kind.WATER_TANK.value: 15.0,
                Kind.EBIKE_CHARGER.value: 15.0,
                Kind.WATERLOGGING.value: 10.0,
            }
        )
    )
    # Recent = raised within this many days before the computation time.
    window_days: float = 30.0
    # Penalties in points of the family's 0-100 sub-score.
    open_critical_points: float = 25.0  # per critical alert not yet resolved
    open_critical_max: float = 50.0
    recent_critical_points: float = 3.0  # per critical alert raised in the window
    recent_critical_max: float = 15.0
    open_other_points: float = 2.0  # per other open alert (high, warning)
    open_other_max: float = 10.0
    late_ack_max: float = 15.0  # × share of due alerts acknowledged after the deadline
    late_resolve_max: float = 15.0  # × share of due alerts resolved after the deadline
    offline_max: float = 40.0  # × share of the family's devices offline now
    detector_max: float = 20.0  # × share of devices with a stuck or drifting sensor now
    inspection_points: float = 10.0  # per device overdue for its periodic inspection
    inspection_max: float = 40.0
    assessment_points: float = 15.0  # per lift 15+ years old without a safety assessment
    assessment_max: float = 30.0
    charging_max: float = 40.0  # × shortfall of ports per 100 households below target
    # Days between periodic inspections per family (after which one is overdue).
    inspection_interval_days: Mapping[str, int] = field(
        default_factory=lambda: _frozen(
            {
                Kind.LIFT.value: 365,
                Kind.FIRE.value: 365,
                Kind.WATER_TANK.value: 183,
                Kind.EBIKE_CHARGER.value: 365,
                Kind.WATERLOGGING.value: 365,
            }
        )
    )
    lift_assessment_age_years: int = 15
    lift_assessment_grace_days: int = 90
    charging_ports_per_100_households: float = 5.0
    # Grade bands (lower bounds of the score).
    shifan_from: float = 95.0
    guifan_from: float = 85.0
    dabiao_from: float = 65.0
    # The year whose district targets the distribution is judged against; None: the year
    # of the computation time (in Shanghai).
    target_year: int | None = None
    # The years the Songjiang scheme sets (二、工作目标); a later year keeps the latest set
    # year's targets until a [targets.YEAR] table sets its own.
    targets: Mapping[int, Targets] = field(
        default_factory=lambda: _frozen(
            {2023: Targets(90.0, 40.0, 5.0), 2024: Targets(95.0, 50.0, 8.0)}
        )
    )

    def __post_init__(self) -> None:
        problems = []
        if not self.dabiao_from < self.guifan_from < self.shifan_from <= 100:
            problems.append("grade bands must rise: dabiao_from < guifan_from < shifan_from <= 100")
        if not self.targets:
            problems.append("targets: no year has targets")
        elif self.target_year is not None and self.target_year < min(self.targets):
            problems.append(
                f"target_year {self.target_year} is before the first year with targets "
                f"({', '.join(map(str, sorted(self.targets)))})"
            )
        for name, weight in self.family_weights.items():
            if name not in {k.value for k in Kind} or weight < 0:
                problems.append(f"family_weights.{name}: unknown family or negative weight")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                problems.append(f"{f.name}: {value} is negative")
        if problems:
            raise ValueError("score configuration: " + "; ".join(problems))

    def targets_for(self, year: int) -> YearTargets:
        """The targets ``year`` is judged against: its own, else the latest earlier year's
        (the first year's for a year before every set one)."""
        earlier = [y for y in self.targets if y <= year]
        set_for = max(earlier) if earlier else min(self.targets)
        return YearTargets(year, set_for, self.targets[set_for])

    def targets_at(self, now_ms: int) -> YearTargets:
        """The configured year's targets, else those of the year of ``now_ms`` in Shanghai."""
        if self.target_year is not None:
            return self.targets_for(self.target_year)
        return self.targets_for(datetime.fromtimestamp(now_ms / 1000, SHANGHAI).year)


@dataclass(frozen=True)
class YearTargets:
    """The targets a year is judged against, and the year that set them."""

    year: int
    set_for: int  # == year when the year has its own targets
    targets: Targets

    def describe(self) -> str:
        """The year in words: "目标年份 target year 2026 (2024's targets, the latest set)"."""
        text = f"目标年份 target year {self.year}"
        if self.set_for < self.year:
            return text + f" (沿用 {self.set_for} 年目标 {self.set_for}'s targets, the latest set)"
        if self.set_for > self.year:
            return text + f" (沿用 {self.set_for} 年目标 {self.set_for}'s targets, the first set)"
        return text


def load_score_config(path: str | Path | None = None) -> ScoreConfig:
    """The defaults, overridden by the TOML file at ``path`` when given."""
    config = ScoreConfig()
    if path is None:
        return config
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: cannot read the score configuration: {error}") from None
    known = {f.name: f for f in fields(ScoreConfig)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
        default = getattr(config, key)
        if key == "targets":
            changes[key] = _targets(where, value, default)
        elif isinstance(default, Mapping):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key} must be a table")
            merged = dict(default)
            for name, number in value.items():
                merged[name] = _number(
                    f"{where}: {key}.{name}", number, type(default.get(name, 0.0))
                )
            changes[key] = _frozen(merged)
        else:
            kind = int if key == "target_year" else type(default)
            changes[key] = _number(f"{where}: {key}", value, kind)
    try:
        return replace(config, **changes)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _number(where: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {value!r} is not a number")
    if kind is int and not float(value).is_integer():
        raise ValueError(f"{where}: {value!r} is not a whole number")
    return kind(value)


def _targets(where: str, value: Any, default: Mapping[int, Targets]) -> Mapping[int, Targets]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: targets must be a table of years")
    merged = dict(default)
    for year_text, numbers in value.items():
        if not str(year_text).isdigit() or not isinstance(numbers, dict):
            raise ValueError(f"{where}: targets.{year_text} must be a year with a table")
        year = int(year_text)
        base = merged.get(year, Targets(0.0, 0.0, 0.0))
        known = {f.name for f in fields(Targets)}
        for name in numbers:
            if name not in known:
                raise ValueError(f"{where}: targets.{year}.{name} is unknown; known: {known}")
        merged[year] = replace(
            base,
            **{n: _number(f"{where}: targets.{year}.{n}", v, float) for n, v in numbers.items()},
        )
    return _frozen(merged)
