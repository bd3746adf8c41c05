"""The GB/T 26875.3 listener, fed by a transmission device written here from the standard's
frame layout (§7, every multi-byte field low byte first) over real TCP."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.devices import RegistryEstate, fire_link_devices
from edge.drivers import DriverSample
from edge.gb26875 import FireLinkDevice, FireLinkListener, parse_frames

SOURCE = bytes.fromhex("0a0b0c0d0e0f")
CENTRE = bytes(6)
WHEN = dt.datetime(2026, 3, 14, 9, 26, 53)  # Shanghai time


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# ---- a transmission device, from the standard's layout --------------------------------------


def label(when: dt.datetime = WHEN) -> bytes:
    """Time label: second, minute, hour, day, month, year (two digits)."""
    return bytes([when.second, when.minute, when.hour, when.day, when.month, when.year % 100])


def frame(
    serial: int,
    data: bytes,
    command: int = 2,
    source: bytes = SOURCE,
    *,
    bad_checksum: bool = False,
    length: int | None = None,
) -> bytes:
    body = (
        serial.to_bytes(2, "little")
        + bytes([1, 0])  # protocol version 1.0
        + label()
        + source
        + CENTRE
        + (len(data) if length is None else length).to_bytes(2, "little")
        + bytes([command])
        + data
    )
    check = sum(body) % 256
    if bad_checksum:
        check = (check + 1) % 256
    return b"@@" + body + bytes([check]) + b"##"


def system_state(system: int, state: int) -> bytes:
    """A type 1 object: system type (1: fire alarm system), system address, state (2 bytes),
    time label."""
    return bytes([1, system]) + state.to_bytes(2, "little") + label()


def component_state(system: int, kind: int, address: int, state: int, text: str) -> bytes:
    """Type 2: system type and address, component type, address (4), state (2),
    description (31 bytes GB18030), time label."""
    description = text.encode("gb18030").ljust(31, b"\x00")
    return (
        bytes([1, system, kind])
        + address.to_bytes(4, "little")
        + state.to_bytes(2, "little")
        + description
        + label()
    )


def analog(system: int, address: int, analog_type: int, value: int) -> bytes:
    """Type 3: system type and address, component type and address, analog type, value."""
    return (
        bytes([1, system, 0x5F])
        + address.to_bytes(4, "little")
        + bytes([analog_type])
        + value.to_bytes(2, "little", signed=True)
        + label()
    )


def operation(system: int, flags: int, operator: int) -> bytes:
    return bytes([1, system, flags, operator]) + label()


def parse_reply(data: bytes) -> tuple[int, int, bytes, bytes]:
    """(serial, command, source, destination) of the edge's answer, checksum verified."""
    assert data[:2] == b"@@" and data[-2:] == b"##"
    body = data[2:-3]
    assert sum(body) % 256 == data[-3]
    assert int.from_bytes(body[22:24], "little") == len(body) - 25 == 0
    return int.from_bytes(body[0:2], "little"), body[24], body[10:16], body[16:22]


# ---- the listener -----------------------------------------------------------------------------


DEVICES = [
    FireLinkDevice(
        "F1",
        "b1",
        SOURCE.hex(),
        1,
        analog={7: "sprinkler_pressure"},
        pump_components=frozenset({17}),
    ),
    FireLinkDevice("F2", "b2", SOURCE.hex(), 2),
]


class Link:
    def __init__(self, listener: FireLinkListener) -> None:
        self.listener = listener
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> tuple[int, int, bytes, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(27), 2)
        rest = await asyncio.wait_for(self.reader.readexactly(3), 2)
        return parse_reply(head + rest)

    async def no_reply(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.reader.readexactly(1), 0.3)


