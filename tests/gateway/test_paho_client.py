"""paho's client with fewer system calls a message (gateway/transport/paho_client.py).

paho's small reads are served from one large read of the socket, in order and byte for
byte; a new connection never gets what was read from the old one; a batch's PUBACKs are
the bytes paho writes for each, written in one call; and through the real Mosquitto,
messages larger than a chunk and many small ones in one chunk arrive whole, in order,
and once.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
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


def client_on(sock: Any) -> GatewayClient:
    client = GatewayClient(CallbackAPIVersion.VERSION2, manual_ack=True)
    client._sock = sock
    return client


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
