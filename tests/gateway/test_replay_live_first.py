"""An edge's backlog after an uplink outage does not hold live readings behind it, on the
real Mosquitto and InfluxDB: the edge sends live readings first and paces its backlog,
the gateway takes live messages before backlog ones, and every backlog reading is stored
once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from edge.agent import EdgeAgent, EdgePlace, envelope_payload
from edge.drivers import DriverSample
from edge.spool import Spool
from gateway.service import Gateway
from gateway.transport.inbox import LIVE
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.contract import Reading, Value, batch_topic
from jiayuan.influx import InfluxClient
from tests.gateway.test_gateway import wait_for
from tests.support.lift_readings import lift_reading
from tests.support.mqtt_publisher import EDGE, PLACE, Publisher

pytestmark = pytest.mark.servers

HOUR_MS = 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def tank_values(i: int) -> dict[str, Value]:
    return {"level_pct": 40 + i % 50, "ph": 7.0 + (i % 10) / 100, "pump_running": i % 2}


def count_points(config: Config, measurement: str) -> int:
    with InfluxClient(config.influx) as client:
        for series in client.query(f'SELECT COUNT("seq") FROM "{measurement}"'):
            return int(series.values[0][1])  # type: ignore[arg-type]
    return 0


@pytest.fixture
def gateway(config: Config) -> Iterator[Gateway]:
    gw = Gateway(config, serve_api=False)
    gw.start()
    assert gw.wait_ready(10), "gateway did not subscribe"
    yield gw
    gw.stop()


class AlarmDriver:
    """Nothing until ``arm``; then one fire alarm, stamped with the time it was read."""

    def __init__(self) -> None:
        self.armed = False
        self.read_at_ms: int | None = None

    def poll(self, now: int) -> list[DriverSample]:
        if not self.armed or self.read_at_ms is not None:
            return []
        self.read_at_ms = now_ms()
        values: dict[str, Value] = {"fire_alarm": 1}
        return [DriverSample("F1", Kind.FIRE, "B1", self.read_at_ms, values, "fire.alarm")]


def fill_backlog(path: Path, readings: int, devices: int, span_ms: int = HOUR_MS) -> None:
    """``span_ms`` (an hour) of water-tank readings spooled while the uplink was down."""
    start = now_ms() - span_ms
    step = span_ms // (readings // devices)
    spool = Spool(path)
    try:
        samples = [
            DriverSample(
                f"T{i % devices}",
                Kind.WATER_TANK,
                "B1",
                start + (i // devices) * step,
                tank_values(i),
                None,
            )
            for i in range(readings)
        ]
        for chunk in range(0, readings, 5000):
            spool.append(EDGE, samples[chunk : chunk + 5000])
    finally:
        spool.close()


def test_a_live_alarm_overtakes_the_edges_backlog_and_the_backlog_is_stored_once(
    gateway: Gateway, config: Config, tmp_path: Path
) -> None:
    backlog = 20_000
    spool_path = tmp_path / "edge1.sqlite"
    fill_backlog(spool_path, backlog, devices=40)
    driver = AlarmDriver()
    # Paced so the backlog takes about five seconds to drain.
    edge = replace(config.edge, replay_rate_limit=4000.0)
    agent = EdgeAgent(
        config.mqtt, edge, EdgePlace(*PLACE, EDGE), driver, spool_path, poll_interval_s=0.05
    )

    async def scenario() -> tuple[float, int, int]:
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        while agent.stats.readings_acked == 0:  # the backlog is draining
            await asyncio.sleep(0.01)
        driver.armed = True
        while count_points(config, "fire") == 0:
            await asyncio.sleep(0.02)
        stored_at = now_ms()
        assert driver.read_at_ms is not None
        backlog_stored = count_points(config, "water_tank")
        still_spooled = agent.stats.pending
        assert await agent.wait_until_empty(60)
        stop.set()
        await running
        return (stored_at - driver.read_at_ms) / 1000, backlog_stored, still_spooled

    latency_s, backlog_stored, still_spooled = asyncio.run(scenario())
    assert backlog_stored < backlog and still_spooled > 0, (
        f"the alarm was stored only after {backlog_stored} of {backlog} backlog readings "
        f"({still_spooled} still spooled)"
    )
    assert latency_s < 2.0, f"the alarm took {latency_s:.2f} s from the driver to InfluxDB"

    wait_for(lambda: gateway.stats.readings_stored == backlog + 1, 30)
    assert gateway.wait_idle()
    stats = gateway.stats
    assert stats.duplicates == 0 and stats.seq_faults == 0 and stats.dead_letters == 0
    assert count_points(config, "water_tank") == backlog
    assert agent.stats.readings_replayed == backlog
    assert stats.messages_backlog > 0
    # The alarm was judged on arrival; the backlog's values were stored, not judged.
    assert [a.code for a in gateway.anomalies(kind="fire")] == ["fire.alarm"]
    assert stats.replayed_unjudged == backlog


def tank_reading(n: int, ts0: int, devices: int = 50) -> Reading:
    """The n-th reading of a backlog spread over ``devices`` tanks, each numbered 1, 2, …"""
    return Reading(
        device=f"T{n % devices}",
        kind="water_tank",
        seq=n // devices + 1,
        ts=ts0 + n // devices * 1000,
        values=tank_values(n),
        building="B1",
    )


def replayed(readings: list[Reading]) -> bytes:
    return envelope_payload(EDGE, [msgspec.json.encode(r) for r in readings], replay=True)


def test_the_gateway_takes_a_live_message_before_the_backlog_waiting_for_it(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    # The backlog and then a live reading wait at the broker (the gateway's session is
    # persistent) and reach the next gateway together, the backlog first.
    gateway.stop()
    messages, per_message = 400, 100
    ts0 = now_ms() - HOUR_MS
    topic = batch_topic(*PLACE, EDGE)
    for m in range(messages):
        publisher.send(
            topic, replayed([tank_reading(m * per_message + i, ts0) for i in range(per_message)])
        )
    publisher.readings([lift_reading(1, now_ms())])
    second = Gateway(config, serve_api=False)
    # The first write waits (InfluxDB busy for a moment) until the network thread has read
    # the live message: from then on, which goes first is the gateway's choice alone, not
    # the host's timing (a starved network thread reading the live message only after the
    # processor had taken the whole backlog).
    write = second.writer.client.write
    # The kinds of each write's lines, in the order written: what was stored before the
    # live reading, whatever InfluxDB is asked later (a count after the lift shows up
    # also takes the backlog written meanwhile).
    written: list[list[str]] = []

    def write_once_the_live_message_is_read(lines: Sequence[str] | bytes) -> None:
        wait_for(lambda: second._inbox.received(LIVE) == 1, 30)
        assert not isinstance(lines, bytes | bytearray | memoryview)
        written.append([line.split(",", 1)[0] for line in lines])
        write(lines)

    second.writer.client.write = write_once_the_live_message_is_read  # type: ignore[method-assign]
    second.start()
    try:
        wait_for(lambda: count_points(config, "lift") == 1, 30)
        with_live = next(k for k, kinds in enumerate(written) if "lift" in kinds)
        backlog_before = sum(kinds.count("water_tank") for kinds in written[: with_live + 1])
        # In arrival order it would be stored after all of them; first, it is stored while
        # the backlog is still being worked through (how far depends on the host's load:
        # the first batches may be taken before the network thread has read it).
        assert backlog_before < messages * per_message, (
            f"the live reading was stored after {backlog_before} backlog readings"
        )
        wait_for(lambda: second.stats.readings_stored == messages * per_message + 1, 60)
        stats = second.stats
        assert stats.messages_backlog == messages
        assert stats.duplicates == 0 and stats.seq_faults == 0
    finally:
        second.stop()


def test_live_readings_ahead_of_their_backlog_are_neither_duplicates_nor_faults(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    # A lift's readings 1-5 arrive, the uplink fails for readings 6-105, and after it is
    # back the edge sends 106-110 live before the backlog, then 111 live, then a message
    # of the backlog again (its PUBACK was lost).
    start = now_ms() - 200_000
    lift = [lift_reading(seq, start + seq * 1000) for seq in range(1, 112)]
    topic = batch_topic(*PLACE, EDGE)
    publisher.readings(lift[0:5])
    publisher.readings(lift[105:110])
    publisher.send(topic, replayed(lift[5:55]))
    publisher.send(topic, replayed(lift[55:105]))
    publisher.readings(lift[110:111])
    publisher.send(topic, replayed(lift[5:15]))
    wait_for(lambda: gateway.stats.readings_received == 121)
    assert gateway.wait_idle()
    stats = gateway.stats
    assert stats.readings_stored == 111 and stats.duplicates == 10
    assert stats.seq_faults == 0, stats.seq_faults_by_device
    assert stats.replayed_unjudged == 100
    assert count_points(config, "lift") == 111


def test_a_short_outages_backlog_goes_first_in_order_and_is_judged(
    gateway: Gateway, config: Config, tmp_path: Path
) -> None:
    # Ten minutes spooled: under IN_ORDER_BACKLOG_MS, so sent before anything live,
    # unmarked, and judged like live readings (a fault that began and ended in the outage
    # still raises its alert; the chaos run's uplink cut checks that end to end).
    backlog = 2_000
    spool_path = tmp_path / "edge1.sqlite"
    fill_backlog(spool_path, backlog, devices=20, span_ms=10 * 60_000)
    agent = EdgeAgent(
        config.mqtt, config.edge, EdgePlace(*PLACE, EDGE), AlarmDriver(), spool_path,
        poll_interval_s=0.05,
    )  # fmt: skip

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        assert await agent.wait_until_empty(60)
        stop.set()
        await running

    asyncio.run(scenario())
    wait_for(lambda: gateway.stats.readings_stored == backlog, 30)
    assert gateway.wait_idle()
    assert agent.stats.readings_replayed == 0
    stats = gateway.stats
    assert stats.messages_backlog == 0 and stats.replayed_unjudged == 0
    assert stats.duplicates == 0 and stats.seq_faults == 0
