"""paho-mqtt's client reading its socket in large chunks, for paho-mqtt 2.2.

paho reads a packet with a system call for its first byte, one for each byte of its
length and one or more for the rest, and the network loop asks ``select`` before the next
packet: six calls for an edge's batch message, each releasing the GIL and taking it back
from the processing thread, which was a visible share of the gateway's CPU outside the
pipeline (bench/throughput.py prints it by thread).  ``ChunkedReadClient`` takes up to
``CHUNK_BYTES`` from the socket in one call and hands paho its small reads from that;
what it holds is counted by ``buffered()``, which the network loop reads the way it reads
a TLS socket's ``pending()``: there is more to read although ``select`` says nothing.

The chunk belongs to the socket it was read from: a new connection starts with none
(what was left of the old one is the old session's, which the broker resends).  Only on
the paho versions it was checked against (``VERIFIED``: ``_sock_recv`` is private); any
other reads as paho does.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt

VERIFIED = ("2.2.",)
# A few edge batch messages, or a few hundred one-reading ones; the kernel's loopback and
# TCP receive buffers hold more than this, so one call usually fills it while behind.
CHUNK_BYTES = 256 * 1024


class ChunkedReadClient(mqtt.Client):
    """``mqtt.Client`` with ``_sock_recv`` served from one large read of the socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunked = paho.mqtt.__version__.startswith(VERIFIED)
        self._chunk_of: object = None  # the socket the chunk was read from
        self._chunk = b""
        self._taken = 0  # bytes of the chunk paho has had

    def buffered(self) -> int:
        """Bytes read from the current socket that paho has not had yet."""
        if self._chunk_of is not self._sock:
            return 0
        return len(self._chunk) - self._taken

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._chunked:
            return super()._sock_recv(bufsize)
        if self._chunk_of is not self._sock or not self._chunk:
            self._chunk_of, self._chunk, self._taken = self._sock, b"", 0
            # Raises as paho's own read does (BlockingIOError when nothing waits); b"",
            # the connection closed, goes to paho as it came.
            data = super()._sock_recv(max(bufsize, CHUNK_BYTES))
            if len(data) <= bufsize:
                return data
            self._chunk = data
        start, end = self._taken, self._taken + bufsize
        piece = self._chunk[start:end]
        if end >= len(self._chunk):  # all handed over: let the chunk go
            self._chunk, self._taken = b"", 0
        else:
            self._taken = end
        return piece
