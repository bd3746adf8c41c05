"""Which real devices an edge agent reads: the registry's ``connect`` entries.

A device of the registry, in any of its forms (the SQLite store, CSV, YAML, or the
registry.json of ``jiayuan simulate``), may carry::

    "connect": {"profile": "ph-probe-int16", "address": "tcp://10.2.0.17:502", "unit": 3}

naming its profile and where it answers.  Addresses:

* ``tcp://HOST:PORT``: Modbus TCP (a device or a Modbus gateway with many unit ids);
* ``rtu+tcp://HOST:PORT``: Modbus RTU frames over TCP (the serial device servers, 串口服务器,
  common in Chinese buildings, in transparent mode);
* ``serial:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8``: an RS-485 line.

The entry's shape is checked by the registry (``jiayuan.registry.connect``, also at
import); here it is checked against the profiles, vendor mappings and signals of the edge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.gb26875 import ANALOG_SIGNALS, FireLinkDevice
from edge.profile import Profile
from edge.vendor_json import JsonDevice, JsonProfile
from jiayuan.catalogue import Kind
from jiayuan.registry.connect import SCHEMES as SCHEMES
from jiayuan.registry.connect import (
    ConnectInvalid,
    FireLinkConnect,
    JsonConnect,
    ModbusConnect,
    parse_connect,
)
from jiayuan.registry.connect import Endpoint as Endpoint
from jiayuan.registry.connect import parse_address as parse_address
from jiayuan.registry.model import Device


class DeviceConfigError(ValueError):
    """A device's connection entry that cannot be used; the message names the device."""


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


def registry_entries(path: Path) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Estate id → its devices as the edge reads them (id, kind, building and, for a real
    device, its ``connect`` object), from whichever form of the registry ``path`` holds.

    Raises ValueError (NotARegistry, RegistryInvalid) naming the path and the problem.
    """
    from jiayuan.registry.sources import form_of, read_registry

    if form_of(path) == "json":
        return {estate.id: estate.devices for estate in read_estates(path)}
    return {
        record.estate.id: tuple(_entry(device) for device in record.devices)
        for record in read_registry(path).records()
    }


def device_entries(path: Path, estate_id: str) -> tuple[Mapping[str, Any], ...]:
    """One estate's devices of ``registry_entries``."""
    entries = registry_entries(path)
    if estate_id not in entries:
        raise KeyError(f"no estate {estate_id!r} in the registry {path}")
    return entries[estate_id]


def _entry(device: Device) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": device.id,
        "kind": device.kind.value,
        "building": device.building,
    }
    if device.connect is not None:
        entry["connect"] = device.connect.as_json()
    return entry


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
        except (ValueError, KeyError, TypeError) as error:
            errors.append(f"device {device_id}: {error}")
    if errors:
        raise DeviceConfigError("\n".join(errors))
    return out


def _device(
    entry: Mapping[str, Any], connect: Any, profiles: Mapping[str, Profile]
) -> ModbusDevice:
    kind = Kind(entry["kind"])
    parsed = parse_connect(connect, kind)
    if not isinstance(parsed, ModbusConnect):
        raise DeviceConfigError("not a Modbus connect entry")
    profile = profiles.get(parsed.profile)
    if profile is None:
        known = ", ".join(sorted(profiles)) or "none loaded"
        raise DeviceConfigError(
            f"connect.profile {parsed.profile!r} is not a known profile ({known})"
        )
    if profile.kind is not kind:
        raise DeviceConfigError(
            f"profile {profile.name!r} reads {profile.kind.value} devices, this one is {kind.value}"
        )
    return ModbusDevice(
        id=str(entry["id"]),
        kind=kind,
        building=str(entry.get("building", "")),
        profile=profile,
        endpoint=parsed.endpoint,
        unit=parsed.unit,
        poll_s=profile.poll_s if parsed.poll_s is None else parsed.poll_s,
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
        try:
            parsed = parse_connect(connect, None)
        except ConnectInvalid as error:
            errors.append(f"device {device_id}: {error}")
            continue
        assert isinstance(parsed, JsonConnect)  # its protocol is "json"
        mapping = mappings.get(parsed.mapping)
        if mapping is None:
            known = ", ".join(sorted(mappings)) or "none loaded"
            errors.append(
                f"device {device_id}: connect.mapping {parsed.mapping!r} is not a "
                f"known vendor JSON mapping ({known})"
            )
        elif mapping.kind.value != entry.get("kind"):
            errors.append(
                f"device {device_id}: mapping {mapping.name!r} is for {mapping.kind.value} devices"
            )
        else:
            out.append(
                JsonDevice(device_id, str(entry.get("building", "")), parsed.vendor_id, mapping)
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
    parsed = parse_connect(connect, Kind(entry["kind"]))
    assert isinstance(parsed, FireLinkConnect)  # its protocol is "gb26875"
    for _, signal in parsed.analog:
        if signal not in ANALOG_SIGNALS:
            raise DeviceConfigError(
                f"connect.analog: {signal!r} is not one of {', '.join(ANALOG_SIGNALS)}"
            )
    return FireLinkDevice(
        str(entry["id"]),
        str(entry.get("building", "")),
        parsed.source,
        parsed.system,
        dict(parsed.analog),
        frozenset(parsed.pump_components),
    )
