"""Site models in the gateway: the signals of several devices of one site judged together.

Which devices form a site comes from the registry (``Device.site``: a pump room, a
fire-pump room).  A site's signals are the numeric (float, not per-port) signals of its
devices' kinds.  Their readings arrive at different times, so they are aligned on a grid
of slots as long as the slowest member's heartbeat, ``MIN_SLOT_S`` at least: a slot's row
holds each signal's latest value in it, and a slot in which some signal did not report is
skipped (neither learnt nor judged: a missing reading is not an anomaly).  A row is
complete when the first reading of a later slot arrives.

Each site learns from its first ``learn_rows`` complete rows, taken as healthy operation,
the ``SiteModel`` of ``jiayuan detect`` without ``--train`` (dynamic PCA, out-of-fold
limits) with the gateway's settings (``GATEWAY_SITE_PARAMS``); the rows are then freed and
the model kept in float32.  Every later row is judged as ``SiteModel.score`` judges it,
watched raw and as an EWMA.  Rows over either limit for ``hold_rows`` rows in a row open
one anomaly for the site (``<kind>.relation_broken``) on the site's first device in
registry order, naming the signals that contributed most with their values and what the
healthy relations with the others predict; as many rows under both close it.

Devices outside every site cost one dictionary miss a reading.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from gateway.detection.rules.base import AnomalyChange
from gateway.detection.state import SnapshotMismatch, Stateful
from gateway.detection.statistics.site_model import SiteModel, SiteParams
from jiayuan.catalogue import Kind, ValueType, family, signal_title, site_code
from jiayuan.contract import Reading
from jiayuan.places import Place
from jiayuan.registry.model import Registry, SiteMembers
from jiayuan.registry.sources import NotARegistry, read_site_members
from jiayuan.registry.tables import RegistryInvalid

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
# The gateway's site model: dynamic PCA with one previous row (two would make the model
# half as large again for the same signals); Q only (the gateway's own detectors judge
# each value against its baseline: the site model judges the relations between them); one
# spike adds at most 2 to the EWMA chart.  docs/detection.md says why.
GATEWAY_SITE_PARAMS = SiteParams(lags=1, t2_weight=0.0, ewma_clip=2.0)
# A row every 3 min at least: 240 rows then span 12 h of a pump room's operation (its
# tanks refilling, chlorine doses), which 240 rows at a 10 s heartbeat (40 min) or at
# 60 s (4 h) miss: on the simulators' healthy pump rooms those slots opened 260 and 54
# anomalies per 1,000 device-hours (bench/sites.py --healthy-hours).
MIN_SLOT_S = 180.0
LEARN_ROWS = 240  # healthy rows learnt before judging: 12 h at a 180 s slot
HOLD_ROWS = 20  # rows over the limits before the site's anomaly opens: 1 h at 180 s
TOP_SIGNALS = 3  # signals named in an anomaly


@dataclass(frozen=True, slots=True)
class SiteSignal:
    device: str
    field: str
    kind: Kind
    unit: str

    def title(self, estate: str) -> str:
        """ "W01 出水压力 supply_pressure": the device without its estate's prefix."""
        short = self.device.removeprefix(f"{estate}-")
        return f"{short} {signal_title(self.kind, self.field)}"


