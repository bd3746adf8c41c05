"""The estate safety score in the gateway process: its HTTP router, and every estate on
this gateway's streets scored again each ``alerts.score_interval_s``, written to InfluxDB.

It reads the alerts (their SQLite store) and the registry the alert service opened, one
estate at a time (``RegistryStore.estate_upkeep``): a whole registry loaded each interval
would hold a district's devices as objects for seconds while the gateway's other threads
allocate, and leave Python's arenas mapped after.  The alert service's timer thread
calls ``tick``; when that service stops, the score ends between two estates
(``stopping``) and writes nothing, so the stores are never closed under it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TypeVar

from fastapi import APIRouter

from alerts.store import AlertStore
from jiayuan.config import Config
from jiayuan.influx import InfluxClient
from jiayuan.registry.store import RegistryStore
from score.aggregate import write_aggregate_rows
from score.api import create_score_router
from score.config import load_score_config
from score.points import scored_points

log = logging.getLogger(__name__)

# The district and city rows of a split set count the estates scored in this many intervals.
AGGREGATE_INTERVALS = 3

T = TypeVar("T")


class ScoringStopped(Exception):
    """The gateway is stopping: the score ends before its next estate."""


def _until(stopping: threading.Event, items: Iterable[T]) -> Iterator[T]:
    for item in items:
        if stopping.is_set():
            raise ScoringStopped
        yield item


class ScoreService:
    def __init__(
        self,
        config: Config,
        store: AlertStore,
        registry: RegistryStore,
        clock: Callable[[], int],
        streets: Collection[str] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        """``streets``: the streets whose devices this gateway receives (None: every one).
        A gateway that owns some streets scores only their estates and writes only their
        street rows of the grade distribution: district, city and company figures need
        every street, and another instance scores the rest (docs/scaling.md).
        ``stopping``: set when the thread that calls ``tick`` is to end (the alert
        service's stop)."""
        self.config = config
        self.store = store
        self.registry = registry
        self.clock = clock
        self.streets = frozenset(streets) if streets is not None else None
        self.stopping = stopping or threading.Event()
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
            points = scored_points(
                _until(self.stopping, self.registry.estate_upkeep(self.streets)),
                self.store,
                now,
                self.score_config,
                city_rows=self.streets is None,
            )
            if points.lines:
                self._influx.write(points.lines)
            if self.streets is not None and self.config.alerts.score_aggregate:
                # Every instance's estates scored in the last few intervals (one that
                # stopped scoring drops out of the district rows after that).
                window_ms = int(AGGREGATE_INTERVALS * self.config.alerts.score_interval_s * 1000)
                write_aggregate_rows(
                    self._influx, self.score_config.targets_at(now).targets, now - window_ms, now
                )
            return points.estates
        except ScoringStopped:
            log.info("scoring stopped before its end: the gateway is stopping; nothing written")
            return 0
        except Exception:
            log.exception(
                "scoring the estates failed; next try in %s s", self.config.alerts.score_interval_s
            )
            return 0

    def close(self) -> None:
        self._influx.close()
