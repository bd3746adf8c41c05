"""Modbus TCP, RTU over a serial line, and RTU over TCP, as an edge driver.

One asyncio task per line (a TCP connection or a serial port) sends every request of that
line's devices, one at a time, as Modbus requires: many unit ids share one connection, and
no device has a thread or a connection of its own.  Each device is read through its profile
(``edge.profile``), with the registers it needs merged into as few requests as possible.

A request that fails is classified with the bytes that did come back: a timeout with
nothing received (a silent device), an exception response (with its code), a CRC error, an
answer from another unit id, garbage.  Each is counted per device with its reason; after
``offline_after`` failed polls in a row the device is offline: its readings stop, so the
gateway's dead-man check raises ``<kind>.offline``, and it is retried only every
``offline_retry_s`` so a dead device does not eat its line's time.  A lost connection is
reopened with a growing, jittered back-off.  A poll that starts a whole period late is an
overrun, counted per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerRTU, FramerType

from edge.devices import Endpoint, ModbusDevice
from edge.drivers import DriverSample
from edge.fastdecode import ProfileDecoder
from edge.readplan import Block, plan_reads

log = logging.getLogger(__name__)

# Modbus exception codes (Modbus Application Protocol v1.1b3, §7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
# What each failure reason usually means on site: ``jiayuan edge probe`` prints it and
# docs/devices.md is generated with it (python -m edge.devices_doc).
FAILURE_MEANINGS = {
    "timeout": "no answer: wrong unit id, baud rate or parity, A/B wires swapped, device off",
    "connection": "the line cannot be opened: address, port, cable, or the serial device server",
    "crc_error": "answers arrive damaged: baud rate, termination resistor, cable or earthing",
    "wrong_unit": "another device answered: two devices share a unit id on this line",
    "truncated": "the answer stopped short: a noisy line, or a serial server's packing timeout",
    "garbage": "unreadable bytes: wrong framing (Modbus TCP or RTU over TCP?) or baud rate",
    "short_answer": "fewer registers came back than asked for: the device's limit per read",
    "exception": "the device refused the request; the code says why (see exception codes)",
    "exception_01": "the device has no such function code: check the profile's function",
    "exception_02": "the device has no such register: check the addresses (0- or 1-based?)",
    "exception_03": "the device refuses the count: lower the profile's max_read_registers",
    "exception_06": "the device is busy: poll it less often",
    "exception_11": "a Modbus gateway got no answer from the device behind it",
}
# How much of a bad answer a log line or an error shows.
_SHOWN_BYTES = 64
_RX_KEPT = 512


class ReadFailure(Exception):
    """A request that brought no usable answer; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class DeviceHealth:
    device: str
    line: str
    unit: int
    state: Literal["unknown", "online", "offline"] = "unknown"
    polls: int = 0
    good_polls: int = 0
    consecutive_failures: int = 0
    overruns: int = 0  # polls that started a whole period (or more) late
    errors: dict[str, int] = field(default_factory=dict)  # reason → failed polls
    value_problems: dict[str, int] = field(default_factory=dict)  # reason → values left out
    last_error: str = ""


@dataclass(slots=True)
class LineStats:
    line: str
    connected: bool = False
    connects: int = 0
    connect_failures: int = 0
    requests: int = 0
    failed_requests: int = 0
    overruns: int = 0


ClientFactory = Callable[[Endpoint], Any]


def make_client(endpoint: Endpoint, trace: Callable[[bool, bytes], bytes]) -> Any:
    """The pymodbus client of a line, without its own reconnecting (the line does that)."""
    common: dict[str, Any] = {
        "timeout": 1.0,
        "retries": 0,
        "reconnect_delay": 0,
        "trace_packet": trace,
    }
    if endpoint.scheme == "serial":
        return AsyncModbusSerialClient(
            endpoint.host,
            framer=FramerType.RTU,
            baudrate=endpoint.baudrate,
            parity=endpoint.parity,
            stopbits=endpoint.stopbits,
            bytesize=endpoint.bytesize,
            **common,
        )
    framer = FramerType.RTU if endpoint.scheme == "rtu+tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(endpoint.host, port=endpoint.port, framer=framer, **common)


@dataclass(slots=True)
class _Polled:
    device: ModbusDevice
    blocks: tuple[Block, ...]
    decoder: ProfileDecoder
    health: DeviceHealth
    next_due: float = 0.0
    active_events: set[str] = field(default_factory=set)


