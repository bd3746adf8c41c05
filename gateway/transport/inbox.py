"""Messages on their way from the MQTT network thread to the processing thread, in two
lanes: live traffic first, an edge's replayed backlog with a guaranteed share.

After an uplink outage an edge replays its spool, marked ``"replay": true``
(docs/protocol.md); the network thread looks for that marker in the message's first and
last bytes, outside the readings, without decoding it, and queues the message in the
backlog lane.  The processing thread takes live messages first, but at least one backlog
message in every ``LIVE_PER_BACKLOG + 1`` while both lanes wait, so a district's backlogs
drain without holding fresh readings (a fire alarm) behind them.  A message without the
marker is live: the lane decides only when a message is processed, never whether.

The inbox also knows how many payload bytes wait in each lane, so the network loop can
stop reading while the processing thread is behind (``held_back``).  The receive maximum
bounds the messages in flight, not their size: a thousand edge batches of a hundred
readings are tens of megabytes, a visible share of the gateway's peak memory at 100,000
devices (measured in bench/README.md).  The backlog lane may hold ``BACKLOG_BYTES_FACTOR``
times the live budget, so live messages behind backlog ones at the broker are still read.
"""

from __future__ import annotations

import queue
import re
from collections import deque

from gateway.pipeline import Message

# While both lanes wait, live messages taken before a backlog message must be taken.
LIVE_PER_BACKLOG = 3
# The backlog lane's share of the bytes the network loop lets wait, against the live
# lane's budget.
BACKLOG_BYTES_FACTOR = 4
LIVE = 0
BACKLOG = 1
LANE_NAMES = ("live", "backlog")

# Where the marker may be: before the readings, in the envelope's first bytes, or after
# them, in its last (an edge id is at most 64 characters of [A-Za-z0-9_.-] and nothing
# else stands outside the readings, so nothing there can fake it).
_HEAD_BYTES = 160
_TAIL_BYTES = 48
_READINGS = b'"readings"'
_NAME = b'"replay"'
_MARKER = re.compile(_NAME + rb"\s*:\s*true\b")


def lane_of(payload: bytes) -> int:
    """``BACKLOG`` for an envelope marked as a replay before or after its readings, else
    ``LIVE``."""
    # The marker's name looked for first (a search in C): live messages lack it.
    if payload.find(_NAME, 0, _HEAD_BYTES) >= 0:
        end = payload.find(_READINGS, 0, _HEAD_BYTES)
        if _MARKER.search(payload, 0, _HEAD_BYTES if end < 0 else end):
            return BACKLOG
    tail = max(0, len(payload) - _TAIL_BYTES)
    if payload.find(_NAME, tail) >= 0:
        start = payload.rfind(b"]", tail)
        if start >= 0 and _MARKER.search(payload, start):
            return BACKLOG
    return LIVE


class Inbox:
    """Two lanes of messages with the bytes of payload each holds.

    One writer (``put``: the network thread) and one reader (``get``: the processing
    thread).  Each message queued also puts a token in ``_ready``, which the reader waits
    on, so a token taken always has a message behind it in one of the lanes.
    """

    def __init__(self, live_per_backlog: int = LIVE_PER_BACKLOG) -> None:
        if live_per_backlog < 0:
            raise ValueError(f"live_per_backlog must be at least 0, not {live_per_backlog}")
        self._live_per_backlog = live_per_backlog
        self._lanes: tuple[deque[Message], deque[Message]] = (deque(), deque())
        self._ready: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._live_streak = 0  # live messages taken in a row while backlog waited
        # Each counter has one writer (put: the network thread; get: the processing
        # thread), so none needs a lock; a reader may see the other a moment late.
        self._put_bytes = [0, 0]
        self._taken_bytes = [0, 0]
        self._put_messages = [0, 0]
        self._taken_messages = [0, 0]

    def put(self, message: Message, live_budget_bytes: int | None = None) -> bool:
        """Queue a message; with a budget, whether the inbox is still within it (not
        ``held_back``), else True."""
        payload = message.payload
        lane = lane_of(payload)
        self._put_bytes[lane] += len(payload)
        self._put_messages[lane] += 1
        self._lanes[lane].append(message)  # before the token: a token has its message
        self._ready.put(None)
        return live_budget_bytes is None or not self.held_back(live_budget_bytes)

    def get(self, timeout: float | None = None) -> Message:
        """The next message: live first, backlog at its share; raises ``queue.Empty``
        after ``timeout`` seconds."""
        self._ready.get(timeout=timeout)
        live, backlog = self._lanes
        if backlog and (not live or self._live_streak >= self._live_per_backlog):
            lane = BACKLOG
            self._live_streak = 0
        else:
            lane = LIVE
            self._live_streak = self._live_streak + 1 if backlog else 0
        message = self._lanes[lane].popleft()
        self._taken_bytes[lane] += len(message.payload)
        self._taken_messages[lane] += 1
        return message

    def empty(self) -> bool:
        return self._ready.empty()

    def live_empty(self) -> bool:
        """No live message waits (backlog ones may)."""
        return not self._lanes[LIVE]

    def qsize(self) -> int:
        return self._ready.qsize()

    def waiting(self, lane: int) -> int:
        """Messages waiting in ``lane``."""
        return self._put_messages[lane] - self._taken_messages[lane]

    def received(self, lane: int) -> int:
        """Messages queued in ``lane`` since the start."""
        return self._put_messages[lane]

    def waiting_bytes_in(self, lane: int) -> int:
        return self._put_bytes[lane] - self._taken_bytes[lane]

    @property
    def waiting_bytes(self) -> int:
        return self.waiting_bytes_in(LIVE) + self.waiting_bytes_in(BACKLOG)

    def held_back(self, live_budget_bytes: int) -> bool:
        """The network loop should stop reading: either lane holds more than its budget
        (``live_budget_bytes``, and ``BACKLOG_BYTES_FACTOR`` times it for the backlog)."""
        put, taken = self._put_bytes, self._taken_bytes  # read for every message received
        return (
            put[LIVE] - taken[LIVE] > live_budget_bytes
            or put[BACKLOG] - taken[BACKLOG] > BACKLOG_BYTES_FACTOR * live_budget_bytes
        )
