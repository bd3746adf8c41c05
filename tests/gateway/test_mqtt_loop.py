"""The gateway's own MQTT network loop (gateway/transport/mqtt_loop.py) on the real Mosquitto.

A batch's acknowledgements are handed over in one call and sent by the loop thread: what
was acknowledged is never delivered again and what was not is; an acknowledgement of a
connection that has since been lost is not sent on the next one (its mid would name
another message there); stopping sends what is queued first; a broker that is not there
yet is waited for; and while the inbox holds more payload than its budget the loop stops
reading, for a bounded time.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gateway.pipeline import Message
from gateway.transport import ingest as ingest_module
from gateway.transport import mqtt_loop
from gateway.transport.inbox import Inbox
from gateway.transport.ingest import MqttIngest
from jiayuan.config import MqttConfig
from tests.gateway.test_scale_out import wait_for
from tests.support.mqtt_publisher import Publisher
from tools.servers import RunningServers, free_port

WAIT_S = 15.0
TOPIC = "jiayuan/v1/songjiang/fangsong/e1/lift/lift-{n}/telemetry"


def mqtt_config(port: int, client_id: str, protocol: str = "5") -> MqttConfig:
    return MqttConfig(
        url=f"mqtt://127.0.0.1:{port}", gateway_client_id=client_id, gateway_protocol=protocol
    )


@contextmanager
def running_ingest(config: MqttConfig) -> Iterator[tuple[MqttIngest, Inbox]]:
    inbox: Inbox = Inbox()
    ingest = MqttIngest(config, inbox)
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S), "not subscribed"
        yield ingest, inbox
    finally:
        ingest.stop()


def publish(port: int, count: int, size: int = 0) -> list[bytes]:
    """``count`` messages, each ``size`` bytes long if given."""
    publisher = Publisher(port)
    try:
        payloads = [f"message {n}".encode().ljust(size, b".") for n in range(count)]
        for n, payload in enumerate(payloads):
            publisher.send(TOPIC.format(n=n % 7), payload)
        return payloads
    finally:
        publisher.close()


def receive(inbox: Inbox, count: int) -> list[Message]:
    deadline = time.monotonic() + WAIT_S
    got = [inbox.get(timeout=max(0.01, deadline - time.monotonic())) for _ in range(count)]
    return got


def nothing_more(inbox: Inbox, quiet_s: float = 1.0) -> list[bytes]:
    """Whatever else arrives within ``quiet_s`` of the last message."""
    more: list[bytes] = []
    while True:
        try:
            more.append(inbox.get(timeout=quiet_s).payload)
        except queue.Empty:
            return more


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_batch_acknowledged_in_one_call_is_not_delivered_again_and_the_rest_is(
    servers: RunningServers, protocol: str
) -> None:
    config = mqtt_config(servers.mqtt_port, f"loop-{uuid.uuid4().hex[:8]}", protocol)
    with running_ingest(config) as (ingest, inbox):
        sent = publish(servers.mqtt_port, 1000)
        got = receive(inbox, 1000)
        assert [m.payload for m in got] == sent
        assert ingest.ack(got[:900]) == 900
    # stop() sent the 900 before disconnecting: the session gives back only the other 100.
    with running_ingest(config) as (ingest, inbox):
        again = receive(inbox, 100)
        assert [m.payload for m in again] == sent[900:]
        assert nothing_more(inbox) == []
        assert ingest.ack(again) == 100
    with running_ingest(config) as (_, inbox):
        assert nothing_more(inbox) == []


def test_acknowledgements_of_a_lost_connection_are_not_sent_on_the_next(
    servers: RunningServers,
) -> None:
    config = mqtt_config(servers.mqtt_port, f"loop-{uuid.uuid4().hex[:8]}")
    with running_ingest(config) as (ingest, inbox):
        sent = publish(servers.mqtt_port, 20)
        before = receive(inbox, 20)
        servers.restart_mosquitto()  # its persistence keeps the session and the 20
        wait_for(lambda: ingest.session == before[0].session + 1, timeout_s=WAIT_S)
        assert ingest.ack(before) == 0  # their mids belong to the lost connection
        redelivered = receive(inbox, 20)
        assert sorted(m.payload for m in redelivered) == sorted(sent)
        assert {m.session for m in redelivered} == {ingest.session}
        assert ingest.ack(redelivered) == 20
        assert nothing_more(inbox) == []
    with running_ingest(config) as (_, inbox):
        assert nothing_more(inbox) == []


def test_a_broker_that_is_not_there_yet_is_waited_for(servers: RunningServers) -> None:
    config = mqtt_config(servers.mqtt_port, f"loop-{uuid.uuid4().hex[:8]}")
    servers.stop_mosquitto()
    inbox: Inbox = Inbox()
    ingest = MqttIngest(config, inbox)
    ingest.start()
    try:
        assert not ingest.wait_subscribed(2.5)  # nothing listens: it keeps trying
        servers.start_mosquitto()
        assert ingest.wait_subscribed(WAIT_S)  # within the longest wait between tries
        sent = publish(servers.mqtt_port, 3)
        assert [m.payload for m in receive(inbox, 3)] == sent
    finally:
        ingest.stop()


def test_stopping_while_the_broker_is_away_does_not_wait_out_a_retry(
    servers: RunningServers,
) -> None:
    config = mqtt_config(free_port(), f"loop-{uuid.uuid4().hex[:8]}")  # nothing listens
    ingest = MqttIngest(config, Inbox())
    ingest.start()
    time.sleep(1.5)  # the first try failed; the loop waits before the next
    started = time.monotonic()
    ingest.stop()
    assert time.monotonic() - started < 0.5
    assert not ingest.connected


def test_reading_stops_while_the_inbox_is_over_its_budget_and_goes_on_as_it_empties(
    servers: RunningServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "MAX_WAITING_BYTES", 10_000)
    config = mqtt_config(servers.mqtt_port, f"loop-{uuid.uuid4().hex[:8]}")
    with running_ingest(config) as (ingest, inbox):
        sent = publish(servers.mqtt_port, 100, size=1000)
        time.sleep(1.0)
        # 10,000 bytes waiting is within the budget; the eleventh message is over it.
        assert inbox.qsize() == 11
        assert inbox.waiting_bytes == 11_000
        got = []
        for _ in range(100):  # the processing thread catching up, one message at a time
            got += receive(inbox, 1)
        assert [m.payload for m in got] == sent
        assert inbox.waiting_bytes == 0
        assert ingest.ack(got) == 100


def test_a_hold_lasts_at_most_its_limit_then_the_receive_maximum_alone_bounds_it(
    servers: RunningServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "MAX_WAITING_BYTES", 10_000)
    monkeypatch.setattr(mqtt_loop, "MAX_HOLD_S", 0.5)
    config = mqtt_config(servers.mqtt_port, f"loop-{uuid.uuid4().hex[:8]}")
    with running_ingest(config) as (ingest, inbox):
        sent = publish(servers.mqtt_port, 100, size=1000)
        wait_for(lambda: inbox.qsize() == 100, timeout_s=WAIT_S)  # nothing taken meanwhile
        got = receive(inbox, 100)
        assert [m.payload for m in got] == sent
        assert ingest.ack(got) == 100


def test_a_publish_read_straight_from_the_chunk_is_queued_as_on_message_queues_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_module, "MAX_WAITING_BYTES", 1_000)
    inbox = Inbox()
    ingest = MqttIngest(mqtt_config(free_port(), "straight"), inbox)  # never started
    assert ingest._deliver(TOPIC.format(n=1).encode(), b"x" * 600, 7, 1) is True
    # Over the budget: the network loop is told to stop reading.  A topic that is not
    # UTF-8 (the broker should refuse it) is kept as evidence.
    assert ingest._deliver(b"jiayuan/\xff", b"y" * 600, 8, 0) is False
    first, second = receive(inbox, 2)
    assert (first.topic, first.payload, first.mid, first.qos) == (
        TOPIC.format(n=1),
        b"x" * 600,
        7,
        1,
    )
    assert (second.topic, second.payload, second.mid, second.qos) == (
        "jiayuan/\ufffd",
        b"y" * 600,
        8,
        0,
    )
