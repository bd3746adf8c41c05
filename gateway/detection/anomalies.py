"""Anomalies: one per device and condition, from its start to its end.

The book turns rule verdicts into anomaly records, ignoring an "open" for a condition that
is already open and a "close" for one that is not (one writer per device and condition).
It keeps the open ones and a bounded ring of recently closed ones for the API.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.detection.rules.base import AnomalyChange
from gateway.detection.state import Stateful
from jiayuan.anomaly import CLOSED, OPEN, Anomaly
from jiayuan.catalogue import family
from jiayuan.places import Place

RECENT_CLOSED = 1000


class AnomalyBook(Stateful):
    STATE = ("_open", "_closed")

    def __init__(self, recent_closed: int = RECENT_CLOSED) -> None:
        self._open: dict[tuple[tuple[str, str, str, str, str], str], Anomaly] = {}
        self._closed: deque[Anomaly] = deque(maxlen=recent_closed)
        self._lock = threading.Lock()

    def apply(self, place: Place, change: AnomalyChange) -> Anomaly | None:
        """The anomaly this change opened or closed, or None when it changed nothing."""
        key = (place.key, change.code)
        with self._lock:
            current = self._open.get(key)
            if change.opened:
                if current is not None:
                    return None
                event = family(place.kind).event(change.code)
                opened = Anomaly(
                    place.district,
                    place.street,
                    place.estate,
                    place.building,
                    place.device,
                    place.kind,
                    change.code,
                    event.severity.value,
                    event.title_zh,
                    event.title_en,
                    _finite(change.value),
                    _finite(change.threshold),
                    change.ts_ms,
                    0,
                    OPEN,
                    change.detail,
                    change.explanation,
                )
                self._open[key] = opened
                return opened
            if current is None:
                return None
            del self._open[key]
            closed = replace(current, end_ms=max(change.ts_ms, current.start_ms), state=CLOSED)
            self._closed.append(closed)
            return closed

    def export_state(self) -> dict[str, Any]:
        with self._lock:  # copies: the API may read the book while a snapshot is taken
            return {"_open": dict(self._open), "_closed": deque(self._closed, self._closed.maxlen)}

    def import_state(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            super().import_state(state)

    def restore(self, anomaly: Anomaly) -> bool:
        """Take back an anomaly that was open before a restart (read from InfluxDB); False
        when one is already open for that device and condition."""
        if anomaly.state != OPEN:
            raise ValueError(f"only open anomalies are restored, not {anomaly.state}")
        key = (
            (anomaly.district, anomaly.street, anomaly.estate, anomaly.kind, anomaly.device),
            anomaly.code,
        )
        with self._lock:
            if key in self._open:
                return False
            self._open[key] = anomaly
            return True

    def list(
        self,
        active: bool | None = None,
        kind: str | None = None,
        estate: str | None = None,
        limit: int = 100,
    ) -> list[Anomaly]:
        """Newest first."""
        with self._lock:
            chosen: list[Anomaly] = []
            if active is not False:
                chosen += self._open.values()
            if active is not True:
                chosen += self._closed
        chosen = [
            a
            for a in chosen
            if (kind is None or a.kind == kind) and (estate is None or a.estate == estate)
        ]
        chosen.sort(key=lambda a: a.start_ms, reverse=True)
        return chosen[:limit]

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)


def _finite(value: float) -> float:
    # InfluxDB refuses NaN and infinity; a value the device has not reported reads as 0.
    return value if math.isfinite(value) else 0.0
