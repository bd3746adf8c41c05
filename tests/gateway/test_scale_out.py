"""Scale-out by street: several gateway instances share a district through one broker.

Two real gateways on the real Mosquitto and InfluxDB (the ``servers`` fixture), each with
its own client id, state directory and streets: every reading is stored once, each
instance receives only its own streets, detects its own devices' faults and nobody else's,
and an instance stopped and started again loses nothing (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cli import add_parser, with_overrides
from gateway.service import Gateway
from gateway.transport.ingest import owned_streets, street_subscriptions
from jiayuan.catalogue import Kind
from jiayuan.config import Config, ConfigError
from jiayuan.contract import Envelope, Reading, batch_topic, encode
from jiayuan.influx import InfluxClient
from tests.support.lift_readings import lift_reading
from tools.servers import RunningServers

DISTRICT = "songjiang"
# Instance A owns two streets (one subscription each), instance B one.
STREETS_A = ("s1", "s2")
STREET_B = "s3"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Publisher:
    """A plain paho client publishing QoS 1 batches, one estate per street."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:6]}"
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.messages: dict[str, int] = {}
        self.readings: dict[str, int] = {}

    def send(self, street: str, readings: Sequence[Reading]) -> None:
        topic = batch_topic(DISTRICT, street, f"{street}-e1", f"{street}-edge")
        payload = encode(Envelope(v=1, edge=f"{street}-edge", readings=list(readings)))
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)
        self.messages[street] = self.messages.get(street, 0) + 1
        self.readings[street] = self.readings.get(street, 0) + len(readings)

    def total(self, counts: dict[str, int], streets: Sequence[str]) -> int:
        return sum(counts.get(street, 0) for street in streets)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(servers: RunningServers) -> Iterator[Publisher]:
    pub = Publisher(servers.mqtt_port)
    yield pub
    pub.close()


def instance(config: Config, tmp_path: Path, name: str, streets: str) -> Config:
    """One instance's configuration: its own streets, client id and state directory."""
    return replace(
        config,
        mqtt=replace(
            config.mqtt,
            street_filter=streets,
            gateway_client_id=f"{config.mqtt.gateway_client_id}-{name}",
        ),
        gateway=replace(config.gateway, state_dir=str(tmp_path / name)),
    )


def started(config: Config) -> Gateway:
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    assert gateway.wait_ready(10), "gateway did not subscribe"
    return gateway


def water(device: str, seq: int, ts: int) -> Reading:
    return Reading(device=device, kind="waterlogging", seq=seq, ts=ts, values={"depth": 1.0})


def trapped(device: str, start_ms: int) -> list[Reading]:
    """Passenger held in the door zone for 30 s: one lift.trapped (as in test_gateway)."""
    return [
        lift_reading(seq, start_ms + seq * 5000, device, building="", passenger_status=1)
        for seq in range(1, 7)
    ]


def stored_count(config: Config) -> int:
    with InfluxClient(config.influx) as client:
        return sum(client.count(kind.value, "seq") for kind in Kind)


def stored_by_street(config: Config) -> dict[str, int]:
    counts: dict[str, int] = {}
    with InfluxClient(config.influx) as client:
        for kind in Kind:
            for series in client.query(f'SELECT count("seq") FROM "{kind.value}" GROUP BY street'):
                street = series.tags["street"]
                counts[street] = counts.get(street, 0) + int(series.values[0][1])
    return counts


def anomaly_rows(config: Config, code: str) -> list[tuple[str, str]]:
    with InfluxClient(config.influx) as client:
        series = client.query(f"SELECT * FROM anomaly WHERE code = '{code}' GROUP BY *")
        return sorted((s.tags["street"], s.tags["device"]) for s in series for _ in s.values)


def flagged(gateway: Gateway, code: str) -> list[tuple[str, str]]:
    return sorted((a.street, a.device) for a in gateway.anomalies() if a.code == code)


