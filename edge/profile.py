"""Device profiles: how a device model is read, declared in TOML rather than coded.

A profile names the catalogue family its devices belong to, the protocol, the poll period,
and for every value the register it sits in, its type, byte and word order, scaling and the
vendor's "no value" sentinels; status words map bits onto signals and event codes.  Every
name is checked against the catalogue when the profile is loaded, and every error names the
file, the line where it can be found, and the field (``docs/devices.md``).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jiayuan.catalogue import MAX_PORTS, Family, Kind, ValueType, family, port_field

# The example profiles shipped with the package (package data), and vendor JSON mappings in
# its vendor/ folder.
SHIPPED_PROFILES = Path(__file__).resolve().parent / "profiles"

Order = Literal["big", "little"]

# Registers each numeric type occupies; "string" takes its ``count``, "bits" one register
# (function 3/4) or one coil or input (function 1/2).
TYPE_REGISTERS: Mapping[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}
TYPES = ("bits", *TYPE_REGISTERS, "string")
# Manuals name the four layouts of a 32-bit value by its bytes in wire order.
ORDER_NAMES: Mapping[str, tuple[Order, Order]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("big", "little"),
    "BADC": ("little", "big"),
    "DCBA": ("little", "little"),
}
BIT_FUNCTIONS = (1, 2)  # read coils, read discrete inputs
REGISTER_FUNCTIONS = (3, 4)  # read holding registers, read input registers
MAX_ADDRESS = 0xFFFF
# Modbus allows 125 registers and 2000 bits in one read response.
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names file, line and field."""


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """One value read from registers (or coils) and mapped onto a catalogue signal."""

    field: str  # the payload field: the signal's name, or p01_<name> for a port
    function: int
    address: int
    type: str
    count: int  # registers (function 3/4) or bits (function 1/2) read
    byte_order: Order = "big"
    word_order: Order = "big"
    bit: int | None = None  # for type "bits" in a register: which bit, 0 = least significant
    scale: float = 1.0
    offset: float = 0.0
    decimals: int = 0  # the raw value holds this many decimal places
    decimals_address: int | None = None  # ... or a register (same function) says how many
    map_from: tuple[float, float] | None = None  # linear map after scaling, e.g. 4-20 mA
    map_to: tuple[float, float] | None = None
    valid: tuple[float, float] | None = None  # outside (after scaling): sensor fault
    no_value: tuple[float, ...] = ()  # raw values meaning "no value"
    encoding: str = "ascii"
    integer: bool = False  # the catalogue's signal is an integer
    line: int | None = None


@dataclass(frozen=True, slots=True)
class BitMapping:
    bit: int
    field: str | None  # a 0/1 signal set from the bit
    event: str | None  # an event code raised when the bit goes from 0 to 1
    invert: bool = False  # the bit is 0 when the condition holds


@dataclass(frozen=True, slots=True)
class StatusWord:
    """A register (or two) whose bits carry states and events."""

    function: int
    address: int
    type: str  # uint16 or uint32 (function 3/4); bits (function 1/2: ``count`` inputs)
    count: int
    word_order: Order
    bits: tuple[BitMapping, ...]
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: Kind
    source: str  # where the register map comes from, or "example"
    description: str
    path: Path | None
    protocol: str
    poll_s: float
    timeout_s: float
    offline_after: int  # failed polls in a row before the device counts as offline
    max_read_registers: int
    values: tuple[RegisterValue, ...]
    statuses: tuple[StatusWord, ...]

    @property
    def family(self) -> Family:
        return family(self.kind)


# ---- loading ---------------------------------------------------------------------------


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: cannot read: {error}") from None
    return parse_profile(text, path)


def load_profiles(directory: Path) -> dict[str, Profile]:
    """Every ``*.toml`` profile of a directory, by name; all errors reported together."""
    if not directory.is_dir():
        raise ProfileError(f"{directory}: not a directory of profiles")
    profiles: dict[str, Profile] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            profile = load_profile(path)
        except ProfileError as error:
            errors.append(str(error))
            continue
        earlier = profiles.get(profile.name)
        if earlier is not None:
            errors.append(f"{path}: name {profile.name!r} is already used by {earlier.path}")
            continue
        profiles[profile.name] = profile
    if errors:
        raise ProfileError("\n".join(errors))
    return profiles


