"""The detection core: family rules and the offline check feeding one anomaly book."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.anomalies import Anomaly, AnomalyBook
from gateway.rules import FamilyRules, OfflineMonitor, Place, all_rules
from jiayuan.catalogue import Kind
from jiayuan.contract import Reading


class Detector:
    def __init__(
        self,
        rules: Mapping[Kind, FamilyRules] | None = None,
        offline: OfflineMonitor | None = None,
        book: AnomalyBook | None = None,
    ) -> None:
        self.rules = dict(rules) if rules is not None else all_rules()
        self.offline = offline if offline is not None else OfflineMonitor()
        self.book = book if book is not None else AnomalyBook()

    def reading(self, place: Place, reading: Reading, received_ms: int) -> list[Anomaly]:
        """Anomalies opened or closed by this (new, valid) reading."""
        changed: list[Anomaly] = []
        back = self.offline.seen(place, reading.ts, received_ms)
        if back is not None:
            closed = self.book.apply(place, back)
            if closed is not None:
                changed.append(closed)
        rules = self.rules.get(Kind(reading.kind))
        if rules is not None:
            for change in rules.evaluate(place, reading):
                anomaly = self.book.apply(place, change)
                if anomaly is not None:
                    changed.append(anomaly)
        return changed

    def tick(self, wall_ms: int) -> list[Anomaly]:
        """Anomalies opened by the timer (devices gone silent)."""
        changed = []
        for place, change in self.offline.due(wall_ms):
            anomaly = self.book.apply(place, change)
            if anomaly is not None:
                changed.append(anomaly)
        return changed
