"""``jiayuan score``: estate safety scores, grades, the distribution and the ranking.

Reads the registry (``[alerts] registry_db``, by default
``<gateway.state_dir>/registry.sqlite``) and the alert store
(``<gateway.state_dir>/alerts.sqlite``), or the files given with ``--registry`` and
``--alerts``.  ``--estate ID`` explains one estate's score line by line.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jiayuan.state import ALERTS_FILE

if TYPE_CHECKING:
    from alerts.model import Alert
    from score.estate import ScoreCard, ScoreReport


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="小区安全评分 estate safety scores, grades, distribution, company ranking",
        description="Compute every estate's safety score (0-100) and grade "
        "(示范/规范/达标/不达标), the district and street distribution against the year's "
        "targets and the property-company ranking; --estate explains one estate's score.",
    )
    parser.add_argument(
        "--at",
        default="now",
        metavar="TIME",
        help="compute as of TIME: 'now', epoch ms or ISO 8601 (Shanghai time without a "
        "zone); alerts are judged by their timestamps as of then (default: now)",
    )
    parser.add_argument("--estate", metavar="ID", help="explain this estate's score")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--registry",
        metavar="FILE",
        help="the registry: SQLite, or a CSV directory or YAML of 'registry export' "
        "(default: [alerts] registry_db, else <state_dir>/registry.sqlite)",
    )
    parser.add_argument(
        "--alerts", metavar="FILE", help=f"alert store SQLite (default: <state_dir>/{ALERTS_FILE})"
    )
    parser.add_argument(
        "--weights", metavar="FILE", help="TOML overriding the score's weights (docs/score.md)"
    )
    parser.add_argument(
        "--year",
        type=int,
        metavar="YEAR",
        help="judge the distribution against this year's district targets (default: the "
        "year of --at); a year after the last one the scheme sets keeps that year's targets",
    )
    parser.add_argument(
        "--write-influx",
        action="store_true",
        help="also write estate_score and grade_distribution points to InfluxDB",
    )
    parser.set_defaults(func=run)


class _NoAlerts:
    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        return []


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from jiayuan.config import ConfigError, load
    from jiayuan.registry.sources import read_registry
    from jiayuan.registry.store import registry_path
    from jiayuan.timezone import parse_start
    from score.config import load_score_config
    from score.estate import score_estate, score_report

    try:
        config = load(getattr(args, "config", None))
        settings = load_score_config(args.weights)
        if args.year is not None:
            settings = replace(settings, target_year=args.year)
        now_ms = parse_start(args.at)
    except (ConfigError, ValueError) as error:
        print(f"参数错误 cannot score: {error}", file=sys.stderr)
        return 2
    state_dir = Path(config.gateway.state_dir)
    registry_file = Path(args.registry) if args.registry else registry_path(config)
    alerts_path = Path(args.alerts) if args.alerts else state_dir / ALERTS_FILE
    if not registry_file.exists():
        print(
            f"没有登记簿 no registry at {registry_file}: run 'jiayuan registry generate' "
            "or 'jiayuan registry import' first",
            file=sys.stderr,
        )
        return 1
    try:
        registry = read_registry(registry_file)
    except ValueError as invalid:  # RegistryInvalid, or NotARegistry
        print(f"登记簿无效 invalid registry: {invalid}", file=sys.stderr)
        return 1
    source: Any
    if alerts_path.is_file():
        from alerts.store import AlertStore

        source = AlertStore(alerts_path)
    else:
        print(f"(no alert store at {alerts_path}: scoring without alerts)", file=sys.stderr)
        source = _NoAlerts()
    if args.estate:
        try:
            record = registry.record(args.estate)
        except KeyError as error:
            print(error.args[0], file=sys.stderr)
            return 1
        since = now_ms - int(settings.window_days * 86_400_000)
        card = score_estate(record, source.list_for_estate(args.estate, since), now_ms, settings)
        print(explain_card(card, args.format))
        return 0
    report = score_report(registry, source, now_ms, settings)
    print(render_report(report, args.format))
    if args.write_influx:
        from jiayuan.influx import InfluxClient, InfluxError
        from score.points import write_score_points

        try:
            with InfluxClient(config.influx) as client:
                n = write_score_points(client, report.cards, report.distributions, now_ms)
        except InfluxError as error:
            print(f"写入失败 InfluxDB write failed: {error}", file=sys.stderr)
            return 1
        print(f"已写入 wrote {n} points to {config.influx.url}", file=sys.stderr)
    return 0


def _when(ms: int) -> str:
    from score.estate import SHANGHAI

    return datetime.fromtimestamp(ms / 1000, SHANGHAI).strftime("%Y-%m-%d %H:%M")


def explain_card(card: ScoreCard, fmt: str) -> str:
    from score.api import breakdown_out

    out = breakdown_out(card)
    if fmt == "json":
        return out.model_dump_json(indent=1)
    if fmt == "csv":
        rows = [line.model_dump() for line in out.lines]
        return _csv(["family", "indicator", "label", "value", "penalty", "impact", "why"], rows)
    lines = [
        f"{card.name_zh} ({card.estate}) · {card.district}/{card.street} · {card.company}",
        f"安全评分 safety score {card.score:.1f} / 100 → {card.grade.label}"
        + (
            f" (score alone: {card.score_grade.label}; capped: {card.cap_reason})"
            if card.capped
            else ""
        ),
        f"as of {_when(card.computed_ms)} (Shanghai)",
        "",
        "分项 families: "
        + ", ".join(f"{family} {value:.1f}" for family, value in card.families.items()),
        "",
        f"{'family':<14} {'indicator':<16} {'-family':>8} {'-score':>7}  measured / why",
    ]
    for line in card.lines:
        lines.append(
            f"{line.family:<14} {line.indicator:<16} {line.penalty:>8.2f} {line.impact:>7.2f}  "
            f"{line.label}: {line.value}"
        )
        if line.penalty:
            lines.append(f"{'':<48}why: {line.why}")
    total = sum(line.impact for line in card.lines)
    lines.append(f"{'':<31}{'total':>8} {total:>7.2f}  = 100 - {card.score:.2f}")
    lines.append("")
    lines.append(f"未解决告警 unresolved alerts: {len(card.open_alerts)}")
    for alert in card.open_alerts:
        lines.append(
            f"  {alert.severity:<8} {alert.code:<28} {alert.device:<26} {alert.state.value:<12} "
            f"since {_when(alert.created_ms)}  {alert.title}"
        )
    return "\n".join(lines)


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def render_report(report: ScoreReport, fmt: str, list_estates: bool = True) -> str:
    """Scores, the distribution against the targets and the ranking (``list_estates=False``
    leaves the per-estate table out of the text form, for cities of hundreds)."""
    from score.api import company_out, distribution_out, estate_out
    from score.grades import ALL, Grade

    estates = [estate_out(c) for c in report.cards]
    dists = [distribution_out(d, report.targets) for d in report.distributions]
    companies = [company_out(c) for c in report.companies]
    if fmt == "json":
        return json.dumps(
            {
                "computed_ms": report.computed_ms,
                "target_year": report.targets.year,
                "targets_set_for": report.targets.set_for,
                "estates": [e.model_dump() for e in estates],
                "distributions": [d.model_dump() for d in dists],
                "companies": [c.model_dump() for c in companies],
            },
            ensure_ascii=False,
            indent=1,
        )
    if fmt == "csv":
        # Three tables, each with its own header, separated by a blank line.
        families = ["lift", "fire", "water_tank", "ebike_charger", "waterlogging"]
        estate_rows = [{**e.model_dump(exclude={"families"}), **e.families} for e in estates]
        dist_rows = [{**d.model_dump(exclude={"grades", "shortfalls"}), **d.grades} for d in dists]
        company_rows = [{**c.model_dump(exclude={"grades"}), **c.grades} for c in companies]
        grades = [g.zh for g in Grade]
        return "\n\n".join(
            (
                _csv(
                    [
                        "estate",
                        "name_zh",
                        "district",
                        "street",
                        "company",
                        "score",
                        "grade",
                        "grade_level",
                        "capped",
                        "cap_reason",
                        *families,
                    ],
                    estate_rows,
                ),
                _csv(
                    [
                        "district",
                        "street",
                        "estates",
                        *grades,
                        "pct_dabiao_or_better",
                        "pct_guifan_or_better",
                        "pct_shifan",
                        "target_dabiao_or_better",
                        "target_guifan",
                        "target_shifan",
                        "meets_targets",
                        "target_year",
                        "targets_set_for",
                    ],
                    dist_rows,
                ),
                _csv(
                    [
                        "rank",
                        "company",
                        "name_zh",
                        "estates",
                        "mean_score",
                        "min_score",
                        *grades,
                        "eligible",
                        "top_ten",
                        "reason",
                    ],
                    company_rows,
                ),
            )
        )
    out = [f"安全评分 estate safety scores as of {_when(report.computed_ms)} (Shanghai)", ""]
    if list_estates:
        out.append(
            f"{'estate':<26} {'小区':<10} {'district':<10} {'street':<12} {'score':>6}  grade"
        )
    for e in sorted(estates, key=lambda e: (-e.score, e.estate)) if list_estates else []:
        cap = "  (capped)" if e.capped else ""
        out.append(
            f"{e.estate:<26} {e.name_zh:<10} {e.district:<10} {e.street:<12} {e.score:>6.1f}  "
            f"{e.grade}{cap}"
        )
    target = report.distributions[0].targets if report.distributions else None
    out += ["", "等级分布 grade distribution against the targets", f"  {report.targets.describe()}"]
    if target:
        out.append(
            f"  targets: 达标及以上 ≥ {target.dabiao_or_better:g}%, 规范及以上 ≥ "
            f"{target.guifan_or_better:g}%, 示范 ≥ {target.shifan:g}%"
        )
    out.append(
        f"  {'district':<10} {'street':<12} {'estates':>7} {'示范':>4} {'规范':>4} {'达标':>4} "
        f"{'不达标':>4} {'≥达标%':>7} {'≥规范%':>7} {'示范%':>6}  targets"
    )
    for d in dists:
        verdict = "met 达成" if d.meets_targets else "missed 未达成: " + "; ".join(d.shortfalls)
        indent = "  " if d.street == ALL else "    "
        out.append(
            f"{indent}{d.district:<10} {d.street:<12} {d.estates:>7} {d.grades['示范']:>5} "
            f"{d.grades['规范']:>5} {d.grades['达标']:>5} {d.grades['不达标']:>6} "
            f"{d.pct_dabiao_or_better:>8.1f} {d.pct_guifan_or_better:>8.1f} "
            f"{d.pct_shifan:>7.1f}  {verdict}"
        )
    out += ["", "物业服务企业排名 property companies by mean score (★ = top ten 十佳)"]
    for c in companies:
        mark = "★" if c.top_ten else " "
        why = "" if c.eligible else f"  not eligible: {c.reason}"
        counts = " ".join(f"{k}{v}" for k, v in c.grades.items() if v)
        out.append(
            f"{mark}{c.rank:>3}. {c.name_zh}  mean {c.mean_score:.1f}, {c.estates} estates "
            f"({counts}){why}"
        )
    return "\n".join(out)
