"""What every family's rules share: the place of a device, a held check, the interface.

A family's rules are a table of ``Check``s read against the device's latest known values
(readings may carry only the values that changed, so each device keeps a merged view).
A check opens once its opening condition has held for ``hold_s`` of *device* time and
closes once its clearing condition has held for ``clear_hold_s``; opening and clearing are
separate predicates so analog signals get a clear margin (hysteresis) and alerts do not
flap.  Device time, not the wall clock, so an accelerated replay behaves like real time.

Several checks may share one event code (one per charging port, say): the anomaly for that
code is open while any of them is, because an alert is one per device and condition.

Plain thresholds (a signal above or below a limit, held, cleared with a margin), which most
rules are, are declared as ``Threshold``s and judged for whole batches at once by a
``ThresholdTable`` (``gateway.rules.thresholds``); the other checks run per reading here.
``TableRules(vectorised=False)`` runs the thresholds as per-reading checks instead: the
reference the vectorised table is tested against; by default a family vectorises when it
has ``VECTORISE_FROM`` thresholds or more (where the table measured faster).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from gateway.state import SnapshotMismatch, Stateful
from jiayuan.catalogue import Family
from jiayuan.contract import Reading, Value

if TYPE_CHECKING:
    from gateway.rules.thresholds import Threshold

Values = Mapping[str, Value]
DeviceKey = tuple[str, str, str, str, str]
# A device's check state as Python lists while a reading is judged: open, since, count.
_Held = tuple[list[bool], list[int], list[int]]
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])
NO_TIME = -(1 << 63)  # "the condition is not being held" in a since-array
_COUNT_MAX = (1 << 16) - 1  # consecutive readings saturate here (min_count is far lower)
_INITIAL_ROWS = 64
# What a stored value cell holds; ints beyond 2^53 are not exact in float64.
_ABSENT, _INT, _FLOAT, _OTHER = 0, 1, 2, 3
_EXACT_INT = 1 << 53
_GONE = object()  # a value the device has not reported
# A family with this many thresholds per reading or more runs them in a ThresholdTable by
# default: a table call has a fixed cost that many thresholds a reading repay and a few do
# not (bench/pipeline.py compares the paths), so a pile's 36 per-port thresholds use the
# table (and keep arrays instead of 36 Python state objects per pile) and a fire panel's 3
# do not.
VECTORISE_FROM = 8
Predicate = Callable[[Values], bool]
Measure = Callable[[Values], float]


def _shared(name: str) -> str:
    """The interned copy of a name that repeats across devices (an enum member such as a
    ``Kind`` is one object already, and ``sys.intern`` takes plain strings only)."""
    return sys.intern(name) if type(name) is str else name


EstateNames = tuple[str, str, str]  # district, street, estate, interned


def estate_names(district: str, street: str, estate: str) -> EstateNames:
    """The names of an estate interned, for ``Place.within``."""
    return (_shared(district), _shared(street), _shared(estate))


class Place:
    """Where a device is; ``key`` leaves out the building, which is a label, not identity.

    Held as its key and building only: the offline check keeps a Place per device, and
    the key tuple is the one every per-device table is keyed by (one tuple per device, not
    a copy per table), so at 100,000 devices a Place costs a tuple and 48 bytes.  The names
    that repeat across devices (district, street, estate, building, kind) are interned: a
    Place made from each decoded message would otherwise keep its own copies of them."""

    __slots__ = ("building", "key")
    key: DeviceKey
    building: str

    def __init__(
        self, district: str, street: str, estate: str, building: str, kind: str, device: str
    ) -> None:
        key = (_shared(district), _shared(street), _shared(estate), _shared(kind), device)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "building", _shared(building))

    @classmethod
    def within(cls, estate: EstateNames, building: str, kind: str, device: str) -> Place:
        """A device's Place in an estate whose names ``estate_names`` interned already:
        the pipeline makes a Place a reading and interns its message's topic names once."""
        place = object.__new__(cls)
        object.__setattr__(place, "key", (*estate, _shared(kind), device))
        object.__setattr__(place, "building", _shared(building))
        return place

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Place is immutable: cannot set {name}")

    @property
    def district(self) -> str:
        return self.key[0]

    @property
    def street(self) -> str:
        return self.key[1]

    @property
    def estate(self) -> str:
        return self.key[2]

    @property
    def kind(self) -> str:
        return self.key[3]

    @property
    def device(self) -> str:
        return self.key[4]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Place):
            return NotImplemented
        return self.key == other.key and self.building == other.building

    def __hash__(self) -> int:
        return hash((self.key, self.building))

    def __reduce__(self) -> tuple[type[Place], tuple[str, str, str, str, str, str]]:
        # Through __init__ (which interns the names), not attribute by attribute.
        district, street, estate, kind, device = self.key
        return Place, (district, street, estate, self.building, kind, device)

    def __repr__(self) -> str:
        district, street, estate, kind, device = self.key
        return (
            f"Place(district={district!r}, street={street!r}, estate={estate!r}, "
            f"building={self.building!r}, kind={kind!r}, device={device!r})"
        )


