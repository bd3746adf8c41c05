"""A durable outbox in SQLite: every message is stored before anyone tries to send it.

Exactly one message per idempotency key, ever: a second ``enqueue`` with the same key is
refused (returns False), even after the first was delivered, so a gateway restart that
replays the same alert events queues nothing twice.  Messages are ``pending`` until
delivered, with the next attempt time and the last error; a message the receiver refused
for good is ``parked`` with the reason, and with a digest of the configuration it was
tried under (``config_digest``), until someone retries it or that configuration changes.
A new ``Outbox`` on the same file resumes where the last one stopped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER NOT NULL DEFAULT 0,
    config_digest TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS message_due ON message (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS message_robot ON message (channel, destination, state);
"""
# Columns added after the first release: an outbox file written before gets them on open.
_ADDED_COLUMNS = {"config_digest": "TEXT NOT NULL DEFAULT ''"}
_COLUMNS = (
    "id, key, channel, destination, body, headers, state, attempts, next_attempt_ms,"
    " last_error, created_ms, delivered_ms, config_digest"
)


class MessageState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    DELIVERED = "delivered"  # the receiver acknowledged it
    PARKED = "parked"  # refused for good (e.g. 400); kept with the reason until retried


class UnknownMessage(LookupError):
    """A message named by id or key that the outbox never held."""


