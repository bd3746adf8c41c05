"""InfluxDB points of the alert lifecycle: ``alert`` (one per event) and ``alert_open`` (gauge).

The schemas are a fixed contract with the dashboards and the estate score (see
docs/alerts.md).  :class:`PointBuffer` is an engine sink that turns events into lines and
keeps them until the gateway's writer drains them, so the engine never waits on InfluxDB.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from alerts.engine import AlertEvent
from alerts.model import AlertAction
from alerts.store import OpenCount
from jiayuan.influx import format_line, format_line_once

ALERT_MEASUREMENT = "alert"
OPEN_MEASUREMENT = "alert_open"
RESOLVING_ACTIONS = frozenset({AlertAction.RESOLVED, AlertAction.AUTO_RESOLVED})


def alert_tags(event: AlertEvent) -> dict[str, str]:
    alert = event.alert
    return {
        "district": alert.district,
        "street": alert.street,
        "estate": alert.estate,
        "building": alert.building,
        "device": alert.device,
        "kind": alert.kind,
        "code": alert.code,
        "severity": alert.severity,
        "action": event.action.value,
        "escalation": alert.escalation.value,
    }


def alert_fields(event: AlertEvent) -> dict[str, float | int | str | bool]:
    alert = event.alert
    fields: dict[str, float | int | str | bool] = {
        "alert_id": alert.id,
        "state": alert.state.value,
        "repeat_count": alert.repeat_count,
        "title_zh": alert.title_zh,
        "title_en": alert.title_en,
        # Who took the step ("system" for the engine's own), as the SQLite history has it.
        "actor": event.actor,
    }
    if event.action is AlertAction.ACKNOWLEDGED and alert.acknowledged_ms:
        fields["tta_s"] = (alert.acknowledged_ms - alert.created_ms) / 1000
    if event.action in RESOLVING_ACTIONS and alert.resolved_ms:
        fields["ttr_s"] = (alert.resolved_ms - alert.created_ms) / 1000
    return fields


def alert_line(event: AlertEvent, ts_ms: int | None = None) -> str:
    """The ``alert`` point of one event, at the event's wall-clock time unless given."""
    # Not cached: an event's tags (device, action …) are written once.
    return format_line_once(
        ALERT_MEASUREMENT,
        alert_tags(event),
        alert_fields(event),
        event.at_ms if ts_ms is None else ts_ms,
    )


def alert_open_lines(counts: Iterable[OpenCount], ts_ms: int) -> list[str]:
    """The ``alert_open`` gauge: one point per estate and severity, zeros included."""
    return [
        format_line(
            OPEN_MEASUREMENT,
            {
                "district": row.district,
                "street": row.street,
                "estate": row.estate,
                "severity": row.severity,
            },
            {
                "open": row.open,
                "unacknowledged": row.unacknowledged,
                "overdue": row.overdue,
                "escalated": row.escalated,
            },
            ts_ms,
        )
        for row in counts
    ]


class PointBuffer:
    """An engine sink holding ``alert`` lines until :meth:`drain`.

    Two events of one series in the same millisecond (two ports of one charger raised in
    one batch, two escalation steps in one tick) would overwrite each other in InfluxDB,
    so a later one is moved on by a millisecond.  ``limit`` bounds memory if nobody
    drains; the oldest lines go first and are counted in ``dropped``.  The lines are kept
    in UTF-8: a line with a Chinese title is some 290 bytes so, and twice that as text.
    """

    SERIES_MEMORY = 10_000

    def __init__(self, limit: int = 100_000) -> None:
        self._lines: deque[bytes] = deque()
        self._limit = limit
        self._last_ts: dict[tuple[str, ...], int] = {}
        self._latest_ts = 0  # the latest time in _last_ts
        self._lock = threading.Lock()
        self.dropped = 0

    def __call__(self, event: AlertEvent) -> None:
        series = tuple(alert_tags(event).values())
        with self._lock:
            # A series' time matters only to an event no later than it: once the clock has
            # passed them all, they are forgotten (an outage's alerts, a series each, are
            # not kept; they would pin Python's arenas long after their batch).
            if event.at_ms > self._latest_ts or len(self._last_ts) >= self.SERIES_MEMORY:
                self._last_ts.clear()
            ts = max(event.at_ms, self._last_ts.get(series, event.at_ms - 1) + 1)
            self._last_ts[series] = ts
            self._latest_ts = max(self._latest_ts, ts)
            if len(self._lines) >= self._limit:
                self._lines.popleft()
                self.dropped += 1
            self._lines.append(alert_line(event, ts).encode("utf-8"))

    def drain_encoded(self) -> list[bytes]:
        """The lines held, in UTF-8, oldest first; the buffer is then empty."""
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines

    def drain(self) -> list[str]:
        return [line.decode("utf-8") for line in self.drain_encoded()]
