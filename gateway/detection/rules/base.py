"""What every family's rules share: a held check, its verdict, the interface.

A family's rules are a table of ``Check``s read against the device's latest known values
(readings may carry only the values that changed, so each device keeps a merged view).
A check opens once its opening condition has held for ``hold_s`` of *device* time and
closes once its clearing condition has held for ``clear_hold_s``; opening and clearing are
separate predicates so analog signals get a clear margin (hysteresis) and alerts do not
flap.  Device time, not the wall clock, so an accelerated replay behaves like real time.

Several checks may share one event code (one per charging port, say): the anomaly for that
code is open while any of them is, because an alert is one per device and condition.

Plain thresholds (a signal above or below a limit, held, cleared with a margin), which most
rules are, are declared as ``Threshold``s (``gateway.detection.rules.thresholds``);
``TableRules`` (``gateway.detection.rules.table``) runs a family's checks and thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from jiayuan.contract import Reading, Value
from jiayuan.places import DeviceKey, Place

Values = Mapping[str, Value]
# A device's check state as Python lists while a reading is judged: open, since, count.
Held = tuple[list[bool], list[int], list[int]]
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])
NO_TIME = -(1 << 63)  # "the condition is not being held" in a since-array
_COUNT_MAX = (1 << 16) - 1  # consecutive readings saturate here (min_count is far lower)
Predicate = Callable[[Values], bool]
Measure = Callable[[Values], float]


@dataclass(frozen=True, slots=True)
class AnomalyChange:
    """A rule's verdict on one reading: this code opened or closed at ``ts_ms``."""

    code: str
    opened: bool
    ts_ms: int
    value: float
    threshold: float
    detail: str = ""  # which part of the device, e.g. the port "p03"
    # What operators read: the value and what is usual (statistical detectors; else empty).
    explanation: str = ""


class FamilyRules(Protocol):
    """One family's rules."""

    @property
    def device_rows(self) -> dict[DeviceKey, int]:
        """Each device's row number (the kind's statistical detectors and offline check
        share it)."""
        ...

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]: ...

    def evaluate_many(self, items: Sequence[tuple[Place, Reading]]) -> list[list[AnomalyChange]]:
        """The changes of each reading, in order (vectorised across the batch)."""
        ...

    def forget(self, place: Place) -> None:
        """Drop the device's state (it was removed or went silent for good)."""
        ...

    def export_state(self) -> dict[str, Any]:
        """The per-device state as plain data (``gateway.detection.state``)."""
        ...

    def import_state(self, state: Mapping[str, Any]) -> None: ...

    def layout(self) -> object: ...


def never(values: Values) -> bool:
    return False


def negate(predicate: Predicate) -> Predicate:
    def negated(values: Values) -> bool:
        return not predicate(values)

    return negated


@dataclass(frozen=True)
class Check:
    """One condition of one family, evaluated on the merged values of a device.

    ``opens`` and ``clears`` are separate so analog signals can clear with a margin;
    ``hold_s`` may depend on the values (a trapped passenger is judged sooner inside the
    door zone than outside it).  ``suppressed`` (inspection mode, say) keeps the check from
    opening and closes it if open.  ``min_count`` opens the check after that many
    consecutive readings even before ``hold_s`` has passed.
    """

    code: str
    opens: Predicate
    clears: Predicate
    value: Measure
    threshold: float | Measure
    hold_s: float | Callable[[Values], float] = 0.0
    clear_hold_s: float = 0.0
    min_count: int | None = None
    suppressed: Predicate = never
    detail: str = ""
    # When set, a check at rest is only evaluated on readings that carry this value (a
    # pile reports only the ports it has, so the other ports' checks cost nothing).
    signal: str = ""

    def hold_for(self, values: Values) -> float:
        return self.hold_s(values) if callable(self.hold_s) else self.hold_s

    def threshold_for(self, values: Values) -> float:
        return self.threshold(values) if callable(self.threshold) else self.threshold


def step(
    check: Check,
    held: Held,
    index: int,
    values: Values,
    ts_ms: int,
) -> bool:
    """Advance one check of one device by one reading; True when it changed state.

    ``held`` is the device's row of check state as Python lists (open or not, since when
    the condition towards the other state has held, ``NO_TIME`` when it has not, and for
    checks with ``min_count`` the consecutive readings with it)."""
    active, since, count = held
    if check.suppressed(values):
        since[index] = NO_TIME
        count[index] = 0
        if active[index]:
            active[index] = False
            return True
        return False
    is_active = active[index]
    condition = check.clears(values) if is_active else check.opens(values)
    if not condition:
        since[index] = NO_TIME
        count[index] = 0
        return False
    if since[index] == NO_TIME:
        since[index] = ts_ms
    counted = check.min_count is not None
    if counted:
        count[index] = min(count[index] + 1, _COUNT_MAX)
    held_s = max(0, ts_ms - since[index]) / 1000.0
    need_s = check.clear_hold_s if is_active else check.hold_for(values)
    enough = held_s >= need_s or (
        not is_active and counted and count[index] >= (check.min_count or 0)
    )
    if not enough:
        return False
    active[index], since[index], count[index] = not is_active, NO_TIME, 0
    return True


def grown_rows(rows: int, needed: int) -> int:
    """An eighth more rows (not double: at 100,000 devices the slack is state too; the
    copies still cost O(1) a row on average)."""
    return max(needed + 1, rows + max(64, rows // 8))


def grown(old: _Array, rows: int, fill: object) -> _Array:
    new = np.full((rows, *old.shape[1:]), fill, dtype=old.dtype)
    new[: old.shape[0]] = old
    return new  # type: ignore[return-value]


def number(values: Values, name: str, default: float = math.nan) -> float:
    """A numeric value, or ``default`` when the device has not reported it (yet)."""
    return as_number(values.get(name), default)


def as_number(value: object, default: float = math.nan) -> float:
    """A real number as a float; anything else (absent, a bool, a string) is ``default``.

    Exact float and int first, by ``type()``: nearly every value is one, and the
    ``isinstance`` pair costs as much again (predicates call this several times a
    reading)."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def flag(name: str, on: int = 1) -> tuple[Predicate, Predicate]:
    """Opening and clearing predicates for a state bit: open at ``on``, clear otherwise."""

    def opens(values: Values) -> bool:
        return values.get(name) == on

    def clears(values: Values) -> bool:
        return name in values and values.get(name) != on

    return opens, clears


def below(name: str, limit: float, margin: float) -> tuple[Predicate, Predicate]:
    """Open below ``limit``; clear only at or above ``limit + margin``."""

    def opens(values: Values) -> bool:
        return number(values, name) < limit

    def clears(values: Values) -> bool:
        return number(values, name) >= limit + margin

    return opens, clears


def above(name: str, limit: float, margin: float) -> tuple[Predicate, Predicate]:
    """Open above ``limit``; clear only at or below ``limit - margin``."""

    def opens(values: Values) -> bool:
        return number(values, name) > limit

    def clears(values: Values) -> bool:
        return number(values, name) <= limit - margin

    return opens, clears


def measure(name: str) -> Measure:
    def value(values: Values) -> float:
        return number(values, name)

    return value
