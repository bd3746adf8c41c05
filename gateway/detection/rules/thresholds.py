"""Threshold checks with hold and hysteresis, vectorised over many devices.

Most rules are "a signal above (or below) a limit for ``hold_s`` of device time, cleared
only ``margin`` back on the other side".  ``Threshold`` states one; ``ThresholdTable``
judges all of a family's thresholds for a batch of readings across many devices with numpy,
keeping per-device state in 2-D arrays (a row per device): the signals' latest values
(float32; those the family's rules keep anyway, in float64, are read from their arrays and
rounded to float32 as they are used, not kept twice) and per check whether it is open.
Since when a check's condition has held (uint32 milliseconds, modulo 2^32: a hold is far
shorter than 49 days) is kept only while it is being held, in a dict by (row, check): that
is a fault in progress, rare, so a dense array of it would be almost all unused state (144
bytes of a 12-port pile).

The semantics are those of ``gateway.detection.rules.base.step`` on the device's merged values
(``Threshold.check`` gives that reference form, which ``TableRules(vectorised=False)``
uses): a check's condition is its opening predicate while closed and its clearing one
while open; it flips once the condition has held for the hold time (``clear_hold_s`` when
open); checks sharing a code make one anomaly, opened by the first check to open (whose
value, threshold and detail it reports) and closed when the last one closes.  Readings of
one device within a batch are taken in order (round k holds every device's k-th reading).
Values compare in float32 on both sides, which orders device values of up to 7 significant
digits exactly as float64 does; a reported value is the shortest decimal of its float32,
which is the value as sent for such values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.detection.rules.base import (
    AnomalyChange,
    Check,
    above,
    as_number,
    below,
    grown,
    grown_rows,
    measure,
)
from gateway.detection.state import Stateful, row_number
from jiayuan.contract import Reading
from jiayuan.places import DeviceKey

_WRAP = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True)
class Threshold:
    """``signal`` above ``limit`` (``rising``) or below it, held for ``hold_s``; clears at
    ``margin`` back inside, held for ``clear_hold_s``."""

    code: str
    signal: str
    rising: bool
    limit: float
    margin: float
    hold_s: float = 0.0
    clear_hold_s: float = 0.0
    detail: str = ""

    def check(self) -> Check:
        """The same condition as a per-reading ``Check`` (the reference implementation)."""
        opens, clears = (above if self.rising else below)(self.signal, self.limit, self.margin)
        return Check(
            self.code,
            opens,
            clears,
            measure(self.signal),
            self.limit,
            hold_s=self.hold_s,
            clear_hold_s=self.clear_hold_s,
            detail=self.detail,
            signal=self.signal,
        )


class ThresholdTable(Stateful):
    STATE = ("_rows", "last", "active", "since")

    def __init__(
        self,
        thresholds: Sequence[Threshold],
        capacity: int = 64,
        rows: dict[DeviceKey, int] | None = None,
        kept: Callable[[], npt.NDArray[np.float64]] | None = None,
        kept_columns: Mapping[str, int] | None = None,
    ) -> None:
        """``rows``: the device rows to use, shared with the family's other per-device
        arrays so a device is one dict entry, not one per table.  ``kept`` gives the
        owner's array of each device's latest values (a row per device, NaN where absent
        or not a number), holding the signals named in ``kept_columns`` at those columns;
        the owner updates it after each batch is judged and has the rows before it is."""
        # Checks of one code side by side (in their given order), codes in order of first
        # appearance: each code is then one segment of a device's row.
        codes = list(dict.fromkeys(t.code for t in thresholds))
        ordered = [t for code in codes for t in thresholds if t.code == code]
        self.checks: tuple[Threshold, ...] = tuple(ordered)
        self.signals: dict[str, int] = {}
        for t in ordered:
            self.signals.setdefault(t.signal, len(self.signals))
        self._codes = codes
        self._segments = np.array(
            [next(i for i, t in enumerate(ordered) if t.code == code) for code in codes]
        )
        self._signal_of = np.array([self.signals[t.signal] for t in ordered], dtype=np.int64)
        # Falling checks compare negated values: -x > -limit is x < limit, exactly.
        sign = np.array([1.0 if t.rising else -1.0 for t in ordered], dtype=np.float32)
        clears = [t.limit - t.margin if t.rising else t.limit + t.margin for t in ordered]
        self._sign = sign
        self._open_at = sign * np.array([t.limit for t in ordered], dtype=np.float32)
        self._clear_at = sign * np.array(clears, dtype=np.float32)
        self._hold_ms = np.array([round(t.hold_s * 1000) for t in ordered], dtype=np.int64)
        self._clear_ms = np.array([round(t.clear_hold_s * 1000) for t in ordered], dtype=np.int64)
        self._rows: dict[DeviceKey, int] = {} if rows is None else rows
        checks, count = len(ordered), max(1, capacity)
        columns = kept_columns if kept is not None and kept_columns is not None else {}
        self._kept = kept
        names = list(self.signals)
        # Per signal: its column in ``last`` (−1: kept by the owner) and in the owner's.
        own = [name for name in names if name not in columns]
        self._own_of = np.array([own.index(n) if n in own else -1 for n in names], np.int64)
        self._own = np.flatnonzero(self._own_of >= 0)
        self._elsewhere = np.flatnonzero(self._own_of < 0)
        self._kept_at = np.array([columns[names[k]] for k in self._elsewhere], np.int64)
        # Per signal, its column in the owner's array (−1: kept here, in ``last``).
        self._kept_of = np.array(
            [columns.get(n, -1) if n not in own else -1 for n in names], dtype=np.int64
        )
        self.last = np.full((count, len(own)), np.nan, dtype=np.float32)
        self.active = np.zeros((count, checks), dtype=bool)
        # (row, check) → since when its condition has held; absent: it is not being held.
        self.since: dict[tuple[int, int], int] = {}
        # Per signal, the checks on it (padded with -1): a reported value is tested
        # against each of them.
        on_signal = [
            [k for k, t in enumerate(ordered) if t.signal == name] for name in self.signals
        ]
        width = max((len(c) for c in on_signal), default=1)
        self._checks_of = np.array([c + [-1] * (width - len(c)) for c in on_signal], dtype=np.int64)
        # A batch's scratch (``_scan``): which rows it has seen, and the values it reported
        # of the signals kept here, stored once its busy checks have been stepped.
        self._seen = np.zeros(count, dtype=np.uint8)
        self._pending_rows = np.zeros(0, dtype=np.intp)
        self._pending_columns = np.zeros(0, dtype=np.intp)
        self._pending_values = np.zeros(0, dtype=np.float32)

    def import_state(self, state: Mapping[str, Any]) -> None:
        super().import_state(state)
        # ``_scan`` reads and writes these as C arrays: contiguous and writeable.
        self.last = np.require(self.last, requirements=("C", "W"))
        self.active = np.require(self.active, requirements=("C", "W"))
        self._seen = np.zeros(len(self.last), dtype=np.uint8)

    @property
    def bytes_per_device(self) -> int:
        arrays = (self.last, self.active)  # ``since`` holds only checks being held
        return sum(a.itemsize * a.shape[1] for a in arrays)

    def __len__(self) -> int:
        return len(self._rows)

    def _latest(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The devices' latest value of every signal, float32 (a row per device)."""
        out = np.empty((len(rows), len(self.signals)), dtype=np.float32)
        out[:, self._own] = self.last[rows]
        if self._kept is not None and len(self._elsewhere):
            out[:, self._elsewhere] = self._kept()[rows][:, self._kept_at]
        return out

    def _row(self, key: DeviceKey) -> int:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = row_number(len(self._rows))
        if row >= self.last.shape[0]:  # a shared row may be new to this table
            self._grow(grown_rows(self.last.shape[0], row))
        return row

    def _grow(self, rows: int) -> None:
        self.last = grown(self.last, rows, np.nan)
        self.active = grown(self.active, rows, False)
        self._seen = grown(self._seen, rows, 0)

    def forget(self, key: DeviceKey) -> None:
        """Clear a device's row (the device keeps it: rows are numbered by how many
        there are)."""
        row = self._rows.get(key)
        if row is not None and row < self.last.shape[0]:
            self.last[row] = np.nan
            self.active[row] = False
            for cell in [c for c in self.since if c[0] == row]:
                del self.since[cell]

    def evaluate(self, items: Sequence[tuple[DeviceKey, Reading]]) -> list[list[AnomalyChange]]:
        """The anomaly changes of each reading, in the order given.

        A value a reading leaves out keeps the device's previous one, so a check whose
        opening condition holds on none of the device's values (its state's and those
        reported in the batch), and which is neither open nor holding, cannot change: that
        is decided for the whole batch at once.  The few others (a fault in progress) are
        stepped through the device's readings in order."""
        out: list[list[AnomalyChange]] = [[] for _ in items]
        if not items or not self.checks:
            return out
        rows, busy_rows, busy_checks, pending = _scan(self, items)
        if busy_rows:
            self._step_busy(busy_rows, busy_checks, rows, items, out)
        # The latest reported value of each (device, signal) the table keeps itself, in
        # batch order (the owner stores those of the signals it keeps).
        _store_pending(self, pending)
        return out

    def _step_busy(
        self,
        busy_rows: list[int],
        busy_checks: list[int],
        rows: list[int],
        items: Sequence[tuple[DeviceKey, Reading]],
        out: list[list[AnomalyChange]],
    ) -> None:
        """Step each busy check of each device through its readings in order (the
        per-reading semantics of ``gateway.detection.rules.base.step``), then turn the flips into
        anomaly changes."""
        by_row: dict[int, list[int]] = {}
        for row, check in zip(busy_rows, busy_checks, strict=True):
            by_row.setdefault(row, []).append(check)
        at: dict[int, list[int]] = {row: [] for row in by_row}
        for position, row in enumerate(rows):
            if row in at:
                at[row].append(position)
        for row, checks in by_row.items():
            positions = at[row]
            flips: dict[int, list[tuple[int, float]]] = {}
            for check in checks:
                self._scan(row, check, positions, items, flips)
            if flips:
                self._changes(row, positions, items, flips, out)

    def _scan(
        self,
        row: int,
        check: int,
        positions: list[int],
        items: Sequence[tuple[DeviceKey, Reading]],
        flips: dict[int, list[tuple[int, float]]],
    ) -> None:
        threshold = self.checks[check]
        sign = float(self._sign[check])
        open_at, clear_at = float(self._open_at[check]), float(self._clear_at[check])
        hold_ms, clear_ms = int(self._hold_ms[check]), int(self._clear_ms[check])
        active = bool(self.active[row, check])
        held_since = self.since.get((row, check))
        pending = held_since is not None
        since = 0 if held_since is None else held_since
        value = float(self._latest(np.array([row]))[0, self._signal_of[check]])
        for position in positions:
            reading = items[position][1]
            if threshold.signal in reading.values:
                # Rounded to float32 as stored, so it compares as the batch test did.
                value = float(np.float32(as_number(reading.values[threshold.signal])))
            signed = sign * value
            if not (signed <= clear_at if active else signed > open_at):
                pending = False
                continue
            now = reading.ts & (_WRAP - 1)
            if not pending:
                since, pending = now, True
            held = (now - since) & (_WRAP - 1)
            if held >= _HALF:  # an older reading: no time has passed
                held = 0
            if held >= (clear_ms if active else hold_ms):
                active, pending = not active, False
                flips.setdefault(position, []).append((check, value))
        self.active[row, check] = active
        if pending:
            self.since[row, check] = since
        else:
            self.since.pop((row, check), None)

    def _changes(
        self,
        row: int,
        positions: list[int],
        items: Sequence[tuple[DeviceKey, Reading]],
        flips: dict[int, list[tuple[int, float]]],
        out: list[list[AnomalyChange]],
    ) -> None:
        """A device's check flips, reading by reading, as anomaly changes: a code opens
        with its first check to open and closes with its last."""
        active = self.active[row].copy()
        for flipped in flips.values():  # undo them all: the state before the batch
            for check, _ in flipped:
                active[check] = ~active[check]
        for position in positions:
            flipped = sorted(flips.get(position, ()))
            if not flipped:
                continue
            before = np.logical_or.reduceat(active, self._segments)
            for check, _ in flipped:
                active[check] = ~active[check]
            after = np.logical_or.reduceat(active, self._segments)
            for segment in np.flatnonzero(before != after).tolist():
                start = int(self._segments[segment])
                # The first check of the code to flip here.
                check, value = next((c, v) for c, v in flipped if c >= start)
                threshold = self.checks[check]
                reading = items[position][1]
                out[position].append(
                    AnomalyChange(
                        threshold.code,
                        bool(after[segment]),
                        reading.ts,
                        float(str(np.float32(value))),  # the float32's shortest decimal
                        threshold.limit,
                        threshold.detail,
                    )
                )