@dataclass(frozen=True, slots=True)
class SiteColumn:
    """A signal of a site's make-up: which of the site's devices (its index in
    ``SiteSpec.devices``), its field, kind and unit.  Sites of the same make-up (an
    estate's two water tanks) share one tuple of them."""

    member: int
    field: str
    kind: Kind
    unit: str


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One site: where its anomaly hangs, its devices, its signals (columns) and its slot.

    A city has thousands of sites of a few make-ups: a site holds its devices' ids and
    the make-up's shared columns, not an object per signal (``signals`` makes those)."""

    name: str
    anchor: Place  # the site's first device: its anomaly's device
    devices: tuple[str, ...]
    columns: tuple[SiteColumn, ...]
    slot_ms: int

    @classmethod
    def of(
        cls,
        name: str,
        anchor: Place,
        signals: Sequence[SiteSignal],
        slot_ms: int,
        make_ups: dict[tuple[SiteColumn, ...], tuple[SiteColumn, ...]] | None = None,
    ) -> SiteSpec:
        """The site of these signals; ``make_ups`` shares equal column tuples between
        the sites made with it."""
        devices = tuple(dict.fromkeys(s.device for s in signals))
        member = {device: k for k, device in enumerate(devices)}
        columns = tuple(SiteColumn(member[s.device], s.field, s.kind, s.unit) for s in signals)
        if make_ups is not None:
            columns = make_ups.setdefault(columns, columns)
        return cls(name, anchor, devices, columns, slot_ms)

    @property
    def signals(self) -> tuple[SiteSignal, ...]:
        return tuple(
            SiteSignal(self.devices[c.member], c.field, c.kind, c.unit) for c in self.columns
        )

    @property
    def estate(self) -> str:
        return self.anchor.estate

    @property
    def code(self) -> str:
        return site_code(Kind(self.anchor.kind))


def site_specs(registry: Registry, min_slot_s: float = MIN_SLOT_S) -> list[SiteSpec]:
    """Every site of the registry with at least two numeric signals; its slot is its
    slowest member's heartbeat, ``min_slot_s`` at least."""
    return specs_of_sites(registry.site_members(), min_slot_s)


def specs_of_sites(sites: Iterable[SiteMembers], min_slot_s: float = MIN_SLOT_S) -> list[SiteSpec]:
    """As ``site_specs``, from the registry's sites and their devices."""
    specs = []
    make_ups: dict[tuple[SiteColumn, ...], tuple[SiteColumn, ...]] = {}
    for site in sites:
        devices = site.devices
        signals = tuple(
            SiteSignal(device.id, signal.name, device.kind, signal.unit)
            for device in devices
            for signal in family(device.kind).signals
            if signal.type is ValueType.FLOAT and not signal.per_port
        )
        if len(signals) < 2:
            continue
        first = devices[0]
        anchor = Place(
            site.district, site.street, site.estate, first.building, first.kind, first.id
        )
        slot_s = max(min_slot_s, *(family(d.kind).heartbeat_s for d in devices))
        specs.append(
            SiteSpec.of(sys.intern(site.name), anchor, signals, int(slot_s * 1000), make_ups)
        )
    return specs


# A snapshot's key of the sites' learning rows: which sites hold them, and all their rows.
_ROWS = "_learning_rows"
_F16_BYTES = 2


class _RowFile:
    """The sites' learning rows in a scratch file, not in the process's memory.

    A city's sites learn at once, the first 12 h after a start: 240 rows a site, each row
    written once and all of them read once, when the site's model is fitted; held in
    memory they would be a large share of the process (docs/scaling.md, "Memory").  In an
    unlinked file (in the gateway's state directory) they are the kernel's to cache or
    write out.  The file is closed, its blocks freed, once every site holding rows in it
    has learnt (or failed to)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None
        self._end = 0
        self._holders = 0

    def take(self, nbytes: int) -> int:
        """Where ``nbytes`` of a site's rows go (reading as zeros until written)."""
        if self._file is None:
            if self.directory is not None:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
            # Kept open across calls and closed by release(): no context manager fits.
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115
        at = self._end
        self._end += nbytes
        self._holders += 1
        return at

    def write(self, at: int, data: bytes) -> None:
        assert self._file is not None, "rows written where none were taken"
        written = os.pwrite(self._file.fileno(), data, at)
        if written != len(data):
            raise OSError(f"{written} of {len(data)} bytes of learning rows written")

    def read(self, at: int, nbytes: int) -> bytes:
        assert self._file is not None, "rows read where none were taken"
        data = os.pread(self._file.fileno(), nbytes, at)
        return data + bytes(nbytes - len(data))  # rows never written: zeros, as taken

    def release(self) -> None:
        """A site's rows are no longer needed; the last one's closes the file."""
        self._holders -= 1
        if self._holders == 0 and self._file is not None:
            self._file.close()
            self._file = None
            self._end = 0

    def size(self) -> int:
        """Bytes of the file (0 once no site holds rows in it)."""
        return self._end


