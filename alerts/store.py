"""Alert state in SQLite: alerts, their full history, silences and incidents.

One connection in WAL mode behind a lock: the gateway's processing thread writes through
the engine while the API (uvicorn's thread) reads.  A partial unique index allows at most
one live (non-terminal) alert per device and condition, so a bug or a race can never raise
a second one.  Each change of an alert and its history entries commit in one transaction;
inside a ``batch`` (the engine's batch of anomalies), with all the batch's changes.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from alerts.model import (
    TERMINAL_STATES,
    Alert,
    AlertAction,
    AlertNotFound,
    AlertState,
    EscalationLevel,
    HistoryEntry,
)
from alerts.silences import Silence, SilenceScope

_ALERT_COLUMNS = tuple(f.name for f in fields(Alert))
_BOOL_COLUMNS = frozenset({"condition_active", "silenced", "flapping"})
_TERMINAL = tuple(s.value for s in TERMINAL_STATES)
_TERMINAL_SQL = "(" + ", ".join(f"'{s}'" for s in _TERMINAL) + ")"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS alerts (
    {", ".join(_ALERT_COLUMNS)},
    condition_key TEXT NOT NULL,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_live_condition
    ON alerts (condition_key) WHERE state NOT IN {_TERMINAL_SQL};
CREATE INDEX IF NOT EXISTS alerts_condition ON alerts (condition_key, created_ms);
CREATE INDEX IF NOT EXISTS alerts_created ON alerts (created_ms);
CREATE INDEX IF NOT EXISTS alerts_estate ON alerts (estate, created_ms);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE INDEX IF NOT EXISTS alerts_parent ON alerts (parent_id) WHERE parent_id != '';
CREATE INDEX IF NOT EXISTS alerts_held ON alerts (held_until_ms) WHERE held_until_ms > 0;
CREATE INDEX IF NOT EXISTS alerts_settling ON alerts (kind, condition_active, last_seen_ms);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    at_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_alert ON history (alert_id, seq);
CREATE INDEX IF NOT EXISTS history_action ON history (action, at_ms);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    estate TEXT NOT NULL,
    building TEXT NOT NULL,
    device TEXT NOT NULL,
    starts_ms INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    district TEXT NOT NULL,
    street TEXT NOT NULL,
    estate TEXT NOT NULL,
    building TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    lead_alert_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_building
    ON incidents (district, street, estate, building, start_ms);
"""


@dataclass(frozen=True, slots=True)
class Incident:
    """Alerts of one building whose conditions started within one incident window."""

    id: str
    district: str
    street: str
    estate: str
    building: str
    start_ms: int  # device time of the lead alert's first anomaly
    lead_alert_id: str  # the incident's first alert
    created_ms: int
    alert_ids: tuple[str, ...] = ()  # filled by list_incidents, oldest first


@dataclass(frozen=True, slots=True)
class AlertFilter:
    states: tuple[AlertState, ...] = ()  # empty = any state
    severity: str = ""
    kind: str = ""
    estate: str = ""
    street: str = ""
    district: str = ""
    since_ms: int = 0  # created at or after (wall clock)
    until_ms: int = 0  # created before; 0 = no upper bound
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class OpenCount:
    """One row of the ``alert_open`` gauge: the alerts of one estate and severity."""

    district: str
    street: str
    estate: str
    severity: str
    open: int  # non-terminal
    unacknowledged: int  # still in state open
    overdue: int  # a deadline passed and the step it asked for has not happened
    escalated: int  # escalation above the estate


def _alert_from_row(row: sqlite3.Row) -> Alert:
    values: dict[str, Any] = {name: row[name] for name in _ALERT_COLUMNS}
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    values["state"] = AlertState(values["state"])
    values["escalation"] = EscalationLevel(values["escalation"])
    return Alert(**values)