class NotParked(ValueError):
    """A message named for a retry that is not parked (pending or delivered)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """What to send; ``key`` is the idempotency key the receiver sees."""

    channel: str
    key: str
    destination: str  # URL for webhooks, address for e-mail
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    key: str
    channel: str
    destination: str
    body: bytes
    headers: dict[str, str]
    state: MessageState
    attempts: int
    next_attempt_ms: int
    last_error: str
    created_ms: int
    delivered_ms: int
    # The configuration a parked message was last tried under ('' = not recorded).
    config_digest: str = ""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """Thread-safe; one ``Deliverer`` per outbox file sends its messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Re-entrant: ``batch`` holds it while the messages of a batch are queued.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a queued work order must survive a power cut, not only a process crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(message)")}
        for column, declaration in _ADDED_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE message ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Messages queued in the block commit together, at its end (one sync to disk, not
        one each: a district's outage queues thousands of work orders at once), or none of
        them when it raises.  Other threads wait for the outbox meanwhile."""
        with self._lock:
            if self._db.in_transaction:  # nested: the outer batch commits
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def enqueue(
        self,
        channel: str,
        key: str,
        destination: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        now_ms: int | None = None,
    ) -> bool:
        """Store a message, due at once; False when ``key`` was ever queued before."""
        if not key:
            raise ValueError("an outbox message needs a non-empty idempotency key")
        if not channel:
            raise ValueError(f"message {key!r} has no channel")
        at = _now_ms() if now_ms is None else now_ms
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO message (key, channel, destination, body, headers, state,"
                " next_attempt_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    channel,
                    destination,
                    body,
                    json.dumps(dict(headers or {})),
                    MessageState.PENDING.value,
                    at,
                    at,
                ),
            )
            return cursor.rowcount == 1

    def put(self, message: OutboxMessage, now_ms: int | None = None) -> bool:
        return self.enqueue(
            message.channel,
            message.key,
            message.destination,
            message.body,
            message.headers,
            now_ms,
        )

    def due(self, now_ms: int | None = None, limit: int = 100) -> list[StoredMessage]:
        """Pending messages whose next attempt time has come, in the order queued."""
        at = _now_ms() if now_ms is None else now_ms
        return self._select(
            "WHERE state = ? AND next_attempt_ms <= ? ORDER BY id LIMIT ?",
            (MessageState.PENDING.value, at, limit),
        )

    def next_due_ms(self) -> int | None:
        """When the earliest pending message is due, or None when nothing is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_ms) FROM message WHERE state = ?",
                (MessageState.PENDING.value,),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def mark_delivered(self, message_id: int, now_ms: int | None = None) -> None:
        at = _now_ms() if now_ms is None else now_ms
        self._update(
            "state = ?, attempts = attempts + 1, delivered_ms = ?, last_error = ''",
            (MessageState.DELIVERED.value, at),
            message_id,
        )

    def mark_failed(self, message_id: int, next_attempt_ms: int, error: str) -> None:
        """A failed attempt that will be retried at ``next_attempt_ms``."""
        self._update(
            "attempts = attempts + 1, next_attempt_ms = ?, last_error = ?",
            (next_attempt_ms, error),
            message_id,
        )

    def defer(self, message_id: int, next_attempt_ms: int, reason: str) -> None:
        """Not tried now (a robot's rate limit, a digest to come): due again at
        ``next_attempt_ms``; no attempt is counted."""
        self._update("next_attempt_ms = ?, last_error = ?", (next_attempt_ms, reason), message_id)

    def pending_for(self, channel: str, destination: str) -> list[StoredMessage]:
        """Every pending message of ``channel`` to ``destination``, due or not, in the
        order queued (what a robot's digest may name)."""
        return self._select(
            "WHERE state = ? AND channel = ? AND destination = ? ORDER BY id",
            (MessageState.PENDING.value, channel, destination),
        )

    def park(self, message_id: int, error: str, config_digest: str = "") -> None:
        """A refusal that retrying will not cure; kept, visible, retryable by command, and
        retried by itself once ``config_digest`` (the configuration it failed under)
        no longer matches the configuration in force."""
        self._update(
            "state = ?, attempts = attempts + 1, last_error = ?, config_digest = ?",
            (MessageState.PARKED.value, error, config_digest),
            message_id,
        )

    def retry_parked(
        self, key: str | None = None, now_ms: int | None = None, *, message_id: int | None = None
    ) -> int:
        """Make parked messages (all, the one with ``key`` or with ``message_id``) due now;
        how many."""
        at = _now_ms() if now_ms is None else now_ms
        where = "state = ?"
        args: tuple[object, ...] = (MessageState.PARKED.value,)
        if key is not None:
            where += " AND key = ?"
            args += (key,)
        if message_id is not None:
            where += " AND id = ?"
            args += (message_id,)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE message SET state = ?, next_attempt_ms = ? WHERE {where}",
                (MessageState.PENDING.value, at, *args),
            )
            return cursor.rowcount

    def retry_named(
        self, ids: Sequence[int] = (), keys: Sequence[str] = (), now_ms: int | None = None
    ) -> int:
        """Make the parked messages named by id or key due now, all or none; how many.

        ``UnknownMessage`` names those the outbox never held, ``NotParked`` those pending
        or delivered (nothing is retried then)."""
        at = _now_ms() if now_ms is None else now_ms
        with self.batch():
            named = [(str(i), self.get_id(i)) for i in ids] + [(k, self.get(k)) for k in keys]
            unknown = [name for name, found in named if found is None]
            if unknown:
                raise UnknownMessage(f"no outbox message {', '.join(unknown)} in {self.path}")
            messages = {found.id: found for _, found in named if found is not None}
            busy = [
                f"{m.id} {m.key} ({m.state.value})"
                for m in messages.values()
                if m.state is not MessageState.PARKED
            ]
            if busy:
                raise NotParked(f"not parked, nothing retried: {', '.join(busy)}")
            for message_id in messages:
                self.retry_parked(message_id=message_id, now_ms=at)
        return len(messages)

    def get(self, key: str) -> StoredMessage | None:
        found = self._select("WHERE key = ?", (key,))
        return found[0] if found else None

    def get_id(self, message_id: int) -> StoredMessage | None:
        found = self._select("WHERE id = ?", (message_id,))
        return found[0] if found else None

    def with_key_prefix(self, prefix: str) -> list[StoredMessage]:
        """Messages whose key starts with ``prefix``, in the order queued (a range over
        the key index: no LIKE, whose ``_`` and ``%`` an alert id may contain)."""
        if not prefix:
            raise ValueError("with_key_prefix needs a non-empty prefix")
        above = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return self._select("WHERE key >= ? AND key < ? ORDER BY id", (prefix, above))

    def messages(
        self, state: MessageState | None = None, channel: str | None = None, limit: int = 1000
    ) -> list[StoredMessage]:
        """Newest first, for the API and for people looking at a stuck queue."""
        clauses, args = [], []
        if state is not None:
            clauses.append("state = ?")
            args.append(state.value)
        if channel is not None:
            clauses.append("channel = ?")
            args.append(channel)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._select(f"{where} ORDER BY id DESC LIMIT ?", (*args, limit))

    def counts(self) -> dict[str, int]:
        """Messages per state, every state present (zeros too)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM message GROUP BY state")
            found = dict(rows.fetchall())
        return {state.value: int(found.get(state.value, 0)) for state in MessageState}

    def counts_by_channel(self) -> dict[str, dict[str, int]]:
        """Messages per channel and state, every state present per channel seen."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, state, COUNT(*) FROM message GROUP BY channel, state"
            ).fetchall()
        found: dict[str, dict[str, int]] = {}
        for channel, state, count in rows:
            per_state = found.setdefault(channel, {s.value: 0 for s in MessageState})
            per_state[state] = int(count)
        return found

    def _update(self, assignments: str, args: tuple[object, ...], message_id: int) -> None:
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE message SET {assignments} WHERE id = ?", (*args, message_id)
            )
        if cursor.rowcount != 1:
            raise KeyError(f"no outbox message with id {message_id} in {self.path}")

    def _select(self, tail: str, args: tuple[object, ...]) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM message {tail}", args).fetchall()
        return [
            StoredMessage(
                id=row[0],
                key=row[1],
                channel=row[2],
                destination=row[3],
                body=bytes(row[4]),
                headers=json.loads(row[5]),
                state=MessageState(row[6]),
                attempts=row[7],
                next_attempt_ms=row[8],
                last_error=row[9],
                created_ms=row[10],
                delivered_ms=row[11],
                config_digest=row[12],
            )
            for row in rows
        ]