def parse_profile(text: str, path: Path | None = None) -> Profile:
    where = str(path) if path is not None else "<profile>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{where}: not valid TOML: {error}") from None
    return TomlReader(where, locate_lines(text)).profile(data, path)


# ---- line numbers --------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def locate_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line numbers of tables and keys, by path: ("value", 2, "type") → line.

    tomllib keeps no positions; profiles use plain tables, arrays of tables and one key a
    line, which this scan follows.  Keys inside inline tables point at their array's line.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[str, int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (name, index)
            else:
                table = (name,)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, key.group(1)), number)
    return lines


# ---- validation ----------------------------------------------------------------------------

_PROFILE_KEYS = {"name", "family", "source", "description", "protocol"}
_MODBUS_KEYS = {
    "poll_s",
    "timeout_s",
    "offline_after",
    "max_read_registers",
    "function",
    "byte_order",
    "word_order",
    "order",
}
_VALUE_KEYS = {
    "signal",
    "port",
    "ports",
    "port_stride",
    "function",
    "address",
    "type",
    "count",
    "byte_order",
    "word_order",
    "order",
    "bit",
    "scale",
    "offset",
    "decimals",
    "decimals_address",
    "map_from",
    "map_to",
    "valid",
    "no_value",
    "encoding",
}
_STATUS_KEYS = {"function", "address", "type", "count", "word_order", "bits"}
_BIT_KEYS = {"bit", "signal", "event", "invert", "port"}


