"""``TableRules``: a family's checks held per device in arrays, the plain thresholds judged
for whole batches in a ``ThresholdTable`` (``gateway.detection.rules.thresholds``).

``TableRules(vectorised=False)`` runs the thresholds as per-reading checks instead: the
reference the vectorised table is tested against; by default a family vectorises when it
has ``VECTORISE_FROM`` thresholds or more (where the table measured faster).

Both build on ``gateway.detection.rules.base``; this module is kept apart from it so the
threshold table and the rules import downward only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, cast

import numpy as np

from gateway.detection.rules.base import (
    NO_TIME,
    AnomalyChange,
    Check,
    Held,
    Values,
    as_number,
    grown,
    grown_rows,
    never,
    step,
)
from gateway.detection.rules.thresholds import Threshold, ThresholdTable
from gateway.detection.state import SnapshotMismatch, Stateful, row_number, shared_numbers
from jiayuan.catalogue import Family
from jiayuan.contract import Reading, Value
from jiayuan.places import DeviceKey, Place

_INITIAL_ROWS = 64
# What a stored value cell holds; ints beyond 2^53 are not exact in float64.
_ABSENT, _INT, _FLOAT, _OTHER = 0, 1, 2, 3
_EXACT_INT = 1 << 53
_LEAST_EXACT_INT = -_EXACT_INT
_GONE = object()  # a value the device has not reported
# A family with this many thresholds per reading or more runs them in a ThresholdTable by
# default: a table call has a fixed cost that many thresholds a reading repay and a few do
# not (bench/pipeline.py compares the paths), so a pile's 36 per-port thresholds use the
# table (and keep arrays instead of 36 Python state objects per pile) and a fire panel's 3
# do not.
VECTORISE_FROM = 8


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
            (c.signal, c.opens, None if c.suppressed is never else c.suppressed)
            for c in self.checks
        ]
        self._signalled = any(c.signal for c in self.checks)
        rows, width, checks = _INITIAL_ROWS, len(self.columns), len(self.checks)
        self._values = np.full((rows, width), np.nan, dtype=np.float64)
        self._types = np.zeros((rows, width), dtype=np.uint8)
        self._others: dict[tuple[int, int], Value] = {}  # (row, column): not a number
        self._active = np.zeros((rows, checks), dtype=np.bool_)
        # The rows with a check open (rare), kept beside ``_active`` so a batch need not
        # look up every device's row of it.
        self._open_rows: set[int] = set()
        # Row → each check's since (NO_TIME: not held), only rows holding a condition.
        self._since: dict[int, list[int]] = {}
        self._at_rest = [NO_TIME] * checks
        self._count = np.zeros((rows, len(self._counted)), dtype=np.uint16)
        # The mapping the checks see (a test swaps in one that records what they read).
        self.mapping: Callable[[], dict[str, Value]] = dict
        # A family's ``derive`` and openers in one compiled call on the row, if it has
        # one (a pile's ports): ``judge(view, ts, values)`` derives and says whether an
        # opener holds, ``fill(view)`` puts the values it derived but did not write in
        # the row's derived ones for stepping the checks.  The reference is ``derive``
        # and the openers, which run with a test's mapping.
        self.judge: RowJudge | None = None
        self._view = RowValues(self._column_of)
        # Per row, 1 when the row is at rest and its every opening condition was found
        # false (or suppressed) on the values it still holds: a reading that changes none
        # of those values cannot make one true (the checks are functions of the values),
        # so its openers are not asked again.  A byte a row, not a set of row numbers
        # (most devices are at rest: a set entry each, 30 B a device at a district's
        # cardinality).  Not state: a row leaves it when a value changes or it is stepped.
        self._quiet = bytearray(rows)
        # The names of the family's last reading in order, with their columns (-1: not
        # kept): a family's readings mostly name their values alike, and the decoder
        # mostly hands out the same string for the same name, so a value's column is
        # found by position without a look-up.  Not state.
        self._shape: list[str] = []
        self._shape_columns: list[int] = []

    STATE = ("_rows", "_values", "_types", "_others", "_active", "_since", "_count")

    def export_state(self) -> dict[str, Any]:
        table = self.table.export_state() if self.table is not None else None
        return {**super().export_state(), "table": table}

    def import_state(self, state: Mapping[str, Any]) -> None:
        if (state.get("table") is None) != (self.table is None):
            raise SnapshotMismatch(f"{self.family.kind}: vectorised thresholds or not")
        super().import_state(state)
        shared_numbers(self._rows)  # the dict the kind's other tables share
        # The checks write these in place (RowValues): contiguous and writeable.
        self._values = np.require(self._values, requirements=("C", "W"))
        self._types = np.require(self._types, requirements=("C", "W"))
        self._open_rows = set(np.flatnonzero(self._active.any(axis=1)).tolist())
        self._quiet = bytearray(len(self._values))
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

    def derive(self, values: MutableMapping[str, Value], reading: Reading) -> None:
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
            self._open_rows.discard(row)
            self._quiet[row] = 0
            self._since.pop(row, None)
            self._count[row] = 0
            for cell in [c for c in self._others if c[0] == row]:
                del self._others[cell]

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        return self.evaluate_many([(place, reading)])[0]

    def evaluate_many(self, items: Sequence[tuple[Place, Reading]]) -> list[list[AnomalyChange]]:
        """Per reading: the thresholds' changes (one vectorised call for the batch), then
        the other checks'."""
        # Rows (and arrays) first: the table reads the kept values.
        rows = _device_rows(self, items)
        if self.table is None:
            out: list[list[AnomalyChange]] = [[] for _ in items]
        else:
            out = self.table.evaluate([(place.key, reading) for place, reading in items])
        if self.checks or self.columns:
            self._evaluate_checks(rows, items, out)
        return out

    def _row(self, key: tuple[str, str, str, str, str]) -> int:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = row_number(len(self._rows))
        if row >= len(self._values):
            self._grow(grown_rows(len(self._values), row))
        return row

    def _grow(self, rows: int) -> None:
        self._values = grown(self._values, rows, np.nan)
        self._types = grown(self._types, rows, _ABSENT)
        self._active = grown(self._active, rows, False)
        self._count = grown(self._count, rows, 0)
        self._quiet.extend(bytes(rows - len(self._quiet)))

    def _evaluate_checks(
        self,
        rows: list[int],
        items: Sequence[tuple[Place, Reading]],
        out: list[list[AnomalyChange]],
    ) -> None:
        """The checks on each reading, in order, adding their changes to ``out``.

        The checks read and write a device's kept values in its row of the arrays
        (``RowValues``), so a reading costs the same whether its device comes once or many
        times in a batch.  A device at rest (no check open or holding) is only stepped
        when one of its checks' opening conditions holds: otherwise no check can move."""
        self._view.bind(self._values, self._types, self._others)
        _check_readings(self, self._view, rows, items, self._open_rows, self._quiet, out)

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
        held: Held = (active, since, count)
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
            if any(active):
                self._open_rows.add(row)
            else:
                self._open_rows.discard(row)
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


