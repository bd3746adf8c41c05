"""paho-mqtt's client with fewer system calls a message, for paho-mqtt 2.2.

Every system call on the network thread releases the GIL and takes it back from the
processing thread.  paho makes several a message, which were a visible share of the
gateway's CPU outside the pipeline (bench/throughput.py prints it by thread):

- Reading: a call for a packet's first byte, one for each byte of its length and one or
  more for the rest, and the network loop's ``select`` before the next packet.
  ``GatewayClient`` takes up to ``CHUNK_BYTES`` from the socket in one call and serves
  paho's small reads from that.  What it holds is counted by ``buffered()``, which the
  network loop reads the way it reads a TLS socket's ``pending()``: there is more to read
  although ``select`` says nothing.  The chunk belongs to the socket it was read from: a
  new connection starts with none (what was left is the old session's, which the broker
  resends).
- Acknowledging: ``ack(mid, 1)`` queues one PUBACK packet, pokes paho's wake-up socket and
  is written with a call of its own.  ``ack_many`` queues a batch's PUBACKs, the same
  bytes paho writes for each, as one packet: one call to write them all.

Only on the paho versions it was checked against (``VERIFIED``: ``_sock_recv`` and
``_packet_queue`` are private); any other reads and acknowledges as paho does.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt

VERIFIED = ("2.2.",)
# A few edge batch messages, or a few hundred one-reading ones.
CHUNK_BYTES = 256 * 1024
# PUBACK as paho writes it (_send_command_with_mid): type, remaining length 2, the mid.
_PUBACK = struct.Struct("!BBH")


class GatewayClient(mqtt.Client):
    """``mqtt.Client`` reading its socket in chunks and acknowledging in one write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified = paho.mqtt.__version__.startswith(VERIFIED)
        self._chunk_of: object = None  # the socket the chunk was read from
        self._chunk = b""
        self._taken = 0  # bytes of the chunk paho has had

    def buffered(self) -> int:
        """Bytes read from the current socket that paho has not had yet."""
        if self._chunk_of is not self._sock:
            return 0
        return len(self._chunk) - self._taken

    def ack_many(self, mids: Sequence[int]) -> None:
        """``ack(mid, 1)`` for each, in order, written together."""
        if not self._verified or not self._manual_ack or len(mids) < 2:
            for mid in mids:
                self.ack(mid, 1)
            return
        packets = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        self._packet_queue(mqtt.PUBACK, packets, 0, 1)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._verified:
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
