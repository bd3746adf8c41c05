"""GB/T 26875.3 user information transmission devices (用户信息传输装置) at the edge.

A fire panel's transmission device connects to the edge over TCP and sends frames laid
out as GB/T 26875.3-2011 §7 describes them, every multi-byte field low byte first::

    @@ | serial 2 | version 2 | time 6 | source 6 | destination 6 | length 2 | command 1
       | application data (length bytes) | checksum 1 | ##

The checksum is the sum, modulo 256, of every byte from the serial number to the end of
the application data.  A "send data" frame (command 2) that checks out is answered with
"confirm" (3), one that does not with "deny" (6); both echo the serial number and swap the
addresses.  A frame that cannot even be delimited (no end marker, an impossible length) is
counted and logged in hex with the reason, and the reader resynchronises at the next
``@@``: the connection carries on.

Application data units of type 1 (system state), 2 (component state, with its GB18030
description), 3 (analog values) and 4 (operation records) are decoded and mapped onto the
fire family's signals and events; the devices behind a transmission device are named in
the registry (``docs/devices.md``).  Bit meanings, analog types and resolutions follow the
tables of §8.2 as implemented by public parsers of the standard; see ``docs/devices.md`` for
what was and was not checked against the standard's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from edge.drivers import DriverSample
from jiayuan.catalogue import Kind
from jiayuan.contract import Value

log = logging.getLogger(__name__)

START = b"@@"
END = b"##"
HEADER_BYTES = 27  # start marker to command byte
TRAILER_BYTES = 3  # checksum and end marker
MAX_DATA_BYTES = 1024  # §7: the application data unit is at most 1024 bytes

SEND_DATA, CONFIRM, DENY = 2, 3, 6
COMMANDS = {1: "control", 2: "send data", 3: "confirm", 4: "request", 5: "reply", 6: "deny"}

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the time labels are local (Beijing) time
_SHOWN_BYTES = 96

# Type 1 system state and type 2 component state bits (§8.2.1.1, §8.2.1.2).
STATE_BITS = {
    0: "normal",  # 1 normal operation, 0 test
    1: "fire_alarm",
    2: "fault",
    3: "isolated",
    4: "supervisory",
    5: "started",
    6: "feedback",
    7: "delayed",
    8: "mains_fault",  # type 2: power fault
    9: "backup_power_fault",
    10: "bus_fault",
    11: "manual",
    12: "config_changed",
}
# Which state bits fill which fire signal, and the event raised when one sets.
_FAULT_BITS = (2, 8, 9, 10)
_SIGNAL_BITS = {"fire_alarm": (1,), "fault": _FAULT_BITS, "isolated": (3,), "supervisory": (4,)}
_SIGNAL_EVENTS = {
    "fire_alarm": "fire.alarm",
    "fault": "fire.fault",
    "isolated": "fire.isolated",
    "supervisory": "fire.supervisory",
}
# Type 4 operation flags (§8.2.1.4).
OPERATION_BITS = {
    0: "reset 复位",
    1: "silence 消音",
    2: "manual alarm 手动报警",
    3: "alarm cleared 警情消除",
    4: "self-test 自检",
    5: "acknowledge 确认",
    6: "test 测试",
}
# Type 3 analog types: (name, unit, resolution per count, unit factor to the catalogue's).
ANALOG_TYPES: Mapping[int, tuple[str, str, float]] = {
    1: ("event count", "", 1.0),
    2: ("height", "m", 0.01),
    3: ("temperature", "°C", 0.1),
    4: ("pressure", "MPa", 0.1),
    5: ("pressure", "kPa", 0.1),
    6: ("gas concentration", "%LEL", 0.1),
    7: ("time", "s", 1.0),
    8: ("voltage", "V", 0.1),
    9: ("current", "A", 0.1),
    10: ("flow", "L/s", 0.1),
}
# How an analog value in its own unit becomes the catalogue signal's unit.
_TO_CATALOGUE_UNIT = {("kPa", "MPa"): 0.001, ("MPa", "MPa"): 1.0, ("m", "m"): 1.0}
ANALOG_SIGNALS = {"sprinkler_pressure": "MPa", "hydrant_pressure": "MPa", "tank_level": "m"}

# Object sizes of the decoded types (§8.2.1).
_OBJECT_BYTES = {1: 10, 2: 46, 3: 16, 4: 10}
DESCRIPTION_BYTES = 31


# Why a frame was not taken (counted, and logged in hex with the reason).
FRAME_PROBLEMS = {
    "no_start": "bytes outside any frame (no @@ before them): line noise or another protocol",
    "bad_length": "the length field exceeds 1024 bytes: not a frame, resynchronised at next @@",
    "bad_header": "an impossible command or time label after @@: not a frame, resynchronised",
    "no_end": "no ## where the length says the frame ends: truncated or corrupted frame",
    "bad_checksum": "the checksum does not match: answered with deny, the sender repeats it",
    "bad_data": "the application data does not hold the objects it announces: denied",
    "overflow": "more unframed bytes than a frame can hold: dropped",
}


class FrameError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Frame:
    serial: int
    version: tuple[int, int]
    time: bytes  # 6 bytes: second, minute, hour, day, month, year - 2000
    source: bytes  # 6 bytes, as sent
    destination: bytes
    command: int
    data: bytes

    @property
    def source_id(self) -> str:
        return self.source.hex()


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(frame: Frame) -> bytes:
    """A frame as the standard lays it out (the edge's confirm and deny)."""
    body = b"".join(
        (
            frame.serial.to_bytes(2, "little"),
            bytes(frame.version),
            frame.time,
            frame.source,
            frame.destination,
            len(frame.data).to_bytes(2, "little"),
            bytes([frame.command]),
            frame.data,
        )
    )
    return START + body + bytes([checksum(body)]) + END


def time_label(when: dt.datetime) -> bytes:
    local = when.astimezone(SHANGHAI)
    return bytes(
        (local.second, local.minute, local.hour, local.day, local.month, local.year - 2000)
    )


def label_ms(label: bytes) -> int | None:
    """Epoch milliseconds of a 6-byte time label, or None when it is no date."""
    second, minute, hour, day, month, year = label
    try:
        when = dt.datetime(2000 + year, month, day, hour, minute, second, tzinfo=SHANGHAI)
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


@dataclass(slots=True)
class Parsed:
    frames: list[Frame] = field(default_factory=list)
    # (reason, detail, the frame's bytes or what was skipped, the frame when it could be read)
    bad: list[tuple[str, str, bytes, Frame | None]] = field(default_factory=list)


def parse_frames(buffer: bytearray) -> Parsed:
    """Take every whole frame off the front of ``buffer``; leave an incomplete one there."""
    out = Parsed()
    while True:
        start = buffer.find(START)
        if start < 0:
            # Keep a trailing "@" that may begin the next start marker.
            junk = bytes(buffer[:-1]) if buffer.endswith(b"@") else bytes(buffer)
            if junk:
                out.bad.append(("no_start", "bytes outside a frame", junk, None))
            del buffer[: len(junk)]
            return out
        if start > 0:
            out.bad.append(("no_start", "bytes before a start marker", bytes(buffer[:start]), None))
            del buffer[:start]
        if len(buffer) < HEADER_BYTES:
            return out
        length = int.from_bytes(buffer[24:26], "little")
        if length > MAX_DATA_BYTES:
            out.bad.append(
                (
                    "bad_length",
                    f"application data of {length} bytes, more than {MAX_DATA_BYTES}",
                    bytes(buffer[:HEADER_BYTES]),
                    None,
                )
            )
            del buffer[:2]  # resynchronise at the next start marker
            continue
        # An "@@" inside line noise would make the reader wait for up to a kilobyte that
        # never comes; a header whose command or time label is impossible is no frame.
        command, label = buffer[26], bytes(buffer[6:12])
        if command not in COMMANDS or label_ms(label) is None:
            out.bad.append(
                (
                    "bad_header",
                    f"command {command} or time label {label.hex(' ')} is impossible",
                    bytes(buffer[:HEADER_BYTES]),
                    None,
                )
            )
            del buffer[:2]
            continue
        total = HEADER_BYTES + length + TRAILER_BYTES
        if len(buffer) < total:
            return out
        raw = bytes(buffer[:total])
        if raw[-2:] != END:
            out.bad.append(
                ("no_end", f"no ## where a frame of {length} data bytes ends", raw, None)
            )
            del buffer[:2]
            continue
        del buffer[:total]
        body = raw[2:-3]
        frame = Frame(
            serial=int.from_bytes(body[0:2], "little"),
            version=(body[2], body[3]),
            time=body[4:10],
            source=body[10:16],
            destination=body[16:22],
            command=body[24],
            data=body[25:],
        )
        if checksum(body) != raw[-3]:
            out.bad.append(
                (
                    "bad_checksum",
                    f"checksum {raw[-3]:#04x}, the bytes sum to {checksum(body):#04x}",
                    raw,
                    frame,
                )
            )
            continue
        out.frames.append(frame)


# ---- application data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateObject:
    """Type 1 (component fields zero) or type 2."""

    type: int
    system_type: int
    system: int
    state: int
    time: bytes
    component_type: int = 0
    component: int = 0
    description: str = ""

    def bits(self) -> list[str]:
        return [name for bit, name in STATE_BITS.items() if self.state >> bit & 1 and bit]


@dataclass(frozen=True, slots=True)
class AnalogObject:
    system_type: int
    system: int
    component_type: int
    component: int
    analog_type: int
    raw: int
    time: bytes


@dataclass(frozen=True, slots=True)
class OperationObject:
    system_type: int
    system: int
    flags: int
    operator: int
    time: bytes

    def operations(self) -> list[str]:
        return [name for bit, name in OPERATION_BITS.items() if self.flags >> bit & 1]


DataObject = StateObject | AnalogObject | OperationObject


@dataclass(frozen=True, slots=True)
class DataUnit:
    type: int
    objects: tuple[DataObject, ...]  # empty for the types not decoded here


def decode_data(data: bytes) -> DataUnit:
    """The application data unit of a "send data" frame; FrameError says what is wrong."""
    if len(data) < 2:
        raise FrameError("bad_data", f"application data of {len(data)} bytes has no type")
    unit_type, count = data[0], data[1]
    size = _OBJECT_BYTES.get(unit_type)
    if size is None:
        return DataUnit(unit_type, ())
    # Types 1-4 carry a time label per object; some devices add one for the whole unit.
    if len(data) - 2 not in (count * size, count * size + 6):
        raise FrameError(
            "bad_data",
            f"type {unit_type} with {count} objects of {size} bytes, but "
            f"{len(data) - 2} bytes of objects",
        )
    objects: list[DataObject] = []
    for index in range(count):
        part = data[2 + index * size : 2 + (index + 1) * size]
        objects.append(_object(unit_type, part))
    return DataUnit(unit_type, tuple(objects))


def _object(unit_type: int, part: bytes) -> DataObject:
    if unit_type == 1:
        return StateObject(1, part[0], part[1], int.from_bytes(part[2:4], "little"), part[4:10])
    if unit_type == 2:
        raw = part[9:40].split(b"\x00", 1)[0]
        return StateObject(
            2,
            part[0],
            part[1],
            int.from_bytes(part[7:9], "little"),
            part[40:46],
            component_type=part[2],
            component=int.from_bytes(part[3:7], "little"),
            description=raw.decode("gb18030", errors="replace").strip(),
        )
    if unit_type == 3:
        return AnalogObject(
            part[0],
            part[1],
            part[2],
            int.from_bytes(part[3:7], "little"),
            part[7],
            int.from_bytes(part[8:10], "little", signed=True),
            part[10:16],
        )
    return OperationObject(part[0], part[1], part[2], part[3], part[4:10])


# ---- the devices behind a transmission device ------------------------------------------------


@dataclass(frozen=True, slots=True)
class FireLinkDevice:
    """A fire system behind a transmission device: ``source`` is the device's address as
    12 hex digits in the order sent, ``system`` the system address (the panel)."""

    id: str
    building: str
    source: str
    system: int
    # component address → signal, for analog values (sprinkler_pressure, ...)
    analog: Mapping[int, str] = field(default_factory=dict)
    # component types whose started/feedback bits are the fire pump's
    pump_components: frozenset[int] = frozenset()


@dataclass(slots=True)
class FireLinkStats:
    connections: int = 0
    frames: int = 0
    confirmed: int = 0
    denied: int = 0
    bad_frames: dict[str, int] = field(default_factory=dict)
    objects: dict[int, int] = field(default_factory=dict)  # data unit type → objects
    ignored: dict[str, int] = field(default_factory=dict)  # reason → frames or objects


# A device a frame touched: (device, latest time label, its values before the frame).
_Touched = tuple["FireLinkDevice", int, dict[str, Value]]


@dataclass(slots=True)
class _State:
    values: dict[str, Value] = field(default_factory=dict)


class FireLinkListener:
    """A TCP listener for transmission devices, as an ``edge.drivers.Driver``."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[FireLinkDevice],
        clock: Callable[[], int],
        *,
        own_address: bytes = bytes(6),
        idle_timeout_s: float = 600.0,
    ) -> None:
        self.host = host
        self.port = port
        self._devices = {(d.source.lower(), d.system): d for d in devices}
        self._sources = {d.source.lower() for d in devices}
        self._clock = clock
        self._own = own_address
        self._idle = idle_timeout_s
        self._buffer: list[DriverSample] = []
        self._state: dict[str, _State] = {d.id: _State() for d in devices}
        self._last_ts: dict[str, int] = {}
        self.stats = FireLinkStats()
        self._server: asyncio.Server | None = None
        self.bound = asyncio.Event()

    def poll(self, now_ms: int) -> list[DriverSample]:
        out, self._buffer[:] = list(self._buffer), []
        return out

    async def run(self, stop: asyncio.Event) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.bound.set()
        log.info("GB/T 26875.3 listener on %s:%d", self.host, self.port)
        try:
            await stop.wait()
        finally:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        peer = writer.get_extra_info("peername")
        buffer = bytearray()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), self._idle)
                if not chunk:
                    return
                buffer += chunk
                parsed = parse_frames(buffer)
                for reason, detail, raw, frame in parsed.bad:
                    self._bad(peer, reason, detail, raw)
                    if frame is not None and frame.command == SEND_DATA:
                        writer.write(self._answer(frame, DENY))
                for frame in parsed.frames:
                    reply = self._frame(peer, frame)
                    if reply is not None:
                        writer.write(reply)
                await writer.drain()
                if len(buffer) > HEADER_BYTES + MAX_DATA_BYTES + TRAILER_BYTES:
                    # Cannot be the start of a frame any more (parse_frames would have
                    # taken it): drop it rather than grow.
                    self._bad(peer, "overflow", "unframed bytes", bytes(buffer))
                    buffer.clear()
        except (TimeoutError, ConnectionError):
            return
        finally:
            writer.close()

    def _bad(self, peer: object, reason: str, detail: str, raw: bytes) -> None:
        self.stats.bad_frames[reason] = self.stats.bad_frames.get(reason, 0) + 1
        shown = raw[:_SHOWN_BYTES].hex(" ")
        more = f" … ({len(raw)} bytes)" if len(raw) > _SHOWN_BYTES else ""
        log.warning(
            "GB/T 26875.3 bad frame from %s: %s: %s: %s%s", peer, reason, detail, shown, more
        )

    def _answer(self, frame: Frame, command: int) -> bytes:
        if command == DENY:
            self.stats.denied += 1
        else:
            self.stats.confirmed += 1
        now = dt.datetime.now(tz=SHANGHAI)
        return encode_frame(
            Frame(
                frame.serial,
                frame.version,
                time_label(now),
                self._own,
                frame.source,
                command,
                b"",
            )
        )

    def _frame(self, peer: object, frame: Frame) -> bytes | None:
        self.stats.frames += 1
        if frame.command != SEND_DATA:
            # Confirms and replies to us need no answer; control and requests are the
            # monitoring centre's to send, not a transmission device's.
            self._ignore(f"command {frame.command} ({COMMANDS.get(frame.command, '?')})")
            return None
        if frame.source_id not in self._sources:
            self._ignore("unknown transmission device")
            log.warning(
                "GB/T 26875.3: frame from transmission device %s (%s) not in the registry",
                frame.source_id,
                peer,
            )
            return self._answer(frame, CONFIRM)
        try:
            unit = decode_data(frame.data)
        except FrameError as error:
            self._bad(peer, error.reason, error.detail, encode_frame(frame))
            return self._answer(frame, DENY)
        self.stats.objects[unit.type] = self.stats.objects.get(unit.type, 0) + len(unit.objects)
        if not unit.objects:
            # Other types (the transmission device's own state, a heartbeat, ...): the link
            # is alive, so every device behind it reports its last known state.
            self._ignore(f"data type {unit.type}")
            self._heartbeat(frame)
        # One reading per device and frame, however many objects the frame carries.
        touched: dict[str, _Touched] = {}
        for obj in unit.objects:
            self._object(frame, obj, touched)
        for device, ts, before in touched.values():
            self._reading(device, ts, before)
        return self._answer(frame, CONFIRM)

    def _ignore(self, reason: str) -> None:
        self.stats.ignored[reason] = self.stats.ignored.get(reason, 0) + 1

    def _heartbeat(self, frame: Frame) -> None:
        ts = label_ms(frame.time) or self._clock()
        for (source, _), device in self._devices.items():
            state = self._state[device.id]
            if source == frame.source_id and state.values:
                self._emit(device, ts, dict(state.values), None)

    def _object(self, frame: Frame, obj: DataObject, touched: dict[str, _Touched]) -> None:
        device = self._devices.get((frame.source_id, obj.system))
        if device is None:
            self._ignore(f"system {obj.system} not in the registry")
            return
        ts = label_ms(obj.time) or label_ms(frame.time) or self._clock()
        state = self._state[device.id]
        if isinstance(obj, OperationObject):
            log.info(
                "GB/T 26875.3 %s: operator %d: %s",
                device.id,
                obj.operator,
                ", ".join(obj.operations()) or "no operation flag",
            )
            return
        first = touched.get(device.id)
        touched[device.id] = (
            (device, ts, dict(state.values))
            if first is None
            else (device, max(ts, first[1]), first[2])
        )
        if isinstance(obj, AnalogObject):
            self._analog(device, state, obj)
            return
        for signal, bits in _SIGNAL_BITS.items():
            state.values[signal] = int(any(obj.state >> bit & 1 for bit in bits))
        if obj.type == 2 and obj.component_type in device.pump_components:
            state.values["pump_commanded"] = obj.state >> 5 & 1
            state.values["pump_running"] = obj.state >> 6 & 1
        if obj.type == 2 and obj.state & 0b11110:
            log.warning(
                "GB/T 26875.3 %s: component %d (type %d) %s: %s",
                device.id,
                obj.component,
                obj.component_type,
                obj.description or "(no description)",
                ", ".join(obj.bits()),
            )

    def _reading(self, device: FireLinkDevice, ts: int, before: dict[str, Value]) -> None:
        """The device's reading after a frame: its state, and the events that set."""
        values = dict(self._state[device.id].values)
        if not values:
            return
        raised = [
            _SIGNAL_EVENTS[signal]
            for signal in _SIGNAL_EVENTS
            if values.get(signal) == 1 and before.get(signal) != 1
        ]
        self._emit(device, ts, values, raised[0] if raised else None)
        for code in raised[1:]:
            self._emit(device, ts, dict(values), code)

    def _analog(self, device: FireLinkDevice, state: _State, obj: AnalogObject) -> None:
        signal = device.analog.get(obj.component)
        known = ANALOG_TYPES.get(obj.analog_type)
        if signal is None or known is None:
            self._ignore("unmapped analog value")
            return
        _, unit, resolution = known
        factor = _TO_CATALOGUE_UNIT.get((unit, ANALOG_SIGNALS.get(signal, "")))
        if factor is None:
            self._ignore(f"analog unit {unit or '-'} for {signal}")
            return
        state.values[signal] = round(obj.raw * resolution * factor, 6)

    def _emit(
        self, device: FireLinkDevice, ts: int, values: dict[str, Value], event: str | None
    ) -> None:
        # Time labels count whole seconds: readings of one device within one second are
        # spread a millisecond apart, so each stays a reading of its own downstream.
        ts = max(ts, self._last_ts.get(device.id, ts - 1) + 1)
        self._last_ts[device.id] = ts
        self._buffer.append(DriverSample(device.id, Kind.FIRE, device.building, ts, values, event))
