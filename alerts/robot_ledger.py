"""What each group robot has sent, on disk, so a restart never forgets a rate limit.

Every request to a robot is written down (committed) before it leaves, and its end is
noted when the answer comes; a request whose end was never noted (the process died
while sending) counts from its start.  A send counts against the window until its end
plus the window: the platform saw it at some moment between the two.  A robot the
platform told to slow down is blocked until the time noted here.

One ledger file may serve several processes (the workers of ``gateway run --workers``
share their supervisor's, ``[alerts] robot_ledger_db``): ``reserve`` counts the robot's
sends and notes a new one in a single ``BEGIN IMMEDIATE`` transaction, so no two senders
are ever granted the same slot.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alerts.robots import RobotLimits
from jiayuan.config import AlertsConfig
from jiayuan.state import ROBOT_LEDGER_FILE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS robot_send (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    robot TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER
);
CREATE INDEX IF NOT EXISTS robot_send_time ON robot_send (robot, started_ms);
CREATE TABLE IF NOT EXISTS robot_block (
    robot TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""
# Sends older than this are of no use to any window.
KEEP_MS = 24 * 3600 * 1000
# Another process holding the ledger's write lock is waited for this long (a reservation
# holds it for a few statements).
BUSY_TIMEOUT_S = 30.0
# Processes opening a new shared ledger at once: switching it to WAL meets another
# connection doing the same, which SQLite answers with "locked" at once; tried this long.
PREPARE_FOR_S = 10.0


def robot_ledger_path(alerts: AlertsConfig, state_dir: str | Path) -> Path:
    """Where the ledger is: ``[alerts] robot_ledger_db``, else in the state directory (the
    supervisor's, for the workers of ``gateway run --workers``)."""
    if alerts.robot_ledger_db:
        return Path(alerts.robot_ledger_db)
    return Path(state_dir) / ROBOT_LEDGER_FILE


class RobotLedger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
        self._prepare()

    def _prepare(self) -> None:
        deadline = time.monotonic() + PREPARE_FOR_S
        wait_s = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + wait_s > deadline:
                    raise
            time.sleep(wait_s)
            wait_s = min(wait_s * 2, 0.5)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, robot: str, now_ms: int) -> int:
        """Note a request about to leave; its id for ``end``."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO robot_send (robot, started_ms) VALUES (?, ?)", (robot, now_ms)
            )
            self._db.execute("DELETE FROM robot_send WHERE started_ms < ?", (now_ms - KEEP_MS,))
        return int(cursor.lastrowid or 0)

    def reserve(
        self, robot: str, limits: RobotLimits, now_ms: int, gap_ms: int = 0
    ) -> tuple[int, int]:
        """Take a send slot if one is free now and nothing was sent in the last ``gap_ms``:
        (its id for ``end``, now), else (0, when to ask again).  Counting and noting are
        one write transaction, so concurrent senders on one file never share a slot."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                slots = self._slots(robot, limits, now_ms)
                next_ms = slots.next_ms
                if gap_ms:
                    last = self._last_ms(robot)
                    if last and now_ms < last + gap_ms:
                        next_ms = max(next_ms, last + gap_ms)
                if slots.free <= 0 or next_ms > now_ms:
                    self._db.execute("COMMIT")
                    return 0, next_ms
                cursor = self._db.execute(
                    "INSERT INTO robot_send (robot, started_ms) VALUES (?, ?)", (robot, now_ms)
                )
                self._db.execute("DELETE FROM robot_send WHERE started_ms < ?", (now_ms - KEEP_MS,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(cursor.lastrowid or 0), now_ms

    def end(self, send_id: int, now_ms: int) -> None:
        with self._lock:
            self._db.execute("UPDATE robot_send SET ended_ms = ? WHERE id = ?", (now_ms, send_id))

    def sends_since(self, robot: str, since_ms: int) -> list[int]:
        """When the sends that count after ``since_ms`` ended (or started), oldest first."""
        with self._lock:
            return self._sends_since(robot, since_ms)

    def _sends_since(self, robot: str, since_ms: int) -> list[int]:
        rows = self._db.execute(
            "SELECT COALESCE(ended_ms, started_ms) AS at FROM robot_send"
            " WHERE robot = ? AND COALESCE(ended_ms, started_ms) > ? ORDER BY at",
            (robot, since_ms),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def last_ms(self, robot: str) -> int:
        with self._lock:
            return self._last_ms(robot)

    def _last_ms(self, robot: str) -> int:
        row = self._db.execute(
            "SELECT MAX(COALESCE(ended_ms, started_ms)) FROM robot_send WHERE robot = ?",
            (robot,),
        ).fetchone()
        return int(row[0] or 0)

    def block(self, robot: str, until_ms: int, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO robot_block (robot, until_ms, reason) VALUES (?, ?, ?)"
                " ON CONFLICT (robot) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms),"
                " reason = excluded.reason",
                (robot, until_ms, reason),
            )

    def blocked_until(self, robot: str) -> int:
        with self._lock:
            return self._blocked_until(robot)

    def _blocked_until(self, robot: str) -> int:
        row = self._db.execute(
            "SELECT until_ms FROM robot_block WHERE robot = ?", (robot,)
        ).fetchone()
        return int(row[0]) if row else 0

    def free_slots(self, robot: str, limits: RobotLimits, now_ms: int) -> tuple[int, int]:
        """How many messages the robot may send now, and when the next slot frees (now
        when there are free slots)."""
        slots = self.slots(robot, limits, now_ms)
        return slots.free, slots.next_ms

    def slots(self, robot: str, limits: RobotLimits, now_ms: int) -> Slots:
        with self._lock:
            return self._slots(robot, limits, now_ms)

    def _slots(self, robot: str, limits: RobotLimits, now_ms: int) -> Slots:
        window_ms = int((limits.window_s + limits.margin_s) * 1000)
        in_window = self._sends_since(robot, now_ms - window_ms)
        window_free = limits.per_window - len(in_window)
        free = window_free
        next_ms = now_ms if free > 0 else in_window[-limits.per_window] + window_ms + 1
        if limits.per_second:
            second_ms = int((limits.second_s + limits.margin_s / 10) * 1000)
            in_second = [at for at in in_window if at > now_ms - second_ms]
            free_second = limits.per_second - len(in_second)
            if free_second <= 0:
                next_ms = max(next_ms, in_second[-limits.per_second] + second_ms + 1)
            free = min(free, free_second)
        blocked = self._blocked_until(robot)
        if blocked > now_ms:
            return Slots(0, 0, blocked)
        return Slots(max(0, free), max(0, window_free), next_ms)


@dataclass(frozen=True, slots=True)
class Slots:
    free: int  # messages that may leave now
    window_free: int  # of the per-window limit alone (Feishu's per-second one aside)
    next_ms: int  # when a slot frees, if none is free now
