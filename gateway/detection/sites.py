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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.detection.rules.base import AnomalyChange
from gateway.detection.state import Stateful
from gateway.detection.statistics.site_model import SiteModel, SiteParams
from jiayuan.catalogue import Kind, ValueType, family, signal_title, site_code
from jiayuan.contract import Reading
from jiayuan.places import Place
from jiayuan.registry.model import Registry
from jiayuan.registry.sources import NotARegistry, read_registry
from jiayuan.registry.tables import RegistryInvalid

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
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
class SiteSpec:
    """One site: where its anomaly hangs, its signals (columns) and its slot."""

    name: str
    anchor: Place  # the site's first device: its anomaly's device
    signals: tuple[SiteSignal, ...]
    slot_ms: int

    @property
    def estate(self) -> str:
        return self.anchor.estate

    @property
    def code(self) -> str:
        return site_code(Kind(self.anchor.kind))


def site_specs(registry: Registry, min_slot_s: float = MIN_SLOT_S) -> list[SiteSpec]:
    """Every site of the registry with at least two numeric signals; its slot is its
    slowest member's heartbeat, ``min_slot_s`` at least."""
    specs = []
    for record in registry.records():
        estate = record.estate
        for name, devices in record.sites().items():
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
                estate.district, estate.street, estate.id, first.building, first.kind, first.id
            )
            slot_s = max(min_slot_s, *(family(d.kind).heartbeat_s for d in devices))
            specs.append(SiteSpec(name, anchor, signals, int(slot_s * 1000)))
    return specs


@dataclass(slots=True, eq=False)
class _Learnt:
    """A learnt ``SiteModel`` as the gateway keeps it: one float32 array (an array costs
    some 110 bytes besides its values, a site four of them otherwise), no training rows.
    ``packed`` holds the lagged columns' means and spreads, the inverse eigenvalues, the
    loadings (columns × components) and the limits."""

    packed: F32
    columns: int
    components: int
    t2_limit: float
    q_limit: float
    typical: float
    chart_limits: tuple[float, ...]

    @classmethod
    def of(cls, model: SiteModel) -> _Learnt:
        mean, spread, loadings, eigenvalues = model.projection
        packed = np.concatenate((mean, spread, 1.0 / eigenvalues, loadings.ravel()))
        return cls(
            packed.astype(np.float32),
            len(mean),
            len(eigenvalues),
            model.t2_limit,
            model.q_limit,
            model.typical,
            tuple(model.chart_limits),
        )

    @property
    def mean(self) -> F32:
        return self.packed[: self.columns]

    @property
    def spread(self) -> F32:
        return self.packed[self.columns : 2 * self.columns]

    @property
    def inverse_eigenvalues(self) -> F32:
        return self.packed[2 * self.columns : 2 * self.columns + self.components]

    @property
    def loadings(self) -> F32:
        start = 2 * self.columns + self.components
        return self.packed[start:].reshape(self.columns, self.components)


@dataclass(slots=True, eq=False)
class _SiteState:
    """One site's per-slot alignment, learning rows or model, history and charts."""

    latest: F32  # each signal's latest value in the current slot
    seen: int = 0  # bit per signal: reported in the current slot
    slot: int = -1
    # Learning buffer, freed once learnt: each row as its difference from the first row,
    # in float16 (half the bytes while every site learns at once; a difference keeps
    # 11 bits of itself, far finer than any signal's noise).
    rows: npt.NDArray[np.float16] | None = None
    origin: F32 | None = None
    count: int = 0
    learnt: _Learnt | None = None
    history: F32 | None = None  # the previous rows, newest first (lags × signals)
    levels: list[float] = field(default_factory=list)  # each chart's EWMA
    open: bool = False
    streak: int = 0  # rows in a row on the other side of the limit than ``open`` says
    since_ms: int = 0  # the time of the streak's first row
    failed: bool = False  # the learning rows gave no model (logged once)


