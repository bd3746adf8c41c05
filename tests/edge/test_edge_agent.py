"""The edge agent against the real Mosquitto: nothing lost, nothing reordered, statuses."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import DriverSample
from edge.spool import Spool
from jiayuan.catalogue import Kind
from jiayuan.config import Config, EdgeConfig, MqttConfig
from jiayuan.contract import (
    BATCH,
    EDGE_STATUS_KIND,
    EdgeStatus,
    Reading,
    Value,
    decode_envelope,
    decode_status,
    normalise_values,
    parse_topic,
)
from tools.servers import RunningServers

T0 = 1_700_000_000_000


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _values(kind: Kind, i: int) -> dict[str, Value]:
    """Deterministic values, some given in the wrong numeric type on purpose."""
    if kind is Kind.WATER_TANK:
        return {"level_pct": 40 + i % 50, "ph": 7.0 + (i % 10) / 100, "pump_running": i % 2}
    if kind is Kind.WATERLOGGING:
        return {"depth": i * 0.1, "rain_rate": 3}
    return {"car_position": i % 30, "speed": 1.5, "door_status": float(i % 4)}


class CountingDriver:
    """``per_poll`` samples per device on every poll, until ``total`` per device."""

    DEVICES = (("T1", Kind.WATER_TANK), ("W1", Kind.WATERLOGGING), ("L1", Kind.LIFT))

    def __init__(
        self, total: int, per_poll: int, on_poll: Callable[[int], None] | None = None
    ) -> None:
        self.total = total
        self.per_poll = per_poll
        self.on_poll = on_poll  # called with how many samples each device has produced
        self.count: Counter[str] = Counter()

    def poll(self, now_ms: int) -> list[DriverSample]:
        samples = []
        for device, kind in self.DEVICES:
            for _ in range(min(self.per_poll, self.total - self.count[device])):
                i = self.count[device]
                self.count[device] += 1
                event = "lift.fault_code" if kind is Kind.LIFT and i % 25 == 7 else None
                samples.append(DriverSample(device, kind, "B1", T0 + i, _values(kind, i), event))
        if self.on_poll is not None:
            self.on_poll(self.count[self.DEVICES[0][0]])
        return samples

    @property
    def done(self) -> bool:
        return all(self.count[d] >= self.total for d, _ in self.DEVICES)

    def expected(self) -> dict[tuple[str, int], Reading]:
        """What the subscriber must receive: seq k carries the k-th sample, normalised."""
        return {
            (device, i + 1): Reading(
                device=device,
                kind=kind.value,
                seq=i + 1,
                ts=T0 + i,
                values=normalise_values(kind, _values(kind, i)),
                building="B1",
                event="lift.fault_code" if kind is Kind.LIFT and i % 25 == 7 else None,
            )
            for device, kind in self.DEVICES
            for i in range(self.total)
        }


@dataclass
class Collector:
    """A plain subscriber that reconnects; records every reading and status that arrives."""

    mqtt: MqttConfig
    estate: str
    readings: dict[tuple[str, int], Reading] = field(default_factory=dict)
    arrivals: list[tuple[str, int]] = field(default_factory=list)
    replayed: list[bool] = field(default_factory=list)  # per arrival: in a replay message
    duplicates: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    statuses: list[tuple[EdgeStatus, bool]] = field(default_factory=list)  # (status, retained)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        client_id = f"test-sub-{uuid.uuid4().hex[:8]}"
        while True:
            try:
                async with aiomqtt.Client(
                    self.mqtt.host, self.mqtt.port, identifier=client_id, clean_session=False
                ) as client:
                    await client.subscribe(f"jiayuan/v1/+/+/{self.estate}/#", qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self._take(str(message.topic), message.payload, message.retain)
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.01)

    def _take(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = parse_topic(topic)
        if parsed.kind == EDGE_STATUS_KIND:
            self.statuses.append((decode_status(payload), retained))
            return
        assert parsed.kind == BATCH
        envelope = decode_envelope(payload)
        self.batch_sizes.append(len(envelope.readings))
        for reading in envelope.readings:
            self.arrivals.append(reading.key)
            self.replayed.append(envelope.replay)
            if reading.key in self.readings:
                # A duplicate is allowed only as an identical repeat of the same reading.
                assert self.readings[reading.key] == reading
                self.duplicates += 1
            self.readings[reading.key] = reading

    def states(self) -> list[str]:
        return [status.state for status, _ in self.statuses]

    def assert_in_device_order(self) -> None:
        """Each device's first arrivals come in seq order (repeats may come later); live
        readings may overtake a backlog, so the order holds within live messages and
        within replay messages, each filling the other's gaps."""
        if not any(self.replayed):
            seen: dict[str, int] = defaultdict(int)
            for device, seq in self.arrivals:
                if seq > seen[device]:
                    assert seq == seen[device] + 1, f"{device}: seq {seq} after {seen[device]}"
                    seen[device] = seq
            return
        newest: dict[tuple[str, bool], int] = defaultdict(int)
        first: set[tuple[str, int]] = set()
        for (device, seq), replay in zip(self.arrivals, self.replayed, strict=True):
            if (device, seq) in first:
                continue  # a repeat
            first.add((device, seq))
            lane = (device, replay)
            assert seq > newest[lane], f"{device}: seq {seq} after {newest[lane]} ({replay=})"
            newest[lane] = seq


