"""The estate safety score in the gateway process: its HTTP router, and every estate on
this gateway's streets scored again each ``alerts.score_interval_s``, written to InfluxDB.

It reads the alerts (their SQLite store) and the registry the alert service opened; the
alert service's timer thread calls ``tick``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from fastapi import APIRouter

from alerts.store import AlertStore
from jiayuan.config import Config
from jiayuan.influx import InfluxClient
from jiayuan.registry.store import RegistryStore
from score.aggregate import write_aggregate_rows
from score.api import create_score_router
from score.config import load_score_config
from score.estate import score_report
from score.grades import ALL
from score.points import write_score_points

log = logging.getLogger(__name__)

# The district and city rows of a split set count the estates scored in this many intervals.
AGGREGATE_INTERVALS = 3


class ScoreService:
    def __init__(
        self,
        config: Config,
        store: AlertStore,
        registry: RegistryStore,
        clock: Callable[[], int],
        streets: Collection[str] | None = None,
    ) -> None:
        """``streets``: the streets whose devices this gateway receives (None: every one).
        A gateway that owns some streets scores only their estates and writes only their
        street rows of the grade distribution: district, city and company figures need
        every street, and another instance scores the rest (docs/scaling.md)."""
        self.config = config
        self.store = store
        self.registry = registry
        self.clock = clock
        self.streets = frozenset(streets) if streets is not None else None
        self.score_config = load_score_config(config.alerts.score_weights_file or None)
        self._influx = InfluxClient(config.influx)
        self._next_score_ms = 0

    def router(self) -> APIRouter:
        return create_score_router(
            self.registry, self.store, self.score_config, self.clock, self.streets
        )

    def tick(self, now_ms: int) -> None:
        """Score the estates when the interval has passed."""
        if now_ms >= self._next_score_ms:
            self._next_score_ms = now_ms + int(self.config.alerts.score_interval_s * 1000)
            self.write_scores(now_ms)

    def write_scores(self, now_ms: int | None = None) -> int:
        """Score every registered estate on this gateway's streets and write the points;
        the number scored."""
        now = self.clock() if now_ms is None else now_ms
        try:
            registry = self.registry.load()
            if self.streets is not None:
                registry = registry.on_streets(self.streets)
            scored = 0
            if registry.estates:
                report = score_report(registry, self.store, now, self.score_config)
                distributions = report.distributions
                if self.streets is not None:  # the district and city rows would be partial
                    distributions = tuple(d for d in distributions if d.street != ALL)
                write_score_points(self._influx, report.cards, distributions, now)
                scored = len(report.cards)
            if self.streets is not None and self.config.alerts.score_aggregate:
                # Every instance's estates scored in the last few intervals (one that
                # stopped scoring drops out of the district rows after that).
                window_ms = int(AGGREGATE_INTERVALS * self.config.alerts.score_interval_s * 1000)
                write_aggregate_rows(
                    self._influx, self.score_config.targets_at(now).targets, now - window_ms, now
                )
            return scored
        except Exception:
            log.exception(
                "scoring the estates failed; next try in %s s", self.config.alerts.score_interval_s
            )
            return 0

    def close(self) -> None:
        self._influx.close()
