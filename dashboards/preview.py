"""Dashboards without Grafana: run every panel's queries against InfluxDB and draw them.

For each dashboard the template variables are filled as Grafana fills them on load (each
variable's own query, run with the variables before it; the first value unless one is
given), each panel's queries are expanded (``$timeFilter``, ``$__interval``, variables) and
run, and one PNG is drawn with the panels where the dashboard's grid puts them.  A panel
whose queries return no series is reported, so "no empty panel" is something a command
checks rather than something a reviewer eyeballs; a panel of events that declares empty
as its healthy state (no escalation) is reported as quiet instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dashboards.emptiness import empty_is_healthy
from dashboards.macros import ALL, expand, interval_ms
from dashboards.render import render_dashboard
from dashboards.transform import UnknownTransformation, transform
from jiayuan.influx import InfluxClient, InfluxError, Series

# What a user types for "every value" of a variable (Grafana's "All").
ALL_WORDS = frozenset({"all", "*", ALL})
_RELATIVE = re.compile(r"(?:now-)?(\d+)([smhdwy])")
_UNIT_MS = {
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
    "y": 365 * 86_400_000,
}


class PreviewError(ValueError):
    """A preview request that cannot run (bad time range, unknown variable …)."""


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int
    # Absolute ranges ignore a panel's relative time override, as in Grafana.
    absolute: bool = False


@dataclass
class PanelResult:
    panel: dict[str, Any]
    queries: list[str] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    error: str = ""

    @property
    def title(self) -> str:
        return str(self.panel.get("title", ""))

    @property
    def empty(self) -> bool:
        """No value but time in any row of any series: what Grafana shows as "No data"."""
        return not any(
            value is not None
            for s in self.series
            for row in s.values
            for column, value in zip(s.columns, row, strict=True)
            if column != "time"
        )

    @property
    def quiet(self) -> bool:
        """Empty, and the panel declares that as healthy (nothing happened)."""
        return self.empty and not self.error and empty_is_healthy(self.panel)

    @property
    def failed(self) -> bool:
        """A query error, or no data where the panel must have some."""
        return bool(self.error) or (self.empty and not self.quiet)


@dataclass
class DashboardPreview:
    uid: str
    title: str
    variables: dict[str, str]
    panels: list[PanelResult]
    png: Path

    @property
    def empty_panels(self) -> list[PanelResult]:
        """Panels that failed: an error, or no data where data must be."""
        return [p for p in self.panels if p.failed]

    @property
    def quiet_panels(self) -> list[PanelResult]:
        """Panels of events with nothing to show, as is healthy."""
        return [p for p in self.panels if p.quiet]


def parse_duration_ms(text: str) -> int:
    """``90s``, ``15m``, ``6h``, ``2d`` → milliseconds; ValueError names the bad text."""
    match = _RELATIVE.fullmatch(text.strip())
    if match is None:
        raise PreviewError(f"{text!r} is not a duration like 30m, 6h or 2d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def time_range(*, start: str | None, end: str | None, last: str | None, now_ms: int) -> TimeRange:
    """The range to preview: ``--from/--to`` (ISO 8601 or epoch ms), or ``--last``."""
    if start or end:
        if not (start and end):
            raise PreviewError("give both --from and --to, or --last")
        begin, finish = _instant_ms(start, "--from"), _instant_ms(end, "--to")
        if begin >= finish:
            raise PreviewError(f"--from {start} is not before --to {end}")
        return TimeRange(begin, finish, absolute=True)
    return TimeRange(now_ms - parse_duration_ms(last or "6h"), now_ms)


def _instant_ms(text: str, option: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PreviewError(
            f"{option} {text!r} is neither epoch milliseconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def panel_range(panel: Mapping[str, Any], whole: TimeRange, timezone: str) -> TimeRange:
    """A panel's relative time override (``timeFrom``: ``now/d`` or ``7d``) applied."""
    override = panel.get("timeFrom")
    if not override or whole.absolute:
        return whole
    if override == "now/d":
        zone = ZoneInfo(timezone)
        end = dt.datetime.fromtimestamp(whole.end_ms / 1000, zone)
        midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
        return TimeRange(int(midnight.timestamp() * 1000), whole.end_ms)
    return TimeRange(whole.end_ms - parse_duration_ms(str(override)), whole.end_ms)


def choose_variables(
    client: InfluxClient,
    model: Mapping[str, Any],
    given: Mapping[str, str],
    span: TimeRange,
) -> dict[str, str]:
    """Each variable's value: the given one, else the first its query lists."""
    chosen: dict[str, str] = {}
    for variable in model.get("templating", {}).get("list", []):
        name = str(variable["name"])
        if name in given:
            value = given[name]
            chosen[name] = ALL if value in ALL_WORDS else value
            continue
        query = expand(str(variable.get("query", "")), chosen, span.start_ms, span.end_ms)
        values = sorted({str(row[-1]) for s in client.query(query) for row in s.values})
        # No value at all: fall back to "All" so the panels still run (and report empty).
        chosen[name] = values[0] if values else ALL
    return chosen


def run_panel(
    client: InfluxClient,
    panel: Mapping[str, Any],
    variables: Mapping[str, str],
    span: TimeRange,
    timezone: str,
) -> PanelResult:
    result = PanelResult(dict(panel))
    own = panel_range(panel, span, timezone)
    step = interval_ms(own.start_ms, own.end_ms)
    for target in panel.get("targets", []):
        query = expand(str(target.get("query", "")), variables, own.start_ms, own.end_ms, step)
        result.queries.append(query)
        try:
            result.series += client.query(query)
        except InfluxError as error:
            result.error = str(error)
    try:
        result.series = transform(panel, result.series)
    except UnknownTransformation as error:
        result.error = str(error)
    return result


def preview_dashboard(
    client: InfluxClient,
    model: Mapping[str, Any],
    out_dir: Path,
    span: TimeRange,
    given: Mapping[str, str] | None = None,
) -> DashboardPreview:
    known = {v["name"] for v in model.get("templating", {}).get("list", [])}
    variables = choose_variables(
        client, model, {k: v for k, v in (given or {}).items() if k in known}, span
    )
    timezone = str(model.get("timezone") or "UTC")
    panels = [run_panel(client, p, variables, span, timezone) for p in model.get("panels", [])]
    png = out_dir / f"{model['uid']}.png"
    render_dashboard(model, panels, variables, span.start_ms, span.end_ms, png)
    return DashboardPreview(str(model["uid"]), str(model["title"]), variables, panels, png)


def preview_all(
    client: InfluxClient,
    models: Sequence[Mapping[str, Any]],
    out_dir: Path,
    span: TimeRange,
    given: Mapping[str, str] | None = None,
) -> list[DashboardPreview]:
    unknown = set(given or {}) - {
        v["name"] for m in models for v in m.get("templating", {}).get("list", [])
    }
    if unknown:
        raise PreviewError(f"no dashboard has a variable named {', '.join(sorted(unknown))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [preview_dashboard(client, model, out_dir, span, given) for model in models]
