"""Connections the broker drops within seconds of accepting them.

A broker lets one connection hold a client id: when a second client connects with it, the
older connection is closed.  With MQTT v5 a broker may say why (DISCONNECT reason 0x8E,
"session taken over", which ``gateway.transport.ingest`` acts on), but Mosquitto closes it without a
reason, and MQTT 3.1.1 has no way to say it at all.  Two gateway instances given the same
client id then replace each other at every reconnect (a second apart): each sees part of
the traffic and judges part of each device's readings.  From inside one instance, this
looks like connections that keep ending soon after they were made, which is what this
counts.  A link to the broker that keeps failing looks the same and deserves the same
attention, so the report names both.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# A connection lost within this long of being made counts as short-lived.  Two instances
# sharing an id replace each other within the reconnect delay (1 s, ``gateway.transport.ingest``).
SHORT_S = 30.0
# This many short-lived connections within the window make the connection unstable.
LOSSES = 3
WINDOW_S = 120.0


class ShortConnections:
    """Short-lived connections within a sliding window.  ``connected`` and ``lost`` are
    called on paho's network thread, ``unstable`` from anywhere."""

    def __init__(
        self,
        short_s: float = SHORT_S,
        losses: int = LOSSES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if losses < 1 or short_s <= 0 or window_s <= 0:
            raise ValueError("short_s and window_s must be positive and losses at least 1")
        self.short_s, self.losses, self.window_s = short_s, losses, window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current connection was made
        self._short: deque[float] = deque()  # when each short-lived connection ended

    def connected(self) -> None:
        with self._lock:
            self._since = self._clock()

    def lost(self) -> bool:
        """A connection ended without this side asking.  True when it is the one that makes
        the connection unstable (report it then, once, not at every loss)."""
        with self._lock:
            now, since = self._clock(), self._since
            self._since = None
            was = self._unstable(now)
            if since is not None and now - since <= self.short_s:
                self._short.append(now)
            return not was and self._unstable(now)

    @property
    def recent(self) -> int:
        """Short-lived connections within the window."""
        with self._lock:
            self._prune(self._clock())
            return len(self._short)

    @property
    def unstable(self) -> bool:
        with self._lock:
            return self._unstable(self._clock())

    def _unstable(self, now: float) -> bool:
        self._prune(now)
        return len(self._short) >= self.losses

    def _prune(self, now: float) -> None:
        while self._short and now - self._short[0] > self.window_s:
            self._short.popleft()
