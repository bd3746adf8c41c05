"""The estate safety score: 0-100 per estate, with a breakdown anyone can check by hand.

``score_estate(record, alerts, now_ms, config)`` is a pure function of the registry's facts
about one estate (an ``EstateRecord`` of a loaded registry, or the ``EstateUpkeep`` the
registry store reads without loading it), the estate's alerts and the time.  Each family
of equipment (lift, fire, water tank, e-bike charging, waterlogging) starts at 100 and
loses points per indicator; the estate score is the weighted mean of its families'
sub-scores.  Every indicator yields one ``ScoreLine`` (what was measured, the points it
cost the family and the estate, and why), so the lines add up exactly to 100 minus the
score.  ``docs/score.md`` explains the
indicators, weights and grade caps.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol

from alerts.model import Alert, AlertState
from jiayuan.catalogue import Kind, Severity
from jiayuan.registry.model import Registry, years_after
from score.companies import CompanyRanking, rank_companies
from score.config import ScoreConfig, YearTargets
from score.grades import Distribution, Grade, capped, distributions, grade_for_score

SHANGHAI = timezone(timedelta(hours=8))
_DAY_MS = 86_400_000
_STILL_OPEN = frozenset({AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.DISPATCHED})


class AlertSource(Protocol):
    """Where the score reads alerts (``alerts.store.AlertStore`` has this method).

    It must return every alert of the estate that is not terminal, plus the terminal ones
    created at or after ``since_ms``.
    """

    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]: ...


class EstateNames(Protocol):
    """An estate's names and place (``Estate`` and ``EstateHeading`` have them)."""

    @property
    def id(self) -> str: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def district(self) -> str: ...
    @property
    def street(self) -> str: ...
    @property
    def company(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


class DeviceFacts(Protocol):
    """What the score reads of a device (``Device`` and ``DeviceUpkeep`` have it)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def installed(self) -> date: ...
    @property
    def last_inspection(self) -> date | None: ...
    @property
    def last_assessment(self) -> date | None: ...
    @property
    def ports(self) -> int: ...


class EstateFacts(Protocol):
    """What the score reads of an estate (``EstateRecord`` and ``EstateUpkeep`` have it)."""

    @property
    def estate(self) -> EstateNames: ...
    @property
    def devices(self) -> Sequence[DeviceFacts]: ...
    @property
    def households(self) -> int: ...


@dataclass(frozen=True)
class ScoreLine:
    family: str  # a Kind value
    indicator: str  # stable id, e.g. "open_critical"
    label: str  # Chinese first, English beside it
    value: str  # what was measured, in words
    penalty: float  # points off the family's 0-100 sub-score
    impact: float  # points off the estate score (penalty × the family's share of weight)
    why: str


@dataclass(frozen=True)
class ScoreCard:
    estate: str
    name_zh: str
    district: str
    street: str
    company: str
    lat: float
    lon: float
    score: float
    score_grade: Grade  # what the score alone earns
    grade: Grade  # after the cap
    capped: bool  # an unresolved critical fault lowered the grade
    cap_reason: str
    families: Mapping[str, float]  # sub-score per family the estate has
    lines: tuple[ScoreLine, ...]
    open_alerts: tuple[Alert, ...]
    computed_ms: int


def score_estate(
    record: EstateFacts, alerts: Iterable[Alert], now_ms: int, config: ScoreConfig
) -> ScoreCard:
    """The estate's score card at ``now_ms`` (wall clock, epoch ms)."""
    today = datetime.fromtimestamp(now_ms / 1000, SHANGHAI).date()
    window_start = window_start_ms(now_ms, config)
    live = [a for a in alerts if a.state is not AlertState.CANCELLED and a.created_ms <= now_ms]
    open_now = [a for a in live if _unresolved(a, now_ms)]
    by_family: dict[str, list[DeviceFacts]] = {}  # registry order within each family
    for device in record.devices:
        by_family.setdefault(device.kind.value, []).append(device)
    kinds = by_family.keys() | {a.kind for a in live}
    families = [
        k.value for k in Kind if k.value in kinds and config.family_weights.get(k.value, 0) > 0
    ]
    total_weight = sum(config.family_weights[f] for f in families) or 1.0
    lines: list[ScoreLine] = []
    sub_scores: dict[str, float] = {}
    for family in families:
        share = config.family_weights[family] / total_weight
        family_alerts = [a for a in live if a.kind == family]
        found = _family_lines(
            family,
            family_alerts,
            by_family.get(family, []),
            record,
            now_ms,
            window_start,
            today,
            config,
        )
        lost = sum(p for _, _, p, _ in found)
        if lost > 100:
            found.append(("floor", "下限 floor", 100 - lost, "a sub-score does not go below 0"))
        for indicator, value, penalty, why in found:
            lines.append(
                ScoreLine(
                    family,
                    indicator,
                    _LABELS.get(indicator, indicator),
                    value,
                    round(penalty, 3),
                    round(penalty * share, 3),
                    why,
                )
            )
        sub_scores[family] = round(100 - min(100.0, lost), 2)
    score = round(sum(sub_scores[f] * config.family_weights[f] for f in families) / total_weight, 2)
    if not families:
        score = 100.0
    score_grade = grade_for_score(score, config)
    cap, cap_reason = _cap(open_now, now_ms)
    grade = capped(score_grade, cap)
    return ScoreCard(
        estate=record.estate.id,
        name_zh=record.estate.name_zh,
        district=record.estate.district,
        street=record.estate.street,
        company=record.estate.company,
        lat=record.estate.lat,
        lon=record.estate.lon,
        score=score,
        score_grade=score_grade,
        grade=grade,
        capped=grade is not score_grade,
        cap_reason=cap_reason if grade is not score_grade else "",
        families=sub_scores,
        lines=tuple(lines),
        open_alerts=tuple(sorted(open_now, key=lambda a: a.created_ms)),
        computed_ms=now_ms,
    )


def score_registry(
    registry: Registry,
    source: AlertSource,
    now_ms: int,
    config: ScoreConfig,
    estates: Sequence[str] | None = None,
) -> list[ScoreCard]:
    """Score cards for every estate of the registry (or the ones named), registry order."""
    since = window_start_ms(now_ms, config)
    wanted = registry.records() if estates is None else [registry.record(e) for e in estates]
    return [
        score_estate(r, source.list_for_estate(r.estate.id, since), now_ms, config) for r in wanted
    ]


def window_start_ms(now_ms: int, config: ScoreConfig) -> int:
    """Alerts created from here on count as recent (and ended ones are still read)."""
    return now_ms - int(config.window_days * _DAY_MS)


_LABELS: Mapping[str, str] = {
    "open_critical": "未解决的紧急告警 unresolved critical alerts",
    "recent_critical": "近期紧急告警 recent critical alerts",
    "open_other": "其他未解决告警 other unresolved alerts",
    "late_ack": "确认超时 acknowledged late",
    "late_resolve": "处置超时 resolved late",
    "offline": "设备离线 devices offline",
    "detector": "传感器异常 sensors stuck or drifting",
    "inspection": "年检逾期 inspection overdue",
    "assessment": "15年安全评估逾期 15-year lift assessment overdue",
    "charging": "充电端口不足 charging ports short",
}

_Found = tuple[str, str, float, str]  # indicator, value, penalty, why


def _family_lines(
    family: str,
    alerts: Sequence[Alert],
    devices: Sequence[DeviceFacts],
    record: EstateFacts,
    now_ms: int,
    window_start: int,
    today: date,
    c: ScoreConfig,
) -> list[_Found]:
    critical = [a for a in alerts if a.severity == Severity.CRITICAL.value]
    open_critical = [a for a in critical if _unresolved(a, now_ms)]
    recent_critical = [a for a in critical if a.created_ms >= window_start]
    health = {f"{family}.offline", f"{family}.stuck", f"{family}.drift"}
    open_other = [
        a
        for a in alerts
        if a.severity != Severity.CRITICAL.value and a.code not in health and _unresolved(a, now_ms)
    ]
    offline = {a.device for a in alerts if a.code == f"{family}.offline" and _unresolved(a, now_ms)}
    sensors = {
        a.device
        for a in alerts
        if a.code in (f"{family}.stuck", f"{family}.drift") and _unresolved(a, now_ms)
    }
    n_devices = max(len(devices), len(offline | sensors), 1)
    recent = [a for a in alerts if a.created_ms >= window_start]
    found: list[_Found] = [
        _count(
            "open_critical",
            open_critical,
            c.open_critical_points,
            c.open_critical_max,
            "a critical fault not yet resolved is a present danger to residents",
        ),
        _count(
            "recent_critical",
            recent_critical,
            c.recent_critical_points,
            c.recent_critical_max,
            f"critical faults raised in the last {c.window_days:g} days show a recurring risk",
        ),
        _count(
            "open_other",
            open_other,
            c.open_other_points,
            c.open_other_max,
            "faults not yet resolved, high or warning severity",
        ),
        _late(
            "late_ack",
            recent,
            now_ms,
            c.late_ack_max,
            lambda a: a.ack_deadline_ms,
            _acknowledged_ms,
            "acknowledge",
        ),
        _late(
            "late_resolve",
            recent,
            now_ms,
            c.late_resolve_max,
            lambda a: a.resolve_deadline_ms,
            _ended_ms,
            "resolve",
        ),
        (
            "offline",
            f"{len(offline)} of {n_devices} offline, "
            f"online rate {100 * (1 - len(offline) / n_devices):.0f}%",
            c.offline_max * len(offline) / n_devices,
            "an offline monitor cannot warn of a fault; counted once here, not again "
            "under sensor health",
        ),
        (
            "detector",
            f"{len(sensors)} of {n_devices} with a stuck or drifting sensor",
            c.detector_max * len(sensors) / n_devices,
            "a stuck or drifting sensor reports a value that is not the truth",
        ),
    ]
    interval = c.inspection_interval_days.get(family, 365)
    overdue = [d for d in devices if _inspection_overdue(d, today, interval)]
    if devices:
        found.append(
            (
                "inspection",
                f"{len(overdue)} of {len(devices)} overdue (every {interval} days)"
                + _names(overdue),
                min(c.inspection_max, c.inspection_points * len(overdue)),
                "periodic inspection is required by law; 100% timely inspection is the "
                "city's target",
            )
        )
    if family == Kind.LIFT.value and devices:
        due = [d for d in devices if _assessment_due(d, today, c)]
        missing = [d for d in due if not _assessed(d, c)]
        found.append(
            (
                "assessment",
                f"{len(missing)} of {len(devices)} lifts past {c.lift_assessment_age_years} "
                f"years without a safety assessment ({len(due)} past that age)" + _names(missing),
                min(c.assessment_max, c.assessment_points * len(missing)),
                f"lifts in use for {c.lift_assessment_age_years} years need a safety "
                "assessment; old lifts without one are the likeliest to trap people",
            )
        )
    if family == Kind.EBIKE_CHARGER.value and devices:
        ports = sum(d.ports for d in devices)
        households = record.households
        if households:
            per_100 = 100 * ports / households
            shortfall = max(0.0, 1 - per_100 / c.charging_ports_per_100_households)
            found.append(
                (
                    "charging",
                    f"{ports} ports for {households} households = {per_100:.1f} per 100 "
                    f"(target {c.charging_ports_per_100_households:g})",
                    c.charging_max * shortfall,
                    "too few safe charging ports push residents to charge indoors or in "
                    "stairwells, the main cause of e-bike fires",
                )
            )
    return found


def _count(indicator: str, alerts: Sequence[Alert], points: float, cap: float, why: str) -> _Found:
    codes = sorted({a.code for a in alerts})
    value = f"{len(alerts)}" + (f" ({', '.join(codes)})" if codes else "")
    return indicator, value, min(cap, points * len(alerts)), why


def _late(
    indicator: str,
    alerts: Sequence[Alert],
    now_ms: int,
    cap: float,
    deadline_of: Callable[[Alert], int],
    done_at: Callable[[Alert, int], int],
    verb: str,
) -> _Found:
    judged = 0
    late = 0
    delays: list[float] = []
    for alert in alerts:
        deadline = deadline_of(alert)
        if deadline <= 0:
            continue
        done = done_at(alert, now_ms)
        if done:
            delays.append((done - alert.created_ms) / 60_000)
        elif now_ms <= deadline:
            continue  # not done, not yet due: nothing to judge
        judged += 1
        if (done or now_ms) > deadline:
            late += 1
    median = f"; median {statistics.median(delays):.1f} min to {verb}" if delays else ""
    return (
        indicator,
        f"{late} of {judged} late{median}",
        cap * late / judged if judged else 0.0,
        f"the severity policy sets how soon an alert must be {verb}d; this is the share "
        f"of alerts of the last window that missed it",
    )


def _names(devices: Sequence[DeviceFacts]) -> str:
    if not devices:
        return ""
    shown = ", ".join(d.id for d in devices[:5])
    return f": {shown}" + (" …" if len(devices) > 5 else "")


def _ended_ms(alert: Alert, now_ms: int) -> int:
    """When the alert stopped needing work (resolved, closed, auto-resolved), if by now."""
    if alert.state in _STILL_OPEN:
        return 0
    for at in (alert.resolved_ms, alert.closed_ms, alert.updated_ms):
        if at:
            return at if at <= now_ms else 0
    return 0


def _acknowledged_ms(alert: Alert, now_ms: int) -> int:
    """When someone took the alert: acknowledged, dispatched or (first) ended it."""
    times = [t for t in (alert.acknowledged_ms, alert.dispatched_ms) if 0 < t <= now_ms]
    ended = _ended_ms(alert, now_ms)
    if ended:
        times.append(ended)
    return min(times, default=0)


def _unresolved(alert: Alert, now_ms: int) -> bool:
    return alert.created_ms <= now_ms and not _ended_ms(alert, now_ms)


def _inspection_overdue(device: DeviceFacts, today: date, interval_days: int) -> bool:
    last = device.last_inspection or device.installed
    return (today - last).days > interval_days


def _assessment_due(lift: DeviceFacts, today: date, c: ScoreConfig) -> bool:
    due = years_after(lift.installed, c.lift_assessment_age_years)
    return today > due + timedelta(days=c.lift_assessment_grace_days)


def _assessed(lift: DeviceFacts, c: ScoreConfig) -> bool:
    due = years_after(lift.installed, c.lift_assessment_age_years)
    return lift.last_assessment is not None and lift.last_assessment >= due - timedelta(days=365)


def _cap(open_now: Sequence[Alert], now_ms: int) -> tuple[Grade | None, str]:
    critical = [a for a in open_now if a.severity == Severity.CRITICAL.value]
    if not critical:
        return None, ""
    overdue = [a for a in critical if 0 < a.resolve_deadline_ms < now_ms]
    worst = overdue or critical
    codes = ", ".join(sorted({f"{a.code} {a.device}" for a in worst}))
    if overdue:
        return Grade.BUDABIAO, f"unresolved critical fault past its resolve deadline: {codes}"
    return Grade.DABIAO, f"unresolved critical fault: {codes}"


def day_ms(day: date) -> int:
    """Midnight at the start of ``day`` in Shanghai, epoch ms."""
    return int(
        datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC).timestamp() * 1000
    )


