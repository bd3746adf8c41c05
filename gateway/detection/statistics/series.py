"""The statistical detectors in the gateway: readings in, anomaly changes out.

Each (device, float signal of the catalogue) gets a slot in a ``StatCore``; integer and
enumerated signals, and the signals in ``StatParams.untracked``, are never judged.  Series
with the same detectors share one core holding only the arrays those detectors need, in
float32.  Finding a slot is one dictionary look-up per device (its row in its kind's
table) and one per field name per kind (its column), so the index grows by one small
int32 row per device, not by a Python object per series.  A batch's judged values are
gathered as C numbers into arrays (``_gather``), each core judges its share in one call,
and only the values whose detector bits changed become anomaly changes.

An anomaly is one per device and detector code, so several signals of a device share it:
it opens with the first signal flagged (its detail names that signal, its explanation says
the value and what is usual) and closes when the last one clears.

**Seasonal signals** (``StatParams.seasonal``) also hold a gate in a ``SeasonalBank``
(``seasonal.py``; a further int32 cell of the device's row), and a profile once the gate
sees a daily cycle.  While the profile is in use, level shift, rate of change and drift
judge the deviation from what is usual at that hour, in a core of their own keyed
``SEASONAL_CORE | bits`` (one slot a profile, taken when it first comes into use, started
afresh each time), and the series' own slot keeps only its stuck detector; anomalies the
detectors that stop judging held open are closed at the switch (either way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.detection.rules.base import AnomalyChange, grown_rows
from gateway.detection.state import Stateful
from gateway.detection.statistics.detectors import StatCore
from gateway.detection.statistics.explain import explain, explain_repeat, signal_label
from gateway.detection.statistics.parameters import (
    BIT,
    DETECTORS,
    DRIFT,
    GATEWAY_MIN_PERIOD_S,
    LEVEL_SHIFT,
    RATE_OF_CHANGE,
    STUCK,
    StatParams,
)
from gateway.detection.statistics.seasonal import IN_USE, WAS_IN_USE, SeasonalBank, describe_slot
from jiayuan.catalogue import Kind, ValueType, family, statistical_code
from jiayuan.contract import Reading
from jiayuan.places import Place

DeviceKey = tuple[str, str, str, str, str]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
STATE_DTYPE = np.float32
_NONE = -1
_UNSEEN: Any = object()  # a field name not looked up yet (None: looked up, not judged)
# Key bit of the cores that judge seasonal series' deviations from their usual values.
SEASONAL_CORE = 1 << 8
# An entry's seasonal context for its explanation: usual value, spread, slot of the day,
# and the profile's level (for a slot not seen yet).
_Context = tuple[float, float, int, float]


@dataclass(frozen=True)
class _Column:
    """One field name of a kind: which core judges it, with what floor and minimum."""

    index: int
    core: int  # detector bits of the core (its key in ``StatisticalDetectors.cores``)
    floor: float
    minimum: float
    gate: int = _NONE  # a seasonal signal: the table column of its seasonal gate
    seasonal_bits: int = 0  # ... and the detectors that judge its profile's deviations


@dataclass
class _KindTable:
    """Per kind: field name → column, and per device a row of slots (−1: none yet).

    The rows may be shared with the kind's rules (``share_rows``), which number a device
    first: one dictionary entry a device for both, not one each."""

    columns: dict[str, _Column | None] = field(default_factory=dict)
    rows: dict[DeviceKey, int] = field(default_factory=dict)
    slots: npt.NDArray[np.int32] = field(
        default_factory=lambda: np.full((16, 4), _NONE, dtype=np.int32)
    )

    def row(self, device: DeviceKey) -> int:
        row = self.rows.get(device)
        if row is None:
            row = self.rows[device] = len(self.rows)
        if row >= self.slots.shape[0]:
            self._resize(grown_rows(self.slots.shape[0], row), self.slots.shape[1])
        return row

    def ensure_width(self, width: int) -> None:
        if width > self.slots.shape[1]:  # columns appear with a kind's first devices
            self._resize(self.slots.shape[0], width)

    def _resize(self, rows: int, width: int) -> None:
        grown = np.full((rows, width), _NONE, dtype=np.int32)
        grown[: self.slots.shape[0], : self.slots.shape[1]] = self.slots
        self.slots = grown


class StatisticalDetectors(Stateful):
    STATE = ("cores", "_tables", "_open", "seasonal", "_seasonal_slots", "_own_specs")

    def __init__(self, params: StatParams | None = None) -> None:
        self.params = (
            params if params is not None else StatParams(min_period_s=GATEWAY_MIN_PERIOD_S)
        )
        self.cores: dict[int, StatCore] = {}
        self._tables: dict[str, _KindTable] = {}
        # Open anomalies: (device, detector) → the signals flagging it, in flag order.
        self._open: dict[tuple[DeviceKey, str], list[str]] = {}
        self.seasonal = SeasonalBank(self.params.seasonal_params)
        # Per profile: its slot in its seasonal core (−1: never in use yet).
        self._seasonal_slots = np.zeros(0, dtype=np.int32)
        # (core, slot) of a series whose profile is in use → its own spec, to restore.
        self._own_specs: dict[tuple[int, int], int] = {}
        # Per kind, its field names' column codes (``_KindCodes``): made from the tables'
        # columns as names come, so not state.
        self._codes: dict[str, _KindCodes] = {}

    def import_state(self, state: Mapping[str, Any]) -> None:
        super().import_state(state)
        self._codes = {}  # made from the tables just replaced

    def share_rows(self, kind: str, rows: dict[DeviceKey, int]) -> None:
        """Number the kind's devices in ``rows`` (its rules' numbering), before any of
        them is judged."""
        table = self._tables.setdefault(kind, _KindTable())
        if table.rows:
            raise ValueError(f"the {kind} table numbers {len(table.rows)} devices already")
        table.rows = rows

    def _column(self, table: _KindTable, kind: str, name: str) -> _Column | None:
        if name in table.columns:
            return table.columns[name]
        signal = family(kind).signal(name)
        column: _Column | None = None
        signal_key = f"{kind}.{signal.name}" if signal is not None else ""
        if (
            signal is not None
            and signal.type is ValueType.FLOAT
            and signal_key not in self.params.untracked
        ):
            low = signal.minimum if signal.minimum is not None else -math.inf
            span = (signal.maximum or 0.0) - (signal.minimum or 0.0)
            floor = self.params.floors.get(signal_key, self.params.floor_share * span)
            bits = self.params.enabled_bits(signal_key)
            if bits:
                index = sum(1 + (c.gate >= 0) for c in table.columns.values() if c is not None)
                if signal_key in self.params.seasonal:
                    # A signal that follows the clock leaves any frozen reference daily:
                    # it drifts only from what is usual at the hour (its profile in use).
                    judged = BIT[LEVEL_SHIFT] | BIT[RATE_OF_CHANGE] | bits & BIT[DRIFT]
                    bits &= ~BIT[DRIFT]
                    column = _Column(index, bits, floor, low, index + 1, judged)
                else:
                    column = _Column(index, bits, floor, low)
                table.ensure_width(index + 1 + (column.gate >= 0))
        table.columns[name] = column
        return column

    def _slot(self, table: _KindTable, row: int, column: _Column) -> tuple[int, int]:
        slot = int(table.slots[row, column.index])
        if slot == _NONE:
            core = self.cores.get(column.core)
            if core is None:
                core = self.cores[column.core] = StatCore(
                    self.params, detectors=column.core, dtype=STATE_DTYPE
                )
            slot = core.add_series(column.floor, column.minimum, column.core)
            table.slots[row, column.index] = slot
        return column.core, slot

    def _gate(self, table: _KindTable, row: int, column: _Column) -> int:
        gate = self.seasonal.add_gate()
        table.slots[row, column.gate] = gate
        return gate

    def state_bytes(self) -> dict[str, tuple[int, int]]:
        """Per kind: (devices, bytes of array state), counting each series' bytes in its
        core, each device's row of the slot table (its used columns, int32), and seasonal
        series' gates, profiles and slots in the seasonal cores."""
        out: dict[str, tuple[int, int]] = {}
        bank = self.seasonal
        for kind, table in self._tables.items():
            devices = len(table.rows)
            used = table.slots[:devices]
            total = 0
            for column in table.columns.values():
                if column is not None:
                    series = int(np.count_nonzero(used[:, column.index] != _NONE))
                    per = self.cores[column.core].bytes_per_series if series else 0
                    total += series * per + devices * used.itemsize
                    if column.gate >= 0:
                        gates = used[:, column.gate]
                        gates = gates[gates != _NONE]
                        profiles = bank.gate_profile[gates]
                        profiles = profiles[profiles >= 0]
                        judged = int(np.count_nonzero(self._seasonal_slots[profiles] >= 0))
                        core = self.cores.get(SEASONAL_CORE | column.seasonal_bits)
                        total += devices * used.itemsize + len(gates) * bank.gate_bytes
                        total += len(profiles) * bank.profile_bytes
                        total += judged * (core.bytes_per_series if core is not None else 0)
            out[kind] = (devices, total)
        return out

    def layout(self) -> object:
        # The cores carry their parameters: a snapshot learned under others is refused.
        return (super().layout(), self.params, STATE_DTYPE.__name__)

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        return [change for _, change in self.evaluate_many([(place, reading)])]

    def evaluate_many(
        self, items: Sequence[tuple[Place, Reading]]
    ) -> list[tuple[Place, AnomalyChange]]:
        """Judge many readings with one call per core (the per-call numpy overhead is what
        costs, not the arithmetic); changes come out in reading order."""
        gathered = _gather(self, items)
        entries = gathered.entries
        if not entries:
            return []
        owners, names = gathered.owners[:entries], gathered.names
        cores, slots = gathered.cores[:entries], gathered.slots[:entries]
        stamps, values = gathered.stamps[:entries], gathered.values[:entries]
        keys = [bits for bits in range(_PLAIN_CORES) if gathered.core_mask >> bits & 1]
        judged = values  # what the cores judge: a seasonal core's entries, the deviation
        switched: list[tuple[int, AnomalyChange]] = []
        contexts: dict[int, _Context] = {}
        if gathered.seasonal_at:
            added = self._seasonal(
                items, owners, names, cores, slots, stamps, values, gathered.seasonal_at,
                gathered.gates, switched, contexts,
            )  # fmt: skip
            if added.residuals:
                owners = np.concatenate((owners, added.owners))
                names = names + added.names
                cores = np.concatenate((cores, added.cores))
                slots = np.concatenate((slots, added.slots))
                stamps = np.concatenate((stamps, added.stamps))
                judged = np.concatenate((values, added.residuals))
                values = np.concatenate((values, added.values))
                keys += sorted(set(added.cores))
        if len(keys) == 1:
            before, after = self.cores[keys[0]].judge(slots, stamps, judged)
        else:
            before = np.empty(len(slots), dtype=np.uint8)
            after = np.empty(len(slots), dtype=np.uint8)
            for bits in keys:
                mine = np.flatnonzero(cores == bits)
                before[mine], after[mine] = self.cores[bits].judge(
                    slots[mine], stamps[mine], judged[mine]
                )
        changes: list[tuple[int, AnomalyChange]] = list(switched)
        for entry in np.flatnonzero(before != after).tolist():
            owner = int(owners[entry])
            place, reading = items[owner]
            for detector in DETECTORS:
                bit = BIT[detector]
                if (before[entry] ^ after[entry]) & bit:
                    change = self._flip(
                        place, reading, detector, names[entry], int(cores[entry]),
                        int(slots[entry]), float(values[entry]), bool(after[entry] & bit),
                        contexts.get(entry),
                    )  # fmt: skip
                    if change is not None:
                        changes.append((owner, change))
        if gathered.seasonal_at:
            changes.sort(key=lambda owned: owned[0])  # stable: each reading's in order
        return [(items[owner][0], change) for owner, change in changes]

    def _seasonal(
        self,
        items: Sequence[tuple[Place, Reading]],
        owners: I64,
        names: list[str],
        cores: I64,
        slots: I64,
        stamps: I64,
        values: F64,
        seasonal_at: list[int],
        gates: list[int],
        switched: list[tuple[int, AnomalyChange]],
        contexts: dict[int, _Context],
    ) -> _Added:
        """Step the seasonal series' gates and profiles.  Each reading whose profile is in
        use gets an entry added for its seasonal core (returned, its residual what the core
        judges; ``contexts`` keyed by the entry's position after the given ones); a profile
        coming into or out of use switches which detectors judge the series, closing the
        anomalies the others held (into ``switched``)."""
        bank = self.seasonal
        at_entries = np.array(seasonal_at, dtype=np.int64)
        stepped = bank.step(np.array(gates, dtype=np.int64), stamps[at_entries], values[at_entries])
        added = _Added()
        if len(self._seasonal_slots) < bank.profiles:
            grown = np.full(len(bank.state), _NONE, dtype=np.int32)
            grown[: len(self._seasonal_slots)] = self._seasonal_slots
            self._seasonal_slots = grown
        busy = np.flatnonzero(stepped.flags).tolist()  # a profile in use before or after
        if not busy:
            return added
        for at in busy:
            entry = seasonal_at[at]
            owner = int(owners[entry])
            flags = int(stepped.flags[at])
            profile = int(stepped.profiles[at])
            column = self._column_of(items[owner][1].kind, names[entry])
            key = SEASONAL_CORE | column.seasonal_bits
            core = self.cores.get(key)
            if core is None:
                core = self.cores[key] = StatCore(
                    self.params, detectors=column.seasonal_bits, dtype=STATE_DTYPE
                )
            own = (int(cores[entry]), int(slots[entry]))
            place, reading = items[owner]
            if flags == IN_USE:  # into use: the seasonal core takes over, started afresh
                slot = int(self._seasonal_slots[profile])
                if slot == _NONE:
                    slot = core.add_series(column.floor, column.minimum, column.seasonal_bits)
                    self._seasonal_slots[profile] = slot
                else:
                    core.reset(slot)
                switched += self._close(
                    owner, place, reading, names[entry], *own, ~BIT[STUCK] & 0xFF
                )
                self._set_spec(own, BIT[STUCK])
            elif flags == WAS_IN_USE:  # out of use: the series' own detectors again
                slot = int(self._seasonal_slots[profile])
                switched += self._close(owner, place, reading, names[entry], key, slot, 0xFF)
                core.active[slot] = 0
                self._set_spec(own, None)
                continue
            slot = int(self._seasonal_slots[profile])
            contexts[len(slots) + len(added.residuals)] = (
                float(stepped.usual[at]),
                float(stepped.spread[at]),
                int(stepped.slots[at]),
                float(stepped.level[at]),
            )
            added.owners.append(owner)
            added.names.append(names[entry])
            added.cores.append(key)
            added.slots.append(slot)
            added.stamps.append(int(stamps[entry]))
            added.values.append(float(values[entry]))
            added.residuals.append(float(stepped.residual[at]))
        return added

    def _column_of(self, kind: str, name: str) -> _Column:
        column = self._tables[kind].columns[name]
        assert column is not None  # a seasonal entry's column judges
        return column

    def _set_spec(self, own: tuple[int, int], enabled: int | None) -> None:
        """Keep only ``enabled`` of a series' own detectors (saving its spec), or restore
        its spec (``None``)."""
        core, slot = self.cores[own[0]], own[1]
        if enabled is None:
            saved = self._own_specs.pop(own, None)
            if saved is not None:
                core.spec[slot] = saved
            return
        spec = int(core.spec[slot])
        self._own_specs.setdefault(own, spec)
        bits = int(core.enabled_specs[spec]) & enabled
        core.spec[slot] = core._spec(float(core.floors[spec]), float(core.minimums[spec]), bits)

    def _close(
        self,
        owner: int,
        place: Place,
        reading: Reading,
        name: str,
        core: int,
        slot: int,
        mask: int,
    ) -> list[tuple[int, AnomalyChange]]:
        """Close what the series holds open in ``core``'s detectors of ``mask``."""
        stat = self.cores[core]
        open_bits = int(stat.active[slot]) & mask
        stat.active[slot] &= ~open_bits & 0xFF
        closed: list[tuple[int, AnomalyChange]] = []
        for detector in DETECTORS:
            if open_bits & BIT[detector]:
                change = self._flip(
                    place, reading, detector, name, core, slot, math.nan, False, None
                )
                if change is not None:
                    closed.append((owner, change))
        return closed

    def _flip(
        self,
        place: Place,
        reading: Reading,
        detector: str,
        name: str,
        core: int,
        slot: int,
        value: float,
        now_on: bool,
        context: _Context | None,
    ) -> AnomalyChange | None:
        key = (place.key, detector)
        flagged = self._open.get(key, [])
        if now_on:
            self._open[key] = [*flagged, name]
            if flagged:
                return None
        else:
            if name not in flagged:
                return None
            flagged = [n for n in flagged if n != name]
            if flagged:
                self._open[key] = flagged
                return None
            del self._open[key]
        code = statistical_code(Kind(reading.kind), detector)
        stat = self.cores[core]
        baseline = stat.baseline(slot, detector)
        text = ""
        if now_on:
            name_zh, name_en, unit = signal_label(reading.kind, name)
            label = (name_zh, name_en)
            if context is not None:
                baseline, text = _seasonal_text(
                    self.seasonal.params.slot_minutes, label, unit, value, context
                )
            elif detector == STUCK and hasattr(stat, "run"):
                text = explain_repeat(label, value, int(stat.run[slot]) + 1, unit)
            else:
                spread = float(stat.scale[slot])
                if detector == DRIFT and math.isfinite(float(stat.ref_scale[slot])):
                    spread = float(stat.ref_scale[slot])
                text = explain(label, value, baseline, spread, unit)
        # The detail is the field name as sent (p03_temp names its port as well).
        return AnomalyChange(code, now_on, reading.ts, value, baseline, name, text)


