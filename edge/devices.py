"""Which real devices an edge agent reads: the registry's ``connect`` entries.

A device of the registry JSON (``jiayuan simulate`` writes one; an installer edits it) may
carry::

    "connect": {"profile": "ph-probe-int16", "address": "tcp://10.2.0.17:502", "unit": 3}

naming its profile and where it answers.  Addresses:

* ``tcp://HOST:PORT``: Modbus TCP (a device or a Modbus gateway with many unit ids);
* ``rtu+tcp://HOST:PORT``: Modbus RTU frames over TCP (the serial device servers, 串口服务器,
  common in Chinese buildings, in transparent mode);
* ``serial:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8``: an RS-485 line.

The registry is read here as plain JSON, so the edge does not depend on the simulators.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.gb26875 import ANALOG_SIGNALS, FireLinkDevice
from edge.profile import Profile
from edge.vendor_json import JsonDevice, JsonProfile
from jiayuan.catalogue import Kind

SCHEMES = ("tcp", "rtu+tcp", "serial")
_PARITIES = ("N", "E", "O")


class DeviceConfigError(ValueError):
    """A device's connection entry that cannot be used; the message names the device."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One Modbus line: a TCP connection or a serial port, shared by its devices."""

    scheme: str
    host: str  # the serial port's path for "serial"
    port: int = 502
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    def __str__(self) -> str:
        if self.scheme == "serial":
            return (
                f"serial://{self.host}?baudrate={self.baudrate}&parity={self.parity}"
                f"&stopbits={self.stopbits}&bytesize={self.bytesize}"
            )
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_address(text: str) -> Endpoint:
    """An Endpoint from ``tcp://``, ``rtu+tcp://`` or ``serial://`` text; ValueError says why."""
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"address {text!r}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if parts.scheme == "serial":
        if not parts.path:
            raise ValueError(f"address {text!r}: no serial port, e.g. serial:///dev/ttyUSB0")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"baudrate", "parity", "stopbits", "bytesize"}
        if unknown:
            raise ValueError(f"address {text!r}: unknown serial setting {sorted(unknown)[0]!r}")
        try:
            baudrate = int(query.get("baudrate", 9600))
            stopbits = int(query.get("stopbits", 1))
            bytesize = int(query.get("bytesize", 8))
        except ValueError:
            raise ValueError(f"address {text!r}: serial settings must be numbers") from None
        parity = query.get("parity", "N").upper()
        if parity not in _PARITIES or stopbits not in (1, 2) or bytesize not in (7, 8):
            raise ValueError(
                f"address {text!r}: parity N/E/O, stopbits 1/2 and bytesize 7/8 expected"
            )
        return Endpoint("serial", parts.path, 0, baudrate, parity, stopbits, bytesize)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"address {text!r}: the port is not a number") from None
    if not parts.hostname or port is None:
        raise ValueError(f"address {text!r}: want {parts.scheme}://HOST:PORT")
    return Endpoint(parts.scheme, parts.hostname, port)


@dataclass(frozen=True, slots=True)
class ModbusDevice:
    id: str
    kind: Kind
    building: str
    profile: Profile
    endpoint: Endpoint
    unit: int
    poll_s: float  # the profile's unless the device overrides it


@dataclass(frozen=True, slots=True)
class RegistryEstate:
    """What the edge needs of one estate of the registry."""

    id: str
    district: str
    street: str
    edge_id: str
    devices: tuple[Mapping[str, Any], ...]


def read_estates(path: Path) -> list[RegistryEstate]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        RegistryEstate(
            str(estate["id"]),
            str(estate["district"]),
            str(estate["street"]),
            str(estate["edge_id"]),
            tuple(estate.get("devices", [])),
        )
        for estate in data.get("estates", [])
    ]


def read_estate(path: Path, estate_id: str) -> RegistryEstate:
    for estate in read_estates(path):
        if estate.id == estate_id:
            return estate
    raise KeyError(f"no estate {estate_id!r} in the registry {path}")


def connected_devices(
    estate: RegistryEstate, profiles: Mapping[str, Profile]
) -> list[ModbusDevice]:
    """The estate's devices that carry a ``connect`` entry, checked against the profiles."""
    out: list[ModbusDevice] = []
    errors: list[str] = []
    for entry in estate.devices:
        connect = entry.get("connect")
        if connect is None or _is_fire_link(connect) or _is_json(connect):
            continue
        device_id = str(entry.get("id"))
        try:
            out.append(_device(entry, connect, profiles))
        except (DeviceConfigError, ValueError, KeyError, TypeError) as error:
            errors.append(f"device {device_id}: {error}")
    if errors:
        raise DeviceConfigError("\n".join(errors))
    return out


