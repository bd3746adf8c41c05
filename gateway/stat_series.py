"""The statistical detectors in the gateway: readings in, anomaly changes out.

Each (device, float signal of the catalogue) gets a slot in one ``StatCore``; integer and
enumerated signals are never judged.  An anomaly is one per device and detector code, so
several signals of a device share it: it opens with the first signal flagged (its detail
names that signal) and closes when the last one clears.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gateway.rules.base import AnomalyChange, Place
from gateway.stat_params import BIT, DETECTORS, StatParams
from gateway.statistical import StatCore
from jiayuan.catalogue import Kind, ValueType, family, statistical_code
from jiayuan.contract import Reading

DeviceKey = tuple[str, str, str, str, str]
# Per (kind, field): the catalogue key "kind.signal", the floor and the minimum; None for
# fields that are not float signals.
_SeriesSpec = tuple[str, float, float] | None


class StatisticalDetectors:
    def __init__(self, params: StatParams | None = None) -> None:
        self.core = StatCore(params)
        self.params = self.core.params
        self._slots: dict[tuple[DeviceKey, str], int] = {}
        self._specs: dict[tuple[str, str], _SeriesSpec] = {}
        # Open anomalies: (device, detector) → the signals flagging it, in flag order.
        self._open: dict[tuple[DeviceKey, str], list[str]] = {}

    def _spec(self, kind: str, name: str) -> _SeriesSpec:
        key = (kind, name)
        if key not in self._specs:
            signal = family(kind).signal(name)
            spec: _SeriesSpec = None
            if signal is not None and signal.type is ValueType.FLOAT:
                signal_key = f"{kind}.{signal.name}"
                low = signal.minimum if signal.minimum is not None else -math.inf
                span = (signal.maximum or 0.0) - (signal.minimum or 0.0)
                floor = self.params.floors.get(signal_key, self.params.floor_share * span)
                spec = (signal_key, floor, low)
            self._specs[key] = spec
        return self._specs[key]

    def _slot(self, device: DeviceKey, kind: str, name: str) -> int | None:
        slot = self._slots.get((device, name))
        if slot is None:
            spec = self._spec(kind, name)
            if spec is None:
                return None
            signal_key, floor, low = spec
            slot = self.core.add_series(floor, low, self.params.enabled_bits(signal_key))
            self._slots[(device, name)] = slot
        return slot

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        return [change for _, change in self.evaluate_many([(place, reading)])]

    def evaluate_many(
        self, items: Sequence[tuple[Place, Reading]]
    ) -> list[tuple[Place, AnomalyChange]]:
        """Judge many readings in one call to the core (the per-call numpy overhead is what
        costs, not the arithmetic); changes come out in reading order."""
        owners: list[int] = []
        names: list[str] = []
        slots: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        for index, (place, reading) in enumerate(items):
            for name, value in reading.values.items():
                if isinstance(value, str | bool):
                    continue
                slot = self._slot(place.key, reading.kind, name)
                if slot is not None and math.isfinite(value):
                    owners.append(index)
                    names.append(name)
                    slots.append(slot)
                    stamps.append(reading.ts)
                    values.append(float(value))
        if not slots:
            return []
        slot_array = np.array(slots, dtype=np.int64)
        before_batch = self.core.active[slot_array].copy()
        after = self.core.update(
            slot_array, np.array(stamps, dtype=np.int64), np.array(values, dtype=np.float64)
        )
        # A slot may appear several times in one call: each entry's "before" is the flags
        # after the slot's previous entry, or the state before the call for its first one.
        order = np.argsort(slot_array, kind="stable")
        sorted_slots = slot_array[order]
        repeat = np.concatenate(([False], sorted_slots[1:] == sorted_slots[:-1]))
        after_sorted = after[order]
        previous_sorted = np.where(
            repeat, np.concatenate(([0], after_sorted[:-1])), before_batch[order]
        )
        before = np.empty_like(after)
        before[order] = previous_sorted
        changes: list[tuple[Place, AnomalyChange]] = []
        for entry in np.flatnonzero(before != after).tolist():
            place, reading = items[owners[entry]]
            for detector in DETECTORS:
                bit = BIT[detector]
                if (before[entry] ^ after[entry]) & bit:
                    change = self._flip(
                        place, reading, detector, names[entry], slots[entry], values[entry],
                        bool(after[entry] & bit),
                    )  # fmt: skip
                    if change is not None:
                        changes.append((place, change))
        return changes

    def _flip(
        self,
        place: Place,
        reading: Reading,
        detector: str,
        name: str,
        slot: int,
        value: float,
        now_on: bool,
    ) -> AnomalyChange | None:
        key = (place.key, detector)
        flagged = self._open.get(key, [])
        if now_on:
            self._open[key] = [*flagged, name]
            if flagged:
                return None
        else:
            if name not in flagged:
                return None
            flagged = [n for n in flagged if n != name]
            if flagged:
                self._open[key] = flagged
                return None
            del self._open[key]
        code = statistical_code(Kind(reading.kind), detector)
        baseline = self.core.baseline(slot, detector)
        # The detail is the field name as sent (p03_temp names its port as well).
        return AnomalyChange(code, now_on, reading.ts, value, baseline, name)
