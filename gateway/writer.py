"""Writing a batch to InfluxDB until it is durable, or until told to give up.

While InfluxDB is unreachable (or answers 5xx) the same batch is retried with capped
exponential backoff; the caller does not acknowledge MQTT meanwhile, so the broker keeps
the messages.  A refusal of the data itself (HTTP 400: a field type conflict, a point
outside the retention policy) would fail forever, so the batch is split in halves until
the refused lines are found; those come back to be dead-lettered and the rest is stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from gateway.metrics import GatewayMetrics
from gateway.pipeline import Pending
from jiayuan.influx import InfluxClient, InfluxError

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0


class GaveUp(Exception):
    """The gateway is stopping and InfluxDB is still unreachable: nothing was acknowledged."""


class BatchWriter:
    def __init__(
        self,
        client: InfluxClient,
        metrics: GatewayMetrics,
        give_up: threading.Event,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self._give_up = give_up
        self._max_backoff_s = max_backoff_s
        self._database_ready = False

    def write(self, pending: Sequence[Pending]) -> list[Pending]:
        """Store every line InfluxDB accepts; return the ones it refused.  Raises GaveUp."""
        if not pending:
            return []
        refused: list[Pending] = []
        self._write_splitting(list(pending), refused)
        return refused

    def _write_splitting(self, pending: list[Pending], refused: list[Pending]) -> None:
        try:
            self._write_retrying([p.line for p in pending])
        except InfluxError as error:  # not retryable: the data itself
            if len(pending) == 1:
                log.warning("InfluxDB refused a line: %s", error)
                refused.append(pending[0])
                return
            middle = len(pending) // 2
            self._write_splitting(pending[:middle], refused)
            self._write_splitting(pending[middle:], refused)

    def _write_retrying(self, lines: list[str]) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            started = time.perf_counter()
            try:
                self._ensure_database()
                self.client.write(lines)
            except InfluxError as error:
                if not error.retryable:
                    raise
                self.metrics.write_retry()
                log.warning("InfluxDB write failed, retrying in %.1f s: %s", backoff, error)
                if self._give_up.wait(backoff):
                    raise GaveUp(str(error)) from error
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self.metrics.batch_written(time.perf_counter() - started)
            return

    def _ensure_database(self) -> None:
        if self._database_ready:
            return
        try:
            self.client.ensure_database()
        except InfluxError as error:
            if error.retryable:
                raise
            # No right to create it (v1 with restricted users): it may well exist already.
            log.warning("could not create the InfluxDB database: %s", error)
        self._database_ready = True
