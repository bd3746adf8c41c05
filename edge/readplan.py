"""Which Modbus reads fetch a profile's values, and the values decoded from their answers.

Registers (or bits) of one function code that touch or overlap are read in one request, up
to the profile's ``max_read_registers`` (Modbus allows 125 registers, 2000 bits): a device
whose twelve values sit side by side costs one round trip, not twelve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.decode import DecodeProblem, check_range, decode_value
from edge.profile import (
    BIT_FUNCTIONS,
    MAX_READ_BITS,
    Profile,
    StatusWord,
)
from jiayuan.contract import Value


@dataclass(frozen=True, slots=True)
class Block:
    function: int
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_reads(profile: Profile) -> tuple[Block, ...]:
    """The fewest requests that cover every register (or bit) the profile reads."""
    spans: list[tuple[int, int, int]] = []  # (function, first, end)
    for value in profile.values:
        spans.append((value.function, value.address, value.address + value.count))
        if value.decimals_address is not None:
            spans.append((value.function, value.decimals_address, value.decimals_address + 1))
    for status in profile.statuses:
        spans.append((status.function, status.address, status.address + status.count))
    spans.sort()
    blocks: list[Block] = []
    for function, first, end in spans:
        limit = MAX_READ_BITS if function in BIT_FUNCTIONS else profile.max_read_registers
        if blocks:
            last = blocks[-1]
            if (
                last.function == function
                and first <= last.end
                and max(end, last.end) - last.address <= limit
            ):
                blocks[-1] = Block(function, last.address, max(end, last.end) - last.address)
                continue
        blocks.append(Block(function, first, end - first))
    return tuple(blocks)


# What one poll of a device read: (function, address) → register word, or bit as 0/1.
ReadTable = Mapping[tuple[int, int], int]


@dataclass(slots=True)
class DeviceReading:
    values: dict[str, Value] = field(default_factory=dict)
    # event codes whose bits are set now (the caller raises those that were clear before)
    active_events: set[str] = field(default_factory=set)
    problems: list[DecodeProblem] = field(default_factory=list)


def _words(table: ReadTable, function: int, address: int, count: int) -> list[int]:
    return [table[(function, address + i)] for i in range(count)]


def decode_reading(profile: Profile, table: ReadTable) -> DeviceReading:
    """Every value and status bit of ``profile`` from the words one poll read.

    A value that cannot be used (a sentinel, a sensor fault, outside the catalogue's
    plausible range) is left out with its problem, so the others still make a reading.
    """
    out = DeviceReading()
    fam = profile.family
    for spec in profile.values:
        try:
            if spec.function in BIT_FUNCTIONS:
                decoded = decode_value(spec, bits=[bool(table[(spec.function, spec.address)])])
            else:
                decimals = (
                    None
                    if spec.decimals_address is None
                    else table[(spec.function, spec.decimals_address)]
                )
                words = _words(table, spec.function, spec.address, spec.count)
                decoded = decode_value(spec, words, decimals=decimals)
            check_range(fam, decoded.field, decoded.value)
        except DecodeProblem as problem:
            out.problems.append(problem)
            continue
        out.values[decoded.field] = decoded.value
    for status in profile.statuses:
        word = status_bits(status, table)
        for mapping in status.bits:
            on = bool((word >> mapping.bit) & 1) != mapping.invert
            if mapping.field is not None:
                out.values[mapping.field] = int(on)
            if on and mapping.event is not None:
                out.active_events.add(mapping.event)
    return out


def status_bits(status: StatusWord, table: ReadTable) -> int:
    """The status word as one integer, bit 0 the least significant (first input for bits)."""
    if status.function in BIT_FUNCTIONS:
        return sum(
            1 << i for i in range(status.count) if table[(status.function, status.address + i)]
        )
    words = _words(table, status.function, status.address, status.count)
    if status.word_order == "little":
        words.reverse()
    word = 0
    for w in words:
        word = (word << 16) | w
    return word
