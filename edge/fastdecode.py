"""A profile's values straight from the words of its read blocks, on every poll.

``readplan.decode_reading`` decodes value by value from a table of addresses, which is
simple to follow and what commissioning uses; a line polling two hundred devices does the
same work with the layout of every value worked out once: where it sits in which block,
which struct unpacks it and in which byte image.  A test holds the two equal for every
shipped profile on random registers.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from edge.decode import DecodeProblem, decode_value, finish, out_of_range, plausible_bounds
from edge.profile import BIT_FUNCTIONS, Profile, RegisterValue, StatusWord
from edge.readplan import Block, DeviceReading

_NUMERIC = 0
_REGISTER_BIT = 1
_INPUT_BIT = 2
_TEXT = 3
_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


@dataclass(frozen=True, slots=True)
class _Step:
    spec: RegisterValue
    mode: int
    block: int
    offset: int  # in words
    unpack: struct.Struct | None
    swapped: bool  # read from the byte-swapped image of the block
    slices: tuple[tuple[int, int], ...]  # byte slices in value order, for low-word-first
    decimals: tuple[int, int] | None  # (block, offset) of the decimals register
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class _Status:
    status: StatusWord
    block: int
    offset: int


def _locate(blocks: Sequence[Block], function: int, address: int, count: int) -> tuple[int, int]:
    for index, block in enumerate(blocks):
        if block.function == function and block.address <= address and address + count <= block.end:
            return index, address - block.address
    raise ValueError(f"no read block holds function {function} at {address}+{count}")


class ProfileDecoder:
    def __init__(self, profile: Profile, blocks: Sequence[Block]) -> None:
        self._profile = profile
        self._family = profile.family
        self._blocks = tuple(blocks)
        steps = []
        swapped_blocks: set[int] = set()
        for spec in profile.values:
            block, offset = _locate(blocks, spec.function, spec.address, spec.count)
            low, high = plausible_bounds(profile.kind, spec.field)
            decimals = (
                None
                if spec.decimals_address is None
                else _locate(blocks, spec.function, spec.decimals_address, 1)
            )
            unpack = None
            slices: tuple[tuple[int, int], ...] = ()
            swapped = spec.byte_order == "little"
            if spec.function in BIT_FUNCTIONS:
                mode = _INPUT_BIT
            elif spec.type == "bits":
                mode = _REGISTER_BIT
            elif spec.type == "string":
                mode = _TEXT
            else:
                mode = _NUMERIC
                unpack = struct.Struct(">" + _CODES[spec.type])
                if spec.word_order == "little" and spec.count > 1:
                    slices = tuple(
                        ((offset + i) * 2, (offset + i) * 2 + 2)
                        for i in reversed(range(spec.count))
                    )
                if swapped:
                    swapped_blocks.add(block)
            steps.append(
                _Step(spec, mode, block, offset, unpack, swapped, slices, decimals, low, high)
            )
        self._steps = tuple(steps)
        self._swapped_blocks = frozenset(swapped_blocks)
        self._statuses = tuple(
            _Status(s, *_locate(blocks, s.function, s.address, s.count)) for s in profile.statuses
        )
        self._packers = {n: struct.Struct(f">{n}H") for n in {b.count for b in blocks}}
        self._swappers = {n: struct.Struct(f"<{n}H") for n in {b.count for b in blocks}}

    def decode(self, block_words: Sequence[Sequence[int]]) -> DeviceReading:
        """The reading of one poll, from each block's words (bits as 0/1 for function 1/2)."""
        out = DeviceReading()
        values = out.values
        images: list[bytes | None] = []
        swapped_images: dict[int, bytes] = {}
        for index, (block, words) in enumerate(zip(self._blocks, block_words, strict=True)):
            if block.function in BIT_FUNCTIONS:
                images.append(None)
                continue
            images.append(self._packers[block.count].pack(*words))
            if index in self._swapped_blocks:
                swapped_images[index] = self._swappers[block.count].pack(*words)
        for step in self._steps:
            spec = step.spec
            words = block_words[step.block]
            try:
                raw: int | float
                if step.mode == _NUMERIC:
                    assert step.unpack is not None
                    image = swapped_images[step.block] if step.swapped else images[step.block]
                    assert image is not None
                    if step.slices:
                        raw = step.unpack.unpack(b"".join(image[a:b] for a, b in step.slices))[0]
                    else:
                        raw = step.unpack.unpack_from(image, step.offset * 2)[0]
                elif step.mode == _REGISTER_BIT:
                    assert spec.bit is not None
                    raw = (words[step.offset] >> spec.bit) & 1
                elif step.mode == _INPUT_BIT:
                    raw = 1 if words[step.offset] else 0
                else:
                    text = decode_value(spec, words[step.offset : step.offset + spec.count])
                    values[spec.field] = text.value
                    continue
                decimals = (
                    None
                    if step.decimals is None
                    else block_words[step.decimals[0]][step.decimals[1]]
                )
                value = finish(spec, raw, decimals)
                if not step.low <= value <= step.high:
                    raise out_of_range(self._family, spec.field, value)
            except DecodeProblem as problem:
                out.problems.append(problem)
                continue
            values[spec.field] = value
        for status in self._statuses:
            word = _status_word(status, block_words[status.block])
            for mapping in status.status.bits:
                on = bool((word >> mapping.bit) & 1) != mapping.invert
                if mapping.field is not None:
                    values[mapping.field] = int(on)
                if on and mapping.event is not None:
                    out.active_events.add(mapping.event)
        return out


def _status_word(status: _Status, words: Sequence[int]) -> int:
    spec = status.status
    part = words[status.offset : status.offset + spec.count]
    if spec.function in BIT_FUNCTIONS:
        return sum(1 << i for i, bit in enumerate(part) if bit)
    ordered = list(reversed(part)) if spec.word_order == "little" else list(part)
    word = 0
    for w in ordered:
        word = (word << 16) | w
    return word