class TomlReader:
    def __init__(self, where: str, lines: dict[tuple[str | int, ...], int]) -> None:
        self._where = where
        self._lines = lines

    def fail(self, path: tuple[str | int, ...], message: str) -> ProfileError:
        line = None
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                break
        at = f"{self._where}:{line}" if line is not None else self._where
        return ProfileError(f"{at}: {_field_name(path)}: {message}")

    def table(self, data: Any, path: tuple[str | int, ...], keys: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(path, "must be a table")
        unknown = sorted(set(data) - keys)
        if unknown:
            raise self.fail(
                (*path, unknown[0]),
                f"unknown field; known fields: {', '.join(sorted(keys))}",
            )
        return data

    def _int(
        self, data: Mapping[str, Any], path: tuple[str | int, ...], key: str, low: int, high: int
    ) -> int:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail((*path, key), f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def number(self, data: Mapping[str, Any], path: tuple[str | int, ...], key: str) -> float:
        value = data[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail((*path, key), f"must be a finite number, not {value!r}")
        return float(value)

    def _pair(
        self, data: Mapping[str, Any], path: tuple[str | int, ...], key: str
    ) -> tuple[float, float] | None:
        if key not in data:
            return None
        value = data[key]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value
            )
            or value[0] == value[1]
        ):
            raise self.fail(
                (*path, key), f"must be two different numbers [low, high], not {value!r}"
            )
        return (float(value[0]), float(value[1]))

    def _order(
        self,
        data: Mapping[str, Any],
        path: tuple[str | int, ...],
        default: tuple[Order, Order],
    ) -> tuple[Order, Order]:
        byte_order, word_order = default
        if "order" in data:
            if "byte_order" in data or "word_order" in data:
                raise self.fail((*path, "order"), "give either order or byte_order/word_order")
            named = ORDER_NAMES.get(str(data["order"]).upper())
            if named is None:
                raise self.fail(
                    (*path, "order"),
                    f"must be one of {', '.join(ORDER_NAMES)}, not {data['order']!r}",
                )
            return named
        for key in ("byte_order", "word_order"):
            if key in data and data[key] not in ("big", "little"):
                raise self.fail((*path, key), f"must be 'big' or 'little', not {data[key]!r}")
        if "byte_order" in data:
            byte_order = data["byte_order"]
        if "word_order" in data:
            word_order = data["word_order"]
        return byte_order, word_order

    def profile(self, data: dict[str, Any], path: Path | None) -> Profile:
        self.table(data, (), {"profile", "modbus", "value", "status"})
        if "profile" not in data:
            raise self.fail(("profile",), "missing: a [profile] table with name and family")
        head = self.table(data["profile"], ("profile",), _PROFILE_KEYS)
        for key in ("name", "family", "source"):
            if key not in head:
                raise self.fail(("profile", key), "missing")
        name = head["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.fail(("profile", "name"), f"must be [A-Za-z0-9_.-]{{1,64}}, not {name!r}")
        try:
            fam = family(str(head["family"]))
        except KeyError as error:
            raise self.fail(("profile", "family"), str(error.args[0])) from None
        source = head["source"]
        if not isinstance(source, str) or not source.strip():
            raise self.fail(
                ("profile", "source"),
                "must say where the register map comes from (a manual, a device) or 'example'",
            )
        protocol = head.get("protocol", "modbus")
        if protocol != "modbus":
            raise self.fail(("profile", "protocol"), f"must be 'modbus', not {protocol!r}")
        if "modbus" not in data:
            raise self.fail(("modbus",), "missing: a [modbus] table with poll_s")
        modbus = self.table(data["modbus"], ("modbus",), _MODBUS_KEYS)
        if "poll_s" not in modbus:
            raise self.fail(("modbus", "poll_s"), "missing")
        poll_s = self.number(modbus, ("modbus",), "poll_s")
        if not 0.05 <= poll_s <= 86400:
            raise self.fail(("modbus", "poll_s"), f"must be from 0.05 to 86400 s, not {poll_s}")
        timeout_s = self.number(modbus, ("modbus",), "timeout_s") if "timeout_s" in modbus else 1.0
        if not 0.01 <= timeout_s <= 60:
            raise self.fail(("modbus", "timeout_s"), f"must be from 0.01 to 60 s, not {timeout_s}")
        offline_after = (
            self._int(modbus, ("modbus",), "offline_after", 1, 1000)
            if "offline_after" in modbus
            else 3
        )
        max_read = (
            self._int(modbus, ("modbus",), "max_read_registers", 1, MAX_READ_REGISTERS)
            if "max_read_registers" in modbus
            else MAX_READ_REGISTERS
        )
        function = self._int(modbus, ("modbus",), "function", 1, 4) if "function" in modbus else 3
        default_order = self._order(modbus, ("modbus",), ("big", "big"))
        values: list[RegisterValue] = []
        raw_values = data.get("value", [])
        if not isinstance(raw_values, list):
            raise self.fail(("value",), "must be an array of tables: [[value]]")
        for index, raw in enumerate(raw_values):
            values.extend(self._values(raw, ("value", index), fam, function, default_order))
        statuses = []
        raw_statuses = data.get("status", [])
        if not isinstance(raw_statuses, list):
            raise self.fail(("status",), "must be an array of tables: [[status]]")
        for index, raw in enumerate(raw_statuses):
            statuses.append(self._status(raw, ("status", index), fam, function, default_order))
        if not values and not statuses:
            raise self.fail(("value",), "the profile reads nothing: add [[value]] or [[status]]")
        fields = [v.field for v in values] + [
            b.field for s in statuses for b in s.bits if b.field is not None
        ]
        seen: set[str] = set()
        for field_name in fields:
            if field_name in seen:
                raise self.fail(("value",), f"signal {field_name!r} is read twice")
            seen.add(field_name)
        return Profile(
            name=name,
            kind=fam.kind,
            source=source.strip(),
            description=str(head.get("description", "")),
            path=path,
            protocol=protocol,
            poll_s=poll_s,
            timeout_s=timeout_s,
            offline_after=offline_after,
            max_read_registers=max_read,
            values=tuple(values),
            statuses=tuple(statuses),
        )

    def signal_fields(
        self, data: Mapping[str, Any], path: tuple[str | int, ...], fam: Family, key: str = "signal"
    ) -> list[tuple[str, ValueType]]:
        """The payload fields a value fills: one, or one per port."""
        name = data[key]
        known = {s.name: s for s in fam.signals}
        signal = known.get(name) if isinstance(name, str) else None
        if signal is None:
            raise self.fail(
                (*path, key),
                f"{name!r} is not a signal of {fam.kind.value}; its signals: {', '.join(known)}",
            )
        if not signal.per_port:
            for port_key in ("port", "ports"):
                if port_key in data:
                    raise self.fail((*path, port_key), f"{name!r} is not a per-port signal")
            return [(name, signal.type)]
        if "port" in data and "ports" in data:
            raise self.fail((*path, "ports"), "give either port or ports")
        if "port" in data:
            port = self._int(data, path, "port", 1, MAX_PORTS)
            return [(port_field(port, name), signal.type)]
        if "ports" in data:
            ports = self._int(data, path, "ports", 1, MAX_PORTS)
            return [(port_field(p, name), signal.type) for p in range(1, ports + 1)]
        raise self.fail((*path, "port"), f"{name!r} is per port: give port = N or ports = N")

    def _function(self, data: Mapping[str, Any], path: tuple[str | int, ...], default: int) -> int:
        return self._int(data, path, "function", 1, 4) if "function" in data else default

    def _values(
        self,
        data: Any,
        path: tuple[str | int, ...],
        fam: Family,
        default_function: int,
        default_order: tuple[Order, Order],
    ) -> list[RegisterValue]:
        data = self.table(data, path, _VALUE_KEYS)
        for key in ("signal", "address", "type"):
            if key not in data:
                raise self.fail((*path, key), "missing")
        fields = self.signal_fields(data, path, fam)
        function = self._function(data, path, default_function)
        address = self._int(data, path, "address", 0, MAX_ADDRESS)
        value_type = data["type"]
        if value_type not in TYPES:
            raise self.fail(
                (*path, "type"), f"must be one of {', '.join(TYPES)}, not {value_type!r}"
            )
        bit: int | None = None
        if function in BIT_FUNCTIONS:
            if value_type != "bits":
                raise self.fail(
                    (*path, "type"), f"function {function} reads bits: the type must be 'bits'"
                )
            count = 1
        elif value_type == "bits":
            if "bit" not in data:
                raise self.fail((*path, "bit"), "type 'bits' in a register needs bit = 0..15")
            bit = self._int(data, path, "bit", 0, 15)
            count = 1
        elif value_type == "string":
            if "count" not in data:
                raise self.fail((*path, "count"), "a string needs count = registers")
            count = self._int(data, path, "count", 1, MAX_READ_REGISTERS)
        else:
            count = TYPE_REGISTERS[value_type]
            if "count" in data and data["count"] != count:
                raise self.fail((*path, "count"), f"{value_type} takes {count} registers")
        if "bit" in data and bit is None:
            raise self.fail((*path, "bit"), "only type 'bits' in a register takes bit")
        byte_order, word_order = self._order(data, path, default_order)
        numeric = value_type != "string"
        string_signal = fields[0][1] is ValueType.STR
        if numeric == string_signal:
            raise self.fail(
                (*path, "type"),
                f"signal {data['signal']!r} is {fields[0][1].value}: type {value_type!r} "
                "cannot fill it",
            )
        scale = self.number(data, path, "scale") if "scale" in data else 1.0
        if scale == 0:
            raise self.fail((*path, "scale"), "must not be 0")
        offset = self.number(data, path, "offset") if "offset" in data else 0.0
        decimals = self._int(data, path, "decimals", 0, 9) if "decimals" in data else 0
        decimals_address = (
            self._int(data, path, "decimals_address", 0, MAX_ADDRESS)
            if "decimals_address" in data
            else None
        )
        if decimals_address is not None and "decimals" in data:
            raise self.fail((*path, "decimals_address"), "give either decimals or decimals_address")
        if decimals_address is not None and function in BIT_FUNCTIONS:
            raise self.fail((*path, "decimals_address"), "bits have no decimal places")
        map_from = self._pair(data, path, "map_from")
        map_to = self._pair(data, path, "map_to")
        if (map_from is None) != (map_to is None):
            raise self.fail(
                (*path, "map_to" if map_to is None else "map_from"), "give both map_from and map_to"
            )
        valid = self._pair(data, path, "valid")
        no_value = data.get("no_value", [])
        if not isinstance(no_value, list):
            no_value = [no_value]
        for item in no_value:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail((*path, "no_value"), f"must be raw numbers, not {item!r}")
        encoding = data.get("encoding", "ascii")
        try:
            "".encode(encoding)
        except (LookupError, TypeError):
            raise self.fail((*path, "encoding"), f"unknown text encoding {encoding!r}") from None
        stride = 0
        if "port_stride" in data:
            if "ports" not in data:
                raise self.fail((*path, "port_stride"), "only with ports = N")
            stride = self._int(data, path, "port_stride", 1, MAX_ADDRESS)
        elif len(fields) > 1:
            raise self.fail((*path, "port_stride"), "ports = N needs port_stride = registers")
        out = []
        for index, (field_name, signal_type) in enumerate(fields):
            at = address + index * stride
            if at + count - 1 > MAX_ADDRESS:
                raise self.fail((*path, "address"), f"port {index + 1} runs past address 65535")
            out.append(
                RegisterValue(
                    field=field_name,
                    function=function,
                    address=at,
                    type=value_type,
                    count=count,
                    byte_order=byte_order,
                    word_order=word_order,
                    bit=bit,
                    scale=scale,
                    offset=offset,
                    decimals=decimals,
                    decimals_address=(
                        None if decimals_address is None else decimals_address + index * stride
                    ),
                    map_from=map_from,
                    map_to=map_to,
                    valid=valid,
                    no_value=tuple(float(v) for v in no_value),
                    encoding=encoding,
                    integer=signal_type is ValueType.INT,
                    line=self._lines.get(path),
                )
            )
        return out

    def _status(
        self,
        data: Any,
        path: tuple[str | int, ...],
        fam: Family,
        default_function: int,
        default_order: tuple[Order, Order],
    ) -> StatusWord:
        data = self.table(data, path, _STATUS_KEYS)
        for key in ("address", "bits"):
            if key not in data:
                raise self.fail((*path, key), "missing")
        function = self._function(data, path, default_function)
        address = self._int(data, path, "address", 0, MAX_ADDRESS)
        if function in BIT_FUNCTIONS:
            status_type = "bits"
            count = self._int(data, path, "count", 1, MAX_READ_BITS) if "count" in data else 16
            width = count
        else:
            status_type = data.get("type", "uint16")
            if status_type not in ("uint16", "uint32"):
                raise self.fail((*path, "type"), f"must be uint16 or uint32, not {status_type!r}")
            count = TYPE_REGISTERS[status_type]
            width = 16 * count
        word_order = self._order(data, path, default_order)[1]
        raw_bits = data["bits"]
        if not isinstance(raw_bits, list) or not raw_bits:
            raise self.fail((*path, "bits"), "must be a non-empty array of {bit = N, ...}")
        bits: list[BitMapping] = []
        taken: set[int] = set()
        events = {e.code for e in fam.events}
        for index, raw in enumerate(raw_bits):
            bit_path = (*path, "bits", index)
            entry = self.table(raw, bit_path, _BIT_KEYS)
            if "bit" not in entry:
                raise self.fail((*bit_path, "bit"), "missing")
            bit = self._int(entry, bit_path, "bit", 0, width - 1)
            if bit in taken:
                raise self.fail((*bit_path, "bit"), f"bit {bit} is mapped twice")
            taken.add(bit)
            field_name = None
            if "signal" in entry:
                (field_name, signal_type), *_ = self.signal_fields(entry, bit_path, fam)
                if signal_type is not ValueType.INT:
                    raise self.fail((*bit_path, "signal"), "a bit can fill only a 0/1 signal")
            event = entry.get("event")
            if event is not None and event not in events:
                raise self.fail(
                    (*bit_path, "event"),
                    f"{event!r} is not an event code of {fam.kind.value}; "
                    f"its codes: {', '.join(sorted(events))}",
                )
            if field_name is None and event is None:
                raise self.fail(bit_path, "a bit needs a signal, an event, or both")
            invert = entry.get("invert", False)
            if not isinstance(invert, bool):
                raise self.fail((*bit_path, "invert"), "must be true or false")
            bits.append(BitMapping(bit, field_name, event, invert))
        return StatusWord(
            function=function,
            address=address,
            type=status_type,
            count=count,
            word_order=word_order,
            bits=tuple(bits),
            line=self._lines.get(path),
        )


def _field_name(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top)"