class RowJudge:
    """A family's ``derive`` and openers in one compiled call on a device's row (a pile's
    ports, a lift's states), the call typed in ``_check_readings``.  The reference is the
    family's ``derive`` and openers, which run with a test's mapping."""

    def judge(self, view: RowValues, ts: int, present: Mapping[str, Value]) -> bool:
        """Derive the device's values for its reading at ``ts`` (``present``: the values
        it reported, already merged into ``view``'s row); True when an opening condition
        holds."""
        raise NotImplementedError

    def fill(self, view: RowValues) -> None:
        """Put the values the judge derived but did not write to the row in its derived
        ones, for stepping the checks (nothing by default)."""


class RowValues:
    """A device's kept values as the mapping the checks and ``derive`` see, read from and
    written to its row of the rules' arrays as they ask (no dict a device and batch).

    ``row`` selects the device.  A value comes back with the type it was reported with: a
    float, an int (exact up to 2^53), anything else (a string, a bool, a huge int) from the
    side table.  Writing a kept name writes its cell; a derived name that is not kept (one
    ``derive`` recomputes) lives in ``derived`` until ``clear_derived``, as it would in a
    dict until the end of the reading."""

    def __init__(self, columns: Mapping[str, int]) -> None:
        self.columns = dict(columns)
        self.names = tuple(columns)
        self.derived: dict[str, Value] = {}
        self.row = 0
        self.numbers = np.zeros((0, len(columns)), dtype=np.float64)
        self.kinds = np.zeros((0, len(columns)), dtype=np.uint8)
        self.others: dict[tuple[int, int], Value] = {}

    def bind(
        self,
        numbers: np.ndarray[Any, np.dtype[np.float64]],
        kinds: np.ndarray[Any, np.dtype[np.uint8]],
        others: dict[tuple[int, int], Value],
    ) -> None:
        """Read and write these arrays (again after they grew or were restored)."""
        self.numbers = numbers
        self.kinds = kinds
        self.others = others

    def cell(self, column: int, default: object) -> object:
        row = self.row
        kind = self.kinds[row, column]
        if kind == _FLOAT:
            return float(self.numbers[row, column])
        if kind == _INT:
            return int(self.numbers[row, column])
        if kind == _ABSENT:
            return default
        return self.others[(row, column)]

    def holds(self, column: int, on: int) -> bool:
        """``get(name) == on`` of a kept value, by its column (a state bit's test)."""
        row = self.row
        kind = self.kinds[row, column]
        if kind in (_FLOAT, _INT):
            return bool(self.numbers[row, column] == on)
        if kind == _ABSENT:
            return False  # None == on
        return bool(self.others[(row, column)] == on)

    def put(self, column: int, value: Value) -> bool:
        """Write the cell; True unless it held this number already (same type, equal
        value; a value of the side table always counts as changed)."""
        row = self.row
        kind = self.kinds[row, column]
        changed: bool
        if kind == _OTHER:
            del self.others[(row, column)]
        if type(value) is float:
            real = value  # a C double in the compiled build: compared as one
            # NaN is never equal: changed.  0.0 and -0.0 are equal: no check tells them
            # apart (they compare values, never the sign of a zero).
            changed = kind != _FLOAT or self.numbers[row, column] != real
            self.numbers[row, column] = real
            self.kinds[row, column] = _FLOAT
            return changed
        if type(value) is int:
            try:
                whole = value  # a C integer in the compiled build: no float object made
            except OverflowError:  # beyond a C integer, so beyond 2^53 too
                whole = _EXACT_INT + 1
            if _LEAST_EXACT_INT <= whole <= _EXACT_INT:
                changed = kind != _INT or self.numbers[row, column] != whole
                self.numbers[row, column] = whole
                self.kinds[row, column] = _INT
                return changed
        # A string, a bool, a huge int: kept as it is, in the side table.
        self.others[(row, column)] = value
        self.numbers[row, column] = math.nan
        self.kinds[row, column] = _OTHER
        return True

    def real(self, name: str) -> float:
        """``as_number`` of the value: a real number as a float, NaN for anything else."""
        column = self.columns.get(name)
        if column is None:
            return as_number(self.derived.get(name))
        return self.real_at(column)

    def real_at(self, column: int) -> float:
        """``real`` of a kept value, by its column."""
        row = self.row
        kind = self.kinds[row, column]
        if kind in (_FLOAT, _INT):
            return float(self.numbers[row, column])
        if kind == _ABSENT:
            return math.nan
        return as_number(self.others[(row, column)])

    def put_real(self, column: int, value: float) -> None:
        """``put`` of a float, without making a Python float of it when compiled."""
        row = self.row
        if self.kinds[row, column] == _OTHER:
            del self.others[(row, column)]
        self.numbers[row, column] = value
        self.kinds[row, column] = _FLOAT

    def clear_derived(self) -> None:
        self.derived.clear()

    def get(self, name: str, default: object = None) -> object:
        column = self.columns.get(name)
        if column is None:
            return self.derived.get(name, default)
        return self.cell(column, default)

    def __getitem__(self, name: str) -> object:
        value = self.get(name, _GONE)
        if value is _GONE:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return self.get(name, _GONE) is not _GONE  # type: ignore[arg-type]

    def __setitem__(self, name: str, value: Value) -> None:
        column = self.columns.get(name)
        if column is None:
            self.derived[name] = value
        else:
            self.put(column, value)

    def __delitem__(self, name: str) -> None:
        column = self.columns.get(name)
        if column is None:
            del self.derived[name]
            return
        if name not in self:
            raise KeyError(name)
        row = self.row
        self.others.pop((row, column), None)
        self.numbers[row, column] = math.nan
        self.kinds[row, column] = _ABSENT

    def __iter__(self) -> Iterator[str]:
        row = self.row
        present = [n for k, n in enumerate(self.names) if self.kinds[row, k] != _ABSENT]
        return iter([*present, *self.derived])

    def __len__(self) -> int:
        return len(list(iter(self)))

    def as_dict(self) -> dict[str, Value]:
        """The device's values as a dict (read from the arrays, not through ``get``)."""
        row = self.row
        out = {
            name: self.cell(column, None)
            for column, name in enumerate(self.names)
            if self.kinds[row, column] != _ABSENT
        }
        return {**out, **self.derived}  # type: ignore[dict-item]


