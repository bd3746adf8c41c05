"""Writing a batch to InfluxDB until it is durable, or until told to give up.

While InfluxDB is unreachable (or answers 5xx) the same batch is retried with capped
exponential backoff, for as long as the caller allows (``retry_for_s``; it then raises
``Unreachable``).  A refusal of the data itself (HTTP 400: a field type conflict, a point
outside the retention policy) would fail forever, so the batch is split in halves until
the refused lines are found; those come back to be dead-lettered and the rest is stored.
A write into a v1 database that does not exist creates it and is sent again.

``SpoolingWriter`` puts the disk spool behind that: a batch InfluxDB does not take within
``gateway.spool_after_s`` goes to the spool (gateway/storage/spool.py), and so does every
batch after it until the spool has been replayed, so batches reach InfluxDB in the order
they were made.  When the spool is full the writer holds the batch (so the processor stops
acknowledging and the broker keeps the rest) and keeps replaying until there is room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from gateway.metrics import GatewayMetrics, SpoolMetrics
from gateway.pipeline import Pending
from gateway.storage.spool import InfluxSpool
from jiayuan.influx import InfluxClient, InfluxError

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
# Lines per request, InfluxData's upper suggestion.  A normal batch (batch_max_readings and
# its anomalies) is one request.  A batch that also takes its share of devices gone offline
# together (up to batch_max_readings more anomalies) can be larger, and so can a spool
# replay turn.  Those are written in parts, so the request body (held twice, as text and
# as bytes) stays a few MB and under InfluxDB 1.x's 25 MB max-body-size.
MAX_LINES_PER_WRITE = 10_000
# InfluxDB 1.x's answer to a write into a database that does not exist (yet).
DATABASE_NOT_FOUND = 404


class GaveUp(Exception):
    """The gateway is stopping and InfluxDB is still unreachable: nothing was acknowledged."""


class Unreachable(Exception):
    """InfluxDB stayed unreachable for as long as the caller allowed."""


class BatchWriter:
    def __init__(
        self,
        client: InfluxClient,
        metrics: GatewayMetrics,
        give_up: threading.Event,
        max_backoff_s: float = MAX_BACKOFF_S,
        max_lines_per_write: int = MAX_LINES_PER_WRITE,
    ) -> None:
        if max_lines_per_write < 1:
            raise ValueError(f"max_lines_per_write must be at least 1, not {max_lines_per_write}")
        self.client = client
        self.metrics = metrics
        self._give_up = give_up
        self.max_backoff_s = max_backoff_s
        self.max_lines_per_write = max_lines_per_write

    def write(self, pending: Sequence[Pending], retry_for_s: float | None = None) -> list[Pending]:
        """Store every line InfluxDB accepts, ``max_lines_per_write`` at a time; return the
        ones it refused.

        Raises GaveUp when told to stop, and Unreachable once ``retry_for_s`` has passed
        (None: retry until stored; 0: one attempt).  After Unreachable some parts of the
        batch may be stored already: writing them again overwrites the same points.
        """
        if not pending:
            return []
        refused: list[Pending] = []
        deadline = None if retry_for_s is None else time.monotonic() + retry_for_s
        step = self.max_lines_per_write
        for start in range(0, len(pending), step):
            self._write_splitting(list(pending[start : start + step]), refused, deadline)
        return refused

    def _write_splitting(
        self, pending: list[Pending], refused: list[Pending], deadline: float | None
    ) -> None:
        try:
            self._write_retrying([p.line for p in pending], deadline)
        except InfluxError as error:  # not retryable: the data itself
            if len(pending) == 1:
                log.warning("InfluxDB refused a line: %s", error)
                refused.append(pending[0])
                return
            middle = len(pending) // 2
            self._write_splitting(pending[:middle], refused, deadline)
            self._write_splitting(pending[middle:], refused, deadline)

    def _write_retrying(self, lines: list[str], deadline: float | None) -> None:
        backoff = FIRST_BACKOFF_S
        created = False
        while True:
            started = time.perf_counter()
            try:
                self.client.write(lines)
            except InfluxError as error:
                # Writes first, the database made only when missing: a failure the
                # operator reads is the write's own, not a query sent before it.
                if not created and error.status == DATABASE_NOT_FOUND and self._create_database():
                    created = True
                    continue
                if not error.retryable:
                    raise
                wait = backoff
                if deadline is not None:
                    wait = min(backoff, deadline - time.monotonic())
                    if wait <= 0:
                        raise Unreachable(str(error)) from error
                self.metrics.write_retry()
                log.warning(
                    "InfluxDB write of %d lines failed, retrying in %.1f s: %s",
                    len(lines),
                    wait,
                    error,
                )
                if self._give_up.wait(wait):
                    raise GaveUp(str(error)) from error
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self.metrics.batch_written(time.perf_counter() - started)
            return

    def _create_database(self) -> bool:
        """Create the missing database; False (said in the log) when that failed."""
        if self.client.config.api != "v1":
            return False  # v2 buckets are made by an admin
        try:
            self.client.ensure_database()
        except InfluxError as error:
            # No right to create it (v1 with restricted users), or InfluxDB went away: the
            # write is retried as it is, and says why it fails.
            log.warning(
                "InfluxDB has no database %r, and creating it failed: %s",
                self.client.database,
                error,
            )
            return False
        log.info("InfluxDB database %r created", self.client.database)
        return True


REPLAY_LINES_PER_TURN = 50_000  # then the newest batch gets its turn to be spooled and acked


class SpoolingWriter:
    """InfluxDB if it takes the batch in time, else the disk spool; order kept.

    Used by the processor's commit thread only.  Each call returns the lines InfluxDB
    refused, of the batch and of spooled batches replayed meanwhile, to be dead-lettered.
    """

    def __init__(
        self,
        writer: BatchWriter,
        spool: InfluxSpool,
        metrics: SpoolMetrics,
        spool_after_s: float,
    ) -> None:
        self.writer = writer
        self.spool = spool
        self.metrics = metrics
        self._spool_after_s = spool_after_s
        self._backoff = FIRST_BACKOFF_S
        self._next_replay = 0.0
        self._show()

    def hand_on(self, pending: Sequence[Pending]) -> list[Pending]:
        """Make ``pending`` durable in InfluxDB or in the spool.  Raises GaveUp."""
        refused = self.replay()
        if not self.spool:
            try:
                return refused + self._write(pending, self._spool_after_s)
            except Unreachable as error:
                log.warning(
                    "InfluxDB unreachable for %.1f s, spooling: %s", self._spool_after_s, error
                )
                self._replay_later()
        body = self.spool.encode(pending)
        if not self.spool.fits(body):
            self.metrics.full.set(1)
            try:
                refused += self._make_room(body)
                if not self.spool:  # bigger than the whole budget: wait for InfluxDB
                    return refused + self._write(pending, None)
            finally:
                self.metrics.full.set(0)
        self.spool.append(body, len(pending))
        self.metrics.spooled.inc()
        self._show()
        return refused

    def replay_wait(self) -> float | None:
        """Seconds until the next replay attempt is due; None when the spool is empty."""
        if not self.spool:
            return None
        return max(0.0, self._next_replay - time.monotonic())

    def replay(self) -> list[Pending]:
        """Replay spooled batches, oldest first, if an attempt is due: one attempt each,
        at most ``REPLAY_LINES_PER_TURN`` lines; back off when InfluxDB is still away."""
        refused: list[Pending] = []
        if not self.spool or time.monotonic() < self._next_replay:
            return refused
        lines = 0
        while self.spool and lines < REPLAY_LINES_PER_TURN:
            try:
                lines += self._replay_oldest(refused, retry_for_s=0.0)
            except Unreachable:
                self._replay_later()
                return refused
        self._backoff = FIRST_BACKOFF_S
        return refused

    def _make_room(self, body: bytes) -> list[Pending]:
        """The spool is full: hold the batch and replay, retrying until there is room."""
        log.error(
            "InfluxDB spool %s is full (%d of %d bytes, a batch needs more): not "
            "acknowledging until InfluxDB takes the backlog; the broker keeps the messages",
            self.spool.path,
            self.spool.bytes_stored,
            self.spool.max_bytes,
        )
        refused: list[Pending] = []
        while self.spool and not self.spool.fits(body):
            self._replay_oldest(refused, retry_for_s=None)
        return refused

    def _replay_oldest(self, refused: list[Pending], retry_for_s: float | None) -> int:
        """Write the oldest spooled batch and forget it; add what InfluxDB refused to
        ``refused``; return its number of lines."""
        oldest = self.spool.oldest()
        if oldest is None:
            return 0
        refused += self._write(oldest.pending, retry_for_s)
        self.spool.remove(oldest.id)
        self.metrics.replayed.inc()
        self._show()
        return len(oldest.pending)

    def _write(self, pending: Sequence[Pending], retry_for_s: float | None) -> list[Pending]:
        refused = self.writer.write(pending, retry_for_s)
        readings = sum(p.is_reading for p in pending) - sum(p.is_reading for p in refused)
        self.writer.metrics.readings_stored(readings)
        return refused

    def _replay_later(self) -> None:
        self._next_replay = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.writer.max_backoff_s)

    def _show(self) -> None:
        self.metrics.holding(self.spool.bytes_stored, self.spool.lines, self.spool.warning)