async def _link() -> tuple[Link, asyncio.Event, asyncio.Task[None]]:
    listener = FireLinkListener("127.0.0.1", 0, DEVICES, lambda: time.time_ns() // 1_000_000)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(listener.bound.wait(), 2)
    link = Link(listener)
    link.reader, link.writer = await asyncio.open_connection("127.0.0.1", listener.port)
    return link, stop, task


async def _close(link: Link, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    link.writer.close()
    stop.set()
    await asyncio.wait_for(task, 3)


def _ts() -> int:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    return int(WHEN.replace(tzinfo=shanghai).timestamp() * 1000)


@in_loop
async def test_system_state_is_confirmed_and_maps_onto_the_fire_family() -> None:
    link, stop, task = await _link()
    try:
        fire = 0b1 | 0b10  # normal operation, fire alarm
        await link.send(frame(0x1234, bytes([1, 1]) + system_state(1, fire)))
        serial, command, source, destination = await link.reply()
        samples = link.listener.poll(0)
    finally:
        await _close(link, stop, task)
    assert (serial, command) == (0x1234, 3)  # confirm, same serial number
    assert source == CENTRE and destination == SOURCE
    assert samples == [
        DriverSample(
            "F1",
            samples[0].kind,
            "b1",
            _ts(),
            {"fire_alarm": 1, "fault": 0, "isolated": 0, "supervisory": 0},
            "fire.alarm",
        )
    ]


@in_loop
async def test_component_state_carries_its_gb18030_description_into_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "edge.gb26875")
    link, stop, task = await _link()
    try:
        objects = component_state(2, 42, 1203, 0b101, "三楼东侧感烟探测器")  # fault
        objects += component_state(1, 17, 5, 0b1100001, "消防水泵")  # pump started + feedback
        await link.send(frame(7, bytes([2, 2]) + objects))
        assert (await link.reply())[:2] == (7, 3)
        samples = link.listener.poll(0)
    finally:
        await _close(link, stop, task)
    assert [(s.device, s.event) for s in samples] == [("F2", "fire.fault"), ("F1", None)]
    assert samples[0].values["fault"] == 1
    assert samples[1].values["pump_commanded"] == samples[1].values["pump_running"] == 1
    assert "三楼东侧感烟探测器" in caplog.text
    assert "component 1203 (type 42)" in caplog.text


@in_loop
async def test_analog_values_and_operations() -> None:
    link, stop, task = await _link()
    try:
        # 0.3 MPa as type 5 (kPa, 0.1 kPa per count) on the mapped component 7.
        await link.send(frame(8, bytes([3, 2]) + analog(1, 7, 5, 3000) + analog(1, 8, 5, 10)))
        assert (await link.reply())[:2] == (8, 3)
        await link.send(frame(9, bytes([4, 1]) + operation(1, 0b11, 4)))  # reset, silence
        assert (await link.reply())[:2] == (9, 3)
        samples = link.listener.poll(0)
        stats = link.listener.stats
    finally:
        await _close(link, stop, task)
    assert [s.values for s in samples] == [{"sprinkler_pressure": pytest.approx(0.3)}]
    assert stats.ignored == {"unmapped analog value": 1}
    assert stats.objects == {3: 2, 4: 1}


@in_loop
async def test_a_wrong_checksum_is_denied_and_the_connection_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "edge.gb26875")
    link, stop, task = await _link()
    try:
        await link.send(frame(21, bytes([1, 1]) + system_state(1, 0b101), bad_checksum=True))
        assert (await link.reply())[:2] == (21, 6)  # deny, same serial number
        await link.send(frame(22, bytes([1, 1]) + system_state(1, 0b1)))
        assert (await link.reply())[:2] == (22, 3)
        samples = link.listener.poll(0)
        stats = link.listener.stats
    finally:
        await _close(link, stop, task)
    assert stats.bad_frames == {"bad_checksum": 1}
    assert (stats.denied, stats.confirmed) == (1, 1)
    assert [s.values["fault"] for s in samples] == [0]  # the denied frame's fault is not taken
    assert "bad_checksum" in caplog.text
    assert "40 40 15 00 01 00" in caplog.text  # the frame, in hex


@in_loop
async def test_impossible_length_truncated_frame_and_garbage_are_counted_not_fatal() -> None:
    link, stop, task = await _link()
    try:
        good = frame(31, bytes([1, 1]) + system_state(1, 0b11))
        impossible = frame(30, b"\x01\x00", length=60000)
        truncated = frame(29, bytes([1, 1]) + system_state(1, 0b1))[:-7]
        await link.send(b"\xde\xad" + impossible + truncated + good)
        assert (await link.reply())[:2] == (31, 3)
        await link.no_reply()  # nothing answers the frames that could not be delimited
        samples = link.listener.poll(0)
        stats = link.listener.stats
    finally:
        await _close(link, stop, task)
    assert stats.bad_frames.keys() == {"no_start", "bad_length", "no_end"}
    assert [s.event for s in samples] == ["fire.alarm"]
    assert stats.connections == 1


