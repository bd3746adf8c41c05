"""The gateway's disk spool: batches that could not reach InfluxDB wait here, in order.

One SQLite file in ``gateway.state_dir``.  A batch's messages are acknowledged at the broker
once its lines are committed here, so the file is opened with ``synchronous=FULL``: an
acknowledged batch must survive a power cut too, and the fsync per batch is paid only while
InfluxDB is down.  Rows carry each line with what to dead-letter if InfluxDB refuses it on
replay; the body is zlib-compressed (line protocol shrinks several times at level 1).

The budget counts the compressed bytes stored, not the file size (SQLite reuses freed
pages but does not shrink the file).  The spool never drops anything: ``fits`` tells the
caller whether a batch still has room, and the caller stops acknowledging when it has not.
"""

from __future__ import annotations

import logging
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from gateway.pipeline import Pending
from jiayuan.budget import BudgetWarning

log = logging.getLogger(__name__)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class SpooledLine(msgspec.Struct, array_like=True, frozen=True):
    """One stored line and its dead-letter evidence (the origin encoded as JSON)."""

    line: str
    topic: str
    origin: bytes
    received_ms: int
    is_reading: bool


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[SpooledLine])


class SpooledBatch(msgspec.Struct, frozen=True):
    id: int
    pending: list[Pending]


class InfluxSpool:
    """Batches for InfluxDB, oldest first, within a disk budget.  Used by one thread."""

    def __init__(self, path: Path, *, max_bytes: int, warn_fraction: float = 0.8) -> None:
        if max_bytes < 1:
            raise ValueError(f"gateway.spool_max_bytes must be at least 1, not {max_bytes}")
        self._budget = BudgetWarning(warn_fraction, "gateway.spool_warn_fraction")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        batches, lines, stored = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM batches"
        ).fetchone()
        self._batches: int = batches
        self._lines: int = lines
        self._bytes: int = stored
        if batches:
            log.warning(
                "InfluxDB spool %s holds %d batches (%d lines) from before; replaying them first",
                path,
                batches,
                lines,
            )
        self._check_budget()

    @property
    def batches(self) -> int:
        return self._batches

    @property
    def lines(self) -> int:
        return self._lines

    @property
    def bytes_stored(self) -> int:
        return self._bytes

    def __bool__(self) -> bool:
        return self._batches > 0

    @staticmethod
    def encode(pending: Sequence[Pending]) -> bytes:
        rows = [
            SpooledLine(p.line, p.topic, p.origin_json(), p.received_ms, p.is_reading)
            for p in pending
        ]
        return zlib.compress(_encoder.encode(rows), 1)

    def fits(self, body: bytes) -> bool:
        """Whether ``body`` (from ``encode``) stays within the budget."""
        return self._bytes + len(body) <= self.max_bytes

    def append(self, body: bytes, lines: int) -> None:
        """Store one encoded batch after the others; durable when this returns."""
        self._db.execute(
            "INSERT INTO batches (lines, bytes, body) VALUES (?, ?, ?)", (lines, len(body), body)
        )
        self._batches += 1
        self._lines += lines
        self._bytes += len(body)
        self._check_budget()

    def oldest(self) -> SpooledBatch | None:
        row = self._db.execute("SELECT id, body FROM batches ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        id_, body = row
        pending = [
            Pending(s.line, s.topic, s.origin, s.received_ms, s.is_reading)
            for s in _decoder.decode(zlib.decompress(body))
        ]
        return SpooledBatch(id_, pending)

    def remove(self, id_: int) -> None:
        """Forget a batch InfluxDB has stored."""
        row = self._db.execute(
            "DELETE FROM batches WHERE id = ? RETURNING lines, bytes", (id_,)
        ).fetchone()
        if row is None:
            return
        self._batches -= 1
        self._lines -= row[0]
        self._bytes -= row[1]
        self._check_budget()

    def _check_budget(self) -> None:
        if self._budget.crossed(self._bytes / self.max_bytes):
            log.warning(
                "InfluxDB spool %s holds %d bytes, %d%% of its budget of %d; when it is "
                "full the gateway stops acknowledging and the broker keeps the messages",
                self.path,
                self._bytes,
                100 * self._bytes // self.max_bytes,
                self.max_bytes,
            )

    @property
    def warning(self) -> bool:
        """The spool holds at least ``warn_fraction`` of its budget."""
        return self._budget.on

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> InfluxSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
