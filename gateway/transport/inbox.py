"""Messages on their way from the MQTT network thread to the processing thread.

A queue that also knows how many payload bytes wait in it, so the network loop can stop
reading while the processing thread is behind (``gateway.transport.ingest.MAX_WAITING_BYTES``).  The
receive maximum bounds the messages in flight, not their size: a thousand edge batches of
a hundred readings are tens of megabytes, a visible share of the gateway's peak memory at
100,000 devices (measured in bench/README.md).
"""

from __future__ import annotations

import queue

from gateway.pipeline import Message


class Inbox:
    """A ``queue.SimpleQueue`` of messages with the bytes of payload it holds."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        # Each counter has one writer (put: the network thread; get: the processing
        # thread), so neither needs a lock; a reader may see the other a moment late.
        self._put_bytes = 0
        self._taken_bytes = 0

    def put(self, message: Message) -> None:
        self._put_bytes += len(message.payload)
        self._queue.put(message)

    def get(self, timeout: float | None = None) -> Message:
        """The next message; raises ``queue.Empty`` after ``timeout`` seconds."""
        message = self._queue.get(timeout=timeout)
        self._taken_bytes += len(message.payload)
        return message

    def empty(self) -> bool:
        return self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize()

    @property
    def waiting_bytes(self) -> int:
        return self._put_bytes - self._taken_bytes