@dataclass(frozen=True)
class ScoreReport:
    """One computation over the whole registry: cards, distributions and the ranking."""

    computed_ms: int
    cards: tuple[ScoreCard, ...]
    distributions: tuple[Distribution, ...]
    companies: tuple[CompanyRanking, ...]
    targets: YearTargets  # what the distributions are judged against


def score_report(
    registry: Registry, source: AlertSource, now_ms: int, config: ScoreConfig
) -> ScoreReport:
    return report_of(registry.records(), registry.company_names(), source, now_ms, config)


def report_of(
    estates: Iterable[EstateFacts],
    company_names: Mapping[str, str],
    source: AlertSource,
    now_ms: int,
    config: ScoreConfig,
) -> ScoreReport:
    """The report over ``estates`` (records of a loaded registry, or the registry store's
    ``estate_upkeep``), in their order; ``company_names``: company id → name."""
    since = window_start_ms(now_ms, config)
    cards = [
        score_estate(e, source.list_for_estate(e.estate.id, since), now_ms, config) for e in estates
    ]
    targets = config.targets_at(now_ms)
    return ScoreReport(
        computed_ms=now_ms,
        cards=tuple(cards),
        distributions=tuple(distributions(cards, targets.targets)),
        companies=tuple(rank_companies(cards, company_names)),
        targets=targets,
    )