@contextlib.asynccontextmanager
async def collecting(mqtt: MqttConfig, estate: str) -> AsyncIterator[Collector]:
    collector = Collector(mqtt, estate)
    task = asyncio.create_task(collector.run())
    await asyncio.wait_for(collector.connected.wait(), 5)
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"waited {timeout} s in vain for: {what}") from None


def make_place() -> EdgePlace:
    estate = f"E{uuid.uuid4().hex[:8]}"
    return EdgePlace("songjiang", "S01", estate, f"edge-{estate}")


def make_agent(
    config: Config,
    place: EdgePlace,
    driver: CountingDriver,
    spool: Path,
    edge: EdgeConfig | None = None,
    **options: Any,
) -> EdgeAgent:
    options = {"drain_timeout_s": 2.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.5} | options
    return EdgeAgent(
        config.mqtt,
        edge or config.edge,
        place,
        driver,
        spool,
        poll_interval_s=0.02,
        **options,
    )


def spool_path(config: Config) -> Path:
    return Path(config.edge.spool_dir) / "edge.db"


@pytest.mark.servers
@in_loop
async def test_everything_arrives_once_in_order_with_values_unchanged(config: Config) -> None:
    place = make_place()
    driver = CountingDriver(total=300, per_poll=20)
    edge = replace(config.edge, batch_max_readings=7, max_inflight_messages=3)
    agent = make_agent(config, place, driver, spool_path(config), edge)
    stop = asyncio.Event()
    async with collecting(config.mqtt, place.estate) as sub:
        task = asyncio.create_task(agent.run(stop))
        await until(lambda: driver.done, 10, "driver finished")
        assert await agent.wait_until_empty(10)
        await until(lambda: len(sub.readings) == 900, 5, "all readings arrived")
        stop.set()
        await asyncio.wait_for(task, 5)
        await until(lambda: sub.states()[-1:] == ["stopped"], 5, "stopped announced")

    assert sub.readings == driver.expected()
    assert sub.duplicates == 0
    sub.assert_in_device_order()
    assert max(sub.batch_sizes) <= 7 and len(sub.batch_sizes) >= 900 // 7
    # A clean stop says so: "offline" is the last will's, for a broken connection.
    assert sub.states() == ["online", "stopped"]
    stats = agent.stats
    assert (stats.samples_read, stats.readings_spooled, stats.readings_acked) == (900, 900, 900)
    assert stats.messages_acked == len(sub.batch_sizes)
    assert stats.pending == 0 and stats.reconnects == 0 and not stats.connected


@pytest.mark.servers
@in_loop
async def test_broker_restart_mid_run_loses_nothing(
    config: Config, servers: RunningServers
) -> None:
    place = make_place()
    driver = CountingDriver(total=400, per_poll=4)
    agent = make_agent(config, place, driver, spool_path(config))
    stop = asyncio.Event()
    most_pending = 0

    async def watch_pending() -> None:
        nonlocal most_pending
        while True:
            most_pending = max(most_pending, agent.stats.pending)
            await asyncio.sleep(0.005)

    # The subscriber's session is persistent and so is the broker: it misses nothing.
    async with collecting(config.mqtt, place.estate) as sub:
        task = asyncio.create_task(agent.run(stop))
        await until(lambda: len(sub.readings) > 150, 10, "first readings arrived")
        watcher = asyncio.create_task(watch_pending())
        await asyncio.to_thread(servers.restart_mosquitto)
        await until(lambda: agent.stats.reconnects >= 1, 10, "agent reconnected")
        watcher.cancel()
        assert most_pending >= 12, "the driver kept being read while the broker was away"
        await until(lambda: driver.done, 10, "driver finished")
        assert await agent.wait_until_empty(10)
        await until(lambda: len(sub.readings) == 1200, 5, "all readings arrived")
        stop.set()
        await asyncio.wait_for(task, 5)

    assert sub.readings == driver.expected()
    sub.assert_in_device_order()
    assert agent.stats.connection_errors >= 1
    assert agent.stats.readings_acked >= 1200  # re-sent messages are acked twice
    assert len(sub.arrivals) == 1200 + sub.duplicates


