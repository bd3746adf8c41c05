"""Real protocol hops in the demo: the edge reads some simulated devices as site equipment.

In one estate (``hop_estate``), two healthy water tanks or waterlogging stations are served
over Modbus TCP by a pymodbus server whose registers the simulators keep current, laid out
as the shipped ``water-tank-station`` and ``waterlogging-station`` profiles say; the agent
reads them through those profiles with the edge's Modbus connector.  One healthy fire
panel (of the same estate when it has one) speaks GB/T 26875.3: a transmission
device made here turns its simulated states and analog values into frames and sends them
to the edge's listener, which confirms them.  Everything else stays simulated.  The
counts by connector go into the demo's report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer

from edge.devices import ModbusDevice, parse_address
from edge.drivers import Driver, DriverSample
from edge.gb26875 import (
    SEND_DATA,
    FireLinkDevice,
    FireLinkListener,
    Frame,
    encode_frame,
    time_label,
)
from edge.modbus import ModbusDriver
from edge.profile import SHIPPED_PROFILES, Profile, load_profile
from jiayuan.catalogue import Kind
from jiayuan.contract import Value
from simulators.registry import Estate
from tools.modbus_units import ServedUnit
from tools.servers import free_port

log = logging.getLogger(__name__)

_PROFILES = SHIPPED_PROFILES
# The kinds whose healthy devices the demo serves over Modbus, with the profile it uses.
PROFILES = {
    Kind.WATER_TANK: _PROFILES / "water_tank_station.toml",
    Kind.WATERLOGGING: _PROFILES / "waterlogging_station.toml",
}
MODBUS_DEVICES = 2
REGISTERS = 16
TRANSMITTER = bytes.fromhex("4a5900000001")  # the demo transmission device's address
PUMP_COMPONENT = 17  # component type the demo's transmission device gives the fire pump
# Analog values of the demo fire panel: signal → (component address, analog type, unit per count)
ANALOGS = {
    "sprinkler_pressure": (1, 5, 0.0001),  # type 5: 0.1 kPa = 0.0001 MPa a count
    "hydrant_pressure": (2, 5, 0.0001),
    "tank_level": (3, 2, 0.01),  # type 2: height, 0.01 m a count
}
_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}
_LIMITS = {"int16": (-32768, 32767), "uint16": (0, 65535), "int32": (-(2**31), 2**31 - 1),
           "uint32": (0, 2**32 - 1)}  # fmt: skip
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def encode_registers(profile: Profile, values: Mapping[str, Value], words: list[int]) -> None:
    """Write ``values`` into ``words`` (holding registers from 0) as the profile reads them."""
    for spec in profile.values:
        value = values.get(spec.field)
        if value is None or isinstance(value, str) or spec.function != 3:
            continue
        raw: float = (float(value) - spec.offset) / spec.scale * 10**spec.decimals
        code = _CODES[spec.type]
        if spec.type in _LIMITS:
            low, high = _LIMITS[spec.type]
            data = struct.pack(">" + code, min(max(round(raw), low), high))
        else:
            data = struct.pack(">" + code, raw)
        regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        if spec.word_order == "little":
            regs.reverse()
        if spec.byte_order == "little":
            regs = [((w & 0xFF) << 8) | (w >> 8) for w in regs]
        words[spec.address : spec.address + len(regs)] = regs
    for status in profile.statuses:
        word = words[status.address]
        for mapping in status.bits:
            if mapping.field is None or mapping.field not in values:
                continue
            on = bool(values[mapping.field]) != mapping.invert
            word = word | (1 << mapping.bit) if on else word & ~(1 << mapping.bit)
        words[status.address] = word


class _TransmissionDevice:
    """A fire panel's user information transmission device: frames out, confirms back."""

    def __init__(self, port: int, system: int) -> None:
        self.port = port
        self.system = system
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent = 0
        self.confirmed = 0
        self._serial = 0
        self._states: tuple[int, int] | None = None

    def frames_for(self, sample: DriverSample) -> None:
        """Queue what a transmission device sends for one sample of its panel: the system
        and pump states when they changed, the analog values every time."""
        values = sample.values
        when = dt.datetime.fromtimestamp(sample.ts / 1000, tz=SHANGHAI)
        label = time_label(when)
        state = 1  # normal operation
        for bit, signal in ((1, "fire_alarm"), (2, "fault"), (3, "isolated"), (4, "supervisory")):
            if values.get(signal):
                state |= 1 << bit
        pump = 1 | (int(bool(values.get("pump_commanded"))) << 5)
        pump |= int(bool(values.get("pump_running"))) << 6
        if self._states is None or self._states[0] != state:
            self._send(label, 1, [bytes([1, self.system]) + state.to_bytes(2, "little") + label])
        if self._states is None or self._states[1] != pump:
            description = "消防水泵 fire pump".encode("gb18030").ljust(31, b"\x00")
            component = (
                bytes([1, self.system, PUMP_COMPONENT])
                + (1).to_bytes(4, "little")
                + pump.to_bytes(2, "little")
                + description
                + label
            )
            self._send(label, 2, [component])
        self._states = (state, pump)
        analogs = []
        for signal, (address, analog_type, per_count) in ANALOGS.items():
            value = values.get(signal)
            if isinstance(value, int | float):
                raw = max(-32768, min(32767, round(float(value) / per_count)))
                analogs.append(
                    bytes([1, self.system, 0x5F])
                    + address.to_bytes(4, "little")
                    + bytes([analog_type])
                    + raw.to_bytes(2, "little", signed=True)
                    + label
                )
        if analogs:
            self._send(label, 3, analogs)

    def _send(self, label: bytes, unit_type: int, objects: list[bytes]) -> None:
        self._serial = (self._serial + 1) % 65536
        data = bytes([unit_type, len(objects)]) + b"".join(objects)
        frame = Frame(self._serial, (1, 0), label, TRANSMITTER, bytes(6), SEND_DATA, data)
        self.queue.put_nowait(encode_frame(frame))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                while not stop.is_set():
                    try:
                        frame = await asyncio.wait_for(self.queue.get(), 0.2)
                    except TimeoutError:
                        continue
                    writer.write(frame)
                    await writer.drain()
                    self.sent += 1
                    reply = await asyncio.wait_for(reader.readexactly(30), 5)
                    if reply[26] == 3:
                        self.confirmed += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
                log.warning("demo transmission device: %s; reconnecting", error)
            finally:
                writer.close()