@dataclass(slots=True, eq=False)
class _SiteState:
    """One site's per-slot alignment, learning rows or model, and charts.

    Two arrays a site, one per type (an array costs some 110 bytes besides its values):

    - ``values`` (float32): each signal's latest value in the current slot; while learning
      then the origin the learning rows are kept against; once learnt then the ``lags``
      previous rows, newest first (so the first ``signals × (lags + 1)`` values are the
      lagged row the model judges), then the model: the lagged columns' means and spreads,
      the basis (columns × ``basis``; with ``complement`` the residual space's, else the
      loadings) and, when T² counts, the inverse eigenvalues.
    - ``numbers`` (float64, once learnt): the Q and T² limits, where the charts start, each
      chart's limit and each chart's EWMA.
    """

    values: F32
    numbers: F64 | None = None
    basis: int = 0  # basis vectors kept (columns of the basis in ``values``)
    complement: bool = False  # the basis spans the residual space, not the loadings'
    seen: int = 0  # bit per signal: reported in the current slot
    slot: int = -1
    # Where the site's learning rows are in the ``_RowFile`` (-1: none), freed once learnt:
    # each row as its difference from the first row, in float16 (a difference keeps 11
    # bits of itself: a pump room's limits learnt stay within a percent of the exact
    # rows', tests/gateway/test_sites.py).
    rows_at: int = -1
    count: int = 0
    open: bool = False
    streak: int = 0  # rows in a row on the other side of the limit than ``open`` says
    since_ms: int = 0  # the time of the streak's first row
    failed: bool = False  # the learning rows gave no model (logged once)

    @property
    def learnt(self) -> F64 | None:
        """The learnt model's limits and charts; None while the site learns."""
        return self.numbers


# ``_SiteState.numbers``: the limits, then each chart's limit, then each chart's EWMA.
_Q_LIMIT, _T2_LIMIT, _TYPICAL, _CHARTS = 0, 1, 2, 3