@dataclass(frozen=True, slots=True)
class AnomalyChange:
    """A rule's verdict on one reading: this code opened or closed at ``ts_ms``."""

    code: str
    opened: bool
    ts_ms: int
    value: float
    threshold: float
    detail: str = ""  # which part of the device, e.g. the port "p03"


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
        """The per-device state as plain data (``gateway.state``)."""
        ...

    def import_state(self, state: Mapping[str, Any]) -> None: ...

    def layout(self) -> object: ...


def _never(values: Values) -> bool:
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
    suppressed: Predicate = _never
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
    held: _Held,
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


class TableRules(Stateful):
    """Rules given as a table of checks per device; each family module builds its table.

    Per-device state lives in arrays with a row per device (no Python object per device):
    the merged latest value of each signal the rules read (float64, with a byte saying
    whether it is absent, an int or a float; any other value, such as a string, in a small
    side table), and per check whether it is open.  Since when a check's condition has held
    (int64 ms) is kept only for devices holding one (a fault in progress: rare), as a list
    by row, not a dense array.  Derived values that ``derive`` recomputes on every reading
    (``recomputed``) are not kept.  A batch loads each device's row into a dict once, the
    checks run on that reading by reading, and the cells that changed are stored back."""

    def __init__(
        self,
        family: Family,
        overrides: Mapping[str, float] | None = None,
        vectorised: bool | None = None,
    ) -> None:
        from gateway.rules.thresholds import ThresholdTable  # it builds on this module

        self.family = family
        self._overrides = dict(overrides or {})
        self.thresholds: Sequence[Threshold] = self.build_thresholds()
        others = self.build_checks()
        shared = {t.code for t in self.thresholds} & {c.code for c in others}
        if shared:
            raise ValueError(f"{family.kind}: codes both thresholds and checks: {shared}")
        if vectorised is None:  # where it pays (bench/pipeline.py compares)
            vectorised = len(self.thresholds) >= VECTORISE_FROM
        # Device rows, shared with the threshold table so a device has one row number.
        self._rows: dict[tuple[str, str, str, str, str], int] = {}
        tabled = vectorised and bool(self.thresholds)
        threshold_checks = [] if tabled else [t.check() for t in self.thresholds]
        self.checks: Sequence[Check] = [*threshold_checks, *others]
        self._members: dict[str, list[int]] = {}
        for index, check in enumerate(self.checks):
            self._members.setdefault(check.code, []).append(index)
        codes = set(self._members) | {t.code for t in self.thresholds}
        unknown = codes - {e.code for e in family.events}
        if unknown:
            raise KeyError(f"{family.kind}: checks use codes not in the catalogue: {unknown}")
        read = [*(c.signal for c in threshold_checks), *self.reads()]
        self.recomputed: frozenset[str] = frozenset(self.recomputes())
        self.columns: tuple[str, ...] = tuple(
            name for name in dict.fromkeys(read) if name not in self.recomputed
        )
        self._column_of = {name: k for k, name in enumerate(self.columns)}
        self._derived = tuple(name for name in self.columns if name.startswith("_"))
        # The table reads the signals kept here (a port's temperature and power) from these
        # arrays rather than keeping a second copy of them.
        self.table = (
            ThresholdTable(
                self.thresholds,
                rows=self._rows,
                kept=lambda: self._values,
                kept_columns=self._column_of,
            )
            if tabled
            else None
        )
        self._counted = [k for k, c in enumerate(self.checks) if c.min_count is not None]
        # What a device at rest needs to know of each check (no ``suppressed`` call when a
        # check cannot be suppressed).
        self._openers = [
            (c.signal, c.opens, None if c.suppressed is _never else c.suppressed)
            for c in self.checks
        ]
        rows, width, checks = _INITIAL_ROWS, len(self.columns), len(self.checks)
        self._values = np.full((rows, width), np.nan, dtype=np.float64)
        self._types = np.zeros((rows, width), dtype=np.uint8)
        self._others: dict[tuple[int, int], Value] = {}  # (row, column): not a number
        self._active = np.zeros((rows, checks), dtype=np.bool_)
        # Row → each check's since (NO_TIME: not held), only rows holding a condition.
        self._since: dict[int, list[int]] = {}
        self._at_rest = [NO_TIME] * checks
        self._count = np.zeros((rows, len(self._counted)), dtype=np.uint16)
        # The mapping the checks see (a test swaps in one that records what they read).
        self.mapping: Callable[[], dict[str, Value]] = dict

    STATE = ("_rows", "_values", "_types", "_others", "_active", "_since", "_count")

    def export_state(self) -> dict[str, Any]:
        table = self.table.export_state() if self.table is not None else None
        return {**super().export_state(), "table": table}

    def import_state(self, state: Mapping[str, Any]) -> None:
        if (state.get("table") is None) != (self.table is None):
            raise SnapshotMismatch(f"{self.family.kind}: vectorised thresholds or not")
        super().import_state(state)
        if self.table is not None:
            # One row numbering for the family: the table shares the restored dict.
            self.table.import_state({**state["table"], "_rows": self._rows})

    def layout(self) -> object:
        return (
            super().layout(),
            self.columns,
            tuple(check.code for check in self.checks),
            tuple((t.code, t.signal) for t in self.thresholds),
            self.table is not None,
        )

    def threshold(self, name: str) -> float:
        """A threshold from the catalogue unless this deployment overrides it."""
        return self._overrides.get(name, self.family.threshold(name))

    def setting(self, name: str, default: float) -> float:
        """A value the catalogue does not hold because its default is another threshold
        (a tank's level hold is its quality hold unless a deployment sets it)."""
        if name in self._overrides:
            return self._overrides[name]
        try:
            return self.family.threshold(name)
        except KeyError:
            return default

    def build_checks(self) -> Sequence[Check]:
        """The family's checks other than plain thresholds, the same for every device."""
        raise NotImplementedError

    def build_thresholds(self) -> Sequence[Threshold]:
        """The family's plain thresholds (vectorised); by default none."""
        return ()

    def reads(self) -> Sequence[str]:
        """Every value the checks and ``derive`` read, derived ones included: only these
        are kept per device (the thresholds' signals are added when they run as checks)."""
        raise NotImplementedError

    def recomputes(self) -> Sequence[str]:
        """Derived names of ``reads`` that ``derive`` sets afresh from the other values on
        every reading (so a stored copy would never be read): not kept per device."""
        return ()

    def derive(self, values: dict[str, Value], reading: Reading) -> None:
        """Add values computed from the device's history to its merged ``values`` before
        the checks run (a port's lagged power, the peak since a pump last ran); by default
        none.  Derived names start with ``_`` so they cannot collide with a reported
        signal, and each is in ``reads`` (kept) or ``recomputes`` (dropped after the
        reading)."""

    @property
    def bytes_per_device(self) -> int:
        """The arrays' bytes per device row (the side table of non-numbers aside)."""
        arrays = (self._values, self._types, self._active, self._count)
        own = sum(a.itemsize * a.shape[1] for a in arrays)
        return own + (self.table.bytes_per_device if self.table is not None else 0)

    @property
    def device_rows(self) -> dict[DeviceKey, int]:
        return self._rows

    def forget(self, place: Place) -> None:
        # The device keeps its row number, cleared: rows are numbered by how many there
        # are, and the statistical detectors share the numbering.
        row = self._rows.get(place.key)
        if self.table is not None:
            self.table.forget(place.key)
        if row is not None and row < len(self._values):
            self._values[row] = np.nan
            self._types[row] = _ABSENT
            self._active[row] = False
            self._since.pop(row, None)
            self._count[row] = 0
            for cell in [c for c in self._others if c[0] == row]:
                del self._others[cell]

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        return self.evaluate_many([(place, reading)])[0]

    def evaluate_many(self, items: Sequence[tuple[Place, Reading]]) -> list[list[AnomalyChange]]:
        """Per reading: the thresholds' changes (one vectorised call for the batch), then
        the other checks'."""
        if self.table is None:
            out: list[list[AnomalyChange]] = [[] for _ in items]
        else:
            for place, _ in items:  # rows (and arrays) first: the table reads the kept values
                self._row(place.key)
            out = self.table.evaluate([(place.key, reading) for place, reading in items])
        if self.checks or self.columns:
            self._evaluate_checks(items, out)
        return out

    def _row(self, key: tuple[str, str, str, str, str]) -> int:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = len(self._rows)
        if row >= len(self._values):
            self._grow(grown_rows(len(self._values), row))
        return row

    def _grow(self, rows: int) -> None:
        self._values = grown(self._values, rows, np.nan)
        self._types = grown(self._types, rows, _ABSENT)
        self._active = grown(self._active, rows, False)
        self._count = grown(self._count, rows, 0)

    def _load(self, rows: list[int]) -> dict[int, dict[str, Value]]:
        """The devices' kept values as a dict each (one array read for the batch)."""
        at = np.array(rows, dtype=np.int64)
        kinds_of, numbers_of = self._types[at].tolist(), self._values[at].tolist()
        loaded: dict[int, dict[str, Value]] = {}
        columns, others = self.columns, self._others
        for row, kinds, numbers in zip(rows, kinds_of, numbers_of, strict=True):
            values = loaded[row] = self.mapping()
            for column, (name, kind, value) in enumerate(zip(columns, kinds, numbers, strict=True)):
                if kind == _INT:
                    values[name] = int(value)
                elif kind == _FLOAT:
                    values[name] = value
                elif kind == _OTHER:
                    values[name] = others[(row, column)]
        return loaded

    def _store(self, row: int, values: Mapping[str, Value], before: Mapping[str, Value]) -> None:
        """Write back the cells the batch changed (a value is the same only if it is the
        same type too)."""
        for column, name in enumerate(self.columns):
            new = values.get(name, _GONE)
            old = before.get(name, _GONE)
            if new is old or (type(new) is type(old) and new == old):
                continue
            self._set(row, column, new)

    def _set(self, row: int, column: int, value: object) -> None:
        if type(value) is float:
            number, kind = value, _FLOAT
        elif type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
            number, kind = float(value), _INT
        elif value is _GONE:
            number, kind = math.nan, _ABSENT
        else:  # a string, a bool, a huge int: kept as it is, in the side table
            self._others[(row, column)] = value  # type: ignore[assignment]
            number, kind = math.nan, _OTHER
        if kind != _OTHER and self._others:
            self._others.pop((row, column), None)
        self._values[row, column] = number
        self._types[row, column] = kind

    def _evaluate_checks(
        self, items: Sequence[tuple[Place, Reading]], out: list[list[AnomalyChange]]
    ) -> None:
        """The checks on each reading, in order, adding their changes to ``out``.

        A device's merged values are loaded once for the batch and carried from reading to
        reading (trimmed to the kept names, as a store and reload would), and stored back
        once at the end.  A device at rest (no check open or holding) is only stepped when
        one of its checks' opening conditions holds: otherwise no check can move."""
        rows = [self._row(place.key) for place, _ in items]
        devices = list(dict.fromkeys(rows))
        current = self._load(devices)
        before = {row: values.copy() for row, values in current.items()}
        open_rows = set(np.array(devices)[self._active[devices].any(axis=1)].tolist())
        _check_readings(self, rows, items, current, open_rows, out)
        for row, values in current.items():
            self._store(row, values, before[row])

    def _step_all(self, row: int, values: Values, reading: Reading) -> list[AnomalyChange]:
        """Step every check of a device that is not at rest by one reading."""
        active = self._active[row].tolist()
        held_before = self._since.get(row)
        since = (self._at_rest if held_before is None else held_before).copy()
        count = [0] * len(self.checks)
        counted = self._counted
        if counted:
            for slot, value in zip(counted, self._count[row].tolist(), strict=True):
                count[slot] = value
        held: _Held = (active, since, count)
        checks, ts = self.checks, reading.ts
        present = reading.values
        changed: list[int] = []
        for index, check in enumerate(checks):
            if (
                check.signal
                and check.signal not in present
                and not active[index]
                and since[index] == NO_TIME
            ):
                continue
            if step(check, held, index, values, ts):
                changed.append(index)
        # Most readings leave a device's checks at rest: write back only what moved.
        if changed:
            self._active[row] = active
        if since != (self._at_rest if held_before is None else held_before):
            if since == self._at_rest:
                del self._since[row]
            else:
                self._since[row] = since
        if counted:
            self._count[row] = [count[slot] for slot in counted]
        if not changed:
            return []
        return self._code_changes(changed, active, values, ts)

    def _code_changes(
        self, changed: list[int], active: list[bool], values: Values, ts: int
    ) -> list[AnomalyChange]:
        """Turn check transitions into anomaly transitions: a code shared by several
        checks opens with the first of them and closes with the last."""
        changes: list[AnomalyChange] = []
        done: set[str] = set()
        for index in changed:
            check = self.checks[index]
            if check.code in done:
                continue
            done.add(check.code)
            members = self._members[check.code]
            now_open = any(active[j] for j in members)
            was_open = any(active[j] != (j in changed) for j in members)
            if now_open and not was_open:
                first = next(
                    self.checks[j]
                    for j in changed
                    if self.checks[j].code == check.code and active[j]
                )
                changes.append(
                    AnomalyChange(
                        check.code,
                        True,
                        ts,
                        first.value(values),
                        first.threshold_for(values),
                        first.detail,
                    )
                )
            elif was_open and not now_open:
                changes.append(
                    AnomalyChange(
                        check.code,
                        False,
                        ts,
                        check.value(values),
                        check.threshold_for(values),
                        check.detail,
                    )
                )
        return changes


