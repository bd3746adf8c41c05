"""The dead-man check: a device silent longer than its family's ``offline_after_s``.

Driven by a timer, not only by arriving data, so a device that stops reporting is noticed
even when nothing else arrives.  State is a few numpy arrays indexed by device, so memory
grows by bytes per device and the check is one vectorised comparison per tick.

"Now" is max(latest device timestamp seen, wall clock): an accelerated replay runs device
time ahead of the wall clock and is judged by device time.  A backlog (readings much
older than their arrival, as after a gateway or broker outage) would make every device
look silent; a device whose last reading arrived late but recently is therefore not judged
until it has also been quiet on the wall clock for ``offline_after_s``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from gateway.rules.base import AnomalyChange, Place
from gateway.state import Stateful
from jiayuan.catalogue import FAMILIES, Kind, offline_code

_INITIAL_CAPACITY = 1024


class OfflineMonitor(Stateful):
    STATE = ("_index", "_places", "_last_ts", "_last_rx", "_kind", "_offline", "_latest_ts")

    def __init__(self, offline_after_s: Mapping[Kind, float] | None = None) -> None:
        after = {kind: fam.offline_after_s for kind, fam in FAMILIES.items()}
        after.update(offline_after_s or {})
        self._after_ms = {kind.value: int(seconds * 1000) for kind, seconds in after.items()}
        # Each device's limit as an index into this table (a byte a device, not 8).
        self._kind_index = {kind: k for k, kind in enumerate(self._after_ms)}
        self._limits = np.array(list(self._after_ms.values()), np.int64)
        self._index: dict[tuple[str, str, str, str, str], int] = {}
        self._places: list[Place] = []
        self._last_ts: npt.NDArray[np.int64] = np.zeros(_INITIAL_CAPACITY, np.int64)
        self._last_rx: npt.NDArray[np.int64] = np.zeros(_INITIAL_CAPACITY, np.int64)
        self._kind: npt.NDArray[np.uint8] = np.zeros(_INITIAL_CAPACITY, np.uint8)
        self._offline: npt.NDArray[np.bool_] = np.zeros(_INITIAL_CAPACITY, np.bool_)
        self._latest_ts = 0

    def __len__(self) -> int:
        return len(self._places)

    def seen(self, place: Place, ts_ms: int, received_ms: int) -> AnomalyChange | None:
        """Record a reading; the closing change when the device was offline until now."""
        index = self._index.get(place.key)
        if index is None:
            index = self._add(place)
        elif self._places[index].building != place.building:
            self._places[index] = place  # the label was filled in (keep one Place a device)
        previous = int(self._last_ts[index])
        self._last_ts[index] = max(previous, ts_ms)
        self._last_rx[index] = received_ms
        self._latest_ts = max(self._latest_ts, ts_ms)
        if not self._offline[index]:
            return None
        self._offline[index] = False
        limit = int(self._limits[self._kind[index]])
        return AnomalyChange(
            offline_code(Kind(place.kind)),
            False,
            ts_ms,
            max(0, ts_ms - previous) / 1000.0,
            limit / 1000.0,
        )

    def layout(self) -> object:
        return (super().layout(), tuple(self._after_ms.items()))

    def restarted(self, wall_ms: int) -> None:
        """After a restart, count every device as heard from now, so a device is reported
        only after a full silence from the restart (the backlog the broker kept for the
        gateway arrives first)."""
        self._last_rx[: len(self._places)] = wall_ms

    def mark_offline(self, place: Place) -> None:
        """The device was already reported offline (before a restart): report only its
        return, not its silence again."""
        index = self._index.get(place.key)
        if index is None:
            index = self._add(place)
        self._offline[index] = True

    def due(self, wall_ms: int, most: int | None = None) -> list[tuple[Place, AnomalyChange]]:
        """Devices that have just gone silent for too long, each opened once; at most
        ``most`` of them (the rest stay due for the next call), so a district's uplink
        failing does not open 100,000 anomalies in one batch held in memory at once."""
        count = len(self._places)
        if count == 0:
            return []
        now = max(self._latest_ts, wall_ms)
        last_ts, last_rx = self._last_ts[:count], self._last_rx[:count]
        limit = self._limits[self._kind[:count]]
        silent = now - last_ts > limit
        catching_up = (last_rx - last_ts > limit) & (wall_ms - last_rx <= limit)
        newly = np.flatnonzero(silent & ~catching_up & ~self._offline[:count])[:most]
        self._offline[newly] = True
        changes = []
        for index in newly.tolist():
            place = self._places[index]
            started = int(last_ts[index] + limit[index])
            changes.append(
                (
                    place,
                    AnomalyChange(
                        offline_code(Kind(place.kind)),
                        True,
                        started,
                        (now - int(last_ts[index])) / 1000.0,
                        int(limit[index]) / 1000.0,
                    ),
                )
            )
        return changes

    def _add(self, place: Place) -> int:
        index = len(self._places)
        if index == len(self._last_ts):
            # An eighth more, not double: at 100,000 devices the slack is state too.
            grow = max(_INITIAL_CAPACITY, index // 8)
            self._last_ts = np.concatenate([self._last_ts, np.zeros(grow, np.int64)])
            self._last_rx = np.concatenate([self._last_rx, np.zeros(grow, np.int64)])
            self._kind = np.concatenate([self._kind, np.zeros(grow, np.uint8)])
            self._offline = np.concatenate([self._offline, np.zeros(grow, np.bool_)])
        self._index[place.key] = index
        self._places.append(place)
        self._kind[index] = self._kind_index[place.kind]
        return index