def _scan(
    table: ThresholdTable, items: Sequence[tuple[DeviceKey, Reading]]
) -> tuple[list[int], list[int], list[int], int]:
    """Each item's row, the (row, check) pairs that can change in this batch as two lists
    (in no particular order), and how many values of the signals kept here it left in
    the table's pending arrays (``_store_pending``).

    A value a reading leaves out keeps the device's previous one, so a check that is
    neither open nor holding, and whose opening condition holds on none of the device's
    values (its state's and those reported in the batch), cannot change.  A function, not
    a method, so that the compiled build can type its locals (thresholds.pxd): its loops
    run for every value of every reading, on C numbers.  Compared in float32 as the
    stepping does (interpreted, a value compares unrounded with the float32 limit: never
    false where the float32 comparison is true, so no check is missed)."""
    signals, known = table.signals, table._rows
    rows: list[int] = []
    entries = 0
    for key, reading in items:
        row = known.get(key)
        if row is None or row >= len(table.last):  # new, or a row shared but new here
            row = table._row(key)
        rows.append(row)
        entries += len(reading.values)
    if len(table._seen) < len(table.last):
        table._seen = grown(table._seen, len(table.last), 0)
    if len(table._pending_values) < entries:
        size = max(entries, 2 * len(table._pending_values))
        table._pending_rows = np.zeros(size, dtype=np.intp)
        table._pending_columns = np.zeros(size, dtype=np.intp)
        table._pending_values = np.zeros(size, dtype=np.float32)
    pending_rows, pending_columns = table._pending_rows, table._pending_columns
    pending_values = table._pending_values
    last, active, seen = table.last, table.active.view(np.uint8), table._seen
    kept = table._kept() if table._kept is not None else np.zeros((1, 1))
    own_of, kept_of, checks_of = table._own_of, table._kept_of, table._checks_of
    signal_of, sign, open_at = table._signal_of, table._sign, table._open_at
    checks, width = len(table.checks), table._checks_of.shape[1]
    busy: set[int] = set()  # row * checks + check
    pending = 0
    for index in range(len(rows)):
        row = rows[index]
        if not seen[row]:  # its first reading in the batch: the state before the batch
            seen[row] = 1
            for check in range(checks):
                signal = signal_of[check]
                column = own_of[signal]
                value = last[row, column] if column >= 0 else kept[row, kept_of[signal]]
                if active[row, check] or value * sign[check] > open_at[check]:
                    busy.add(row * checks + check)
        for name, reported in items[index][1].values.items():
            found = signals.get(name)
            if found is None:
                continue
            signal = found
            # As ``number``: anything but a real number reads as "not reported" (NaN).
            value = reported if type(reported) is float else as_number(reported)
            for slot in range(width):
                check = checks_of[signal, slot]
                if check < 0:
                    break
                if value * sign[check] > open_at[check]:
                    busy.add(row * checks + check)
            column = own_of[signal]
            if column >= 0:
                pending_rows[pending] = row
                pending_columns[pending] = column
                pending_values[pending] = value
                pending += 1
    for held_row, held_check in table.since:  # checks holding their condition
        if held_row < len(seen) and seen[held_row]:
            busy.add(held_row * checks + held_check)
    for row in rows:
        seen[row] = 0
    busy_rows: list[int] = []
    busy_checks: list[int] = []
    for pair in busy:
        busy_rows.append(pair // checks)
        busy_checks.append(pair % checks)
    return rows, busy_rows, busy_checks, pending


def _store_pending(table: ThresholdTable, pending: int) -> None:
    """Store the values ``_scan`` left pending, in batch order (the latest one stays)."""
    last = table.last
    rows, columns = table._pending_rows, table._pending_columns
    values = table._pending_values
    for index in range(pending):
        last[rows[index], columns[index]] = values[index]