def _device(
    entry: Mapping[str, Any], connect: Any, profiles: Mapping[str, Profile]
) -> ModbusDevice:
    if not isinstance(connect, dict):
        raise DeviceConfigError("connect must be an object {profile, address, unit}")
    unknown = set(connect) - {"profile", "address", "unit", "poll_s"}
    if unknown:
        raise DeviceConfigError(f"connect: unknown field {sorted(unknown)[0]!r}")
    name = connect.get("profile")
    profile = profiles.get(str(name))
    if profile is None:
        known = ", ".join(sorted(profiles)) or "none loaded"
        raise DeviceConfigError(f"connect.profile {name!r} is not a known profile ({known})")
    kind = Kind(entry["kind"])
    if profile.kind is not kind:
        raise DeviceConfigError(
            f"profile {profile.name!r} reads {profile.kind.value} devices, this one is {kind.value}"
        )
    if "address" not in connect:
        raise DeviceConfigError("connect.address is missing")
    endpoint = parse_address(str(connect["address"]))
    unit = connect.get("unit", 1)
    if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 247:
        raise DeviceConfigError(f"connect.unit must be 0-247, not {unit!r}")
    poll_s = connect.get("poll_s", profile.poll_s)
    if isinstance(poll_s, bool) or not isinstance(poll_s, int | float) or poll_s < 0.05:
        raise DeviceConfigError(f"connect.poll_s must be at least 0.05, not {poll_s!r}")
    return ModbusDevice(
        id=str(entry["id"]),
        kind=kind,
        building=str(entry.get("building", "")),
        profile=profile,
        endpoint=endpoint,
        unit=unit,
        poll_s=float(poll_s),
    )


def _is_fire_link(connect: Any) -> bool:
    return isinstance(connect, dict) and connect.get("protocol") == "gb26875"


def _is_json(connect: Any) -> bool:
    return isinstance(connect, dict) and connect.get("protocol") == "json"


def json_devices(estate: RegistryEstate, mappings: Mapping[str, JsonProfile]) -> list[JsonDevice]:
    """The estate's devices that report vendor JSON::

    "connect": {"protocol": "json", "mapping": "nb-smoke-detector-http",
                "vendor_id": "868120123456789"}
    """
    out: list[JsonDevice] = []
    errors: list[str] = []
    for entry in estate.devices:
        connect: Any = entry.get("connect")
        if not _is_json(connect):
            continue
        device_id = str(entry.get("id"))
        unknown = set(connect) - {"protocol", "mapping", "vendor_id"}
        mapping = mappings.get(str(connect.get("mapping")))
        vendor_id = connect.get("vendor_id")
        if unknown:
            errors.append(f"device {device_id}: connect: unknown field {sorted(unknown)[0]!r}")
        elif mapping is None:
            known = ", ".join(sorted(mappings)) or "none loaded"
            errors.append(
                f"device {device_id}: connect.mapping {connect.get('mapping')!r} is not a "
                f"known vendor JSON mapping ({known})"
            )
        elif mapping.kind.value != entry.get("kind"):
            errors.append(
                f"device {device_id}: mapping {mapping.name!r} is for {mapping.kind.value} devices"
            )
        elif not isinstance(vendor_id, str | int) or str(vendor_id) == "":
            errors.append(f"device {device_id}: connect.vendor_id is missing")
        else:
            out.append(
                JsonDevice(device_id, str(entry.get("building", "")), str(vendor_id), mapping)
            )
    if errors:
        raise DeviceConfigError("\n".join(errors))
    return out


def fire_link_devices(estate: RegistryEstate) -> list[FireLinkDevice]:
    """The estate's fire systems reached through a GB/T 26875.3 transmission device::

    "connect": {"protocol": "gb26875", "source": "0a0b0c0d0e0f", "system": 1,
                "analog": {"3": "sprinkler_pressure"}, "pump_components": [17]}
    """
    out: list[FireLinkDevice] = []
    errors: list[str] = []
    for entry in estate.devices:
        connect: Any = entry.get("connect")
        if not _is_fire_link(connect):
            continue
        try:
            out.append(_fire_link_device(entry, connect))
        except (DeviceConfigError, ValueError, TypeError) as error:
            errors.append(f"device {entry.get('id')}: {error}")
    if errors:
        raise DeviceConfigError("\n".join(errors))
    return out


def _fire_link_device(entry: Mapping[str, Any], connect: Mapping[str, Any]) -> FireLinkDevice:
    unknown = set(connect) - {"protocol", "source", "system", "analog", "pump_components"}
    if unknown:
        raise DeviceConfigError(f"connect: unknown field {sorted(unknown)[0]!r}")
    if entry.get("kind") != Kind.FIRE.value:
        raise DeviceConfigError("a GB/T 26875.3 link carries fire systems only")
    source = str(connect.get("source", "")).lower()
    if len(source) != 12 or any(c not in "0123456789abcdef" for c in source):
        raise DeviceConfigError(
            f"connect.source must be the transmission device's 6-byte address as 12 hex "
            f"digits, not {connect.get('source')!r}"
        )
    system = connect.get("system", 1)
    if isinstance(system, bool) or not isinstance(system, int) or not 0 <= system <= 255:
        raise DeviceConfigError(f"connect.system must be 0-255, not {system!r}")
    analog: dict[int, str] = {}
    for component, signal in dict(connect.get("analog", {})).items():
        if signal not in ANALOG_SIGNALS:
            raise DeviceConfigError(
                f"connect.analog: {signal!r} is not one of {', '.join(ANALOG_SIGNALS)}"
            )
        analog[int(component)] = str(signal)
    pumps = frozenset(int(c) for c in connect.get("pump_components", []))
    return FireLinkDevice(
        str(entry["id"]), str(entry.get("building", "")), source, system, analog, pumps
    )
