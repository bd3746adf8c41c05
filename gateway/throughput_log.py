"""One INFO line a minute of what the gateway did in that minute.

The log is what an operator reads first; a line per reading or per write would bury
everything else (the libraries' own request lines are kept at WARNING by
``jiayuan.cli_support.setup_logging``).  The line comes every interval, quiet or not, so
a gap in the log is itself a sign the process stalled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.metrics import GatewayStats

log = logging.getLogger(__name__)

INTERVAL_S = 60.0


class ThroughputLog:
    """Logs the change of the gateway's counters every ``interval_s`` on a daemon thread."""

    def __init__(self, stats: Callable[[], GatewayStats], interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stats = stats
        self._last = GatewayStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throughput-log", daemon=True)

    def start(self) -> None:
        self._last = self._stats()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.log_interval()

    def log_interval(self) -> None:
        """Log what changed since the last call (or the start)."""
        now, last = self._stats(), self._last
        self._last = now
        log.info(
            "吞吐 throughput, last %.0f s: %d readings received, %d stored, %d dead letters, "
            "%d duplicates, %d sequence faults; %d anomalies opened; %d messages queued",
            self.interval_s,
            now.readings_received - last.readings_received,
            now.readings_stored - last.readings_stored,
            now.dead_letters - last.dead_letters,
            now.duplicates - last.duplicates,
            now.seq_faults - last.seq_faults,
            sum(now.anomalies_opened.values()) - sum(last.anomalies_opened.values()),
            now.queued,
        )
