"""From register words to catalogue values, as a profile declares them.

The types and word orders are pymodbus's own (``convert_from_registers``); a byte order
other than big-endian (bytes swapped inside each register, "BADC" and "DCBA") is undone
before handing the words over.  Scaling, decimal places, the 4-20 mA style linear map, the
vendor's "no value" sentinels and the catalogue's plausible range come after.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.client.mixin import ModbusClientMixin

from edge.profile import Order, RegisterValue
from jiayuan.catalogue import Family, Kind, family
from jiayuan.contract import Value

_DATATYPE = ModbusClientMixin.DATATYPE
_DATATYPES = {
    "int16": _DATATYPE.INT16,
    "uint16": _DATATYPE.UINT16,
    "int32": _DATATYPE.INT32,
    "uint32": _DATATYPE.UINT32,
    "float32": _DATATYPE.FLOAT32,
    "float64": _DATATYPE.FLOAT64,
    "string": _DATATYPE.STRING,
}


# Why a value read from a device is left out of its reading (counted per device).
VALUE_PROBLEMS = {
    "no_value": "the device sent its 'no value' sentinel (the profile's no_value) or NaN",
    "sensor_fault": "outside the profile's valid range before mapping: wire break, sensor fault",
    "out_of_range": "outside the catalogue's plausible range: wrong scale, type or order?",
    "not_integer": "an integer signal decoded to a fraction: wrong scale or decimals?",
    "bad_decimals": "the decimal-places register holds something other than 0-9",
    "bad_text": "a string value is not in the profile's encoding",
}


class DecodeProblem(ValueError):
    """A value the device sent that cannot stand for a reading; the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # a short counter name: no_value, out_of_range, sensor_fault, ...
        self.detail = detail


def swap_bytes(words: Sequence[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def registers_to_raw(
    words: Sequence[int],
    value_type: str,
    byte_order: Order = "big",
    word_order: Order = "big",
    encoding: str = "ascii",
) -> int | float | str:
    """The number or text ``words`` hold, read as ``value_type`` in the given orders."""
    data_type = _DATATYPES[value_type]
    regs = swap_bytes(words) if byte_order == "little" else list(words)
    if value_type == "string":
        # Text runs from the first register to the last; word order does not apply.
        raw = bytes(b for w in regs for b in (w >> 8, w & 0xFF)).rstrip(b"\x00")
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as error:
            raise DecodeProblem("bad_text", f"{raw.hex(' ')} is not {encoding}: {error}") from None
    result = ModbusClientMixin.convert_from_registers(regs, data_type, word_order=word_order)
    if not isinstance(result, int | float):
        raise DecodeProblem("bad_length", f"{len(words)} registers for one {value_type}")
    return result


_STRUCT_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
                 "float64": "d"}  # fmt: skip


@functools.cache
def _layout(
    value_type: str, byte_order: Order, word_order: Order
) -> tuple[struct.Struct, bool, bool]:
    return (
        struct.Struct(">" + _STRUCT_CODES[value_type]),
        word_order == "little",
        (byte_order == "little"),
    )


_WORDS = [struct.Struct(f">{n}H") for n in range(5)]


def numeric_raw(
    words: Sequence[int], value_type: str, byte_order: Order, word_order: Order
) -> int | float:
    """What ``registers_to_raw`` gives for a numeric type, without its per-call checks: the
    poll path decodes every value of every device this way (a test holds the two equal in
    every type and order)."""
    layout, reverse, swap = _layout(value_type, byte_order, word_order)
    if reverse:
        words = words[::-1]
    if swap:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    value: int | float = layout.unpack(_WORDS[len(words)].pack(*words))[0]
    return value


@dataclass(frozen=True, slots=True)
class Decoded:
    field: str
    raw: int | float | str
    value: Value


def decode_value(
    spec: RegisterValue,
    words: Sequence[int] | None = None,
    bits: Sequence[bool] | None = None,
    decimals: int | None = None,
) -> Decoded:
    """The value of ``spec`` from the registers (or bits) read at its address.

    ``decimals`` is the content of ``spec.decimals_address`` when the profile names one.
    Raises DecodeProblem for a sentinel, a sensor fault or an impossible number.
    """
    raw: int | float | str
    if bits is not None:
        raw = int(bool(bits[0]))
    elif words is None:
        raise ValueError("decode_value needs words or bits")
    elif spec.type == "bits":
        assert spec.bit is not None  # the profile reader guarantees it
        raw = (words[0] >> spec.bit) & 1
    elif spec.type == "string":
        raw = registers_to_raw(words, spec.type, spec.byte_order, spec.word_order, spec.encoding)
    else:
        raw = numeric_raw(words, spec.type, spec.byte_order, spec.word_order)
    if isinstance(raw, str):
        return Decoded(spec.field, raw, raw)
    return Decoded(spec.field, raw, finish(spec, raw, decimals))


def finish(spec: RegisterValue, raw: int | float, decimals: int | None = None) -> int | float:
    """A raw number made the signal's value: sentinels, decimals, scale, offset, the valid
    range, the linear map and the signal's type, in that order."""
    if raw in spec.no_value:
        raise DecodeProblem("no_value", f"{spec.field}: the device reports {raw!r}: no value")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeProblem("no_value", f"{spec.field}: the device reports {raw!r}")
    places = spec.decimals if decimals is None else decimals
    if not 0 <= places <= 9:
        raise DecodeProblem(
            "bad_decimals", f"{spec.field}: the decimals register holds {places}, not 0-9"
        )
    value = raw / 10**places if places else raw
    value = value * spec.scale + spec.offset
    if spec.valid is not None and not spec.valid[0] <= value <= spec.valid[1]:
        raise DecodeProblem(
            "sensor_fault",
            f"{spec.field}: {value:g} outside the sensor's valid range "
            f"{spec.valid[0]:g}..{spec.valid[1]:g} (wire break or sensor fault)",
        )
    if spec.map_from is not None and spec.map_to is not None:
        (in_low, in_high), (out_low, out_high) = spec.map_from, spec.map_to
        value = out_low + (value - in_low) * (out_high - out_low) / (in_high - in_low)
    if spec.integer:
        rounded = round(value)
        if abs(value - rounded) > 1e-6:
            raise DecodeProblem("not_integer", f"{spec.field}: {value:g} is not an integer")
        return int(rounded)
    return float(value)


@functools.cache
def plausible_bounds(kind: Kind, field: str) -> tuple[float, float]:
    signal = family(kind).signal(field)
    if signal is None:
        return (-math.inf, math.inf)
    low = -math.inf if signal.minimum is None else signal.minimum
    high = math.inf if signal.maximum is None else signal.maximum
    return (low, high)


def check_range(fam: Family, field: str, value: Value) -> None:
    """Raise DecodeProblem when ``value`` is outside the catalogue's plausible range: the
    gateway would refuse the whole reading for it."""
    if isinstance(value, str):
        return
    low, high = plausible_bounds(fam.kind, field)
    if not low <= value <= high:
        raise out_of_range(fam, field, value)


def out_of_range(fam: Family, field: str, value: float) -> DecodeProblem:
    return DecodeProblem(
        "out_of_range",
        f"{field}={value:g} outside the plausible range {plausible_range(fam, field)}",
    )


def plausible_range(fam: Family, field: str) -> str:
    """The catalogue's plausible range of a field, as the installer reads it."""
    signal = fam.signal(field)
    if signal is None:
        return "?"
    low = "" if signal.minimum is None else f"{signal.minimum:g}"
    high = "" if signal.maximum is None else f"{signal.maximum:g}"
    return f"{low}..{high} {signal.unit}".strip()