class ModbusLine:
    """The devices of one line, polled in turn by one task."""

    def __init__(
        self,
        endpoint: Endpoint,
        devices: Sequence[ModbusDevice],
        sink: Callable[[list[DriverSample]], None],
        clock: Callable[[], int],
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        offline_retry_s: float = 30.0,
        rtu_guard_s: float = 0.02,
    ) -> None:
        self.endpoint = endpoint
        self.name = str(endpoint)
        self._sink = sink
        self._clock = clock
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._offline_retry = offline_retry_s
        self._rtu = endpoint.scheme in ("serial", "rtu+tcp")
        # After a failed RTU request, wait this long so a late answer is not taken for the
        # next one (RTU frames carry no transaction id).
        self._rtu_guard = rtu_guard_s if self._rtu else 0.0
        self._polled = []
        for device in devices:
            blocks = plan_reads(device.profile)
            self._polled.append(
                _Polled(
                    device,
                    blocks,
                    ProfileDecoder(device.profile, blocks),
                    DeviceHealth(device.id, self.name, device.unit),
                )
            )
        self.stats = LineStats(self.name)
        self._client: Any = None
        self._rx = bytearray()
        self._last_rx = b""
        self._silent_in_a_row = 0

    def health(self) -> list[DeviceHealth]:
        return [
            dataclasses.replace(
                p.health,
                errors=dict(p.health.errors),
                value_problems=dict(p.health.value_problems),
            )
            for p in self._polled
        ]

    # ---- the task --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # Every device is due at once: the line goes round them back to back and then
        # sleeps, one wake-up a round rather than one a device.
        now = loop.time()
        for polled in self._polled:
            polled.next_due = now
        # One waiter for the stop for the line's whole life, rather than one a sleep.
        stopping = asyncio.ensure_future(stop.wait())
        backoff = self._backoff_initial
        try:
            while not stop.is_set() and self._polled:
                if not self._connected():
                    if await self._connect():
                        backoff = self._backoff_initial
                    else:
                        self._connection_down(loop.time())
                        delay = backoff * random.uniform(0.5, 1.0)
                        backoff = min(backoff * 2, self._backoff_max)
                        await asyncio.wait((stopping,), timeout=delay)
                        continue
                polled = min(self._polled, key=_due)
                delay = polled.next_due - loop.time()
                if delay > 0:
                    await asyncio.wait((stopping,), timeout=delay)
                    continue
                await self._poll(polled, loop.time())
        finally:
            stopping.cancel()
            self._close()

    def _connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def _connect(self) -> bool:
        self._close()
        self._client = make_client(self.endpoint, self._trace)
        # pymodbus closes a connection after a few unanswered requests; one silent unit
        # must not cut off the others sharing it, so the line decides (_silence).
        self._client.set_max_no_responses(1 << 30)
        try:
            ok = bool(await self._client.connect())
        except (OSError, ModbusException) as error:
            log.debug("line %s: connect failed: %s", self.name, error)
            ok = False
        if ok:
            self.stats.connects += 1
            self.stats.connected = True
            self._silent_in_a_row = 0
            log.log(
                logging.INFO if self.stats.connects == 1 else logging.WARNING,
                "line %s: connected (%d devices)",
                self.name,
                len(self._polled),
            )
        else:
            self.stats.connect_failures += 1
            if self.stats.connect_failures == 1 or self.stats.connected:
                log.warning("line %s: cannot connect; retrying with back-off", self.name)
            self.stats.connected = False
            self._close()
        return ok

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None

    def _connection_down(self, now: float) -> None:
        """Every device due while the line is down fails its poll with reason 'connection'."""
        failure = ReadFailure("connection", f"cannot connect to {self.name}")
        for polled in self._polled:
            if polled.next_due <= now:
                self._schedule(polled, now)
                self._failed(polled, failure)
                if polled.health.state == "offline":
                    polled.next_due = max(polled.next_due, now + self._offline_retry)

    # ---- commissioning -----------------------------------------------------------------------

    async def open(self) -> bool:
        """Connect once, without the back-off loop (``jiayuan edge probe``)."""
        return await self._connect()

    def close(self) -> None:
        self._close()

    async def read_blocks(
        self, unit: int, blocks: Sequence[Block], timeout_s: float
    ) -> dict[tuple[int, int], int]:
        """Read ``blocks`` of one unit once; ReadFailure says why a read failed."""
        table: dict[tuple[int, int], int] = {}
        for block in blocks:
            words = await self._read(block, unit, timeout_s)
            for offset, word in enumerate(words):
                table[(block.function, block.address + offset)] = word
        return table

    # ---- one device ------------------------------------------------------------------------

    def _schedule(self, polled: _Polled, started: float) -> None:
        period = polled.device.poll_s
        late = started - polled.next_due
        missed = int(late // period) if late > 0 else 0
        if missed and polled.health.state != "offline":
            polled.health.overruns += missed
            self.stats.overruns += missed
        polled.next_due += (missed + 1) * period
        if polled.health.state == "offline":
            polled.next_due = max(polled.next_due, started + self._offline_retry)

    async def _poll(self, polled: _Polled, started: float) -> None:
        self._schedule(polled, started)
        device = polled.device
        try:
            words = [
                await self._read(block, device.unit, device.profile.timeout_s)
                for block in polled.blocks
            ]
        except ReadFailure as failure:
            self._failed(polled, failure)
            if polled.health.state == "offline":
                polled.next_due = max(polled.next_due, started + self._offline_retry)
            if self._rtu_guard:
                await asyncio.sleep(self._rtu_guard)
            return
        reading = polled.decoder.decode(words)
        for problem in reading.problems:
            counts = polled.health.value_problems
            counts[problem.reason] = counts.get(problem.reason, 0) + 1
            log.info("device %s: value left out: %s", device.id, problem)
        self._succeeded(polled)
        new_events = sorted(reading.active_events - polled.active_events)
        polled.active_events = reading.active_events
        if not reading.values and not new_events:
            return
        ts = self._clock()
        samples = [
            DriverSample(
                device.id,
                device.kind,
                device.building,
                ts,
                reading.values,
                new_events[0] if new_events else None,
            )
        ]
        samples.extend(
            DriverSample(device.id, device.kind, device.building, ts, dict(reading.values), code)
            for code in new_events[1:]
        )
        self._sink(samples)

    def _succeeded(self, polled: _Polled) -> None:
        health = polled.health
        health.polls += 1
        health.good_polls += 1
        health.consecutive_failures = 0
        if health.state != "online":
            if health.state == "offline":
                log.warning(
                    "设备恢复在线 device back online: %s (unit %d on %s)",
                    health.device,
                    health.unit,
                    self.name,
                )
            health.state = "online"

    def _failed(self, polled: _Polled, failure: ReadFailure) -> None:
        health = polled.health
        health.polls += 1
        health.consecutive_failures += 1
        health.errors[failure.reason] = health.errors.get(failure.reason, 0) + 1
        health.last_error = str(failure)
        log.info("device %s (unit %d on %s): %s", health.device, health.unit, self.name, failure)
        offline_after = polled.device.profile.offline_after
        if health.state != "offline" and health.consecutive_failures >= offline_after:
            health.state = "offline"
            polled.active_events = set()
            log.warning(
                "设备离线 device offline: %s (unit %d on %s) after %d failed polls: %s",
                health.device,
                health.unit,
                self.name,
                health.consecutive_failures,
                failure,
            )

    # ---- one request -----------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hands over what is sent and received: keep what came back for a request,
        so a request that fails can say what was wrong with the answer."""
        if sending:
            self._rx.clear()
            self._last_rx = b""
        else:
            # pymodbus passes its receive buffer, which grows until a frame is taken off.
            fresh = data[len(self._last_rx) :] if data.startswith(self._last_rx) else data
            if len(self._rx) < _RX_KEPT:
                self._rx += fresh[: _RX_KEPT - len(self._rx)]
            self._last_rx = data
        return data

    async def _read(self, block: Block, unit: int, timeout_s: float) -> list[int]:
        client = self._client
        if client is None:
            raise ReadFailure("connection", f"{self.name} is not connected")
        # One client per line; the wait for an answer is the device's own.  pymodbus reads
        # it from its transaction manager's copy of the parameters, per request.
        client.ctx.comm_params.timeout_connect = timeout_s
        call: Callable[..., Awaitable[Any]] = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }[block.function]
        self.stats.requests += 1
        what = f"function {block.function} at {block.address}+{block.count}"
        try:
            # pymodbus times the answer itself; this bound only guards against a hang in it.
            async with asyncio.timeout(timeout_s * 2 + 1.0):
                response = await call(block.address, count=block.count, device_id=unit)
        except ConnectionException as error:
            self.stats.failed_requests += 1
            self._close()
            raise ReadFailure("connection", f"{what}: {error}") from None
        except (ModbusException, TimeoutError) as error:
            self.stats.failed_requests += 1
            failure = self._unanswered(unit, block.function, what, timeout_s, error)
            self._silence(failure)
            raise failure from None
        self._silent_in_a_row = 0
        if response.isError():
            self.stats.failed_requests += 1
            code = int(getattr(response, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ReadFailure(f"exception_{code:02d}", f"{what}: exception {code} ({name})")
        if block.function in (1, 2):
            bits = list(response.bits)
            if len(bits) < block.count:
                self.stats.failed_requests += 1
                raise ReadFailure("short_answer", f"{what}: {len(bits)} bits came back")
            return [int(b) for b in bits[: block.count]]
        registers = list(response.registers)
        if len(registers) != block.count:
            self.stats.failed_requests += 1
            raise ReadFailure("short_answer", f"{what}: {len(registers)} registers came back")
        return registers

    def _silence(self, failure: ReadFailure) -> None:
        """Requests with nothing at all coming back, across the line's devices, mean the
        connection itself is dead (a half-open TCP link): reopen it."""
        if failure.reason != "timeout":
            self._silent_in_a_row = 0
            return
        self._silent_in_a_row += 1
        answering = sum(1 for p in self._polled if p.health.state != "offline")
        if self.endpoint.scheme != "serial" and self._silent_in_a_row >= max(3, answering):
            log.warning("line %s: no answer from any device; reconnecting", self.name)
            self._close()
            self.stats.connected = False

    def _unanswered(
        self, unit: int, function: int, what: str, timeout_s: float, error: BaseException
    ) -> ReadFailure:
        """Why no answer was taken for a request, from the bytes that came back."""
        rx = bytes(self._rx)
        if not rx:
            return ReadFailure("timeout", f"{what}: no answer within {timeout_s:g} s")
        shown = _hex(rx)
        if "device id" in str(error):
            return ReadFailure("wrong_unit", f"{what}: {error}; received {shown}")
        if self._rtu:
            for frame_unit in _rtu_frames(rx, function):
                if frame_unit != unit:
                    return ReadFailure(
                        "wrong_unit",
                        f"{what}: unit {frame_unit} answered the request for unit {unit}: {shown}",
                    )
            if len(rx) >= 3 and rx[0] == unit and rx[1] & 0x7F == function:
                expected = 5 if rx[1] & 0x80 else 5 + rx[2]
                if len(rx) < expected:
                    return ReadFailure(
                        "truncated", f"{what}: {len(rx)} of {expected} bytes came: {shown}"
                    )
                return ReadFailure("crc_error", f"{what}: answer fails its CRC: {shown}")
            return ReadFailure("garbage", f"{what}: unreadable answer: {shown}")
        if len(rx) >= 8 and rx[2:4] == b"\x00\x00" and rx[6] != unit:
            return ReadFailure(
                "wrong_unit", f"{what}: unit {rx[6]} answered the request for unit {unit}: {shown}"
            )
        if len(rx) >= 6 and rx[2:4] == b"\x00\x00":
            expected = 6 + int.from_bytes(rx[4:6], "big")
            if len(rx) < expected:
                return ReadFailure(
                    "truncated", f"{what}: {len(rx)} of {expected} bytes came: {shown}"
                )
        return ReadFailure("garbage", f"{what}: unreadable answer: {shown}")


def _rtu_frames(rx: bytes, function: int) -> list[int]:
    """Unit ids of the well-formed RTU answers (right CRC) to ``function`` found in ``rx``."""
    units: list[int] = []
    for start in range(len(rx) - 4):
        code = rx[start + 1]
        if code == function:
            size = 5 + rx[start + 2]
        elif code == function | 0x80:
            size = 5
        else:
            continue
        frame = rx[start : start + size]
        if len(frame) == size:
            crc = int.from_bytes(frame[-2:], "big")
            if FramerRTU.check_CRC(frame[:-2], crc):
                units.append(frame[0])
    return units


def _hex(data: bytes) -> str:
    shown = data[:_SHOWN_BYTES].hex(" ")
    return shown if len(data) <= _SHOWN_BYTES else f"{shown} … ({len(data)} bytes)"


def _due(polled: _Polled) -> float:
    return polled.next_due


async def _wait(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


class ModbusDriver:
    """Every Modbus device of an edge, as an ``edge.drivers.Driver``: ``run`` keeps one task
    per line; ``poll`` hands over what they read since the last call."""

    def __init__(
        self,
        devices: Sequence[ModbusDevice],
        clock: Callable[[], int],
        **line_options: Any,
    ) -> None:
        by_line: dict[Endpoint, list[ModbusDevice]] = {}
        for device in devices:
            by_line.setdefault(device.endpoint, []).append(device)
        self._buffer: list[DriverSample] = []
        self.lines = [
            ModbusLine(endpoint, members, self._buffer.extend, clock, **line_options)
            for endpoint, members in by_line.items()
        ]

    def poll(self, now_ms: int) -> list[DriverSample]:
        out, self._buffer[:] = list(self._buffer), []
        return out

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            for line in self.lines:
                tasks.create_task(line.run(stop))

    def health(self) -> list[DeviceHealth]:
        return [h for line in self.lines for h in line.health()]
