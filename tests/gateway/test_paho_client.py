"""paho's client with fewer system calls a message (gateway/transport/paho_client.py).

paho's small reads are served from one large read of the socket, in order and byte for
byte; a new connection never gets what was read from the old one; a batch's PUBACKs are
the bytes paho writes for each, written in one call; the PUBLISH packets the client hands
over straight from its chunk are, with those left to paho, exactly what paho alone
delivers, whatever the mix of packets and wherever the chunks cut them; and through the
real Mosquitto, messages larger than a chunk and many small ones in one chunk arrive
whole, in order, and once.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transport import paho_client
from gateway.transport.paho_client import GatewayClient
from tests.gateway.test_mqtt_loop import (
    TOPIC,
    mqtt_config,
    nothing_more,
    receive,
    running_ingest,
)
from tests.support.mqtt_publisher import Publisher
from tools.servers import RunningServers


class CountedSocket:
    """A socket that counts the system calls made to read it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0
        self.writes = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        return self.sock.recv(size)

    def send(self, data: bytes) -> int:
        self.writes += 1
        return self.sock.send(data)

    def close(self) -> None:  # paho closes its socket when the client is collected
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def client_on(sock: Any, protocol: int = mqtt.MQTTv5) -> GatewayClient:
    client = GatewayClient(CallbackAPIVersion.VERSION2, manual_ack=True, protocol=protocol)
    client._sock = sock
    return client


def remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def publish(
    topic: bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    v5: bool = True,
    properties: bytes = b"\0",
    flags: int = 0,  # DUP (8) and RETAIN (1)
) -> bytes:
    """A PUBLISH packet as a broker sends it."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if v5:
        body += properties
    body += payload
    return bytes([0x30 | qos << 1 | flags]) + remaining_length(len(body)) + body


PINGRESP = b"\xd0\x00"


@st.composite
def packet_streams(draw: st.DrawFn) -> tuple[bool, list[bytes]]:
    """(MQTT 5?, packets): PUBLISHes of every QoS, with and without properties, of sizes
    whose remaining length takes one to three bytes, with other packets between them."""
    v5 = draw(st.booleans())
    packets = []
    for n in range(draw(st.integers(1, 60))):
        if draw(st.integers(0, 9)) == 0:
            packets.append(PINGRESP)
            continue
        qos = draw(st.sampled_from([0, 1, 1, 1, 2]))
        topic = draw(
            st.sampled_from([b"jiayuan/v1/d/s/e1/batch/edge1", b"t", "街道/é".encode(), b"t/\xff"])
        )
        size = draw(st.sampled_from([0, 1, 100, 120, 1_000, 16_400, 70_000]))
        properties = b"\0"
        if v5 and draw(st.integers(0, 4)) == 0:
            properties = b"\x02\x01\x01"  # payload format indicator: UTF-8
        packets.append(
            publish(
                topic,
                bytes([n % 251]) * size,
                qos=qos,
                mid=n + 1,
                v5=v5,
                properties=properties,
                flags=draw(st.sampled_from([0, 1, 8])),
            )
        )
    return v5, packets


def drain(stream: bytes, v5: bool, fast: bool) -> list[tuple[bytes, bytes, int, int]]:
    """Everything a client delivers from ``stream``, by either path, in order."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    writer = threading.Thread(target=theirs.sendall, args=(stream,))
    writer.start()
    got: list[tuple[bytes, bytes, int, int]] = []
    client = client_on(ours, mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    client.on_message = lambda _c, _u, m: got.append((m._topic, bytes(m.payload), m.mid, m.qos))

    def deliver(topic: bytes, payload: bytes, mid: int, qos: int) -> bool:
        got.append((topic, payload, mid, qos))
        return True

    if fast:
        client.deliver_publish = deliver
    try:
        quiet = 0  # turns in a row that found nothing more to read
        while quiet < 3:
            before = len(got)
            assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
            spent = not writer.is_alive() and client.buffered() == 0 and not _waiting(ours)
            quiet = quiet + 1 if spent and len(got) == before else 0
        writer.join()
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    return got


def _waiting(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_small_reads_come_from_one_read_of_the_socket_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    counted = CountedSocket(ours)
    client = client_on(counted)
    sent = bytes(range(256)) * 40  # 10,240 bytes
    theirs.sendall(sent)
    got = [client._sock_recv(size) for size in (1, 1, 3, 5_000, 10_000)]
    assert b"".join(got) == sent
    assert [len(piece) for piece in got] == [1, 1, 3, 5_000, 5_235]
    assert counted.reads == 1
    assert client.buffered() == 0
    with pytest.raises(BlockingIOError):  # nothing more waits: as paho's own read
        client._sock_recv(1)


def test_what_is_left_of_a_chunk_is_counted_and_a_new_connection_does_not_get_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    client = client_on(ours)
    theirs.sendall(b"old connection")
    assert client._sock_recv(3) == b"old"
    assert client.buffered() == len(b" connection")
    fresh, peer = socket.socketpair()
    try:
        client._sock = fresh
        assert client.buffered() == 0
        peer.sendall(b"new")
        assert client._sock_recv(100) == b"new"
    finally:
        fresh.close()
        peer.close()


def test_a_closed_connection_reads_as_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    client = client_on(ours)
    theirs.sendall(b"last")
    theirs.shutdown(socket.SHUT_WR)
    assert client._sock_recv(2) == b"la"
    assert client._sock_recv(2) == b"st"
    assert client._sock_recv(2) == b""  # paho: the connection was lost


def test_a_batch_of_acknowledgements_is_the_bytes_paho_writes_for_each_in_one_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mids = [1, 2, 300, 65535]
    ours, theirs = pair
    counted = CountedSocket(ours)
    client = client_on(counted)
    client.ack_many(mids)
    client.loop_write()
    together = theirs.recv(1000)
    assert counted.writes == 1
    for mid in mids:  # paho's own, one at a time
        client.ack(mid, 1)
    client.loop_write()
    assert counted.writes == 1 + len(mids)
    assert theirs.recv(1000) == together
    assert together == bytes.fromhex("40020001400200024002012c4002ffff")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_messages_larger_than_a_chunk_and_many_in_one_arrive_whole_in_order_and_once(
    servers: RunningServers, protocol: str
) -> None:
    big = paho_client.CHUNK_BYTES
    sizes = [10, big * 2 + 7, *([40] * 300), big - 3, 1, big + 1, *([200] * 300)]
    payloads = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    config = mqtt_config(servers.mqtt_port, f"reads-{uuid.uuid4().hex[:8]}", protocol)
    with running_ingest(config):
        pass  # the session and its subscription, kept at the broker
    publisher = Publisher(servers.mqtt_port)
    try:
        for n, payload in enumerate(payloads):
            publisher.send(TOPIC.format(n=n % 7), payload)
    finally:
        publisher.close()
    # Queued at the broker, they come as fast as it sends: many small ones in a chunk.
    with running_ingest(config) as (ingest, inbox):
        got = receive(inbox, len(payloads))
        assert [m.payload for m in got] == payloads
        assert ingest.ack(got) == len(payloads)
        assert nothing_more(inbox) == []
    with running_ingest(config) as (_, inbox):
        assert nothing_more(inbox) == []


@settings(max_examples=150, deadline=None)
@given(packet_streams(), st.sampled_from([64, 1_000, paho_client.CHUNK_BYTES]))
def test_publishes_taken_straight_from_the_chunk_are_what_paho_alone_delivers(
    case: tuple[bool, list[bytes]], chunk_bytes: int
) -> None:
    v5, packets = case
    stream = b"".join(packets)
    original = paho_client.CHUNK_BYTES
    paho_client.CHUNK_BYTES = chunk_bytes
    try:
        expected = drain(stream, v5, fast=False)
        got = drain(stream, v5, fast=True)
    finally:
        paho_client.CHUNK_BYTES = original
    assert got == expected
    assert all(type(payload) is bytes for _, payload, _, _ in got)


def test_whole_publishes_in_a_chunk_all_go_straight_until_told_to_stop(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    client = client_on(ours, mqtt.MQTTv311)
    by_paho: list[int] = []
    client.on_message = lambda _c, _u, m: by_paho.append(m.mid)
    straight: list[tuple[bytes, bytes, int, int]] = []

    def deliver(topic: bytes, payload: bytes, mid: int, qos: int) -> bool:
        straight.append((topic, payload, mid, qos))
        return mid not in (3, 4)  # the inbox is full after the third, and still

    client.deliver_publish = deliver
    theirs.sendall(b"".join(publish(b"a/b", b"x" * mid, mid=mid, v5=False) for mid in range(1, 7)))
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert straight == [(b"a/b", b"x", 1, 1), (b"a/b", b"xx", 2, 1), (b"a/b", b"xxx", 3, 1)]
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert [mid for _, _, mid, _ in straight] == [1, 2, 3, 4]
    straight.clear()

    def deliver_all(topic: bytes, payload: bytes, mid: int, qos: int) -> bool:
        straight.append((topic, payload, mid, qos))
        return True

    client.deliver_publish = deliver_all
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert [mid for _, _, mid, _ in straight] == [5, 6]
    assert by_paho == [] and client.buffered() == 0
    # One at a time, as live traffic trickles in: each read straight from its own chunk.
    for mid in (7, 8):
        theirs.sendall(publish(b"a/b", b"live", mid=mid, v5=False))
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert [mid for _, _, mid, _ in straight] == [5, 6, 7, 8] and by_paho == []
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS  # nothing waiting: as paho's read
    theirs.shutdown(socket.SHUT_WR)
    assert client.loop_read() == mqtt.MQTT_ERR_CONN_LOST


def test_a_client_that_acknowledges_by_itself_reads_every_publish_the_paho_way(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    client = GatewayClient(CallbackAPIVersion.VERSION2, manual_ack=False)
    client._sock = ours
    by_paho: list[int] = []
    client.on_message = lambda _c, _u, m: by_paho.append(m.mid)
    client.deliver_publish = lambda *_: pytest.fail("paho acknowledges these itself")
    theirs.sendall(b"".join(publish(b"a/b", b"x", mid=mid) for mid in (1, 2, 3)))
    for _ in range(3):
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert by_paho == [1, 2, 3]
    client.loop_write()
    assert theirs.recv(100).count(bytes([mqtt.PUBACK, 2])) == 3  # paho's own PUBACKs