def _seasonal_text(
    slot_minutes: int, label: tuple[str, str], unit: str, value: float, context: _Context
) -> tuple[float, str]:
    """(usual value, explanation) of a reading judged against its seasonal profile."""
    usual, spread, slot, level = context
    if not math.isfinite(usual):  # its slot not seen yet: the series' level
        return level, explain(label, value, level, spread, unit)
    when = describe_slot(slot, slot_minutes)
    return usual, explain(label, value, usual, spread, unit, when=when)


# Cores of the series' own detectors are keyed by their detector bits, below this.
_PLAIN_CORES = 1 << len(DETECTORS)


@dataclass
class _Gathered:
    """The judged values of a batch of readings, in order: the first ``entries`` of each
    array; ``names`` each one's field name; and those of seasonal signals, their positions
    and their gates."""

    entries: int
    owners: I64  # the reading's index in the batch
    cores: I64
    slots: I64
    stamps: I64
    values: F64
    names: list[str]
    core_mask: int  # bit b: an entry of core b
    seasonal_at: list[int]
    gates: list[int]


@dataclass
class _Added:
    """Entries ``StatisticalDetectors._seasonal`` adds for the seasonal cores."""

    owners: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    cores: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)


def _gather(detectors: StatisticalDetectors, items: Sequence[tuple[Place, Reading]]) -> _Gathered:
    """Each judged value of the readings, in order (``_Gathered``).  A function, not a
    method, so that the compiled build can type its locals (series.pxd): it runs once for
    every value of every reading, and writes C numbers into arrays, not Python objects into
    lists."""
    capacity = 4 * len(items) + 16
    owners_of = np.empty(capacity, dtype=np.int64)
    cores_of = np.empty(capacity, dtype=np.int64)
    slots_of = np.empty(capacity, dtype=np.int64)
    stamps_of = np.empty(capacity, dtype=np.int64)
    values_of = np.empty(capacity, dtype=np.float64)
    # Typed views of the same arrays (the compiled build writes through them).
    owner_at, core_at, slot_at, stamp_at, value_at = (
        owners_of, cores_of, slots_of, stamps_of, values_of
    )  # fmt: skip
    names: list[str] = []
    seasonal_at: list[int] = []
    gates: list[int] = []
    entries = 0
    core_mask = 0
    tables = detectors._tables
    codes_of = detectors._codes
    # Per kind, for this batch: its table, its column codes by name, its device rows, a view
    # of its slot table, and the names of its last reading with their codes (``_KindCodes``).
    batch_kinds: dict[
        str,
        tuple[_KindTable, dict[str, Any], dict[DeviceKey, int], _SlotView, list[str], list[Any]],
    ] = {}
    for index, (place, reading) in enumerate(items):
        kind = reading.kind
        known = batch_kinds.get(kind)
        if known is None:
            table = tables.get(kind)
            if table is None:
                table = tables[kind] = _KindTable()
            kind_codes = codes_of.get(kind)
            if kind_codes is None:
                kind_codes = codes_of[kind] = _KindCodes()
            known = batch_kinds[kind] = (
                table, kind_codes.by_name, table.rows, _SlotView(table), kind_codes.shape,
                kind_codes.shape_codes,
            )  # fmt: skip
        table, codes, rows, view, shape, shape_codes = known
        row = -1
        ts = reading.ts
        values = reading.values
        position = 0
        shape_length = len(shape)
        for name, value in values.items():
            # The column first: most of a reading's values are never judged (a lift
            # sends 13, one of them judged).  A kind's readings mostly name their values
            # alike, and the decoder mostly hands out the same string for the same name:
            # the code of the name at this position in the kind's last reading is the one.
            if position < shape_length and shape[position] is name:
                code = shape_codes[position]
            else:
                code = codes.get(name, _UNSEEN)
                if position < shape_length:
                    shape[position] = name
                    shape_codes[position] = code
                else:
                    shape.append(name)
                    shape_codes.append(code)
                    shape_length += 1
            position += 1
            if code is None:
                continue
            # type() is, not isinstance: a bool is not a measurement; x - x is 0.0
            # only for a finite number.
            kind_of_value = type(value)
            if kind_of_value is not float and kind_of_value is not int:
                continue
            number = float(value)
            if number - number != 0.0:
                continue
            if code is _UNSEEN:
                column = detectors._column(table, kind, name)
                code = codes[name] = (
                    None if column is None else (column.index, column.core, column.gate)
                )
                shape_codes[position - 1] = code
                view.taken(table)  # a new column may have widened the table
                if code is None:
                    continue
            at, core, gate_at = code
            if row < 0:
                # The rules numbered the device already (shared rows): one look-up, and
                # the table's method only when its slots must grow first.
                row = rows.get(place.key, -1)
                if row < 0 or row >= view.slots.shape[0]:
                    row = table.row(place.key)
                    view.taken(table)
            slot = view.slots[row, at]
            if slot == _NONE:
                column = table.columns[name]
                assert column is not None  # its code is not None
                slot = detectors._slot(table, row, column)[1]
            if gate_at >= 0:
                gate = view.slots[row, gate_at]
                if gate == _NONE:
                    column = table.columns[name]
                    assert column is not None
                    gate = detectors._gate(table, row, column)
                seasonal_at.append(entries)
                gates.append(gate)
            if entries == capacity:
                capacity *= 2
                owners_of = _longer(owners_of, capacity)
                cores_of = _longer(cores_of, capacity)
                slots_of = _longer(slots_of, capacity)
                stamps_of = _longer(stamps_of, capacity)
                values_of = _longer(values_of, capacity)
                owner_at, core_at, slot_at, stamp_at, value_at = (
                    owners_of, cores_of, slots_of, stamps_of, values_of
                )  # fmt: skip
            owner_at[entries] = index
            core_at[entries] = core
            slot_at[entries] = slot
            stamp_at[entries] = ts
            value_at[entries] = number
            names.append(name)
            core_mask |= 1 << core
            entries += 1
    return _Gathered(
        entries, owners_of, cores_of, slots_of, stamps_of, values_of, names, core_mask,
        seasonal_at, gates,
    )  # fmt: skip


class _KindCodes:
    """A kind's field names' codes for ``_gather``: per name its column's (index, core,
    gate), None when not judged (plain tuples, not a dataclass's attributes); and the names
    of the kind's last reading in order with their codes (``_UNSEEN``: not looked up)."""

    def __init__(self) -> None:
        self.by_name: dict[str, tuple[int, int, int] | None] = {}
        self.shape: list[str] = []
        self.shape_codes: list[Any] = []


class _SlotView:
    """A kind's slot table as ``_gather`` reads it: typed in the compiled build (series.pxd),
    taken again whenever the table may have been replaced by a larger one."""

    def __init__(self, table: _KindTable) -> None:
        self.slots = table.slots

    def taken(self, table: _KindTable) -> None:
        self.slots = table.slots


def _longer(array: npt.NDArray[Any], length: int) -> npt.NDArray[Any]:
    longer = np.empty(length, dtype=array.dtype)
    longer[: len(array)] = array
    return longer