class SiteDetectors(Stateful):
    """The site models of one gateway; one thread changes them at a time."""

    STATE = ("_states",)

    def __init__(
        self,
        specs: Sequence[SiteSpec] = (),
        params: SiteParams = GATEWAY_SITE_PARAMS,
        learn_rows: int = LEARN_ROWS,
        hold_rows: int = HOLD_ROWS,
        rows_dir: str | None = None,
    ) -> None:
        """``rows_dir``: where the learning rows' scratch file goes (the gateway's state
        directory; None: the system's temporary directory)."""
        self.specs = tuple(specs)
        self.params = params
        self.learn_rows = learn_rows
        self.hold_rows = hold_rows
        # Device id → (site, its columns by field name); registry device ids are unique.
        self._members: dict[str, tuple[int, dict[str, int]]] = {}
        for index, spec in enumerate(self.specs):
            for column, signal in enumerate(spec.columns):
                device = spec.devices[signal.member]
                _, columns = self._members.setdefault(device, (index, {}))
                columns[signal.field] = column
        # Sites of the same make-up map their devices' fields alike: one mapping for all.
        shared: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
        for device, (index, columns) in self._members.items():
            self._members[device] = (index, shared.setdefault(tuple(columns.items()), columns))
        self._states = [
            _SiteState(np.zeros(len(spec.columns), dtype=np.float32)) for spec in self.specs
        ]
        self._told_learning = False
        self._rows = _RowFile(rows_dir)

    def __bool__(self) -> bool:
        return bool(self.specs)

    def evaluate_many(
        self, items: Sequence[tuple[Place, Reading]]
    ) -> list[tuple[Place, AnomalyChange]]:
        """The site anomalies these readings (in arrival order) opened or closed."""
        changes: list[tuple[Place, AnomalyChange]] = []
        members = self._members
        for place, reading in items:
            member = members.get(reading.device)
            if member is None:
                continue
            index, columns = member
            spec = self.specs[index]
            if place.key[2] != spec.estate:
                continue  # a device of the same id elsewhere, not in the registry
            change = self._offer(index, spec, columns, reading)
            if change is not None:
                changes.append((spec.anchor, change))
        return changes

    def _offer(
        self, index: int, spec: SiteSpec, columns: Mapping[str, int], reading: Reading
    ) -> AnomalyChange | None:
        state = self._states[index]
        slot = reading.ts // spec.slot_ms
        change = None
        if slot > state.slot:
            if state.slot >= 0 and state.seen == (1 << len(spec.columns)) - 1:
                change = self._row(spec, state, (state.slot + 1) * spec.slot_ms)
            state.slot, state.seen = slot, 0
        elif slot < state.slot:
            return None  # late for its slot: that row is judged already
        for name, value in reading.values.items():
            column = columns.get(name)
            # An int is a float signal sent without decimals (bool is not a reading value).
            if column is not None and isinstance(value, float | int) and math.isfinite(value):
                state.values[column] = value
                state.seen |= 1 << column
        return change

    def _row(self, spec: SiteSpec, state: _SiteState, ts_ms: int) -> AnomalyChange | None:
        """Learn or judge the completed row (the first values of ``state.values``, time
        ``ts_ms``)."""
        if state.failed:
            return None
        numbers = state.numbers
        if numbers is None:
            self._learn(spec, state)
            return None
        signals = len(spec.columns)
        columns = signals * (self.params.lags + 1)
        values = state.values
        lagged = values[:columns]  # the row, then the previous rows newest first
        mean = values[columns : 2 * columns]
        spread = values[2 * columns : 3 * columns]
        end = 3 * columns + columns * state.basis
        basis = values[3 * columns : end].reshape(columns, state.basis)
        standard = (lagged - mean) / spread
        scores = standard @ basis
        through = scores @ basis.T
        # The residual (Q's parts) and the projection on the healthy subspace: the basis
        # spans one of them, the other is what is left of the standardised row.
        residual = through if state.complement else standard - through
        projected = standard - residual if state.complement else through
        w = self.params.t2_weight
        parts = (1.0 - w) * residual**2 / float(numbers[_Q_LIMIT])
        if w:
            t2_parts = standard * ((scores * values[end:]) @ basis.T)
            parts = w * t2_parts / float(numbers[_T2_LIMIT]) + parts
        index = float(parts.sum())
        ratio, smoothed = 0.0, None
        charts = len(self.params.smoothing)
        for k, weight in enumerate(self.params.smoothing):
            limit = float(numbers[_CHARTS + k])
            clip = self.params.ewma_clip
            added = index if clip is None or weight >= 1.0 else min(index, clip)
            level = float(numbers[_CHARTS + charts + k])
            level += weight * (added - level)
            numbers[_CHARTS + charts + k] = level
            ratio = max(ratio, level / limit)
            if weight < 1.0:
                smoothed = max(smoothed or 0.0, level / limit)
        row = values[:signals]
        if columns > signals:  # this row becomes the newest previous row
            values[signals:columns] = values[: columns - signals].copy()
        # A healthy site has a row over the 99 % limits one time in a hundred: only a
        # relation broken for ``hold_rows`` rows in a row opens the anomaly, and only the
        # smoothed charts under their limits for as long close it (a healthy row over the
        # raw limit must not start the wait again).
        held = ratio if smoothed is None or not state.open else smoothed
        anomalous = held >= 1.0
        if anomalous == state.open:
            state.streak = 0
            return None
        if state.streak == 0:
            state.since_ms = ts_ms  # the anomaly starts (or ends) with the streak's first row
        state.streak += 1
        if state.streak < self.hold_rows:
            return None
        state.open, state.streak = anomalous, 0
        code = spec.code
        if not anomalous:
            return AnomalyChange(code, False, state.since_ms, 0.0, 0.0)
        shares = np.maximum(parts.reshape(-1, signals).sum(axis=0), 0.0)
        shares = shares / max(float(shares.sum()), 1e-30)
        expected = mean[:signals] + spread[:signals] * projected[:signals]
        order = [int(j) for j in np.argsort(shares)[::-1][:TOP_SIGNALS] if shares[j] >= 0.05]
        detail = _detail(spec, order, shares, row, expected, ratio / (1.0 + ratio))
        top = order[0] if order else 0
        value, predicted = float(row[top]), float(expected[top])
        return AnomalyChange(code, True, state.since_ms, value, predicted, detail)

    def _learn(self, spec: SiteSpec, state: _SiteState) -> None:
        signals = len(spec.columns)
        nbytes = self.learn_rows * signals * _F16_BYTES
        if state.rows_at < 0:
            try:
                state.rows_at = self._rows.take(nbytes)
            except OSError as error:
                self._not_kept(spec, state, error)
                return
            # The first row is the origin the learning rows are kept against.
            state.values = np.concatenate((state.values, state.values))
            if not self._told_learning:
                self._told_learning = True
                learning = sum(1 for st in self._states if st.numbers is None and not st.failed)
                log.warning(
                    "站点模型从数据流学习 %d 个站点的健康关系，各取前 %d 行（正常运行）"
                    " site models learn the healthy relations of %d sites from the stream, "
                    "the first %d aligned rows of each taken as healthy operation: a fault "
                    "present now is learnt as normal",
                    learning,
                    self.learn_rows,
                    learning,
                    self.learn_rows,
                )
        latest, origin = state.values[:signals], state.values[signals : 2 * signals]
        try:
            row = (latest - origin).astype(np.float16)
            self._rows.write(state.rows_at + state.count * signals * _F16_BYTES, row.tobytes())
            state.count += 1
            if state.count < self.learn_rows:
                return
            kept = self._rows.read(state.rows_at, nbytes)
        except OSError as error:
            self._not_kept(spec, state, error)
            return
        self._rows.release()
        state.rows_at = -1
        learnt = np.frombuffer(kept, dtype=np.float16).reshape(self.learn_rows, signals)
        rows = origin.astype(np.float64) + learnt.astype(np.float64)
        names = [s.title(spec.estate) for s in spec.signals]
        try:
            model = SiteModel(rows, names, self.params)
        except (ValueError, np.linalg.LinAlgError) as error:
            state.failed = True
            state.values = latest.copy()
            log.warning(
                "站点 %s/%s 模型无法学习 site model not learnt: %s", spec.estate, spec.name, error
            )
            return
        lags = self.params.lags
        history = rows[::-1][:lags].ravel()  # the previous rows, newest first
        mean, spread, loadings, eigenvalues = model.projection
        with_t2 = self.params.t2_weight > 0.0
        complement = model.complement
        # Q needs only one of the two spaces: the narrower one (T² needs the loadings).
        state.complement = not with_t2 and complement.shape[1] < loadings.shape[1]
        basis = complement if state.complement else loadings
        state.basis = basis.shape[1]
        state.values = np.concatenate(
            (latest, history, mean, spread, basis.ravel())
            + ((1.0 / eigenvalues,) if with_t2 else ())
        ).astype(np.float32)
        charts = len(self.params.smoothing)
        state.numbers = np.array(
            [model.q_limit, model.t2_limit, model.typical, *model.chart_limits]
            + [model.typical] * charts,
            dtype=np.float64,
        )

    def _not_kept(self, spec: SiteSpec, state: _SiteState, error: OSError) -> None:
        """The site's learning rows cannot be kept (its scratch file cannot be made or
        written: a full or read-only disk): the site is not learnt, said once."""
        if state.rows_at >= 0:
            self._rows.release()
            state.rows_at = -1
        state.failed = True
        state.values = state.values[: len(spec.columns)].copy()
        log.error(
            "站点 %s/%s 模型无法学习 site model not learnt: its learning rows cannot be kept "
            "in %s: %s",
            spec.estate,
            spec.name,
            self._rows.directory or tempfile.gettempdir(),
            error,
        )

    def export_state(self) -> dict[str, Any]:
        """The sites' states, their learning rows apart: all of them in one array.

        Unpickled at a restart, one array is one block (a memory map of its own, unmapped
        once its rows are written back to the scratch file), where an array a site was thousands
        of blocks of a few KB in the heap, whose space, freed between the blocks the
        restore allocated meanwhile, stayed resident (docs/scaling.md, "Memory")."""
        learning = [k for k, site in enumerate(self._states) if site.rows_at >= 0]
        states = [site if site.rows_at < 0 else replace(site, rows_at=-1) for site in self._states]
        rows = [
            np.frombuffer(
                self._rows.read(
                    self._states[k].rows_at,
                    self.learn_rows * len(self.specs[k].columns) * _F16_BYTES,
                ),
                dtype=np.float16,
            )
            for k in learning
        ]
        return {
            "_states": states,
            _ROWS: (
                np.array(learning, dtype=np.int64),
                np.concatenate(rows) if rows else np.zeros(0, dtype=np.float16),
            ),
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        if _ROWS not in state:
            raise SnapshotMismatch(f"{type(self).__name__}: the snapshot lacks {_ROWS}")
        for site in self._states:  # rows held now are replaced with the snapshot's
            if site.rows_at >= 0:
                self._rows.release()
                site.rows_at = -1
        super().import_state(state)
        learning, rows = state[_ROWS]
        start = 0
        for k in learning.tolist():  # the learning rows written back to the scratch file
            size = self.learn_rows * len(self.specs[k].columns)
            block = rows[start : start + size]
            start += size
            site = self._states[k]
            try:
                site.rows_at = self._rows.take(size * _F16_BYTES)
                self._rows.write(site.rows_at, block.astype(np.float16).tobytes())
            except OSError as error:
                self._not_kept(self.specs[k], site, error)
        if start != rows.size:
            raise SnapshotMismatch(
                f"{type(self).__name__}: {rows.size - start} learning values left over"
            )

    def layout(self) -> object:
        return (
            type(self).__qualname__,
            self.params,
            self.learn_rows,
            self.hold_rows,
            tuple(
                (
                    s.estate,
                    s.name,
                    s.anchor.key,
                    tuple((s.devices[g.member], g.field) for g in s.columns),
                    s.slot_ms,
                )
                for s in self.specs
            ),
        )

    def learnt(self) -> int:
        """How many sites judge rows (their model learnt)."""
        return sum(1 for state in self._states if state.numbers is not None)

    def learning(self) -> int:
        """How many sites hold learning rows."""
        return sum(1 for state in self._states if state.rows_at >= 0)

    def learning_file_bytes(self) -> int:
        """Bytes of the learning rows' scratch file (0 once every site learnt)."""
        return self._rows.size()


def _detail(
    spec: SiteSpec,
    order: Sequence[int],
    shares: npt.NDArray[np.floating[Any]],
    row: F32,
    expected: npt.NDArray[np.floating[Any]],
    score: float,
) -> str:
    """Chinese first: the site and, per signal, its value and what the healthy relations
    with the others predict."""
    parts = []
    signals = spec.signals
    for j in order:
        signal = signals[j]
        unit = f" {signal.unit}" if signal.unit else ""
        parts.append(
            f"{signal.title(spec.estate)} {row[j]:.4g}{unit}，健康关系推算 {expected[j]:.4g}{unit}"
            f" / healthy relations predict {expected[j]:.4g}{unit} ({shares[j]:.0%})"
        )
    return f"站点 site {spec.name} (score {score:.2f}): " + "；".join(parts)


def load_sites(
    path: Path, streets: Sequence[str] = ("+",), rows_dir: str | None = None
) -> SiteDetectors:
    """The site models of the registry at ``path`` (any of its forms) for the streets this
    gateway owns; none when there is no registry.  A registry that cannot be read is
    logged and the gateway runs without site models (its readings matter more).
    ``rows_dir``: where their learning rows are kept (``SiteDetectors``)."""
    if not path.exists():
        return SiteDetectors()
    try:
        sites = read_site_members(path, None if "+" in streets else streets)
    except (NotARegistry, RegistryInvalid) as error:
        log.error("站点模型未启用 no site models: the registry %s cannot be read: %s", path, error)
        return SiteDetectors()
    # Made after read_site_members has dropped any whole registry it read (a file's):
    # made among its objects, the sites would keep the Python arenas they share mapped.
    specs = specs_of_sites(sites)
    del sites
    if specs:
        log.info(
            "站点模型 %d 个 site models for %d registry sites (%d signals)",
            len(specs),
            len(specs),
            sum(len(s.columns) for s in specs),
        )
    return SiteDetectors(specs, rows_dir=rows_dir)
