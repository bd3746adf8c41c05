"""The dead-man check: a device silent longer than its family's ``offline_after_s``.

Driven by a timer, not only by arriving data, so a device that stops reporting is noticed
even when nothing else arrives.  State is a few numpy arrays per kind indexed by the
device's row, so memory grows by bytes per device and the check is one vectorised
comparison per kind per tick.  The rows are the kind's rules' own numbering when the
detector shares it (``share_rows``): one dictionary entry a device for all three.

"Now" is max(latest device timestamp seen, wall clock): an accelerated replay runs device
time ahead of the wall clock and is judged by device time.  A backlog (readings much
older than their arrival, as after a gateway or broker outage) would make every device
look silent; a device whose last reading arrived late but recently is therefore not judged
until it has also been quiet on the wall clock for ``offline_after_s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.detection.rules.base import AnomalyChange, grown, grown_rows
from gateway.detection.state import Stateful, row_number
from jiayuan.catalogue import FAMILIES, Kind, offline_code
from jiayuan.contract import Reading
from jiayuan.places import DeviceKey, Place

_INITIAL_CAPACITY = 1024


@dataclass
class _Clock:
    """One kind's devices, by row: its Place (None: a row numbered by the kind's other
    tables that this check has not heard from yet), its last device time and arrival,
    and whether it is reported offline."""

    limit_ms: int
    rows: dict[DeviceKey, int] = field(default_factory=dict)
    places: list[Place | None] = field(default_factory=list)
    last_ts: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(_INITIAL_CAPACITY, np.int64)
    )
    last_rx: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(_INITIAL_CAPACITY, np.int64)
    )
    heard: npt.NDArray[np.bool_] = field(
        default_factory=lambda: np.zeros(_INITIAL_CAPACITY, np.bool_)
    )
    offline: npt.NDArray[np.bool_] = field(
        default_factory=lambda: np.zeros(_INITIAL_CAPACITY, np.bool_)
    )

    def row(self, place: Place) -> int:
        """The device's row, its Place kept (one a device: the latest building label)."""
        rows = self.rows
        row = rows.get(place.key)
        if row is None:
            row = rows[place.key] = row_number(len(rows))
        if row >= len(self.last_ts):
            size = grown_rows(len(self.last_ts), row)
            self.last_ts = grown(self.last_ts, size, 0)
            self.last_rx = grown(self.last_rx, size, 0)
            self.heard = grown(self.heard, size, False)
            self.offline = grown(self.offline, size, False)
        places = self.places
        if row >= len(places):
            places.extend([None] * (row + 1 - len(places)))
        kept = places[row]
        if kept is not place:
            if kept is None or kept.building != place.building:
                self.heard[row] = True
            # An equal Place too: the device's readings share the new one (the
            # pipeline's), so the next reading finds it by identity (_seen_kind).
            places[row] = place
        return row