def _check_readings(
    rules: TableRules,
    rows: list[int],
    items: Sequence[tuple[Place, Reading]],
    current: dict[int, dict[str, Value]],
    open_rows: set[int],
    out: list[list[AnomalyChange]],
) -> None:
    """``TableRules._evaluate_checks``' loop over the readings, each on its device's merged
    ``current`` values.  A function, not a method, so that the compiled build can type its
    locals (base.pxd): it runs once for every reading."""
    held_rows, kept, recomputed = rules._since, rules._column_of, rules.recomputed
    openers = rules._openers
    derives = type(rules).derive is not TableRules.derive  # most families derive nothing
    for index, (row, (_, reading)) in enumerate(zip(rows, items, strict=True)):
        values = current[row]
        present = reading.values
        # Only the kept names are merged: no check or ``derive`` reads another
        # (tests/test_rules_state.py holds the rules to that), so the reading's other
        # values need neither merging nor removing afterwards.
        for name, value in present.items():
            if name in kept:
                values[name] = value
        if derives:
            rules.derive(values, reading)
        if row in open_rows or row in held_rows:
            busy = True
        else:
            busy = False
            for signal, opens, suppressed in openers:
                if signal and signal not in present:
                    continue
                if opens(values) and (suppressed is None or not suppressed(values)):
                    busy = True
                    break
        if busy:
            changes = rules._step_all(row, values, reading)
            if changes:
                out[index] += changes
            if rules._active[row].any():
                open_rows.add(row)
            else:
                open_rows.discard(row)
        # Not kept, so gone by the next reading: what ``derive`` recomputes (it writes
        # only kept and recomputed names).
        for name in recomputed:
            values.pop(name, None)


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