def _alert_values(alert: Alert) -> tuple[Any, ...]:
    # Every field is a scalar: read them directly (``astuple`` deep-copies each, which
    # was a seventh of the cost of raising an alert).
    return tuple(
        value.value if isinstance(value, AlertState | EscalationLevel) else value
        for value in _alert_fields(alert)
    )


_alert_fields = operator.attrgetter(*_ALERT_COLUMNS)


def _history_from_row(row: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(
        alert_id=row["alert_id"],
        at_ms=row["at_ms"],
        action=AlertAction(row["action"]),
        actor=row["actor"],
        from_state=AlertState(row["from_state"]) if row["from_state"] else None,
        to_state=AlertState(row["to_state"]) if row["to_state"] else None,
        note=row["note"],
    )


def _silence_from_row(row: sqlite3.Row) -> Silence:
    return Silence(
        id=row["id"],
        scope=SilenceScope(row["scope"]),
        estate=row["estate"],
        building=row["building"],
        device=row["device"],
        starts_ms=row["starts_ms"],
        until_ms=row["until_ms"],
        actor=row["actor"],
        note=row["note"],
        created_ms=row["created_ms"],
    )


def _incident_from_row(row: sqlite3.Row, alert_ids: tuple[str, ...] = ()) -> Incident:
    return Incident(
        id=row["id"],
        district=row["district"],
        street=row["street"],
        estate=row["estate"],
        building=row["building"],
        start_ms=row["start_ms"],
        lead_alert_id=row["lead_alert_id"],
        created_ms=row["created_ms"],
        alert_ids=alert_ids,
    )


class AlertStore:
    """SQLite file with the alerts, their history, silences and incidents."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._add_missing_columns()
            self._db.executescript(_SCHEMA)

    def _add_missing_columns(self) -> None:
        """A file written before the storm grouping or the explanations lacks their
        columns: add them (every existing alert stands alone, waits for nothing and has
        no explanation)."""
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(alerts)")}
        if not have:
            return  # a new file: the schema makes the table
        added = (("parent_id", "TEXT"), ("held_until_ms", "INTEGER"), ("explanation", "TEXT"))
        for column, sql_type in added:
            if column not in have:
                default = "''" if sql_type == "TEXT" else "0"
                self._db.execute(
                    f"ALTER TABLE alerts ADD COLUMN {column} {sql_type} NOT NULL DEFAULT {default}"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing (the engine is the one writer) -------------------------------------------

    def save(
        self,
        alert: Alert,
        history: Sequence[HistoryEntry],
        *,
        condition_key: str | None = None,
        incident: Incident | None = None,
    ) -> None:
        """Insert (with ``condition_key``) or update an alert with its new history entries,
        and a new incident it leads, in one transaction."""
        with self._lock, self._transaction():
            if incident is not None:
                self._db.execute(
                    "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    astuple(incident)[:8],
                )
            if condition_key is not None:
                marks = ", ".join("?" * (len(_ALERT_COLUMNS) + 1))
                self._db.execute(
                    f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}, condition_key) "
                    f"VALUES ({marks})",
                    (*_alert_values(alert), condition_key),
                )
            else:
                assignments = ", ".join(f"{name} = ?" for name in _ALERT_COLUMNS[1:])
                updated = self._db.execute(
                    f"UPDATE alerts SET {assignments} WHERE id = ?",
                    (*_alert_values(alert)[1:], alert.id),
                )
                if updated.rowcount != 1:
                    raise AlertNotFound(alert.id)
            self._db.executemany(
                "INSERT INTO history (alert_id, at_ms, action, actor, from_state, to_state, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        h.alert_id,
                        h.at_ms,
                        h.action.value,
                        h.actor,
                        h.from_state.value if h.from_state else None,
                        h.to_state.value if h.to_state else None,
                        h.note,
                    )
                    for h in history
                ],
            )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Changes saved in the block commit together at its end (one commit for a batch
        of anomalies, not one an alert), or none of them when it raises.  Other threads
        wait for the store meanwhile."""
        with self._lock, self._transaction():
            yield

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # --- alerts ---------------------------------------------------------------------------

    def find(self, alert_id: str) -> Alert | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else _alert_from_row(row)

    def get(self, alert_id: str) -> Alert:
        """The alert, or AlertNotFound."""
        found = self.find(alert_id)
        if found is None:
            raise AlertNotFound(alert_id)
        return found

    def latest(self, condition_key: str) -> Alert | None:
        """The newest alert of a device and condition (the live one, if any, is newest)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM alerts WHERE condition_key = ? ORDER BY created_ms DESC, rowid DESC"
                " LIMIT 1",
                (condition_key,),
            ).fetchone()
        return None if row is None else _alert_from_row(row)

    def live(self, condition_key: str) -> Alert | None:
        """The non-terminal alert of a device and condition, if there is one."""
        with self._lock:
            row = self._db.execute(
                f"SELECT * FROM alerts WHERE condition_key = ? AND state NOT IN {_TERMINAL_SQL}",
                (condition_key,),
            ).fetchone()
        return None if row is None else _alert_from_row(row)

    def history(self, alert_id: str) -> list[HistoryEntry]:
        """Every step of the alert, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM history WHERE alert_id = ? ORDER BY seq", (alert_id,)
            ).fetchall()
        return [_history_from_row(row) for row in rows]

    def list_alerts(self, where: AlertFilter | None = None) -> list[Alert]:
        """Alerts matching the filter, newest first."""
        where = where or AlertFilter()
        clauses: list[str] = []
        params: list[Any] = []
        if where.states:
            clauses.append(f"state IN ({', '.join('?' * len(where.states))})")
            params += [s.value for s in where.states]
        for column in ("severity", "kind", "estate", "street", "district"):
            value = getattr(where, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.since_ms:
            clauses.append("created_ms >= ?")
            params.append(where.since_ms)
        if where.until_ms:
            clauses.append("created_ms < ?")
            params.append(where.until_ms)
        sql = "SELECT * FROM alerts"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_ms DESC, id LIMIT ? OFFSET ?"
        params += [where.limit, where.offset]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_alert_from_row(row) for row in rows]

    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        """The estate's alerts created since ``since_ms`` plus every one still live, however
        old (an unresolved fault counts until it is resolved), oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM alerts WHERE estate = ? AND "
                f"(created_ms >= ? OR state NOT IN {_TERMINAL_SQL}) ORDER BY created_ms, id",
                (estate, since_ms),
            ).fetchall()
        return [_alert_from_row(row) for row in rows]

    def live_alerts(self) -> list[Alert]:
        """Every non-terminal alert (the engine's escalation check reads these)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM alerts WHERE state NOT IN {_TERMINAL_SQL} ORDER BY created_ms"
            ).fetchall()
        return [_alert_from_row(row) for row in rows]

    def escalation_candidates(self, now_ms: int, top: EscalationLevel) -> list[Alert]:
        """The live alerts that may have a deadline to escalate for: not silenced, not
        resolved, below ``top``, with a deadline passed by ``now_ms``.  Only these can have
        missed one, so the engine's check each second reads these, not every live alert
        (a district's outage leaves 100,000 of them, unacknowledged for a while)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM alerts WHERE state NOT IN {_TERMINAL_SQL} AND state != ?"
                " AND silenced = 0 AND escalation != ? AND parent_id = '' AND held_until_ms = 0"
                " AND ((ack_deadline_ms > 0 AND ack_deadline_ms <= ?)"
                " OR (resolve_deadline_ms > 0 AND resolve_deadline_ms <= ?))"
                " ORDER BY created_ms",
                (AlertState.RESOLVED.value, top.value, now_ms, now_ms),
            ).fetchall()
        return [_alert_from_row(row) for row in rows]

    def held_due(self, now_ms: int) -> list[Alert]:
        """Live alerts whose hold for a storm ended by ``now_ms``, oldest first."""
        return self._select(
            f"state NOT IN {_TERMINAL_SQL} AND held_until_ms > 0 AND held_until_ms <= ?"
            " ORDER BY created_ms, id",
            (now_ms,),
        )

    def held_in(
        self, district: str, street: str, estate: str, building: str = "", suffix: str = ""
    ) -> list[Alert]:
        """Live alerts of the estate (or one of its buildings) still held for a storm and
        under no group, whose code ends with ``suffix``, oldest first."""
        sql = (
            f"state NOT IN {_TERMINAL_SQL} AND held_until_ms > 0 AND parent_id = ''"
            " AND estate = ? AND district = ? AND street = ? AND code LIKE ?"
        )
        params: list[Any] = [estate, district, street, "%" + suffix]
        if building:
            sql += " AND building = ?"
            params.append(building)
        return self._select(sql + " ORDER BY created_ms, id", params)

    def count_waiting(
        self,
        district: str,
        street: str,
        estate: str,
        building: str,
        suffix: str,
        held_group_code: str = "",
    ) -> int:
        """How many live alerts ending with ``suffix`` are held in the estate (or one of
        its buildings): alone, or under a still-held group alert of ``held_group_code``
        (``held_in`` counted without loading them)."""
        live = f"state NOT IN {_TERMINAL_SQL}"
        sql = (
            f"SELECT count(*) FROM alerts WHERE {live} AND estate = ? AND district = ?"
            " AND street = ? AND code LIKE ? AND ((held_until_ms > 0 AND parent_id = '')"
        )
        params: list[Any] = [estate, district, street, "%" + suffix]
        if held_group_code:
            sql += (
                f" OR parent_id IN (SELECT id FROM alerts WHERE {live} AND estate = ?"
                " AND district = ? AND street = ? AND code = ? AND held_until_ms > 0"
                " AND parent_id = '')"
            )
            params += [estate, district, street, held_group_code]
        sql += ")"
        if building:
            sql += " AND building = ?"
            params.append(building)
        with self._lock:
            row = self._db.execute(sql, params).fetchone()
        return int(row[0])

    def children(self, parent_id: str, live_only: bool = True) -> list[Alert]:
        """The alerts held under ``parent_id``, oldest first."""
        sql = "parent_id = ?"
        if live_only:
            sql += f" AND state NOT IN {_TERMINAL_SQL}"
        return self._select(sql + " ORDER BY created_ms, id", (parent_id,))

    def settling(self, kind: str, cleared_before_ms: int) -> list[Alert]:
        """Live alerts of ``kind`` whose condition cleared at or before the time given
        (their last_seen_ms), oldest first: groups whose cause has ended."""
        return self._select(
            f"state NOT IN {_TERMINAL_SQL} AND kind = ? AND condition_active = 0"
            " AND last_seen_ms <= ? ORDER BY created_ms, id",
            (kind, cleared_before_ms),
        )

    def _select(self, where: str, params: Sequence[Any]) -> list[Alert]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM alerts WHERE {where}", params).fetchall()
        return [_alert_from_row(row) for row in rows]

    def clears_since(self, condition_key: str, since_ms: int) -> int:
        """How often the condition cleared since ``since_ms`` (wall clock), over all its
        alerts: the flapping count."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM history h JOIN alerts a ON a.id = h.alert_id "
                "WHERE a.condition_key = ? AND h.action = ? AND h.at_ms >= ?",
                (condition_key, AlertAction.CONDITION_CLEARED.value, since_ms),
            ).fetchone()
        return int(row[0])

    def open_counts(self, now_ms: int) -> list[OpenCount]:
        """Per estate and severity that ever had an alert: the gauge's numbers (zeros too)."""
        live = f"state NOT IN {_TERMINAL_SQL}"
        overdue = (
            f"{live} AND ((ack_deadline_ms > 0 AND ack_deadline_ms <= :now AND state = 'open')"
            " OR (resolve_deadline_ms > 0 AND resolve_deadline_ms <= :now"
            " AND state NOT IN ('resolved')))"
        )
        sql = (
            "SELECT district, street, estate, severity,"
            f" sum({live}) AS open,"
            " sum(state = 'open') AS unacknowledged,"
            f" sum({overdue}) AS overdue,"
            f" sum({live} AND escalation != 'estate') AS escalated"
            " FROM alerts GROUP BY district, street, estate, severity"
            " ORDER BY district, street, estate, severity"
        )
        with self._lock:
            rows = self._db.execute(sql, {"now": now_ms}).fetchall()
        return [
            OpenCount(
                r["district"],
                r["street"],
                r["estate"],
                r["severity"],
                int(r["open"]),
                int(r["unacknowledged"]),
                int(r["overdue"]),
                int(r["escalated"]),
            )
            for r in rows
        ]

    # --- silences -------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    silence.id,
                    silence.scope.value,
                    silence.estate,
                    silence.building,
                    silence.device,
                    silence.starts_ms,
                    silence.until_ms,
                    silence.actor,
                    silence.note,
                    silence.created_ms,
                ),
            )

    def silences(self, active_at: int | None = None, estate: str = "") -> list[Silence]:
        """Silences (only those active at ``active_at`` when given), newest first."""
        sql = "SELECT * FROM silences WHERE 1"
        params: list[Any] = []
        if active_at is not None:
            sql += " AND starts_ms <= ? AND until_ms > ?"
            params += [active_at, active_at]
        if estate:
            sql += " AND estate = ?"
            params.append(estate)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_ms DESC, id", params).fetchall()
        return [_silence_from_row(row) for row in rows]

    def delete_silence(self, silence_id: str) -> bool:
        with self._lock, self._transaction():
            deleted = self._db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return deleted.rowcount == 1

    # --- incidents ------------------------------------------------------------------------

    def latest_incident(
        self, district: str, street: str, estate: str, building: str
    ) -> Incident | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM incidents WHERE district = ? AND street = ? AND estate = ?"
                " AND building = ? ORDER BY start_ms DESC LIMIT 1",
                (district, street, estate, building),
            ).fetchone()
        return None if row is None else _incident_from_row(row)

    def list_incidents(
        self, estate: str = "", since_ms: int = 0, limit: int = 100
    ) -> list[Incident]:
        """Incidents with their alerts, newest first; ``since_ms`` on the start (device time)."""
        sql = "SELECT * FROM incidents WHERE start_ms >= ?"
        params: list[Any] = [since_ms]
        if estate:
            sql += " AND estate = ?"
            params.append(estate)
        sql += " ORDER BY start_ms DESC, id LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
            members = self._members([row["id"] for row in rows])
        return [_incident_from_row(row, tuple(members.get(row["id"], ()))) for row in rows]

    def _members(self, incident_ids: Iterable[str]) -> dict[str, list[str]]:
        ids = list(incident_ids)
        found: dict[str, list[str]] = {}
        if not ids:
            return found
        rows = self._db.execute(
            f"SELECT incident_id, id FROM alerts WHERE incident_id IN ({', '.join('?' * len(ids))})"
            " ORDER BY created_ms, id",
            ids,
        ).fetchall()
        for row in rows:
            found.setdefault(row["incident_id"], []).append(row["id"])
        return found


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the block raises; inside a transaction
    already open (a ``batch``), a savepoint: the block's changes are undone alone when it
    raises, and commit with the outer transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._db.in_transaction
        self._db.execute("SAVEPOINT inner" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if self._nested:
            if exc_type is not None:
                self._db.execute("ROLLBACK TO inner")
            self._db.execute("RELEASE inner")
        else:
            self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