class SiteDetectors(Stateful):
    """The site models of one gateway; one thread changes them at a time."""

    STATE = ("_states",)

    def __init__(
        self,
        specs: Sequence[SiteSpec] = (),
        params: SiteParams = GATEWAY_SITE_PARAMS,
        learn_rows: int = LEARN_ROWS,
        hold_rows: int = HOLD_ROWS,
    ) -> None:
        self.specs = tuple(specs)
        self.params = params
        self.learn_rows = learn_rows
        self.hold_rows = hold_rows
        # Device id → (site, its columns by field name); registry device ids are unique.
        self._members: dict[str, tuple[int, dict[str, int]]] = {}
        for index, spec in enumerate(self.specs):
            for column, signal in enumerate(spec.signals):
                _, columns = self._members.setdefault(signal.device, (index, {}))
                columns[signal.field] = column
        # Sites of the same make-up map their devices' fields alike: one mapping for all.
        shared: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
        for device, (index, columns) in self._members.items():
            self._members[device] = (index, shared.setdefault(tuple(columns.items()), columns))
        self._states = [
            _SiteState(np.zeros(len(spec.signals), dtype=np.float32)) for spec in self.specs
        ]
        self._told_learning = False

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
            if state.slot >= 0 and state.seen == (1 << len(spec.signals)) - 1:
                change = self._row(spec, state, (state.slot + 1) * spec.slot_ms)
            state.slot, state.seen = slot, 0
        elif slot < state.slot:
            return None  # late for its slot: that row is judged already
        for name, value in reading.values.items():
            column = columns.get(name)
            # An int is a float signal sent without decimals (bool is not a reading value).
            if column is not None and isinstance(value, float | int) and math.isfinite(value):
                state.latest[column] = value
                state.seen |= 1 << column
        return change

    def _row(self, spec: SiteSpec, state: _SiteState, ts_ms: int) -> AnomalyChange | None:
        """Learn or judge the completed row ``state.latest`` (time ``ts_ms``)."""
        if state.failed:
            return None
        if state.learnt is None:
            self._learn(spec, state)
            return None
        assert state.history is not None
        learnt = state.learnt
        row = state.latest
        lagged = np.concatenate((row, state.history.ravel()))
        standard = (lagged - learnt.mean) / learnt.spread
        scores = standard @ learnt.loadings
        projected = scores @ learnt.loadings.T
        t2_parts = standard * ((scores * learnt.inverse_eigenvalues) @ learnt.loadings.T)
        q_parts = (standard - projected) ** 2
        w = self.params.t2_weight
        parts = w * t2_parts / learnt.t2_limit + (1.0 - w) * q_parts / learnt.q_limit
        index = float(parts.sum())
        ratio, smoothed = 0.0, None
        for k, (weight, limit) in enumerate(
            zip(self.params.smoothing, learnt.chart_limits, strict=True)
        ):
            clip = self.params.ewma_clip
            added = index if clip is None or weight >= 1.0 else min(index, clip)
            state.levels[k] += weight * (added - state.levels[k])
            ratio = max(ratio, state.levels[k] / limit)
            if weight < 1.0:
                smoothed = max(smoothed or 0.0, state.levels[k] / limit)
        if len(state.history):
            state.history = np.vstack((row[None, :], state.history[:-1]))
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
        signals = len(spec.signals)
        shares = np.maximum(parts.reshape(-1, signals).sum(axis=0), 0.0)
        shares = shares / max(float(shares.sum()), 1e-30)
        expected = learnt.mean[:signals] + learnt.spread[:signals] * projected[:signals]
        order = [int(j) for j in np.argsort(shares)[::-1][:TOP_SIGNALS] if shares[j] >= 0.05]
        detail = _detail(spec, order, shares, row, expected, ratio / (1.0 + ratio))
        top = order[0] if order else 0
        value, predicted = float(row[top]), float(expected[top])
        return AnomalyChange(code, True, state.since_ms, value, predicted, detail)

    def _learn(self, spec: SiteSpec, state: _SiteState) -> None:
        if state.rows is None:
            state.rows = np.empty((self.learn_rows, len(spec.signals)), dtype=np.float16)
            state.origin = state.latest.copy()
            if not self._told_learning:
                self._told_learning = True
                learning = sum(1 for st in self._states if st.learnt is None and not st.failed)
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
        assert state.origin is not None
        state.rows[state.count] = state.latest - state.origin
        state.count += 1
        if state.count < self.learn_rows:
            return
        rows = state.origin.astype(np.float64) + state.rows.astype(np.float64)
        state.rows, state.origin = None, None
        names = [s.title(spec.estate) for s in spec.signals]
        try:
            model = SiteModel(rows, names, self.params)
        except (ValueError, np.linalg.LinAlgError) as error:
            state.failed = True
            log.warning(
                "站点 %s/%s 模型无法学习 site model not learnt: %s", spec.estate, spec.name, error
            )
            return
        state.learnt = _Learnt.of(model)
        lags = self.params.lags
        state.history = rows[::-1][:lags].astype(np.float32)  # newest first
        state.levels = [model.typical] * len(self.params.smoothing)

    def export_state(self) -> dict[str, Any]:
        return {"_states": self._states}

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
                    tuple((g.device, g.field) for g in s.signals),
                    s.slot_ms,
                )
                for s in self.specs
            ),
        )

    def learnt(self) -> int:
        """How many sites judge rows (their model learnt)."""
        return sum(1 for state in self._states if state.learnt is not None)


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
    for j in order:
        signal = spec.signals[j]
        unit = f" {signal.unit}" if signal.unit else ""
        parts.append(
            f"{signal.title(spec.estate)} {row[j]:.4g}{unit}，健康关系推算 {expected[j]:.4g}{unit}"
            f" / healthy relations predict {expected[j]:.4g}{unit} ({shares[j]:.0%})"
        )
    return f"站点 site {spec.name} (score {score:.2f}): " + "；".join(parts)


def load_sites(path: Path, streets: Sequence[str] = ("+",)) -> SiteDetectors:
    """The site models of the registry at ``path`` (any of its forms) for the streets this
    gateway owns; none when there is no registry.  A registry that cannot be read is
    logged and the gateway runs without site models (its readings matter more)."""
    if not path.exists():
        return SiteDetectors()
    try:
        registry = read_registry(path)
    except (NotARegistry, RegistryInvalid) as error:
        log.error("站点模型未启用 no site models: the registry %s cannot be read: %s", path, error)
        return SiteDetectors()
    if "+" not in streets:
        registry = registry.on_streets(streets)
    specs = site_specs(registry)
    if specs:
        log.info(
            "站点模型 %d 个 site models for %d registry sites (%d signals)",
            len(specs),
            len(specs),
            sum(len(s.signals) for s in specs),
        )
    return SiteDetectors(specs)