@pytest.mark.servers
@in_loop
async def test_crash_and_restart_on_the_same_spool(config: Config) -> None:
    place = make_place()
    path = spool_path(config)
    loop = asyncio.get_running_loop()

    def crash(produced: int) -> None:
        # Right after a poll, before its readings can be published: the socket dies
        # without DISCONNECT and the task is cancelled, so nothing is drained.
        if produced == 120:
            first.abort_connection()
            loop.call_soon(task.cancel)

    driver = CountingDriver(total=300, per_poll=6, on_poll=crash)
    async with collecting(config.mqtt, place.estate) as sub:
        first = make_agent(config, place, driver, path)
        task = asyncio.create_task(first.run(asyncio.Event()))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert task.cancelled() and not driver.done
        left_behind = first.stats.pending
        assert left_behind >= 18 and first.stats.readings_acked > 0
        produced_before = sum(driver.count.values())

        second = make_agent(config, place, driver, path)
        assert second.stats.pending == left_behind
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        await until(lambda: driver.done, 10, "driver finished")
        assert await second.wait_until_empty(10)
        await until(lambda: len(sub.readings) == 900, 5, "all readings arrived")
        stop.set()
        await asyncio.wait_for(task, 5)

    # Seqs continued where the first agent stopped: seq k still carries the k-th sample.
    assert sub.readings == driver.expected()
    sub.assert_in_device_order()
    assert second.stats.readings_spooled == 900 - produced_before
    assert second.stats.readings_acked == second.stats.readings_spooled + left_behind


@pytest.mark.servers
@in_loop
async def test_cut_connection_sends_the_will_and_resends_what_was_in_flight(
    config: Config,
) -> None:
    place = make_place()
    cuts = 0

    def cut(produced: int) -> None:
        # Right after a poll: the new readings are handed to a connection that is dead.
        nonlocal cuts
        if produced >= 30 and cuts == 0 and agent.stats.connected:
            cuts += 1
            agent.abort_connection()  # the broker sees the socket die without DISCONNECT

    driver = CountingDriver(total=60, per_poll=6, on_poll=cut)
    agent = make_agent(config, place, driver, spool_path(config))
    stop = asyncio.Event()
    async with collecting(config.mqtt, place.estate) as sub:
        task = asyncio.create_task(agent.run(stop))
        await until(lambda: sub.states() == ["online", "offline", "online"], 5, "will, online")
        await until(lambda: driver.done, 5, "driver finished")
        assert await agent.wait_until_empty(5)
        await until(lambda: len(sub.readings) == 180, 5, "all readings arrived")
        stop.set()
        await asyncio.wait_for(task, 5)
        await until(lambda: len(sub.statuses) == 4, 5, "stopped on stop")
    assert cuts == 1
    assert sub.states() == ["online", "offline", "online", "stopped"]
    assert all(status.edge == place.edge_id for status, _ in sub.statuses)
    assert sub.readings == driver.expected()
    sub.assert_in_device_order()
    assert agent.stats.reconnects == 1 and agent.stats.connection_errors == 1

    # A subscriber arriving later is told the last state at once.
    async with collecting(config.mqtt, place.estate) as late:
        await until(lambda: len(late.statuses) == 1, 5, "retained status")
    [(status, retained)] = late.statuses
    assert status.state == "stopped" and retained


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@in_loop
async def test_without_a_broker_it_spools_and_stops_within_the_drain_time(
    tmp_path: Path,
) -> None:
    config = Config(mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{_closed_port()}"))
    driver = CountingDriver(total=50, per_poll=10)
    # A long back-off must not delay the stop: it is cut short to try once more.
    agent = make_agent(
        config,
        make_place(),
        driver,
        tmp_path / "edge.db",
        drain_timeout_s=0.3,
        backoff_initial_s=20.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await until(lambda: driver.done and agent.stats.connection_errors >= 1, 5, "spooled")
    stop.set()
    loop = asyncio.get_running_loop()
    stopping = loop.time()
    await asyncio.wait_for(task, 2)
    assert loop.time() - stopping < 0.6
    stats = agent.stats
    assert stats.readings_spooled == 150 and stats.pending == 150 and stats.connects == 0
    assert stats.connection_errors >= 2  # the try after stop

    # All of it waits in the spool for the next run, seqs intact.
    reopened = Spool(tmp_path / "edge.db")
    assert [r.seq for _, r in reopened.peek(200) if r.device == "T1"] == list(range(1, 51))
    reopened.close()