class OfflineMonitor(Stateful):
    STATE = ("_clocks", "_latest_ts")

    def __init__(self, offline_after_s: Mapping[Kind, float] | None = None) -> None:
        after = {kind: fam.offline_after_s for kind, fam in FAMILIES.items()}
        after.update(offline_after_s or {})
        self._clocks = {kind.value: _Clock(int(seconds * 1000)) for kind, seconds in after.items()}
        self._latest_ts = 0

    def __len__(self) -> int:
        return sum(int(np.count_nonzero(clock.heard)) for clock in self._clocks.values())

    def share_rows(self, kind: str, rows: dict[DeviceKey, int]) -> None:
        """Number the kind's devices in ``rows`` (its rules' numbering), before any of
        them is seen."""
        clock = self._clocks[kind]
        if clock.rows:
            raise ValueError(f"the {kind} offline check numbers {len(clock.rows)} devices")
        clock.rows = rows

    def places(self) -> list[Place]:
        """Every device heard from, kind by kind."""
        return [p for clock in self._clocks.values() for p in clock.places if p is not None]

    def seen(self, place: Place, ts_ms: int, received_ms: int) -> AnomalyChange | None:
        """Record a reading; the closing change when the device was offline until now."""
        clock = self._clocks[place.kind]
        row = clock.row(place)
        previous = int(clock.last_ts[row])
        clock.last_ts[row] = max(previous, ts_ms)
        clock.last_rx[row] = received_ms
        self._latest_ts = max(self._latest_ts, ts_ms)
        if not clock.offline[row]:
            return None
        clock.offline[row] = False
        return AnomalyChange(
            offline_code(Kind(place.kind)),
            False,
            ts_ms,
            max(0, ts_ms - previous) / 1000.0,
            clock.limit_ms / 1000.0,
        )

    def seen_many(
        self, items: Sequence[tuple[Place, Reading, int]], by_kind: Mapping[str, list[int]]
    ) -> list[AnomalyChange | None]:
        """``seen`` for each of the readings (place, reading, received), in order, with
        their indexes grouped by kind; per reading its closing change or None."""
        backs: list[AnomalyChange | None] = [None] * len(items)
        for kind, indexes in by_kind.items():
            clock = self._clocks.get(kind)
            if clock is None:  # not a kind of the catalogue: as ``seen`` would fail
                raise KeyError(kind)
            latest = _seen_kind(clock, items, indexes, backs, offline_code(Kind(kind)))
            self._latest_ts = max(self._latest_ts, latest)
        return backs

    def layout(self) -> object:
        limits = tuple((kind, clock.limit_ms) for kind, clock in self._clocks.items())
        return (super().layout(), "rows by kind", limits)

    def restarted(self, wall_ms: int) -> None:
        """After a restart, count every device as heard from now, so a device is reported
        only after a full silence from the restart (the backlog the broker kept for the
        gateway arrives first)."""
        for clock in self._clocks.values():
            clock.last_rx[: len(clock.places)] = wall_ms

    def mark_offline(self, place: Place) -> None:
        """The device was already reported offline (before a restart): report only its
        return, not its silence again."""
        clock = self._clocks[place.kind]
        clock.offline[clock.row(place)] = True

    def due(self, wall_ms: int, most: int | None = None) -> list[tuple[Place, AnomalyChange]]:
        """Devices that have just gone silent for too long, each opened once; at most
        ``most`` of them (the rest stay due for the next call), so a district's uplink
        failing does not open 100,000 anomalies in one batch held in memory at once."""
        now = max(self._latest_ts, wall_ms)
        changes: list[tuple[Place, AnomalyChange]] = []
        for kind, clock in self._clocks.items():
            left = None if most is None else most - len(changes)
            if left is not None and left <= 0:
                break
            count = len(clock.places)
            if count == 0:
                continue
            last_ts, last_rx = clock.last_ts[:count], clock.last_rx[:count]
            limit = clock.limit_ms
            silent = now - last_ts > limit
            catching_up = (last_rx - last_ts > limit) & (wall_ms - last_rx <= limit)
            due = silent & ~catching_up & ~clock.offline[:count] & clock.heard[:count]
            newly = np.flatnonzero(due)[:left]
            clock.offline[newly] = True
            code = offline_code(Kind(kind))
            for row, last in zip(newly.tolist(), last_ts[newly].tolist(), strict=True):
                place = clock.places[row]
                assert place is not None  # heard
                silent_s, limit_s = (now - last) / 1000.0, limit / 1000.0
                changes.append((place, AnomalyChange(code, True, last + limit, silent_s, limit_s)))
        return changes


def _seen_kind(
    clock: _Clock,
    items: Sequence[tuple[Place, Reading, int]],
    indexes: list[int],
    backs: list[AnomalyChange | None],
    code: str,
) -> int:
    """``OfflineMonitor.seen`` for one kind's readings of a batch, their closing changes
    put in ``backs``; returns their latest device time.  A function, not a method, so that
    the compiled build can type it (offline.pxd): the arrays are read and written as C
    arrays, not numpy scalars, and a device whose Place is the one kept skips the
    bookkeeping."""
    rows, places = clock.rows, clock.places
    last_ts, last_rx = clock.last_ts, clock.last_rx
    offline = clock.offline.view(np.uint8)
    capacity = len(last_ts)
    latest = 0
    for index in indexes:
        place, reading, received_ms = items[index]
        ts = reading.ts
        row = rows.get(place.key, -1)
        if row < 0 or row >= capacity or row >= len(places) or places[row] is not place:
            row = clock.row(place)  # numbered, grown or relabelled: the arrays may be new
            last_ts, last_rx = clock.last_ts, clock.last_rx
            offline = clock.offline.view(np.uint8)
            capacity = len(last_ts)
        previous = int(last_ts[row])  # a Python int when interpreted, as ``seen`` reads it
        if ts > previous:
            last_ts[row] = ts
        last_rx[row] = received_ms
        if ts > latest:
            latest = ts
        if offline[row]:
            offline[row] = 0
            backs[index] = AnomalyChange(
                code, False, ts, max(0, ts - previous) / 1000.0, clock.limit_ms / 1000.0
            )
    return latest
