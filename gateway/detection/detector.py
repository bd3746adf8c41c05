"""The detection core: family rules, statistical detectors and the offline check feeding
one anomaly book."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.detection.anomalies import AnomalyBook
from gateway.detection.rules import FamilyRules, OfflineMonitor, all_rules
from gateway.detection.rules.base import AnomalyChange
from gateway.detection.sites import SiteDetectors
from gateway.detection.state import SnapshotMismatch
from gateway.detection.statistics.series import StatisticalDetectors
from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import Kind
from jiayuan.contract import Reading
from jiayuan.places import Place


class Detector:
    """The detection state of one gateway; one thread changes it at a time."""

    def __init__(
        self,
        rules: Mapping[Kind, FamilyRules] | None = None,
        offline: OfflineMonitor | None = None,
        book: AnomalyBook | None = None,
        statistical: StatisticalDetectors | None = None,
        sites: SiteDetectors | None = None,
    ) -> None:
        self.rules = dict(rules) if rules is not None else all_rules()
        self.offline = offline if offline is not None else OfflineMonitor()
        self.book = book if book is not None else AnomalyBook()
        self.statistical = statistical if statistical is not None else StatisticalDetectors()
        # The registry's sites (gateway.detection.sites); None when it names none.
        self.sites = sites if sites else None
        # One row number a device for its rules, statistics and offline check: one
        # dictionary entry, not three.
        for kind, family_rules in self.rules.items():
            self.statistical.share_rows(kind.value, family_rules.device_rows)
            self.offline.share_rows(kind.value, family_rules.device_rows)

    def reading(self, place: Place, reading: Reading, received_ms: int) -> list[Anomaly]:
        """Anomalies opened or closed by this (new, valid) reading."""
        return self.readings([(place, reading, received_ms)])

    def readings(self, items: Sequence[tuple[Place, Reading, int]]) -> list[Anomaly]:
        """Anomalies opened or closed by these (new, valid) readings, in order: per reading
        its offline return and its rules' changes (each family's rules judge their share
        of the batch in one vectorised call), then the statistical detectors over all of
        them in one call."""
        changed: list[Anomaly] = []
        by_kind: dict[str, list[int]] = {}
        for index, (_, reading, _) in enumerate(items):
            by_kind.setdefault(reading.kind, []).append(index)
        per_reading = self._rule_changes(items, by_kind)
        backs = self.offline.seen_many(items, by_kind)
        judged: list[tuple[Place, Reading]] = []
        for (place, reading, _), rule_changes, back in zip(items, per_reading, backs, strict=True):
            if back is not None:
                self._apply(place, back, changed)
            if rule_changes is not None:
                for change in rule_changes:
                    self._apply(place, change, changed)
                judged.append((place, reading))
        for place, change in self.statistical.evaluate_many(judged):
            self._apply(place, change, changed)
        if self.sites is not None:
            for place, change in self.sites.evaluate_many(judged):
                self._apply(place, change, changed)
        return changed

    def _rule_changes(
        self, items: Sequence[tuple[Place, Reading, int]], by_kind: dict[str, list[int]]
    ) -> list[list[AnomalyChange] | None]:
        """Each reading's rule changes (None: a kind without rules), one call per family
        (``by_kind``: the readings' indexes by kind)."""
        out: list[list[AnomalyChange] | None] = [None] * len(items)
        for kind, indexes in by_kind.items():
            rules = self.rules.get(Kind(kind))
            if rules is None:
                continue
            batch = [(items[i][0], items[i][1]) for i in indexes]
            for index, changes in zip(indexes, rules.evaluate_many(batch), strict=True):
                out[index] = changes
        return out

    def _apply(self, place: Place, change: AnomalyChange, changed: list[Anomaly]) -> None:
        anomaly = self.book.apply(place, change)
        if anomaly is not None:
            changed.append(anomaly)

    def export_state(self) -> dict[str, Any]:
        """Every part's per-device state as plain data (``gateway.detection.snapshot``)."""
        return {
            "rules": {kind.value: rules.export_state() for kind, rules in self.rules.items()},
            "offline": self.offline.export_state(),
            "book": self.book.export_state(),
            "statistical": self.statistical.export_state(),
            "sites": None if self.sites is None else self.sites.export_state(),
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        rules = state["rules"]
        if set(rules) != {kind.value for kind in self.rules}:
            raise SnapshotMismatch(f"rules of {sorted(rules)}, not of {sorted(self.rules)}")
        for kind, family_rules in self.rules.items():
            family_rules.import_state(rules[kind.value])
        self.offline.import_state(state["offline"])
        self.book.import_state(state["book"])
        self.statistical.import_state(state["statistical"])
        if self.sites is not None:  # the layout says whether the snapshot has them
            self.sites.import_state(state["sites"])

    def layout(self) -> object:
        """What the state's shape depends on: two detectors of equal layout can take each
        other's state."""
        return (
            tuple((kind.value, rules.layout()) for kind, rules in self.rules.items()),
            self.offline.layout(),
            self.statistical.layout(),
            None if self.sites is None else self.sites.layout(),
        )

    def tick(self, wall_ms: int, most: int | None = None) -> list[Anomaly]:
        """Anomalies opened by the timer (devices gone silent), for at most ``most``
        devices; the others are still due at the next call."""
        changed = []
        for place, change in self.offline.due(wall_ms, most):
            anomaly = self.book.apply(place, change)
            if anomaly is not None:
                changed.append(anomaly)
        return changed
