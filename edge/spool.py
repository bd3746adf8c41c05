"""The edge agent's durable spool: readings wait here until the broker has acknowledged them.

One SQLite file per edge, in WAL mode with ``synchronous=NORMAL`` (the pattern of
ThingsBoard's IoT gateway).  What that protects against and what it does not:

* A crash of the process (kill -9, an exception, an OOM kill) loses nothing: a transaction
  is in the WAL file, in the operating system's page cache, once ``COMMIT`` returns.
* A power cut or kernel crash may lose the last transactions since the WAL was last
  synced (at each checkpoint): readings appended just before it are lost, and readings
  already acknowledged and removed may come back and be sent again (the gateway drops
  those duplicates).  Because the per-device sequence numbers are committed in the same
  transactions, they roll back with them, so after a power cut new readings may reuse the
  seq of readings the gateway has already stored; their newer timestamps tell the gateway
  they are new (it stores them and counts a sequence fault of the device).
  ``synchronous=FULL`` closes that window at the cost of an fsync per transaction.
* The database never corrupts in either case.

Each device's next sequence number is stored in the same transaction as its readings, so
a restart after a crash never hands out a seq twice.  Reading ids come from
``AUTOINCREMENT`` so an id is never reused even after the spool was emptied: the agent
keeps a cursor of the last id it handed to the broker and relies on that.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec

from edge.drivers import DriverSample
from jiayuan.budget import BudgetWarning
from jiayuan.contract import Reading, normalise_values

log = logging.getLogger(__name__)

# Warn once when the spool holds this share of its budget, before anything is dropped.
WARN_FRACTION = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Reading)


class SpoolError(RuntimeError):
    """The spool cannot be used as asked (for example, it belongs to another edge)."""


class Spool:
    """Readings of one edge, oldest first, with the per-device sequence numbers.

    Not thread-safe: use it from one thread (the agent's event loop).  The budget is
    ``max_readings`` readings and/or ``max_bytes`` bytes of stored readings (``edge.
    spool_max_bytes``; the file itself may be larger by SQLite's free pages and index).
    Policy when an append would exceed either: the oldest readings are dropped (newest data
    matters most for safety monitoring), counted in ``dropped`` and logged; a warning is
    logged, and ``warning`` is True, once the spool holds ``warn_fraction`` of either.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_readings: int | None = None,
        max_bytes: int | None = None,
        warn_fraction: float = WARN_FRACTION,
    ) -> None:
        if max_readings is not None and max_readings < 1:
            raise ValueError(f"spool max_readings must be at least 1, not {max_readings}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(
                f"edge.spool_max_bytes must be at least 1 (or 0: none), not {max_bytes}"
            )
        self._budget = BudgetWarning(warn_fraction, "edge.spool_warn_fraction")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.dropped = 0
        # Autocommit mode: transactions are begun and committed explicitly below.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._last_seq: dict[str, int] = dict(
            self._db.execute("SELECT device, last_seq FROM devices").fetchall()
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'edge'").fetchone()
        self._edge: str | None = None if row is None else str(row[0])
        # Counted once, then kept in step: COUNT(*) scans the table.
        self._pending: int
        self._bytes: int
        self._pending, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM readings"
        ).fetchone()
        self._check_budget()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def append(self, edge_id: str, samples: Sequence[DriverSample]) -> list[Reading]:
        """Normalise, number and store ``samples`` in one transaction; return the readings."""
        if not samples:
            return []
        if self._edge is not None and self._edge != edge_id:
            raise SpoolError(f"{self.path} is the spool of edge {self._edge!r}, not {edge_id!r}")
        next_seq: dict[str, int] = {}
        readings: list[Reading] = []
        rows: list[tuple[str, int, bytes]] = []
        for sample in samples:
            seq = next_seq.get(sample.device, self._last_seq.get(sample.device, 0)) + 1
            next_seq[sample.device] = seq
            reading = Reading(
                device=sample.device,
                kind=sample.kind.value,
                seq=seq,
                ts=sample.ts,
                values=normalise_values(sample.kind, sample.values),
                building=sample.building,
                event=sample.event,
            )
            readings.append(reading)
            rows.append((sample.device, seq, _encoder.encode(reading)))
        added_bytes = sum(len(row[2]) for row in rows)
        with self._transaction() as db:
            if self._edge is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('edge', ?)", (edge_id,))
            db.executemany("INSERT INTO readings (device, seq, body) VALUES (?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO devices (device, last_seq) VALUES (?, ?) "
                "ON CONFLICT (device) DO UPDATE SET last_seq = excluded.last_seq",
                next_seq.items(),
            )
            overflow, freed = self._drop_oldest(
                db, self._pending + len(rows), self._bytes + added_bytes
            )
        # Only after COMMIT: a failed transaction must leave the cached seqs untouched.
        self._edge = edge_id
        self._last_seq.update(next_seq)
        self._pending += len(rows) - overflow
        self._bytes += added_bytes - freed
        if overflow:
            self.dropped += overflow
            log.error(
                "spool %s is full (budget %s readings, %s bytes): dropped the %d oldest "
                "readings (%d in all)",
                self.path,
                self.max_readings,
                self.max_bytes,
                overflow,
                self.dropped,
            )
        self._check_budget()
        return readings

    def _drop_oldest(self, db: sqlite3.Connection, count: int, size: int) -> tuple[int, int]:
        """Delete the oldest readings until ``count`` readings of ``size`` bytes fit the
        budget; return how many readings and bytes went."""
        excess_count = 0 if self.max_readings is None else count - self.max_readings
        excess_bytes = 0 if self.max_bytes is None else size - self.max_bytes
        dropped = freed = 0
        if excess_count <= 0 and excess_bytes <= 0:
            return dropped, freed
        last_id = None
        rows = db.execute("SELECT id, length(body) FROM readings ORDER BY id")
        while dropped < excess_count or freed < excess_bytes:
            row = rows.fetchone()
            if row is None:
                break
            last_id = row[0]
            dropped += 1
            freed += row[1]
        rows.close()
        if last_id is not None:
            db.execute("DELETE FROM readings WHERE id <= ?", (last_id,))
        return dropped, freed

    def _usage(self) -> float:
        """The larger share of the budget in use (0 with no budget)."""
        shares = [0.0]
        if self.max_readings is not None:
            shares.append(self._pending / self.max_readings)
        if self.max_bytes is not None:
            shares.append(self._bytes / self.max_bytes)
        return max(shares)

    def _check_budget(self) -> None:
        usage = self._usage()
        if self._budget.crossed(usage):
            log.warning(
                "spool %s holds %d readings (%d bytes), %d%% of its budget (%s readings, "
                "%s bytes); the oldest will be dropped when it is full",
                self.path,
                self._pending,
                self._bytes,
                int(100 * usage),
                self.max_readings,
                self.max_bytes,
            )

    @property
    def warning(self) -> bool:
        """The spool holds at least ``warn_fraction`` of its budget."""
        return self._budget.on

    def bytes_stored(self) -> int:
        """Bytes of readings stored (what ``max_bytes`` bounds)."""
        return self._bytes

    def last_id(self) -> int:
        """The id of the newest stored reading (0 when the spool is empty): readings
        spooled later have higher ids."""
        row = self._db.execute("SELECT MAX(id) FROM readings").fetchone()
        return int(row[0] or 0)

    def peek_raw(
        self,
        limit: int,
        after_id: int = 0,
        max_bytes: int | None = None,
        *,
        up_to_id: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """Up to ``limit`` stored readings with an id above ``after_id`` (and at most
        ``up_to_id``), oldest first, as their encoded JSON; stops before ``max_bytes`` of
        bodies (always at least one)."""
        rows: list[tuple[int, bytes]] = self._db.execute(
            "SELECT id, body FROM readings WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after_id, (1 << 63) - 1 if up_to_id is None else up_to_id, limit),
        ).fetchall()
        if max_bytes is None:
            return rows
        total = 0
        for index, (_, body) in enumerate(rows):
            total += len(body) + 1  # the comma between readings
            if total > max_bytes and index > 0:
                return rows[:index]
        return rows

    def span_ms(self, up_to_id: int) -> int:
        """Device time from the oldest stored reading to the newest with an id at most
        ``up_to_id`` (0 when there are none)."""
        oldest = self._db.execute(
            "SELECT body FROM readings WHERE id <= ? ORDER BY id LIMIT 1", (up_to_id,)
        ).fetchone()
        newest = self._db.execute(
            "SELECT body FROM readings WHERE id <= ? ORDER BY id DESC LIMIT 1", (up_to_id,)
        ).fetchone()
        if oldest is None or newest is None:
            return 0
        return max(0, _decoder.decode(newest[0]).ts - _decoder.decode(oldest[0]).ts)

    def peek(self, limit: int, after_id: int = 0) -> list[tuple[int, Reading]]:
        """Up to ``limit`` stored readings with an id above ``after_id``, oldest first."""
        return [(id_, _decoder.decode(body)) for id_, body in self.peek_raw(limit, after_id)]

    def remove(self, ids: Sequence[int]) -> None:
        """Forget readings the broker has acknowledged (ids already gone are ignored)."""
        if not ids:
            return
        with self._transaction() as db:
            gone = db.execute(
                "DELETE FROM readings WHERE id IN (SELECT value FROM json_each(?)) "
                "RETURNING length(body)",
                (_encoder.encode(list(ids)),),
            ).fetchall()
        self._pending -= len(gone)
        self._bytes -= sum(row[0] for row in gone)
        self._check_budget()

    def pending(self) -> int:
        """How many readings are stored (not yet acknowledged by the broker)."""
        return self._pending

    def last_seq(self, device: str) -> int:
        """The last sequence number handed to ``device`` (0 when none yet)."""
        return self._last_seq.get(device, 0)

    def close(self) -> None:
        self._db.close()
