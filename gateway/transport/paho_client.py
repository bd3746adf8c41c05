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
- Receiving: for every PUBLISH paho reads its header and body piece by piece, copies the
  body into a ``bytearray``, decodes it into a packet object and an ``MQTTMessage`` (with
  a ``threading.Condition`` and an ``RLock`` of its own, for publishing), and looks the
  topic up among its callbacks.  With ``deliver_publish`` set, every whole QoS 0 or 1
  PUBLISH waiting in the chunk without properties (all MQTT 3.1.1 ones, and every MQTT 5
  one edges and devices send) goes to it straight from the chunk as (topic bytes, payload,
  mid, QoS), until it returns False, the next chunk read as soon as one is spent (traffic
  that trickles in comes a message or two a read); paho's own path takes anything else
  (another packet type, QoS 2, properties, a packet cut by the chunk's end, anything
  malformed) and calls ``on_message`` as before.
- Acknowledging: ``ack(mid, 1)`` queues one PUBACK packet, pokes paho's wake-up socket and
  is written with a call of its own.  ``ack_many`` queues a batch's PUBACKs, the same
  bytes paho writes for each, as one packet: one call to write them all.

Only on the paho versions it was checked against (``VERIFIED``: ``_sock_recv`` and
``_packet_queue`` are private); any other reads and acknowledges as paho does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

VERIFIED = ("2.2.",)
# A few edge batch messages, or a few hundred one-reading ones.
CHUNK_BYTES = 256 * 1024
# PUBACK as paho writes it (_send_command_with_mid): type, remaining length 2, the mid.
_PUBACK = struct.Struct("!BBH")
# (topic, payload, mid, qos) of a PUBLISH; False: hand over no more for now.
DeliverPublish = Callable[[bytes, bytes, int, int], bool]


class GatewayClient(mqtt.Client):
    """``mqtt.Client`` reading its socket in chunks and acknowledging in one write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified = paho.mqtt.__version__.startswith(VERIFIED)
        self._chunk_of: object = None  # the socket the chunk was read from
        self._chunk = b""
        self._taken = 0  # bytes of the chunk paho has had
        # Takes the PUBLISH packets paho's path would give on_message (see the module's
        # docstring); None: paho's path for all.
        self.deliver_publish: DeliverPublish | None = None

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

    def _packet_read(self) -> MQTTErrorCode:
        """The PUBLISH packets at the chunk's front (the next chunk read first when this
        one is spent) straight to ``deliver_publish``; paho's own read when there are
        none."""
        deliver = self.deliver_publish
        if (
            deliver is not None
            and self._verified
            and self._manual_ack  # else paho acknowledges each QoS 1 message as it reads it
            and self._in_packet["command"] == 0  # no packet half read by paho
            and (self.buffered() > 0 or self._read_chunk())
            and self._deliver_publishes(deliver)
        ):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _read_chunk(self) -> bool:
        """Read the next chunk from the socket; False when nothing came: paho's own read
        then meets what the socket says (nothing waiting, closed, failed) and answers as
        it always does."""
        try:
            data = super()._sock_recv(CHUNK_BYTES)
        except OSError:  # BlockingIOError and the rest: paho's read raises them again
            return False
        self._chunk_of, self._chunk, self._taken = self._sock, data, 0
        return bool(data)

    def _deliver_publishes(self, deliver: DeliverPublish) -> int:
        """Hand the whole PUBLISH packets at the chunk's front to ``deliver``, in order,
        until it returns False or a packet is not one of them; how many were handed."""
        chunk, at, end = self._chunk, self._taken, len(self._chunk)
        v5 = self._protocol == mqtt.MQTTv5
        handed = 0
        go_on = True
        while go_on and at < end:
            header = chunk[at]
            # A PUBLISH (type 3) at QoS 0 or 1: bits 7-4 0011, bit 2 (QoS 2) clear.
            if header & 0xF4 != 0x30:
                break
            qos = (header >> 1) & 1
            # The remaining length: one byte up to 127, two up to 16,383, else up to four.
            if at + 1 < end and chunk[at + 1] < 0x80:
                length, start = chunk[at + 1], at + 2
            elif at + 2 < end and chunk[at + 2] < 0x80:
                length, start = (chunk[at + 1] & 0x7F) | (chunk[at + 2] << 7), at + 3
            else:
                found = _remaining_length(chunk, at + 1, end)
                if found is None:
                    break
                length, start = found
            stop = start + length
            if stop > end or length < 2:  # cut by the chunk's end, or malformed
                break
            topic_end = start + 2 + ((chunk[start] << 8) | chunk[start + 1])
            body = topic_end + 2 if qos else topic_end
            if topic_end == start + 2 or body + v5 > stop or (v5 and chunk[body] != 0):
                break  # an empty topic, a malformed packet, or properties: paho's way
            mid = (chunk[topic_end] << 8) | chunk[topic_end + 1] if qos else 0
            at = stop
            self._taken = at  # taken even if ``deliver`` raises: never handed twice
            handed += 1
            go_on = deliver(chunk[start + 2 : topic_end], chunk[body + v5 : stop], mid, qos)
        if handed:
            if at >= end:  # all handed over: let the chunk go
                self._chunk, self._taken = b"", 0
            with self._msgtime_mutex:  # the keep-alive's clock, as paho's read sets it
                self._last_bytes_received = mqtt.time_func()
        return handed


def _remaining_length(chunk: bytes, at: int, end: int) -> tuple[int, int] | None:
    """(length, where the packet's body starts) of the remaining length at ``at``, or None
    when its bytes are cut by the chunk's end or more than four."""
    length = 0
    for index in range(4):
        if at + index >= end:
            return None
        byte = chunk[at + index]
        length |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return length, at + index + 1
    return None