def hop_estates(estates: Iterable[Estate], faulty: set[str]) -> dict[str, tuple[bool, bool]]:
    """Estate id → (serves devices over Modbus, has a panel on GB/T 26875.3): the first
    estate with healthy devices of ``PROFILES``' kinds, and the first with a healthy fire
    panel, the same one when it can.  Devices with injected faults stay simulated, so
    detection is judged as before."""

    def modbus(estate: Estate) -> bool:
        return any(d.id not in faulty and d.kind in PROFILES for d in estate.devices)

    def fire(estate: Estate) -> bool:
        return any(d.id not in faulty for d in estate.of_kind(Kind.FIRE))

    candidates = list(estates)
    for estate in candidates:
        if modbus(estate) and fire(estate):
            return {estate.id: (True, True)}
    out: dict[str, tuple[bool, bool]] = {}
    served = next((e for e in candidates if modbus(e)), None)
    if served is not None:
        out[served.id] = (True, False)
    panel = next((e for e in candidates if fire(e)), None)
    if panel is not None:
        out[panel.id] = (out.get(panel.id, (False, False))[0], True)
    return out


class ProtocolHops:
    """One estate's driver with some devices behind real protocols (module docstring)."""

    def __init__(
        self,
        inner: Driver,
        estate: Estate,
        healthy: Iterable[str],
        clock: Callable[[], int],
        speed: float,
        *,
        modbus: bool = True,
        fire: bool = True,
    ) -> None:
        self._inner = inner
        self.estate = estate.id
        fine = set(healthy)
        profiles = {kind: load_profile(path) for kind, path in PROFILES.items()}
        # Real seconds between polls, so that at any speed a device is read well within
        # the silence after which the gateway calls it offline.
        poll_s = max(0.2, min(2.0, 5.0 / speed))
        self._port = free_port()
        endpoint = parse_address(f"tcp://127.0.0.1:{self._port}")
        served = [d for d in estate.devices if d.id in fine and d.kind in profiles]
        served = served[:MODBUS_DEVICES] if modbus else []
        # Until the simulators have filled its registers a unit answers "device busy", as
        # a device does before its first measurement, rather than zeros.
        self._units = {
            d.id: ServedUnit(unit, [0] * REGISTERS, exception=ExcCodes.DEVICE_BUSY)
            for unit, d in enumerate(served, start=1)
        }
        self._profiles = {d.id: profiles[d.kind] for d in served}
        self._modbus = ModbusDriver(
            [
                ModbusDevice(
                    d.id,
                    d.kind,
                    d.building,
                    profiles[d.kind],
                    endpoint,
                    self._units[d.id].unit,
                    poll_s,
                )
                for d in served
            ],
            clock,
        )
        panels = [d for d in estate.of_kind(Kind.FIRE) if d.id in fine][:1] if fire else []
        self._panel = panels[0].id if panels else None
        analog = {address: signal for signal, (address, _, _) in ANALOGS.items()}
        self._listener = FireLinkListener(
            "127.0.0.1",
            0,
            [
                FireLinkDevice(
                    d.id, d.building, TRANSMITTER.hex(), 1, analog, frozenset({PUMP_COMPONENT})
                )
                for d in panels
            ],
            clock,
        )
        self._transmitter: _TransmissionDevice | None = None
        self.counts: Counter[str] = Counter()

    @property
    def hopped(self) -> dict[str, str]:
        """Device id → the protocol it crosses."""
        out = {device: "modbus" for device in self._units}
        if self._panel is not None:
            out[self._panel] = "gb26875"
        return out

    def poll(self, now_ms: int) -> list[DriverSample]:
        out: list[DriverSample] = []
        for sample in self._inner.poll(now_ms):
            registers = self._units.get(sample.device)
            if registers is not None:
                encode_registers(self._profiles[sample.device], sample.values, registers.words)
                registers.exception = None  # measured: it answers from now on
            elif sample.device == self._panel and self._transmitter is not None:
                self._transmitter.frames_for(sample)
            else:
                out.append(sample)
        self.counts["simulated"] += len(out)
        read = self._modbus.poll(now_ms)
        self.counts["modbus"] += len(read)
        received = self._listener.poll(now_ms)
        self.counts["gb26875"] += len(received)
        return [*out, *read, *received]

    async def run(self, stop: asyncio.Event) -> None:
        server = None
        if self._units:
            server = ModbusTcpServer(
                [r.sim() for r in self._units.values()], address=("127.0.0.1", self._port)
            )
            await server.serve_forever(background=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._listener.run(stop))
                await asyncio.wait_for(self._listener.bound.wait(), 10)
                if self._panel is not None:
                    transmitter = _TransmissionDevice(self._listener.port, 1)
                    self._transmitter = transmitter
                    tasks.create_task(transmitter.run(stop))
                # Poll once the simulators have filled every unit's registers, as a
                # device answers once it has measured.
                while not stop.is_set() and any(
                    r.exception is not None for r in self._units.values()
                ):
                    await asyncio.sleep(0.05)
                tasks.create_task(self._modbus.run(stop))
        finally:
            if server is not None:
                await server.shutdown()  # type: ignore[no-untyped-call]

    def report(self) -> dict[str, Any]:
        modbus = {h.device: {"state": h.state, "good_polls": h.good_polls, "errors": h.errors}
                  for h in self._modbus.health()}  # fmt: skip
        return {
            "readings_by_connector": dict(self.counts),
            "hopped_devices": self.hopped,
            "modbus_devices": modbus,
            "gb26875": {
                "frames": self._listener.stats.frames,
                "confirmed": self._listener.stats.confirmed,
                "denied": self._listener.stats.denied,
                "bad_frames": self._listener.stats.bad_frames,
            },
        }


def connectors_report(hops: Iterable[ProtocolHops]) -> dict[str, Any]:
    """The demo report's ``connectors``: readings by connector over every estate (the
    simulated count covers only the estates with hops), and each connector's health."""
    out: dict[str, Any] = {
        "readings_by_connector": Counter(),
        "hopped_devices": {},
        "modbus_devices": {},
        "gb26875": Counter(),
    }
    for one in hops:
        part = one.report()
        out["readings_by_connector"].update(part["readings_by_connector"])
        out["hopped_devices"].update(part["hopped_devices"])
        out["modbus_devices"].update(part["modbus_devices"])
        fire = part["gb26875"]
        out["gb26875"].update({k: v for k, v in fire.items() if k != "bad_frames"})
        out["gb26875"].setdefault("bad_frames", {})
        for reason, count in fire["bad_frames"].items():
            out["gb26875"]["bad_frames"][reason] = (
                out["gb26875"]["bad_frames"].get(reason, 0) + count
            )
    return {key: dict(value) for key, value in out.items()}
