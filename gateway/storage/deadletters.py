"""Dead letters: messages and readings the gateway could not use, kept for inspection.

Stored in SQLite under the gateway's state directory, committed before the MQTT message
that carried them is acknowledged.  The table keeps the newest ``keep`` rows; the totals
per reason are kept apart and never trimmed, so every dead letter stays counted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Reason(StrEnum):
    BAD_TOPIC = "bad_topic"
    BAD_PAYLOAD = "bad_payload"
    BAD_STATUS = "bad_status"
    BAD_READING = "bad_reading"
    REJECTED_BY_INFLUX = "rejected_by_influx"
    INTERNAL_ERROR = "internal_error"


# What operations staff read: Chinese first, English beside it.
REASON_TITLES: dict[Reason, tuple[str, str]] = {
    Reason.BAD_TOPIC: ("主题格式错误", "Topic breaks the contract"),
    Reason.BAD_PAYLOAD: ("报文无法解析", "Payload is not a valid envelope"),
    Reason.BAD_STATUS: ("状态报文无效", "Status message is not valid"),
    Reason.BAD_READING: ("读数无效", "Reading breaks the contract"),
    Reason.REJECTED_BY_INFLUX: ("数据库拒收", "InfluxDB refused the data"),
    Reason.INTERNAL_ERROR: ("网关内部错误", "Gateway internal error"),
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ms: int
    topic: str
    reason: Reason
    detail: str
    payload: bytes  # the raw message, or the JSON of the one bad reading


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list: any of ``reasons`` (empty: all), received in
    [since_ms, until_ms] (None: open-ended)."""

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter_totals (
    reason TEXT PRIMARY KEY,
    total INTEGER NOT NULL
);
"""


class DeadLetterStore:
    def __init__(self, path: str | Path, keep: int = 100_000) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._keep = keep
        self._lock = threading.Lock()
        # One connection shared by the processing thread (writes) and the API (reads).
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash, which is what acknowledging needs.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add_many(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rows = [
            (d.received_ms, d.topic, d.reason.value, d.detail[:2000], d.payload) for d in letters
        ]
        per_reason = Counter(d.reason.value for d in letters)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO dead_letters (received_ms, topic, reason, detail, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.executemany(
                    "INSERT INTO dead_letter_totals (reason, total) VALUES (?, ?) "
                    "ON CONFLICT (reason) DO UPDATE SET total = total + excluded.total",
                    per_reason.items(),
                )
                self._db.execute(
                    "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                    (self._keep,),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def recent(
        self, limit: int = 100, where: DeadLetterFilter | None = None
    ) -> list[StoredDeadLetter]:
        """Newest first; only those ``where`` lets through."""
        clauses: list[str] = []
        args: list[object] = []
        if where is not None:
            if where.reasons:
                clauses.append(f"reason IN ({', '.join('?' * len(where.reasons))})")
                args += sorted(where.reasons)
            if where.since_ms is not None:
                clauses.append("received_ms >= ?")
                args.append(where.since_ms)
            if where.until_ms is not None:
                clauses.append("received_ms <= ?")
                args.append(where.until_ms)
        condition = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_ms, topic, reason, detail, payload FROM dead_letters "
                f"{condition}ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [
            StoredDeadLetter(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), bytes(r[5]))
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return int(row[0])

    def totals(self) -> dict[str, int]:
        """Dead letters ever stored, by reason (including rows trimmed since)."""
        with self._lock:
            rows = self._db.execute("SELECT reason, total FROM dead_letter_totals").fetchall()
        return {str(reason): int(total) for reason, total in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
