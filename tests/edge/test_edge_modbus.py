"""The Modbus connector against pymodbus's own server: TCP, RTU over TCP, RTU on a serial
line (a pseudo-terminal pair), and devices that answer badly or not at all."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from pymodbus.framer import FramerType

from edge.devices import Endpoint, ModbusDevice, parse_address
from edge.drivers import DriverSample
from edge.modbus import DeviceHealth, ModbusDriver
from edge.profile import SHIPPED_PROFILES, Profile, load_profiles
from tests.edge.test_edge_profiles import wire_words
from tests.support.modbus_support import (
    FakeUnit,
    Mangler,
    PtyLine,
    start_serial_server,
    start_server,
)

PROFILES = load_profiles(SHIPPED_PROFILES)
POLL_S = 0.1
TIMEOUT_S = 0.15


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _clock() -> int:
    return time.time_ns() // 1_000_000


def _profile(name: str, **changes: Any) -> Profile:
    settings: dict[str, Any] = {"timeout_s": TIMEOUT_S, "offline_after": 2, **changes}
    return dataclasses.replace(PROFILES[name], **settings)


def _device(
    device_id: str, profile: str, endpoint: Endpoint, unit: int, **changes: Any
) -> ModbusDevice:
    found = _profile(profile, **changes)
    return ModbusDevice(device_id, found.kind, "b1", found, endpoint, unit, POLL_S)


def ph_unit(unit: int, ph: float) -> FakeUnit:
    fake = FakeUnit(unit)
    fake.set(0, [round(ph * 100)])
    return fake


async def run_for(
    driver: ModbusDriver, seconds: float
) -> tuple[list[DriverSample], dict[str, DeviceHealth]]:
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    samples: list[DriverSample] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        samples.extend(driver.poll(_clock()))
    stop.set()
    await asyncio.wait_for(task, 5)
    samples.extend(driver.poll(_clock()))
    return samples, {h.device: h for h in driver.health()}


def _by_device(samples: list[DriverSample]) -> dict[str, list[DriverSample]]:
    out: dict[str, list[DriverSample]] = {}
    for sample in samples:
        out.setdefault(sample.device, []).append(sample)
    return out


def _expected_polls(seconds: float) -> int:
    return int(seconds / POLL_S * 0.6)  # generous: two cores shared by many


# ---- Modbus TCP ------------------------------------------------------------------------------


@pytest.mark.slow
@in_loop
async def test_tcp_many_units_on_one_connection_and_bad_ones_do_not_disturb_them() -> None:
    quality = FakeUnit(2)
    for address, value in ((0, 0.45), (2, 0.2), (4, 7.31)):
        quality.set(address, wire_words(value, "float32", "CDAB"))
    busy = ph_unit(3, 7.0)
    busy.exception = 6  # server device busy
    server, server_port = await start_server([ph_unit(1, 7.12), quality, busy, ph_unit(9, 7)])
    # pymodbus's server answers an unknown unit id with an exception: a proxy keeps unit 9
    # silent, as a device that is off or not wired is.
    mangler = Mangler(server_port, rtu=False)
    mangler.faults[9] = "silent"
    port = await mangler.start()
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        driver = ModbusDriver(
            [
                _device("ph1", "ph-probe-int16", line, 1),
                _device("wq2", "water-quality-transmitter", line, 2),
                _device("busy3", "ph-probe-int16", line, 3),
                _device("silent9", "ph-probe-int16", line, 9),
            ],
            _clock,
        )
        seconds = 2.0
        samples, health = await run_for(driver, seconds)
    finally:
        await mangler.stop()
        await server.shutdown()
    by_device = _by_device(samples)
    assert len(driver.lines) == 1  # one connection, one task for every unit id
    assert len(by_device["ph1"]) >= _expected_polls(seconds)
    assert by_device["ph1"][-1].values == {"ph": pytest.approx(7.12)}
    assert len(by_device["wq2"]) >= _expected_polls(seconds)
    assert by_device["wq2"][-1].values == {
        "free_chlorine": pytest.approx(0.45),
        "turbidity": pytest.approx(0.2),
        "ph": pytest.approx(7.31),
    }
    assert health["ph1"].state == health["wq2"].state == "online"
    assert health["ph1"].errors == health["wq2"].errors == {}
    assert set(by_device) == {"ph1", "wq2"}
    assert health["busy3"].state == "offline"
    assert set(health["busy3"].errors) == {"exception_06"}
    assert "exception 6 (server device busy)" in health["busy3"].last_error
    assert health["silent9"].state == "offline"
    assert set(health["silent9"].errors) == {"timeout"}
    # Offline devices are retried rarely, so the line's time goes to the live ones.
    assert health["silent9"].polls <= 3
    assert driver.lines[0].stats.connects == 1


@pytest.mark.slow
@in_loop
async def test_contiguous_registers_cost_one_request_per_poll() -> None:
    pile = FakeUnit(1)
    pile.set(0, [10, 0, 900, 0])
    for port in range(10):
        pile.set(10 + 4 * port, [1, 250, 500, 321])
    server, port = await start_server([pile])
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        driver = ModbusDriver([_device("pile", "ebike-pile-10-ports", line, 1)], _clock)
        samples, health = await run_for(driver, 1.0)
    finally:
        await server.shutdown()
    assert health["pile"].good_polls >= 3
    # 42 values and a status word: two requests per poll (registers 0-3 and 10-49).
    assert driver.lines[0].stats.requests == 2 * health["pile"].polls
    values = samples[-1].values
    assert values["port_count"] == 10
    assert values["total_power"] == pytest.approx(900.0)
    assert values["p10_temp"] == pytest.approx(32.1)
    assert values["p01_current"] == pytest.approx(2.5)
    assert values["p07_plugged"] == 1
    assert values["smoke"] == 0


@pytest.mark.slow
@in_loop
async def test_a_status_bit_raises_its_event_once_when_it_sets() -> None:
    lift = FakeUnit(1)
    lift.set(0, [0, 0, 1, 3, 0, 2, 1, 1, 0, 0, 100, 0])
    server, port = await start_server([lift])
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        driver = ModbusDriver([_device("L1", "lift-monitor-status-block", line, 1)], _clock)
        stop = asyncio.Event()
        task = asyncio.create_task(driver.run(stop))
        await asyncio.sleep(0.4)
        lift.set(11, [0b100])  # mains lost
        await asyncio.sleep(0.6)
        stop.set()
        await task
    finally:
        await server.shutdown()
    samples = driver.poll(_clock())
    events = [s.event for s in samples if s.event is not None]
    assert events == ["lift.power_loss"]
    assert samples[0].values["car_position"] == 3


@pytest.mark.slow
@in_loop
async def test_the_line_reconnects_with_back_off_and_the_device_comes_back() -> None:
    unit = ph_unit(1, 7.5)
    server, port = await start_server([unit])
    line = parse_address(f"tcp://127.0.0.1:{port}")
    driver = ModbusDriver(
        [_device("ph1", "ph-probe-int16", line, 1)],
        _clock,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        offline_retry_s=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    try:
        await asyncio.sleep(0.5)
        await server.shutdown()
        await asyncio.sleep(1.0)
        down = {h.device: h for h in driver.health()}["ph1"]
        server, _ = await start_server([unit], port=port)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.shutdown()
    assert down.state == "offline"
    assert down.errors.get("connection", 0) + down.errors.get("timeout", 0) >= 2
    health = {h.device: h for h in driver.health()}["ph1"]
    assert health.state == "online"
    stats = driver.lines[0].stats
    assert stats.connects >= 2
    assert stats.connect_failures >= 1


@in_loop
async def test_an_unreachable_line_fails_its_devices_and_stops_when_asked() -> None:
    line = parse_address("tcp://127.0.0.1:1")  # nothing listens on port 1
    driver = ModbusDriver(
        [_device("ph1", "ph-probe-int16", line, 1)], _clock, backoff_initial_s=0.05
    )
    started = time.monotonic()
    _, health = await run_for(driver, 0.6)
    assert time.monotonic() - started < 3
    assert health["ph1"].state == "offline"
    assert set(health["ph1"].errors) == {"connection"}


# ---- RTU: over TCP and on a serial line ---------------------------------------------------

FAULTY = {2: "wrong_unit", 3: "crc", 4: "garbage", 5: "truncated", 9: "silent"}
REASONS = {
    "wrong_unit": "wrong_unit",
    "crc": "crc_error",
    "garbage": "garbage",
    "silent": "timeout",
    "truncated": "truncated",
}


def _rtu_devices(endpoint: Endpoint) -> list[ModbusDevice]:
    devices = [_device("good1", "ph-probe-int16", endpoint, 1)]
    devices += [_device(f"bad{u}", "ph-probe-int16", endpoint, u) for u in FAULTY]
    return devices


def _check_rtu(
    samples: list[DriverSample], health: dict[str, DeviceHealth], seconds: float
) -> None:
    by_device = _by_device(samples)
    assert set(by_device) == {"good1"}
    assert len(by_device["good1"]) >= _expected_polls(seconds) // 2
    assert by_device["good1"][-1].values == {"ph": pytest.approx(6.85)}
    assert health["good1"].state == "online"
    assert health["good1"].errors == {}
    for unit, fault in FAULTY.items():
        bad = health[f"bad{unit}"]
        assert bad.state == "offline", bad
        assert set(bad.errors) == {REASONS[fault]}, bad
    assert "unit 3 answered the request for unit 2" in health["bad2"].last_error
    assert "13 37 ca fe" in health["bad4"].last_error  # the bytes, in hex


@pytest.mark.slow
@in_loop
async def test_rtu_over_tcp_counts_each_bad_answer_with_its_reason() -> None:
    units = [ph_unit(u, 6.85) for u in (1, *FAULTY)]
    server, server_port = await start_server(units, framer=FramerType.RTU)
    mangler = Mangler(server_port, rtu=True)
    mangler.faults.update(FAULTY)
    port = await mangler.start()
    try:
        driver = ModbusDriver(_rtu_devices(parse_address(f"rtu+tcp://127.0.0.1:{port}")), _clock)
        seconds = 2.5
        samples, health = await run_for(driver, seconds)
    finally:
        await mangler.stop()
        await server.shutdown()
    _check_rtu(samples, health, seconds)


@pytest.mark.slow
@in_loop
async def test_rtu_on_a_serial_line_counts_each_bad_answer_with_its_reason() -> None:
    line = PtyLine()
    line.faults.update(FAULTY)
    line.start()
    units = [ph_unit(u, 6.85) for u in (1, *FAULTY)]
    server = await start_serial_server(units, line.server_port)
    try:
        endpoint = parse_address(f"serial://{line.client_port}?baudrate=115200")
        driver = ModbusDriver(_rtu_devices(endpoint), _clock)
        seconds = 2.5
        samples, health = await run_for(driver, seconds)
    finally:
        await server.shutdown()
        line.close()
    _check_rtu(samples, health, seconds)


@pytest.mark.slow
@in_loop
async def test_tcp_answer_from_the_wrong_unit_and_garbage_are_named() -> None:
    server, server_port = await start_server([ph_unit(u, 7.0) for u in (1, 2, 4, 5)])
    mangler = Mangler(server_port, rtu=False)
    mangler.faults.update({2: "wrong_unit", 4: "garbage", 5: "truncated"})
    port = await mangler.start()
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        driver = ModbusDriver(
            [_device(f"ph{u}", "ph-probe-int16", line, u) for u in (1, 2, 4, 5)], _clock
        )
        samples, health = await run_for(driver, 1.5)
    finally:
        await mangler.stop()
        await server.shutdown()
    assert set(_by_device(samples)) == {"ph1"}
    assert health["ph1"].state == "online"
    assert set(health["ph2"].errors) == {"wrong_unit"}
    assert set(health["ph4"].errors) <= {"garbage", "connection"}
    assert health["ph4"].errors.get("garbage", 0) >= 1
    assert set(health["ph5"].errors) == {"truncated"}


def test_addresses_parse_and_bad_ones_say_why() -> None:
    assert parse_address("tcp://10.0.0.5:502") == Endpoint("tcp", "10.0.0.5", 502)
    assert parse_address("rtu+tcp://dtu.local:4196") == Endpoint("rtu+tcp", "dtu.local", 4196)
    serial = parse_address("serial:///dev/ttyUSB0?baudrate=9600&parity=E")
    assert serial == Endpoint("serial", "/dev/ttyUSB0", 0, 9600, "E", 1, 8)
    for bad, words in (
        ("udp://1.2.3.4:502", "scheme must be one of"),
        ("tcp://host", "want tcp://HOST:PORT"),
        ("serial:///dev/ttyS0?baud=9600", "unknown serial setting 'baud'"),
        ("serial:///dev/ttyS0?parity=X", "parity N/E/O"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_address(bad)


@pytest.mark.slow
@in_loop
async def test_a_line_where_nobody_answers_reconnects() -> None:
    server, server_port = await start_server([ph_unit(1, 7.0), ph_unit(2, 7.0)])
    mangler = Mangler(server_port, rtu=False)
    mangler.faults.update({1: "silent", 2: "silent"})  # a half-open link: bytes go nowhere
    port = await mangler.start()
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        driver = ModbusDriver(
            [_device(f"ph{u}", "ph-probe-int16", line, u) for u in (1, 2)],
            _clock,
            offline_retry_s=0.1,
        )
        _, health = await run_for(driver, 2.0)
    finally:
        await mangler.stop()
        await server.shutdown()
    assert driver.lines[0].stats.connects >= 2
    assert all(h.state == "offline" for h in health.values())
    assert all(set(h.errors) == {"timeout"} for h in health.values())


@pytest.mark.slow
@in_loop
async def test_polls_a_slow_neighbour_delays_are_overruns() -> None:
    server, server_port = await start_server([ph_unit(1, 7.0), ph_unit(2, 7.0)])
    mangler = Mangler(server_port, rtu=False)
    mangler.faults[2] = "silent"
    port = await mangler.start()
    try:
        line = parse_address(f"tcp://127.0.0.1:{port}")
        # Unit 2 never goes offline, so each of its polls holds the line for its timeout.
        slow = _device("ph2", "ph-probe-int16", line, 2, offline_after=1000, timeout_s=0.35)
        driver = ModbusDriver([_device("ph1", "ph-probe-int16", line, 1), slow], _clock)
        _, health = await run_for(driver, 1.5)
    finally:
        await mangler.stop()
        await server.shutdown()
    assert health["ph1"].overruns > 0
    assert health["ph1"].errors == {}
    assert driver.lines[0].stats.overruns >= health["ph1"].overruns
