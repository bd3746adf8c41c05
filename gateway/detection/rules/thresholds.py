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
from gateway.detection.state import Stateful
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
            row = self._rows[key] = len(self._rows)
        if row >= self.last.shape[0]:  # a shared row may be new to this table
            self._grow(grown_rows(self.last.shape[0], row))
        return row

    def _grow(self, rows: int) -> None:
        self.last = grown(self.last, rows, np.nan)
        self.active = grown(self.active, rows, False)

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
        row_list, owners, columns, values = _entries(self, items)
        rows = np.array(row_list, dtype=np.int64)
        signals = self.signals
        owner_array = np.array(owners, dtype=np.int64)
        column_array = np.array(columns, dtype=np.int64)
        value_array = np.array(values, dtype=np.float32)
        entry_rows = rows[owner_array]

        devices = np.unique(rows)
        state = self._latest(devices)[:, self._signal_of] * self._sign
        busy = self.active[devices] | (state > self._open_at)
        if self.since:  # checks holding their condition
            held_rows = np.array([row for row, _ in self.since], dtype=np.int64)
            held_checks = np.array([check for _, check in self.since], dtype=np.int64)
            mine = np.isin(held_rows, devices)
            busy[np.searchsorted(devices, held_rows[mine]), held_checks[mine]] = True
        hits = np.zeros(busy.shape, dtype=bool)
        # Each reported value against every check on its signal.
        expand = self._checks_of[column_array]  # (entries, checks on one signal at most)
        valid = expand >= 0
        check_of = np.where(valid, expand, 0)
        opening = (value_array[:, None] * self._sign[check_of] > self._open_at[check_of]) & valid
        entry, slot = np.nonzero(opening)
        hits[np.searchsorted(devices, entry_rows[entry]), check_of[entry, slot]] = True
        busy |= hits
        blocks, checks = np.nonzero(busy)
        if len(blocks):
            self._step_busy(devices[blocks], checks, rows, items, out)
        # The latest reported value of each (device, signal), in batch order.
        # (The owner stores those of the signals it keeps.)
        own = self._own_of[column_array] >= 0
        if own.any():
            cell = (entry_rows * len(signals) + column_array)[own]
            _, last_seen = np.unique(cell[::-1], return_index=True)
            chosen = np.flatnonzero(own)[len(cell) - 1 - last_seen]
            own_column = self._own_of[column_array[chosen]]
            self.last[entry_rows[chosen], own_column] = value_array[chosen]
        return out

    def _step_busy(
        self,
        busy_rows: npt.NDArray[np.int64],
        busy_checks: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        items: Sequence[tuple[DeviceKey, Reading]],
        out: list[list[AnomalyChange]],
    ) -> None:
        """Step each busy check of each device through its readings in order (the
        per-reading semantics of ``gateway.detection.rules.base.step``), then turn the flips into
        anomaly changes."""
        by_row: dict[int, list[int]] = {}
        for row, check in zip(busy_rows.tolist(), busy_checks.tolist(), strict=True):
            by_row.setdefault(row, []).append(check)
        for row, checks in by_row.items():
            positions = np.flatnonzero(rows == row).tolist()
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


def _entries(
    table: ThresholdTable, items: Sequence[tuple[DeviceKey, Reading]]
) -> tuple[list[int], list[int], list[int], list[float]]:
    """Each item's row, and every value that belongs to a signal of the table: its item,
    its column and the value.  A function, not a method, so that the compiled build can
    type its locals (thresholds.pxd): it runs once for every value of every reading."""
    rows: list[int] = []
    owners: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    signals, known, held = table.signals, table._rows, len(table.last)
    for index, (key, reading) in enumerate(items):
        row = known.get(key)
        if row is None or row >= held:  # a new device, or a row shared but new here
            row = table._row(key)
            held = len(table.last)
        rows.append(row)
        for name, value in reading.values.items():
            column = signals.get(name)
            if column is None:
                continue
            owners.append(index)
            columns.append(column)
            # As ``number``: anything but a real number reads as "not reported".
            values.append(value if type(value) is float else as_number(value))
    return rows, owners, columns, values
