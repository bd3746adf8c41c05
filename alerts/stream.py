"""In-process broadcaster for the live alert stream.

The engine publishes from whatever thread it runs in; each subscriber (an SSE connection
in uvicorn's event loop) has its own bounded queue.  Publishing never blocks: a subscriber
that falls behind loses its oldest events and is told how many with a :class:`Lost` item.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_QUEUE = 1000


@dataclass(frozen=True, slots=True)
class Lost:
    """This many events were dropped because the subscriber was too slow."""

    count: int


class Subscription(Generic[T]):
    def __init__(self, broadcaster: Broadcaster[T], maxlen: int, loop: asyncio.AbstractEventLoop):
        self._broadcaster = broadcaster
        self._items: deque[T] = deque()
        self._maxlen = maxlen
        self._lost = 0
        self._lock = threading.Lock()
        self._loop = loop
        self._wake = asyncio.Event()

    def _put(self, item: T) -> bool:
        """Queue an item (any thread); False when the subscriber's loop is gone."""
        with self._lock:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self._lost += 1
            self._items.append(item)
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the event loop closed: nobody will read this any more
            return False
        return True

    def get_nowait(self) -> T | Lost | None:
        """The next item, a Lost notice owed first, or None when there is nothing."""
        with self._lock:
            if self._lost:
                lost, self._lost = self._lost, 0
                return Lost(lost)
            return self._items.popleft() if self._items else None

    async def get(self) -> T | Lost:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            # No await between the check and clear(): a _put's wake-up is scheduled on
            # this loop and so runs after the clear, never lost.
            self._wake.clear()
            await self._wake.wait()

    def close(self) -> None:
        self._broadcaster.unsubscribe(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Broadcaster(Generic[T]):
    """Fan-out of items to subscribers; callable, so it can be an engine sink."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE) -> None:
        self._queue_size = queue_size
        self._subscribers: list[Subscription[T]] = []
        self._lock = threading.Lock()

    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> Subscription[T]:
        """A new subscription woken on ``loop`` (default: the running loop)."""
        subscription = Subscription(self, self._queue_size, loop or asyncio.get_running_loop())
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, item: T) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            if not subscription._put(item):
                log.info("dropping a stream subscriber whose event loop has closed")
                self.unsubscribe(subscription)

    __call__ = publish
