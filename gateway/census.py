"""How many devices the gateway knows per estate and per building: the population the
alert engine weighs an alert storm against (``alerts.grouping.DeviceCount``).

Counted from the offline check's devices (every device heard from, so a device that never
reported does not count), again at most every ``REFRESH_S``: the engine asks once per
offline alert, and a district's outage raises 100,000 of them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from jiayuan.places import Place

REFRESH_S = 10.0


class DeviceCensus:
    def __init__(
        self,
        places: Callable[[], list[Place]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``places``: every device heard from (``OfflineMonitor.places``)."""
        self._places = places
        self._clock = clock
        self._counts: Counter[tuple[str, str, str, str]] = Counter()
        self._taken = -REFRESH_S - 1.0
        self._lock = threading.Lock()

    def __call__(self, district: str, street: str, estate: str, building: str) -> int:
        """Devices known in the estate (``building`` "") or in one of its buildings."""
        with self._lock:
            now = self._clock()
            if now - self._taken > REFRESH_S:
                self._counts = _count(self._places())
                self._taken = now
            return self._counts[(district, street, estate, building)]


def _count(places: list[Place]) -> Counter[tuple[str, str, str, str]]:
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for place in places:
        district, street, estate = place.key[:3]
        counts[(district, street, estate, "")] += 1
        if place.building:
            counts[(district, street, estate, place.building)] += 1
    return counts
