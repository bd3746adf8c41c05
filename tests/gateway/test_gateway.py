"""The gateway against the real Mosquitto and InfluxDB (the ``servers`` fixture)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from gateway.service import Gateway
from jiayuan.catalogue import LIFT, Kind, port_field
from jiayuan.config import Config
from jiayuan.contract import (
    Channel,
    EdgeStatus,
    Envelope,
    Reading,
    batch_topic,
    device_topic,
    edge_status_topic,
    encode,
)
from jiayuan.influx import InfluxClient, format_line
from tests.support.lift_readings import lift_reading
from tests.support.mqtt_publisher import EDGE, PLACE, Publisher
from tools.servers import RunningServers


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def gateway(config: Config) -> Iterator[Gateway]:
    gw = Gateway(config)
    gw.start()
    assert gw.wait_ready(10), "gateway did not subscribe"
    yield gw
    gw.stop()


def query(config: Config, influxql: str) -> list[dict[str, Any]]:
    with InfluxClient(config.influx) as client:
        rows = []
        for series in client.query(influxql):
            for values in series.values:
                rows.append({**series.tags, **dict(zip(series.columns, values, strict=True))})
        return rows


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


SAMPLES: dict[Kind, dict[str, Any]] = {
    Kind.LIFT: {
        "car_status": 1,
        "door_status": 0,
        "speed": 1.5,
        "rated_speed": 1.75,
        "door_zone": 2,
        "passenger_status": 1,
        "car_position": 7,
    },
    Kind.FIRE: {"fire_alarm": 0, "sprinkler_pressure": 0.32, "tank_level": 3.5},
    Kind.WATER_TANK: {"free_chlorine": 0.4, "turbidity": 0.2, "ph": 7.1, "level_pct": 65.0},
    Kind.EBIKE_CHARGER: {
        "port_count": 2,
        port_field(1, "temp"): 31.5,
        port_field(2, "power"): 180.0,
    },
    Kind.WATERLOGGING: {"depth": 1.5, "rain_rate": 4.0},
}


def sample_readings(count: int, start_ms: int) -> list[Reading]:
    readings = []
    for index in range(count):
        kind = list(SAMPLES)[index % len(SAMPLES)]
        readings.append(
            Reading(
                device=f"{kind.value}-{index % 3}",
                kind=kind.value,
                seq=index + 1,
                ts=start_ms + index,
                values=SAMPLES[kind],
                building="b7",
            )
        )
    return readings


def stored_count(config: Config) -> int:
    with InfluxClient(config.influx) as client:
        return sum(client.count(kind.value, "seq") for kind in Kind)


def test_readings_of_every_kind_are_stored_with_their_values(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    start = now_ms() - 60_000
    readings = sample_readings(50, start)
    publisher.readings(readings[:30])
    publisher.readings(readings[30:])
    # A vendor publishing one device on its own topic, with an event code and no building.
    single = Reading(
        device="fa1",
        kind="fire",
        seq=1,
        ts=start + 500,
        values={"fire_alarm": 0, "fault": 1},
        event="fire.fault",
    )
    publisher.send(
        device_topic(*PLACE, Kind.FIRE, "fa1", Channel.EVENT),
        encode(Envelope(v=1, edge="vendor", readings=[single])),
    )
    wait_for(lambda: gateway.stats.readings_stored == 51)
    assert stored_count(config) == 51
    rows = query(config, "SELECT * FROM lift GROUP BY *")
    assert len(rows) == 10
    first = min(rows, key=lambda r: r["time"])
    assert first["time"] == start and first["seq"] == 1 and first["building"] == "b7"
    assert (first["speed"], first["door_zone"], first["car_position"]) == (1.5, 2, 7)
    assert (first["district"], first["street"], first["estate"]) == PLACE
    charger = query(config, "SELECT * FROM ebike_charger GROUP BY *")[0]
    assert charger["p01_temp"] == 31.5 and charger["p02_power"] == 180.0
    fire = query(config, "SELECT * FROM fire WHERE device = 'fa1' GROUP BY *")
    assert fire[0]["event"] == "fire.fault" and fire[0]["building"] == "_"
    assert gateway.stats.messages == 3 and gateway.stats.dead_letters == 0


def test_malformed_messages_are_dead_lettered_and_the_next_one_is_processed(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    topic = batch_topic(*PLACE, EDGE)
    good = Reading(device="w1", kind="waterlogging", seq=1, ts=now_ms(), values={"depth": 1.0})
    wrong_type = Reading(
        device="w2", kind="waterlogging", seq=1, ts=now_ms(), values={"depth": "deep"}
    )
    unknown_kind = Reading(device="x1", kind="boiler", seq=1, ts=now_ms(), values={"t": 1})
    publisher.send(topic, b"{not json")
    publisher.send(topic, b'{"v": 1, "edge": "edge1", "readings": [\xff\xfe]}')
    publisher.send(topic, b'{"v": 1, "edge": "edge1", "readings": [{"device": 5}]}')
    publisher.send("jiayuan/v1/songjiang/fangsong/e1/lift/L1", b"{}")  # too short
    publisher.send("jiayuan/v1/songjiang/fangsong/e1/boiler/B1/telemetry", b"{}")
    publisher.send(
        topic, encode(Envelope(v=1, edge=EDGE, readings=[wrong_type, unknown_kind, good]))
    )
    wait_for(lambda: gateway.stats.readings_stored == 1)
    stats = gateway.stats
    assert stats.dead_letters == 7
    assert stats.dead_letters_by_reason == {"bad_payload": 3, "bad_topic": 2, "bad_reading": 2}
    letters = gateway.dead_letters()
    assert {letter.reason for letter in letters} == {"bad_payload", "bad_topic", "bad_reading"}
    assert any(letter.payload == b"{not json" for letter in letters)
    assert any(b"boiler" in letter.payload and letter.reason == "bad_reading" for letter in letters)
    assert query(config, "SELECT depth FROM waterlogging")[0]["depth"] == 1.0
    # Still working after all that.
    publisher.readings(
        [Reading(device="w1", kind="waterlogging", seq=2, ts=now_ms(), values={"depth": 2.0})]
    )
    wait_for(lambda: gateway.stats.readings_stored == 2)


def test_a_duplicate_is_stored_once_and_counted(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    reading = Reading(device="w1", kind="waterlogging", seq=7, ts=now_ms(), values={"depth": 3.0})
    publisher.readings([reading])
    publisher.readings([reading])  # redelivered by the edge
    # A distinct timestamp: InfluxDB keeps one point per series and millisecond.
    later = Reading(
        device="w1", kind="waterlogging", seq=8, ts=reading.ts + 1000, values={"depth": 3.5}
    )
    publisher.readings([reading, later])
    wait_for(lambda: gateway.stats.readings_stored == 2)
    gateway.wait_idle()
    assert gateway.stats.duplicates == 2
    assert stored_count(config) == 2


def test_anomaly_opens_and_closes_as_one_point(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    start = now_ms() - 120_000
    hold_ms = int(LIFT.threshold("trapped_in_zone_s") * 1000)
    trapped = [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
    publisher.readings(trapped)
    wait_for(lambda: bool(gateway.anomalies(active=True)))
    opened = gateway.anomalies(active=True)[0]
    assert (opened.code, opened.state, opened.start_ms) == (
        "lift.trapped",
        "open",
        start + 5000 + hold_ms,
    )
    # Active in memory comes before durable in InfluxDB: wait for the commit thread.
    wait_for(lambda: len(query(config, "SELECT * FROM anomaly GROUP BY *")) == 1)
    rows = query(config, "SELECT * FROM anomaly GROUP BY *")
    assert len(rows) == 1 and rows[0]["state"] == "open" and rows[0]["end"] == 0
    released = lift_reading(7, start + 40_000, passenger_status=1, door_status=1)
    publisher.readings([released])
    wait_for(lambda: not gateway.anomalies(active=True))
    gateway.wait_idle()
    rows = query(config, "SELECT * FROM anomaly GROUP BY *")
    assert len(rows) == 1
    row = rows[0]
    assert (row["state"], row["start"], row["end"]) == ("closed", opened.start_ms, start + 40_000)
    assert (row["code"], row["kind"], row["severity"], row["device"], row["building"]) == (
        "lift.trapped",
        "lift",
        "critical",
        "L1",
        "b2",
    )
    assert row["title_zh"] == "困人" and row["title_en"] == "Passenger trapped"
    assert gateway.stats.anomalies_opened == {"lift.trapped": 1}


def test_offline_fires_from_the_timer_without_further_traffic(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    # Device time runs ahead of the wall clock (an accelerated replay): L2 reporting 20 s
    # later makes L1, silent since, offline without anything more arriving for L1.
    start = now_ms()
    publisher.readings([lift_reading(1, start, "L1"), lift_reading(1, start + 20_000, "L2")])
    wait_for(lambda: any(a.code == "lift.offline" for a in gateway.anomalies(active=True)))
    offline = [a for a in gateway.anomalies(active=True) if a.code == "lift.offline"]
    assert [a.device for a in offline] == ["L1"]
    assert offline[0].start_ms == start + int(LIFT.offline_after_s * 1000)
    publisher.readings([lift_reading(2, start + 21_000, "L1")])
    wait_for(lambda: not gateway.anomalies(active=True, kind="lift"))
    gateway.wait_idle()
    rows = query(config, "SELECT * FROM anomaly WHERE code = 'lift.offline'")
    assert [(r["state"], r["end"]) for r in rows] == [("closed", start + 21_000)]


def test_a_mass_outage_is_spread_over_batches(publisher: Publisher, config: Config) -> None:
    # Ten lifts fall silent at once with batches of at most 4: their offline anomalies
    # come in batches of at most 4 (in one batch, a district's outage is held in memory
    # at once), a batch window apart, and every one is stored once.
    small = replace(config, gateway=replace(config.gateway, batch_max_readings=4))
    gw = Gateway(small, serve_api=False)
    gw.start()
    try:
        assert gw.wait_ready(10), "gateway did not subscribe"
        start = now_ms()
        publisher.readings([lift_reading(1, start, f"L{index}") for index in range(10)])
        wait_for(lambda: gw.stats.readings_stored == 10)
        gw.wait_idle()
        written = gw.stats.batches
        publisher.readings([lift_reading(1, start + 20_000, "L10")])
        wait_for(lambda: len(gw.anomalies(active=True)) == 10)
        gw.wait_idle()
        assert gw.stats.batches - written >= 3  # the reading and 10 anomalies, 4 a batch
    finally:
        gw.stop()
    rows = query(config, "SELECT * FROM anomaly WHERE code = 'lift.offline'")
    assert sorted(r["device"] for r in rows) == sorted(f"L{index}" for index in range(10))
    assert {r["state"] for r in rows} == {"open"}


def test_readings_keep_flowing_while_a_mass_outage_is_reported(
    publisher: Publisher, config: Config
) -> None:
    # Forty lifts fall silent at once, four anomalies a batch, and each share holds the
    # commit thread for 0.6 s (with alerts on, a share of 5,000 takes seconds): a batch
    # of readings goes between two shares, so a reading arriving after the first share is
    # stored before the last one.
    small = replace(config, gateway=replace(config.gateway, batch_max_readings=4))
    gw = Gateway(small, serve_api=False)
    gw.processor._on_anomalies = lambda anomalies: time.sleep(0.6)
    gw.start()
    try:
        assert gw.wait_ready(10), "gateway did not subscribe"
        start = now_ms()
        for first in range(0, 40, 4):
            publisher.readings([lift_reading(1, start, f"L{n}") for n in range(first, first + 4)])
        wait_for(lambda: gw.stats.readings_stored == 40)
        publisher.readings([lift_reading(1, start + 20_000, "L99")])  # time passes: all silent
        # Three shares made: one committing, one waiting for the commit thread, one
        # waiting to be handed over.  Then a reading arrives.
        wait_for(lambda: len(gw.anomalies(active=True)) >= 12)
        publisher.readings([lift_reading(2, start + 20_500, "L99")])
        wait_for(lambda: gw.stats.readings_stored == 42)
        assert len(gw.anomalies(active=True)) < 40
        wait_for(lambda: len(gw.anomalies(active=True)) == 40)
    finally:
        gw.stop()


def test_edge_status_is_recorded(gateway: Gateway, publisher: Publisher, config: Config) -> None:
    ts = now_ms()
    publisher.send(
        edge_status_topic(*PLACE, EDGE), encode(EdgeStatus(v=1, edge=EDGE, state="online", ts=ts))
    )
    wait_for(lambda: gateway.stats.edge_status == 1)
    gateway.wait_idle()
    rows = query(config, "SELECT * FROM edge_status GROUP BY *")
    assert [(r["edge"], r["state"], r["time"]) for r in rows] == [(EDGE, "online", ts)]
    assert gateway.stats.dead_letters == 0


def on_protocol(config: Config, protocol: str) -> Config:
    """The configuration with the gateway's ingest on this MQTT version."""
    assert protocol in ("5", "3.1.1")
    return replace(config, mqtt=replace(config.mqtt, gateway_protocol=protocol))  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_messages_sent_while_stopped_arrive_after_restart(
    config: Config, publisher: Publisher, protocol: str
) -> None:
    config = on_protocol(config, protocol)
    first = Gateway(config, serve_api=False)
    first.start()
    assert first.wait_ready(10)
    first.stop()
    start = now_ms() - 10_000
    for _ in range(5):
        publisher.readings(sample_readings(40, start))
    second = Gateway(config, serve_api=False)
    second.start()
    try:
        wait_for(lambda: second.stats.readings_received == 200)
        gateway_stats = second.stats
        assert gateway_stats.duplicates == 160  # the same 40 readings five times
        wait_for(lambda: stored_count(config) == 40)
    finally:
        second.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_influx_down_no_ack_then_stored_after_it_returns(
    config: Config, publisher: Publisher, servers: RunningServers, protocol: str
) -> None:
    # Without the disk spool (tests/gateway/test_gateway_spool.py covers it): nothing is
    # acknowledged and the broker holds the backlog.
    config = on_protocol(config, protocol)
    config = replace(config, gateway=replace(config.gateway, spool_after_s=3600.0))
    first = Gateway(config, serve_api=False)
    first.start()
    assert first.wait_ready(10)
    servers.stop_influx()
    try:
        publisher.readings(sample_readings(25, now_ms() - 5000))
        wait_for(lambda: first.stats.write_retries >= 2)
        assert first.stats.acked == 0 and first.stats.readings_stored == 0
        first.stop(timeout_s=0.5)  # gives up: the broker keeps the message
        # ... and no detection snapshot is saved: its duplicate window would drop the
        # redelivered readings below.
        assert not first.processor.settled
    finally:
        servers.start_influx()
    second = Gateway(config, serve_api=False)
    second.start()
    try:
        # Stored is counted when InfluxDB takes the batch, acked a moment later.
        wait_for(lambda: second.stats.acked == 1, timeout_s=20)
        assert second.stats.readings_stored == 25
        assert stored_count(config) == 25
    finally:
        second.stop()