@in_loop
async def test_a_malformed_data_unit_is_denied_and_unknown_sources_are_counted() -> None:
    link, stop, task = await _link()
    try:
        await link.send(frame(41, bytes([1, 2]) + system_state(1, 1)))  # says 2 objects, has 1
        assert (await link.reply())[:2] == (41, 6)
        stranger = bytes.fromhex("ffffffffffff")
        await link.send(frame(42, bytes([1, 1]) + system_state(1, 3), source=stranger))
        assert (await link.reply())[:2] == (42, 3)
        samples = link.listener.poll(0)
        stats = link.listener.stats
    finally:
        await _close(link, stop, task)
    assert samples == []
    assert stats.bad_frames == {"bad_data": 1}
    assert stats.ignored == {"unknown transmission device": 1}


@in_loop
async def test_a_heartbeat_repeats_each_devices_last_state() -> None:
    link, stop, task = await _link()
    try:
        await link.send(frame(51, bytes([1, 1]) + system_state(1, 0b1)))
        await link.reply()
        link.listener.poll(0)
        # Type 21: the transmission device's own running state (not decoded here).
        await link.send(frame(52, bytes([21, 1, 0b1]) + label()))
        assert (await link.reply())[:2] == (52, 3)
        samples = link.listener.poll(0)
    finally:
        await _close(link, stop, task)
    assert [(s.device, s.event) for s in samples] == [("F1", None)]
    assert samples[0].values["fire_alarm"] == 0


def test_registry_entries_name_the_transmission_device() -> None:
    estate = RegistryEstate(
        "e1",
        "d",
        "s",
        "edge1",
        (
            {"id": "F1", "kind": "fire", "building": "b1",
             "connect": {"protocol": "gb26875", "source": "0A0B0C0D0E0F", "system": 1,
                         "analog": {"7": "sprinkler_pressure"}}},
        ),
    )  # fmt: skip
    (device,) = fire_link_devices(estate)
    assert device.source == "0a0b0c0d0e0f"
    assert device.analog == {7: "sprinkler_pressure"}
    bad = RegistryEstate(
        "e1", "d", "s", "edge1",
        ({"id": "F9", "kind": "fire", "connect": {"protocol": "gb26875", "source": "12"}},),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"device F9: connect\.source: must be"):
        fire_link_devices(bad)


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"@@", b"##"])), max_size=30))
def test_any_bytes_are_taken_apart_without_an_error_and_nothing_is_held_for_ever(
    chunks: list[bytes],
) -> None:
    good = frame(77, bytes([1, 1]) + system_state(1, 0b11))
    buffer = bytearray()
    frames = []
    for chunk in chunks:
        buffer += chunk
        frames += parse_frames(buffer).frames
    # Whatever came before, a good frame after it is found: at once when the junk holds no
    # plausible header, at the latest once a header's worth of bytes has followed it.
    buffer += good + bytes(1100) + good
    found = parse_frames(buffer).frames
    assert any(f.serial == 77 for f in found)
    assert len(buffer) < len(good)


def test_an_impossible_header_does_not_hold_up_the_next_frame() -> None:
    good = frame(78, bytes([1, 1]) + system_state(1, 0b11))
    # A start marker in line noise whose "length" asks for 500 more bytes: day 0, command 0.
    noise = b"@@" + bytes(22) + (500).to_bytes(2, "little") + b"\x00"
    buffer = bytearray(noise + good)
    parsed = parse_frames(buffer)
    assert [f.serial for f in parsed.frames] == [78]
    assert [reason for reason, *_ in parsed.bad] == ["bad_header", "no_start"]


@in_loop
async def test_readings_within_one_second_get_timestamps_of_their_own() -> None:
    link, stop, task = await _link()
    try:
        for serial, state in ((61, 0b1), (62, 0b101), (63, 0b1)):
            await link.send(frame(serial, bytes([1, 1]) + system_state(1, state)))
            await link.reply()
        samples = link.listener.poll(0)
    finally:
        await _close(link, stop, task)
    assert [s.ts - _ts() for s in samples] == [0, 1, 2]
    assert [s.event for s in samples] == [None, "fire.fault", None]