MutableMapping.register(RowValues)


def _device_rows(rules: TableRules, items: Sequence[tuple[Place, Reading]]) -> list[int]:
    """Each reading's device row, numbering a new device (and growing the arrays to hold
    it).  A function, not a method, so that the compiled build can type its locals
    (table.pxd): it runs once for every reading."""
    known = rules._rows
    capacity = len(rules._values)
    rows: list[int] = []
    for place, _ in items:
        row = known.get(place.key, -1)
        if row < 0 or row >= capacity:
            row = rules._row(place.key)
            capacity = len(rules._values)
        rows.append(row)
    return rows


def _check_readings(
    rules: TableRules,
    view: RowValues,
    rows: list[int],
    items: Sequence[tuple[Place, Reading]],
    open_rows: set[int],
    quiet: bytearray,
    out: list[list[AnomalyChange]],
) -> None:
    """``TableRules._evaluate_checks``' loop over the readings, each on its device's kept
    values in ``view``.  A function, not a method, so that the compiled build can type its
    locals (table.pxd): it runs once for every reading.

    With ``rules.mapping`` other than ``dict`` (a test's recording mapping), the checks see
    a mapping of that type filled from the row, written back after each reading.

    A row marked in ``quiet`` (``TableRules._quiet``) whose reading changes none of its kept
    values is at rest without asking its openers: they saw these values already.  Not
    for a family that derives values (they depend on more than the kept values) or with
    a test's mapping."""
    held_rows, kept = rules._since, rules._column_of
    shape, shape_columns = rules._shape, rules._shape_columns
    openers = rules._openers
    derives = type(rules).derive is not TableRules.derive  # most families derive nothing
    copied = rules.mapping is not dict
    judge = None if copied else rules.judge
    judged = False
    remembers = not derives and not copied
    # A judge asks every opener whose signal came: all of them unless some have one.
    signalled = rules._signalled
    # The checks read a Mapping: RowValues is registered as one.
    values = cast(MutableMapping[str, Value], view)
    for index, (row, (_, reading)) in enumerate(zip(rows, items, strict=True)):
        view.row = at = row  # ``at``: a C index into ``quiet`` when compiled
        present = reading.values
        # Only the kept names are merged: no check or ``derive`` reads another
        # (tests/gateway/test_rules_state.py holds the rules to that), so the reading's other
        # values need neither merging nor removing afterwards.
        changed = False
        shape_length = len(shape)
        for position, (name, value) in enumerate(present.items()):
            if position < shape_length and shape[position] is name:
                column = shape_columns[position]
            else:
                column = kept.get(name, -1)
                if position < shape_length:
                    shape[position] = name
                    shape_columns[position] = column
                else:
                    shape.append(name)
                    shape_columns.append(column)
                    shape_length += 1
            if column >= 0 and view.put(column, value):
                changed = True
        if copied:
            values = rules.mapping()
            values.update(view.as_dict())
        if derives:
            if judge is not None:
                judged = judge.judge(view, reading.ts, present)
            else:
                rules.derive(values, reading)
        if row in open_rows or row in held_rows:
            busy = True
            if remembers:
                quiet[at] = 0
        elif remembers and not changed and quiet[at]:
            busy = False
        elif judge is not None:
            # A family that derives had its judge asked above, on every reading.
            busy = judged if derives else judge.judge(view, reading.ts, present)
            if remembers:
                quiet[at] = 0 if busy or signalled else 1
        else:
            busy = False
            every = True  # every opener asked (none skipped for a signal not sent)
            for signal, opens, suppressed in openers:
                if signal and signal not in present:
                    every = False
                    continue
                if opens(values) and (suppressed is None or not suppressed(values)):
                    busy = True
                    break
            if remembers:
                quiet[at] = 0 if busy or not every else 1
        if busy:
            if judge is not None:
                judge.fill(view)
            changes = rules._step_all(row, values, reading)
            if changes:
                out[index] += changes
        if copied:
            for name, value in values.items():
                if name in kept:
                    view[name] = value
        # Not kept, so gone by the next reading: what ``derive`` recomputes (it writes
        # only kept and recomputed names).
        if derives:
            view.clear_derived()