def test_data_influx_refuses_is_dead_lettered_and_the_rest_stored(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    ts = now_ms() - 1000
    # Someone wrote "depth" as a string before: InfluxDB now refuses float depths in this
    # shard, and only those points.
    with InfluxClient(config.influx) as client:
        client.write([format_line("waterlogging", {"device": "old"}, {"depth": "dry"}, ts)])
    good = [
        Reading(device="f1", kind="fire", seq=s, ts=ts + s, values={"fire_alarm": 0})
        for s in range(1, 6)
    ]
    bad = Reading(device="w1", kind="waterlogging", seq=1, ts=ts, values={"depth": 2.0})
    publisher.readings([*good[:3], bad, *good[3:]])
    wait_for(lambda: gateway.stats.dead_letters == 1)
    gateway.wait_idle()
    assert gateway.stats.dead_letters_by_reason == {"rejected_by_influx": 1}
    assert gateway.stats.readings_stored == 5 and gateway.stats.acked == 1
    with InfluxClient(config.influx) as client:
        assert client.count("fire", "seq") == 5
    letter = gateway.dead_letters()[0]
    assert letter.reason == "rejected_by_influx" and b'"w1"' in letter.payload


def test_api_routes(gateway: Gateway, publisher: Publisher) -> None:
    start = now_ms() - 60_000
    publisher.readings(
        [Reading(device="w1", kind="waterlogging", seq=1, ts=start, values={"depth": 35.0})]
    )
    publisher.send(batch_topic(*PLACE, EDGE), b"garbage")
    wait_for(lambda: gateway.stats.dead_letters == 1 and gateway.stats.readings_stored == 1)
    with httpx.Client(base_url=str(gateway.api_url), timeout=5) as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["mqtt_connected"]
        assert health["influx_reachable"] and health["counters"]["readings_stored"] == 1
        anomalies = http.get("/anomalies", params={"active": "true", "kind": "waterlogging"})
        titles = [a["title"] for a in anomalies.json()]
        assert sorted(titles) == [
            "一般积水 Water depth over 15 cm",
            "轻度积水 Water depth over 30 cm",
        ]
        assert http.get("/anomalies", params={"estate": "elsewhere"}).json() == []
        assert http.get("/anomalies", params={"limit": 0}).status_code == 422
        letters = http.get("/dead-letters", params={"limit": 5}).json()
        assert letters[0]["reason"] == "bad_payload" and letters[0]["payload"] == "garbage"
        assert letters[0]["reason_title"].startswith("报文无法解析")
        metrics = http.get("/metrics").text
        assert "jiayuan_gateway_readings_stored_total 1.0" in metrics
        assert 'jiayuan_gateway_dead_letters_total{reason="bad_payload"} 1.0' in metrics
        assert 'code="waterlogging.depth_30"' in metrics
        assert "jiayuan_gateway_batch_write_seconds_bucket" in metrics
        assert "/anomalies" in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_reconnects_and_resubscribes_after_a_broker_restart(
    servers: RunningServers, config: Config, protocol: str
) -> None:
    config = on_protocol(config, protocol)
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    try:
        assert gateway.wait_ready(10)
        servers.restart_mosquitto()
        wait_for(lambda: gateway.mqtt_connected, timeout_s=15)
        assert gateway.wait_ready(10)
        # One connection lost soon after it was made is seen, and is not an unstable one
        # (gateway/transport/mqtt_flaps.py; tests/gateway/test_mqtt_flaps.py has the unstable case).
        assert gateway.ingest.short_connections.recent == 1
        assert not gateway.mqtt_unstable
        assert b"jiayuan_gateway_mqtt_unstable 0.0" in gateway.metrics_exposition()
        publisher = Publisher(servers.mqtt_port)
        try:
            publisher.readings(sample_readings(10, now_ms() - 1000))
            wait_for(lambda: gateway.stats.readings_stored == 10)
        finally:
            publisher.close()
    finally:
        gateway.stop()
    assert stored_count(config) == 10
