"""Detection state as plain data: what a gateway snapshot carries across a clean restart.

Each class holding per-device state names the attributes that make it up; the rest of the
object (its definitions: checks, thresholds, parameters) is rebuilt from the code and the
configuration at start.  ``layout`` says what the state's shape depends on, so a snapshot
taken by other code or another configuration is refused rather than misread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar


def canonical(value: object) -> object:
    """``value`` in a form whose repr is the same in every process: a set's order follows
    string hashing, which differs from process to process, so sets come out sorted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (
            type(value).__qualname__,
            *((f.name, canonical(getattr(value, f.name))) for f in fields),
        )
    if isinstance(value, set | frozenset):
        return tuple(sorted((canonical(item) for item in value), key=repr))
    if isinstance(value, dict):  # insertion order: the same for the same code
        return tuple((canonical(key), canonical(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(canonical(item) for item in value)
    return value


# ``row_number``'s int objects, by number.
_NUMBERS: list[int] = []
_NUMBERS_BLOCK = 4096


def row_number(number: int) -> int:
    """The int object that every per-device table stores for row ``number``.

    A table numbering its devices with ``len(rows)`` makes an int object a device (32 B
    each beyond 256), and the duplicate window and a kind's rules each number every
    device: at a district's cardinality that is two objects a device made among a batch's
    short-lived ones.  Shared, a number is one object for all of them, made in blocks."""
    numbers = _NUMBERS
    if number >= len(numbers):
        start = len(numbers)
        numbers.extend(range(start, max(number + 1, start + _NUMBERS_BLOCK)))
    return numbers[number]


def shared_numbers(rows: dict[Any, int]) -> None:
    """``rows``' values replaced in place by ``row_number``'s objects (after a snapshot
    is read back: unpickled, each is an object of its own)."""
    for key, number in rows.items():
        rows[key] = row_number(number)


class SnapshotMismatch(ValueError):
    """A snapshot that does not fit the detector it is given to."""


class Stateful:
    STATE: ClassVar[tuple[str, ...]] = ()

    def export_state(self) -> dict[str, Any]:
        """The state attributes themselves (not copies): take it while nothing runs."""
        return {name: getattr(self, name) for name in self.STATE}

    def import_state(self, state: Mapping[str, Any]) -> None:
        missing = [name for name in self.STATE if name not in state]
        if missing:
            raise SnapshotMismatch(f"{type(self).__name__}: the snapshot lacks {missing}")
        for name in self.STATE:
            object.__setattr__(self, name, state[name])

    def layout(self) -> object:
        """What the state's shape depends on besides the code's own class."""
        return type(self).__qualname__
