"""A device's connection entry (``connect``): where and how the edge reads a real device.

One JSON object, the same in every form of the registry (a YAML mapping, JSON text in a
CSV cell or the SQLite column, an object in the simulators' registry.json).  Three shapes::

    {"profile": "ph-probe-int16", "address": "tcp://10.2.0.17:502", "unit": 3}
    {"protocol": "gb26875", "source": "0a0b0c0d0e0f", "system": 1,
     "analog": {"3": "sprinkler_pressure"}, "pump_components": [17]}
    {"protocol": "json", "mapping": "nb-smoke-detector-http", "vendor_id": "868120123456789"}

Only the shape is checked here, so the registry can refuse a bad entry at import; whether
a profile or a vendor mapping of that name exists is the edge's to check (``edge.devices``),
as the profiles are files of the edge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jiayuan.catalogue import Kind

SCHEMES = ("tcp", "rtu+tcp", "serial")
_PARITIES = ("N", "E", "O")
_MODBUS_FIELDS = ("profile", "address", "unit", "poll_s")
_FIRE_LINK_FIELDS = ("protocol", "source", "system", "analog", "pump_components")
_JSON_FIELDS = ("protocol", "mapping", "vendor_id")
# Spreadsheets may turn typed quotes into typographic ones; JSON wants the plain ones.
_TYPOGRAPHIC_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"'})


class ConnectInvalid(ValueError):
    """A connection entry that cannot be used: which field, and why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


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
class ModbusConnect:
    """A Modbus device read through a profile (``edge/profiles``)."""

    profile: str
    address: str
    unit: int = 1
    poll_s: float | None = None  # None: the profile's

    @property
    def endpoint(self) -> Endpoint:
        return parse_address(self.address)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"profile": self.profile, "address": self.address, "unit": self.unit}
        if self.poll_s is not None:
            out["poll_s"] = self.poll_s
        return out


@dataclass(frozen=True, slots=True)
class FireLinkConnect:
    """A fire system reached through a GB/T 26875.3 user information transmission device."""

    source: str  # the transmission device's 6-byte address, 12 lower-case hex digits
    system: int = 1
    analog: tuple[tuple[int, str], ...] = ()  # component number → catalogue signal
    pump_components: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": "gb26875", "source": self.source, "system": self.system}
        if self.analog:
            out["analog"] = {str(component): signal for component, signal in self.analog}
        if self.pump_components:
            out["pump_components"] = list(self.pump_components)
        return out


@dataclass(frozen=True, slots=True)
class JsonConnect:
    """A device whose vendor platform pushes JSON, read through a mapping."""

    mapping: str
    vendor_id: str

    def as_json(self) -> dict[str, Any]:
        return {"protocol": "json", "mapping": self.mapping, "vendor_id": self.vendor_id}


Connect = ModbusConnect | FireLinkConnect | JsonConnect


def parse_connect(value: Any, kind: Kind | None = None) -> Connect:
    """The entry of ``value`` (an object, or its JSON text), checked; for ``kind`` when known.

    Raises ConnectInvalid naming the field (``connect.unit``) and what is wrong.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value.translate(_TYPOGRAPHIC_QUOTES))
        except json.JSONDecodeError as error:
            raise ConnectInvalid(
                "connect", f"not JSON ({error.msg} at character {error.pos + 1})"
            ) from None
    if not isinstance(value, Mapping):
        raise ConnectInvalid(
            "connect", f"{value!r} is not an object such as {{profile, address, unit}}"
        )
    protocol = value.get("protocol")
    if protocol is None:
        return _modbus(value)
    if protocol == "gb26875":
        return _fire_link(value, kind)
    if protocol == "json":
        return _json(value)
    raise ConnectInvalid(
        "connect.protocol",
        f"{protocol!r} is not 'gb26875' or 'json' (leave it out for Modbus)",
    )


def _no_unknown(value: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ConnectInvalid("connect", f"unknown field {unknown[0]!r} (known: {', '.join(known)})")


def _text(value: Mapping[str, Any], field: str) -> str:
    text = value.get(field)
    if isinstance(text, bool) or not isinstance(text, str | int) or str(text).strip() == "":
        raise ConnectInvalid(f"connect.{field}", "is missing" if text is None else "is empty")
    return str(text).strip()


def _whole(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConnectInvalid(f"connect.{field}", f"must be {low}-{high}, not {value!r}")
    return value


def _modbus(value: Mapping[str, Any]) -> ModbusConnect:
    _no_unknown(value, _MODBUS_FIELDS)
    profile = _text(value, "profile")
    address = _text(value, "address")
    try:
        parse_address(address)
    except ValueError as error:
        raise ConnectInvalid("connect.address", str(error)) from None
    unit = _whole(value.get("unit", 1), "unit", 0, 247)
    poll_s = value.get("poll_s")
    if poll_s is not None and (
        isinstance(poll_s, bool) or not isinstance(poll_s, int | float) or not poll_s >= 0.05
    ):
        raise ConnectInvalid("connect.poll_s", f"must be at least 0.05, not {poll_s!r}")
    return ModbusConnect(profile, address, unit, None if poll_s is None else float(poll_s))


def _fire_link(value: Mapping[str, Any], kind: Kind | None) -> FireLinkConnect:
    _no_unknown(value, _FIRE_LINK_FIELDS)
    if kind is not None and kind is not Kind.FIRE:
        raise ConnectInvalid(
            "connect.protocol", f"a GB/T 26875.3 link carries fire systems only, not {kind.value}"
        )
    source = str(value.get("source", "")).lower()
    if len(source) != 12 or any(c not in "0123456789abcdef" for c in source):
        raise ConnectInvalid(
            "connect.source",
            "must be the transmission device's 6-byte address as 12 hex digits, "
            f"not {value.get('source')!r}",
        )
    system = _whole(value.get("system", 1), "system", 0, 255)
    raw_analog = value.get("analog", {})
    if not isinstance(raw_analog, Mapping):
        raise ConnectInvalid("connect.analog", "must map component numbers to signals")
    analog: list[tuple[int, str]] = []
    for component, signal in raw_analog.items():
        number = _component(component, "analog")
        if not isinstance(signal, str) or not signal:
            raise ConnectInvalid("connect.analog", f"component {number}: {signal!r} is no signal")
        analog.append((number, signal))
    raw_pumps = value.get("pump_components", [])
    if not isinstance(raw_pumps, list):
        raise ConnectInvalid("connect.pump_components", "must be a list of component numbers")
    pumps = sorted({_component(c, "pump_components") for c in raw_pumps})
    return FireLinkConnect(source, system, tuple(sorted(analog)), tuple(pumps))


def _component(value: Any, field: str) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError
        number = int(value)
    except ValueError:
        raise ConnectInvalid(f"connect.{field}", f"{value!r} is not a component number") from None
    if not 0 <= number <= 65535:
        raise ConnectInvalid(f"connect.{field}", f"component {number} is outside 0..65535")
    return number


def _json(value: Mapping[str, Any]) -> JsonConnect:
    _no_unknown(value, _JSON_FIELDS)
    return JsonConnect(_text(value, "mapping"), _text(value, "vendor_id"))