def test_two_instances_share_a_district_by_street(
    config: Config, tmp_path: Path, publisher: Publisher
) -> None:
    config_a = instance(config, tmp_path, "a", ",".join(STREETS_A))
    config_b = instance(config, tmp_path, "b", STREET_B)
    a, b = started(config_a), started(config_b)
    try:
        assert a.ingest.topic_filters == (
            "jiayuan/v1/+/s1/#",
            "jiayuan/v1/+/s2/#",
        )
        # A trapped passenger on each instance's side, the same device id on both streets.
        start = now_ms() - 120_000
        publisher.send("s1", trapped("L1", start))
        publisher.send(STREET_B, trapped("L1", start))
        for index in range(3):
            ts = now_ms() - 10_000 + index
            for street in (*STREETS_A, STREET_B):
                publisher.send(street, [water(f"W{index}", 1, ts), water("W9", index + 1, ts)])
        # L9 on B's street falls silent while L8 reports 20 s (device time) later.
        ts = now_ms()
        publisher.send(STREET_B, [lift_reading(1, ts, "L9", building="")])
        publisher.send(STREET_B, [lift_reading(1, ts + 20_000, "L8", building="")])

        wait_for(lambda: flagged(b, "lift.offline").count((STREET_B, "L9")) == 1)
        published = publisher.total(publisher.readings, (*STREETS_A, STREET_B))
        wait_for(lambda: a.stats.readings_stored + b.stats.readings_stored == published)
        assert a.wait_idle() and b.wait_idle()

        # Each instance received its own streets' messages and nothing else.
        assert a.stats.messages == publisher.total(publisher.messages, STREETS_A)
        assert b.stats.messages == publisher.messages[STREET_B]
        assert a.stats.readings_stored == publisher.total(publisher.readings, STREETS_A)
        assert b.stats.readings_stored == publisher.readings[STREET_B]
        assert a.stats.duplicates == b.stats.duplicates == 0
        # Every reading stored exactly once.
        assert stored_count(config) == published
        assert stored_by_street(config) == publisher.readings

        # Each fault found once, by the instance owning its street; nobody flags the rest.
        assert flagged(a, "lift.trapped") == [("s1", "L1")]
        assert flagged(b, "lift.trapped") == [(STREET_B, "L1")]
        assert {x.street for x in a.anomalies()} <= set(STREETS_A)
        assert {x.street for x in b.anomalies()} == {STREET_B}
        assert flagged(b, "lift.offline").count((STREET_B, "L9")) == 1
        wait_for(lambda: ("s3", "L9") in anomaly_rows(config, "lift.offline"))
        assert anomaly_rows(config, "lift.trapped") == [("s1", "L1"), (STREET_B, "L1")]
        assert anomaly_rows(config, "lift.offline").count((STREET_B, "L9")) == 1

        # B stops; its street's traffic waits at the broker while A carries on.
        b.stop()
        before = b.stats
        later = now_ms() - 5_000
        for seq in range(1, 6):
            publisher.send(STREET_B, [water("W-late", seq, later + seq)])
        publisher.send("s2", [water("W-late", 1, later)])
        published = publisher.total(publisher.readings, (*STREETS_A, STREET_B))
        b = started(config_b)
        wait_for(lambda: b.stats.readings_stored == 5)
        wait_for(lambda: a.stats.readings_stored == publisher.total(publisher.readings, STREETS_A))
        assert a.wait_idle() and b.wait_idle()
        assert b.stats.messages == 5 and b.stats.duplicates == 0
        assert before.readings_stored + b.stats.readings_stored == publisher.readings[STREET_B]
        assert stored_count(config) == published
        assert stored_by_street(config) == publisher.readings
    finally:
        a.stop()
        b.stop()


