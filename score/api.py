"""The estate safety score over HTTP: estates with score and grade, one estate's breakdown
and open alerts, district and street distributions against the targets, company ranking.

Scores are computed on request from the registry and the alert store, so they are always
current; the registry is read one estate at a time (``RegistryStore.estate_upkeep``), not
loaded whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from alerts.model import Alert
from jiayuan.api_auth import Caller, Role, current_caller
from jiayuan.registry.store import RegistryStore
from score.companies import CompanyRanking
from score.config import ScoreConfig, YearTargets
from score.estate import (
    AlertSource,
    ScoreCard,
    ScoreLine,
    ScoreReport,
    report_of,
    score_estate,
    window_start_ms,
)
from score.grades import ALL, Distribution, Grade

CallerDep = Annotated[Caller, Depends(current_caller)]
# Aggregates over many estates: for the operations centre and viewers, not for one
# property manager (who sees its own estates' scores under /score/estates).
AGGREGATE_ROLES = (Role.OPS_CENTRE, Role.VIEWER)


class EstateScoreOut(BaseModel):
    estate: str
    name_zh: str
    district: str
    street: str
    company: str
    score: float
    grade: str  # 示范 / 规范 / 达标 / 不达标
    grade_en: str
    grade_level: int
    capped: bool
    cap_reason: str
    families: dict[str, float]
    lat: float
    lon: float


class LineOut(BaseModel):
    family: str
    indicator: str
    label: str
    value: str
    penalty: float
    impact: float
    why: str


class OpenAlertOut(BaseModel):
    id: str
    code: str
    severity: str
    title: str
    state: str
    device: str
    building: str
    created_ms: int
    ack_deadline_ms: int
    resolve_deadline_ms: int


class EstateBreakdownOut(EstateScoreOut):
    score_grade: str  # what the score alone earns, before a cap
    computed_ms: int
    lines: list[LineOut]
    open_alerts: list[OpenAlertOut]


class DistributionOut(BaseModel):
    district: str
    street: str
    estates: int
    grades: dict[str, int]  # 示范 / 规范 / 达标 / 不达标 → estates
    pct_dabiao_or_better: float
    pct_guifan_or_better: float
    pct_shifan: float
    target_dabiao_or_better: float
    target_guifan: float
    target_shifan: float
    target_year: int  # the year judged
    targets_set_for: int  # the year whose targets those are (the latest set, after 2024)
    meets_targets: bool
    shortfalls: list[str]


class CompanyOut(BaseModel):
    rank: int
    company: str
    name_zh: str
    estates: int
    mean_score: float
    min_score: float
    grades: dict[str, int]
    eligible: bool
    top_ten: bool
    reason: str


class DistrictSummaryOut(BaseModel):
    district: DistributionOut
    streets: list[DistributionOut]


def estate_out(card: ScoreCard) -> EstateScoreOut:
    return EstateScoreOut(
        estate=card.estate,
        name_zh=card.name_zh,
        district=card.district,
        street=card.street,
        company=card.company,
        score=card.score,
        grade=card.grade.zh,
        grade_en=card.grade.en,
        grade_level=card.grade.level,
        capped=card.capped,
        cap_reason=card.cap_reason,
        families=dict(card.families),
        lat=card.lat,
        lon=card.lon,
    )


def line_out(line: ScoreLine) -> LineOut:
    return LineOut(
        family=line.family,
        indicator=line.indicator,
        label=line.label,
        value=line.value,
        penalty=line.penalty,
        impact=line.impact,
        why=line.why,
    )


def alert_out(alert: Alert) -> OpenAlertOut:
    return OpenAlertOut(
        id=alert.id,
        code=alert.code,
        severity=alert.severity,
        title=alert.title,
        state=alert.state.value,
        device=alert.device,
        building=alert.building,
        created_ms=alert.created_ms,
        ack_deadline_ms=alert.ack_deadline_ms,
        resolve_deadline_ms=alert.resolve_deadline_ms,
    )


def breakdown_out(card: ScoreCard) -> EstateBreakdownOut:
    return EstateBreakdownOut(
        **estate_out(card).model_dump(),
        score_grade=card.score_grade.zh,
        computed_ms=card.computed_ms,
        lines=[line_out(line) for line in card.lines],
        open_alerts=[alert_out(a) for a in card.open_alerts],
    )


def distribution_out(d: Distribution, year: YearTargets) -> DistributionOut:
    return DistributionOut(
        district=d.district,
        street=d.street,
        estates=d.estates,
        grades={g.zh: d.counts.get(g, 0) for g in Grade},
        pct_dabiao_or_better=round(d.pct_dabiao_or_better, 2),
        pct_guifan_or_better=round(d.pct_guifan_or_better, 2),
        pct_shifan=round(d.pct_shifan, 2),
        target_dabiao_or_better=d.targets.dabiao_or_better,
        target_guifan=d.targets.guifan_or_better,
        target_shifan=d.targets.shifan,
        target_year=year.year,
        targets_set_for=year.set_for,
        meets_targets=d.meets_targets,
        shortfalls=d.shortfalls(),
    )


def company_out(c: CompanyRanking) -> CompanyOut:
    return CompanyOut(
        rank=c.rank,
        company=c.company,
        name_zh=c.name_zh,
        estates=c.estates,
        mean_score=c.mean_score,
        min_score=c.min_score,
        grades={g.zh: c.grades.get(g, 0) for g in Grade},
        eligible=c.eligible,
        top_ten=c.top_ten,
        reason=c.reason,
    )


def _wall_ms() -> int:
    return int(time.time() * 1000)


def create_score_router(
    registry: RegistryStore,
    alerts: AlertSource,
    config: ScoreConfig | None = None,
    clock: Callable[[], int] = _wall_ms,
    streets: Collection[str] | None = None,
) -> APIRouter:
    """Routes under ``/score``; ``clock`` gives the computation time (epoch ms).

    ``streets``: the streets this gateway owns (None: every one).  Its alert store holds
    only their alerts, so it scores only their estates, and refuses the district, city
    and company figures, which need every street."""
    settings = config or ScoreConfig()
    router = APIRouter(prefix="/score", tags=["score"])

    def report() -> ScoreReport:
        estates = registry.estate_upkeep(streets)
        return report_of(estates, registry.company_names(), alerts, clock(), settings)

    def require_every_street(what: str) -> None:
        if streets is not None:
            raise HTTPException(
                409,
                f"{what} need every street; this gateway instance owns "
                f"{', '.join(sorted(streets))} only (docs/scaling.md)",
            )

    @router.get("/estates", response_model=list[EstateScoreOut])
    def list_scores(
        caller: CallerDep,
        district: str = "",
        street: str = "",
        company: str = "",
        grade: str = "",
    ) -> list[EstateScoreOut]:
        """Every estate's score and grade (grade filter: 示范, 规范, 达标 or 不达标)."""
        return [
            estate_out(c)
            for c in report().cards
            if (not district or c.district == district)
            and (not street or c.street == street)
            and (not company or c.company == company)
            and (not grade or grade in (c.grade.zh, c.grade.key))
            and caller.reaches(c.street, c.estate)
        ]

    @router.get("/estates/{estate_id}", response_model=EstateBreakdownOut)
    def estate_breakdown(estate_id: str, caller: CallerDep) -> EstateBreakdownOut:
        """One estate: the score line by line, and its alerts not yet resolved."""
        record = next(registry.estate_upkeep(estate=estate_id), None)
        if record is None:
            raise HTTPException(404, f"no estate {estate_id!r} in the registry")
        caller.require_reach(record.estate.street, estate_id, "the estate")
        if streets is not None and record.estate.street not in streets:
            raise HTTPException(
                404,
                f"estate {estate_id!r} is on street {record.estate.street!r}, which another "
                "gateway instance owns (docs/scaling.md)",
            )
        now = clock()
        since = window_start_ms(now, settings)
        card = score_estate(record, alerts.list_for_estate(estate_id, since), now, settings)
        return breakdown_out(card)

    @router.get("/districts", response_model=list[DistributionOut])
    def district_summaries(caller: CallerDep) -> list[DistributionOut]:
        """The city ("all") and every district, against the year's targets."""
        caller.require_role(AGGREGATE_ROLES, "district summaries")
        require_every_street("district summaries")
        done = report()
        return [distribution_out(d, done.targets) for d in done.distributions if d.street == ALL]

    @router.get("/districts/{district}", response_model=DistrictSummaryOut)
    def district_summary(district: str, caller: CallerDep) -> DistrictSummaryOut:
        """One district and each of its streets."""
        caller.require_role(AGGREGATE_ROLES, "district summaries")
        require_every_street("district summaries")
        done = report()
        found = [d for d in done.distributions if d.district == district]
        if not found:
            raise HTTPException(404, f"no estate in district {district!r}")
        return DistrictSummaryOut(
            district=distribution_out(next(d for d in found if d.street == ALL), done.targets),
            streets=[distribution_out(d, done.targets) for d in found if d.street != ALL],
        )

    @router.get("/companies", response_model=list[CompanyOut])
    def company_ranking(caller: CallerDep) -> list[CompanyOut]:
        """Property companies by mean score; top_ten marks the scheme's ten best."""
        caller.require_role(AGGREGATE_ROLES, "the company ranking")
        require_every_street("company rankings")
        return [company_out(c) for c in report().companies]

    return router