def test_a_restarted_instance_takes_back_only_its_own_streets_devices(
    config: Config, tmp_path: Path, publisher: Publisher
) -> None:
    a = started(instance(config, tmp_path, "a", "s1"))
    config_b = instance(config, tmp_path, "b", STREET_B)
    b = started(config_b)
    try:
        b.stop()
        ts = now_ms()
        # A stores a fresh reading of its own L5 and B's L7 waits at the broker.
        publisher.send("s1", [lift_reading(1, ts, "L5", building="")])
        publisher.send(STREET_B, [lift_reading(1, ts, "L7", building="")])
        wait_for(lambda: a.stats.readings_stored == 1)
        assert a.wait_idle()
        b = started(config_b)
        # L8 reports 25 s (device time) later: B's L7 is now silent too long …
        publisher.send(STREET_B, [lift_reading(1, ts + 25_000, "L8", building="")])
        # One pass of the offline timer judges every device, so L5 would be flagged with L7.
        wait_for(lambda: (STREET_B, "L7") in flagged(b, "lift.offline"))
        assert b.wait_idle()
        # … and A's L5, silent as long, is A's to judge, not B's.
        assert flagged(b, "lift.offline") == [(STREET_B, "L7")]
        assert flagged(a, "lift.offline") == []
    finally:
        a.stop()
        b.stop()


def test_a_street_moved_to_another_instance_is_given_up_without_loss(
    config: Config, tmp_path: Path, publisher: Publisher
) -> None:
    """X owned s1 and s2; s2 moves to Y.  X's persistent session still holds its s2
    subscription: what it queued is processed, then X unsubscribes and Y alone has s2."""
    config_x = instance(config, tmp_path, "x", "s1,s2")
    started(config_x).stop()
    ts = now_ms() - 5_000
    publisher.send("s2", [water("W1", 1, ts)])  # queued for X only: Y does not exist yet
    y = started(instance(config, tmp_path, "y", "s2"))
    x = started(replace(config_x, mqtt=replace(config_x.mqtt, street_filter="s1")))
    try:
        wait_for(lambda: "s2" in x.ingest.unsubscribed)
        publisher.send("s2", [water("W1", 2, ts + 1)])
        publisher.send("s1", [water("W1", 1, ts + 2)])
        wait_for(lambda: x.stats.readings_stored == 2 and y.stats.readings_stored == 1)
        assert x.wait_idle() and y.wait_idle()
        assert x.stats.messages == 2 and y.stats.messages == 1
        assert stored_by_street(config) == {"s1": 1, "s2": 2}
    finally:
        x.stop()
        y.stop()


@pytest.mark.parametrize(
    ("street_filter", "streets"),
    [("+", ("+",)), ("s1", ("s1",)), ("s1, s2,s1", ("s1", "s2")), ("jd-01.a_b", ("jd-01.a_b",))],
)
def test_owned_streets(street_filter: str, streets: tuple[str, ...]) -> None:
    assert owned_streets(street_filter) == streets
    assert street_subscriptions(street_filter) == tuple(f"jiayuan/v1/+/{s}/#" for s in streets)


@pytest.mark.parametrize(
    ("street_filter", "named"),
    [
        ("", "'' is not a street id"),
        ("s1,,s2", "'' is not a street id"),
        ("s1,#", "'#' is not a street id"),
        ("s1/e1", "'s1/e1' is not a street id"),
        ("$share/g/s1", "is not a street id"),
        ("+,s1", "'+' means every street"),
    ],
)
def test_a_bad_street_filter_is_refused_with_its_reason(street_filter: str, named: str) -> None:
    with pytest.raises(ConfigError, match="street_filter") as error:
        owned_streets(street_filter)
    assert named in str(error.value)


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["gateway", "run", *argv])


def test_command_line_streets_and_client_id_override_the_configuration() -> None:
    args = run_args("--streets", "s1,s2", "--client-id", "gw-east")
    config = with_overrides(Config(), args.streets, args.client_id)
    assert (config.mqtt.street_filter, config.mqtt.gateway_client_id) == ("s1,s2", "gw-east")
    unchanged = run_args()
    assert with_overrides(Config(), unchanged.streets, unchanged.client_id).mqtt == Config().mqtt
    with pytest.raises(ConfigError, match="'s 1' is not a street id"):
        with_overrides(Config(), "s 1", None)
    with pytest.raises(ConfigError, match="--client-id: empty"):
        with_overrides(Config(), None, " ")
