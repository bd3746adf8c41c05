"""Vectorised statistical detectors: level shift, rate of change, stuck and slow drift.

State lives in flat numpy arrays indexed by a series slot (one slot per device and numeric
signal), grown by an eighth at a time (not doubled: at 100,000 devices the slack is state
too, and a copy still costs O(1) a slot on average): memory grows by bytes per series,
never by a Python object.
A core holds only the arrays its detectors need (``detectors`` bits): a series judged for
stuck values alone costs 27 bytes, one judged by all four detectors 54 bytes in float32.
Per-series configuration (scale floor, physical minimum, enabled detectors) is a 2-byte
index into a small table of distinct specs, since thousands of series share a few.

``update`` takes a batch of readings across many series.  Readings of one slot within a
batch are handled in order by splitting the batch into rounds, each holding at most one
reading per slot (the k-th reading of every slot is in round k), so a batch gives exactly
what reading-by-reading processing gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.stat_params import ALL_BITS, BIT, DRIFT, LEVEL_SHIFT, RATE_OF_CHANGE, STUCK
from gateway.stat_params import StatParams as StatParams

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

# Counters saturate here (uint16): every horizon and warm-up is far shorter.
_COUNT_CAP = 60_000
_SCALE_BITS = BIT[LEVEL_SHIFT] | BIT[RATE_OF_CHANGE] | BIT[DRIFT]


def _layout(detectors: int) -> list[tuple[str, str]]:
    """(array name, dtype role) of the per-series arrays these detectors need; role
    "value" is the core's float dtype."""
    names = [("last_x", "value"), ("last_t", "i8"), ("n", "u2"), ("active", "u1"), ("spec", "u2")]
    if detectors & _SCALE_BITS:
        names += [("mean", "value"), ("scale", "value")]
    if detectors & BIT[LEVEL_SHIFT]:
        names += [("c_level", "u1")]
    if detectors & BIT[RATE_OF_CHANGE]:
        names += [("rate", "value"), ("c_rate", "u1")]
    if detectors & BIT[STUCK]:
        names += [("p_change", "value"), ("run", "u2"), ("run_s", "f4")]
    if detectors & BIT[DRIFT]:
        names += [("slow", "value"), ("ref", "value"), ("ref_scale", "value"), ("c_drift", "u1")]
    return names


class StatCore:
    """The detectors over many series; see ``gateway.stat_params`` for parameters.

    ``detectors`` (bits of ``BIT``) chooses which detectors this core can run and so which
    arrays it holds; ``dtype`` is that of the learned values (float32 in the gateway, where
    100,000 devices share the memory; float64 where one series of unknown range is scored).
    """

    # Every array that a layout may hold (only those of the core's detectors exist).
    last_x: F64  # the last value, as stored (so a repeat compares exactly)
    last_t: I64  # ms of the last reading
    n: npt.NDArray[np.uint16]  # readings seen (saturating)
    active: U8  # detector bits open now
    spec: npt.NDArray[np.uint16]  # index into the spec table
    mean: F64  # EWMA mean (level baseline)
    scale: F64  # EWMA |x - mean| (robust scale)
    c_level: U8  # readings towards the other state (hysteresis counters)
    rate: F64  # EWMA of |Δx/Δt| beyond the noise band
    c_rate: U8
    p_change: F64  # EWMA share of readings whose value changed
    run: npt.NDArray[np.uint16]  # readings the current value has repeated
    run_s: npt.NDArray[np.float32]  # seconds the current value has repeated
    slow: F64  # slow EWMA (drift)
    ref: F64  # drift reference, frozen after warm-up
    ref_scale: F64
    c_drift: U8

    def __init__(
        self,
        params: StatParams | None = None,
        capacity: int = 1024,
        detectors: int = ALL_BITS,
        dtype: Any = np.float64,
    ) -> None:
        self.params = params if params is not None else StatParams()
        self.detectors = detectors
        self.dtype = np.dtype(dtype)
        self._arrays = _layout(detectors)
        self.capacity = 0
        self.size = 0  # slots handed out
        # The spec table: distinct (floor, minimum, enabled bits).
        self._spec_index: dict[tuple[float, float, int], int] = {}
        self.floors = np.zeros(0)
        self.minimums = np.zeros(0)
        self.enabled_specs = np.zeros(0, dtype=np.uint8)
        self._grow(max(1, capacity))

    # -- state ------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        for name, role in self._arrays:
            dtype = self.dtype if role == "value" else np.dtype(role)
            new = np.zeros(capacity, dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                new[: self.capacity] = old
            setattr(self, name, new)
        self.capacity = capacity

    def add_series(self, floor: float, minimum: float = -np.inf, enabled: int = ALL_BITS) -> int:
        """A new series slot with its scale floor, physical minimum and detector bits
        (those this core does not run are dropped)."""
        if self.size == self.capacity:
            self._grow(self.capacity + max(1024, self.capacity // 8))
        slot = self.size
        self.size += 1
        self.spec[slot] = self._spec(float(floor), float(minimum), enabled & self.detectors)
        return slot

    def _spec(self, floor: float, minimum: float, enabled: int) -> int:
        key = (floor, minimum, enabled)
        index = self._spec_index.get(key)
        if index is None:
            index = self._spec_index[key] = len(self._spec_index)
            if index > np.iinfo(np.uint16).max:
                raise ValueError("more than 65,536 distinct series specs in one core")
            self.floors = np.append(self.floors, floor)
            self.minimums = np.append(self.minimums, minimum)
            self.enabled_specs = np.append(self.enabled_specs, np.uint8(enabled))
        return index

    def reset(self, slot: int) -> None:
        """Forget what a series has learned (a replaced sensor starts a new baseline)."""
        self.n[slot] = 0
        self.active[slot] = 0
        for name in ("c_level", "c_rate", "c_drift"):
            if hasattr(self, name):
                getattr(self, name)[slot] = 0

    @property
    def bytes_per_series(self) -> int:
        return sum(int(getattr(self, name).itemsize) for name, _ in self._arrays)

    @property
    def state_bytes(self) -> int:
        """Bytes of per-series state for the slots in use (the spec table is shared)."""
        return self.bytes_per_series * self.size

    def baseline(self, slot: int, detector: str) -> float:
        """What a detector compares against: the drift reference, else the EWMA mean."""
        if detector == DRIFT:
            return float(self.ref[slot])
        if detector == STUCK and not self.detectors & _SCALE_BITS:
            return float(self.last_x[slot])  # the repeated value
        return float(self.mean[slot])

    # -- processing -------------------------------------------------------------------

    def update(self, slots: I64, ts_ms: I64, values: F64) -> U8:
        """Active detector bits per reading after that reading (``BIT`` in stat_params)."""
        return self._run(slots, ts_ms, values, None)

    def update_scored(self, slots: I64, ts_ms: I64, values: F64) -> tuple[U8, F64]:
        """Like ``update``, plus a score in [0, 1] per reading: 1.0 while a detector is
        active, else the largest deviation relative to its threshold, squashed u/(1+u)."""
        scores = np.zeros(len(values))
        return self._run(slots, ts_ms, values, scores), scores

    def _run(self, slots: I64, ts_ms: I64, values: F64, scores: F64 | None) -> U8:
        slots = np.asarray(slots, dtype=np.int64)
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        flags = np.zeros(len(values), dtype=np.uint8)
        # A non-finite value would poison the baseline: it is not judged.
        for positions in _rounds(slots, np.isfinite(values)):
            ratios = self._round(slots[positions], ts_ms[positions], values[positions])
            flags[positions] = self.active[slots[positions]]
            if scores is not None:
                scores[positions] = np.where(flags[positions] > 0, 1.0, ratios / (1.0 + ratios))
        return flags

    def _round(self, i: I64, t: I64, x_in: F64) -> F64:
        """One reading for each of the distinct slots ``i``; returns each reading's largest
        deviation relative to its detector's threshold (for scores)."""
        p, on = self.params, self.detectors
        # Stored as the core's dtype, so a repeated value compares exactly with the last.
        x = x_in if self.dtype == np.float64 else x_in.astype(self.dtype).astype(np.float64)
        n = self.n[i]  # uint16, capped below its range: arithmetic with it cannot wrap
        first = n == 0
        spec = self.spec[i]
        enabled, floor = self.enabled_specs[spec], self.floors[spec]
        was = self.active[i]
        bits = np.zeros(len(i), dtype=np.uint8)
        ratios = np.zeros(len(i))
        dx = np.where(first, 0.0, x - self.last_x[i])
        dt_s = np.maximum((t - self.last_t[i]) / 1000.0, 1e-3)
        learn = 1.0 / (n + 1.0)  # a running mean until the horizon is reached
        # Readings closer together than min_period_s count for that share of a reading,
        # so the EWMA horizons are in time: a device reporting every second during an
        # event does not learn the event away ten times faster.
        pace = 1.0 if p.min_period_s is None else np.minimum(dt_s / p.min_period_s, 1.0)

        if on & _SCALE_BITS:
            mean, scale = self.mean[i], self.scale[i]
            dev = np.abs(x - mean)
            z = dev / np.maximum(scale, floor)
            # Level shift against the EWMA mean and EWMA |deviation|.
            ls = p.level_shift
            exceed = (n >= ls.warmup) & (z > ls.k)
            if on & BIT[LEVEL_SHIFT]:
                bits |= _hold(
                    self.c_level, i, was, BIT[LEVEL_SHIFT], enabled, exceed, z <= ls.clear_k,
                    ls.persist, ls.clear_n,
                )  # fmt: skip
                ratios = np.maximum(ratios, np.where(n >= ls.warmup, z / ls.k, 0.0))
            else:
                exceed = np.zeros(len(i), dtype=bool)
            alpha = ls.alpha * pace
            a = np.where(exceed, alpha * ls.flagged_learning, np.maximum(alpha, learn))
            self.mean[i] = np.where(first, x, mean + a * (x - mean))
            self.scale[i] = np.where(first, 0.0, np.where(exceed, scale, scale + a * (dev - scale)))

        if on & BIT[RATE_OF_CHANGE]:
            # Rate of change against the series' own EWMA of |Δx/Δt|.  A step within the
            # noise band is not a rate, however short the interval.
            rp = p.rate
            band = rp.noise_band * np.maximum(scale, floor)
            speed = np.maximum(np.abs(dx) - band, 0.0) / dt_s
            rate = self.rate[i]
            limit = np.maximum(rate * rp.factor, floor * rp.floor_factor)
            fast = (n >= rp.warmup) & (speed > limit)
            bits |= _hold(
                self.c_rate, i, was, BIT[RATE_OF_CHANGE], enabled, fast, ~fast,
                rp.persist, rp.clear_n,
            )  # fmt: skip
            seen = n >= 1  # a rate needs two readings
            a_rate = np.maximum(rp.alpha * pace, 1.0 / np.maximum(n, 1.0))
            self.rate[i] = np.where(seen & ~fast, rate + a_rate * (speed - rate), rate)
            ratios = np.maximum(ratios, np.where(n >= rp.warmup, speed / limit, 0.0))

        if on & BIT[STUCK]:
            # A run of unchanged values on a series that usually changes.
            sp = p.stuck
            same = ~first & (np.abs(dx) < sp.epsilon)
            old_run = self.run[i]
            run = np.where(same, np.minimum(old_run + 1, _COUNT_CAP), 0)
            run_s = np.where(same, self.run_s[i] + (t - self.last_t[i]) / 1000.0, 0.0)
            share = self.p_change[i]
            # The share of changing readings freezes during a run, so the run cannot erode it.
            a_share = np.maximum(sp.alpha, 1.0 / np.maximum(n, 1.0))
            keep = first | (same & (old_run > 0))
            self.p_change[i] = np.where(keep, share, share + a_share * (~same - share))
            stuck = (
                (enabled & BIT[STUCK]).astype(bool)
                & (n >= sp.warmup)
                & (share >= sp.min_change_share)
                & (run + 1 >= sp.min_readings)
                & (run_s >= sp.min_seconds)
                & (x > self.minimums[spec] + sp.epsilon)
            )
            self.run[i], self.run_s[i] = run, run_s
            bits |= np.where(stuck, BIT[STUCK], 0).astype(np.uint8)

        if on & BIT[DRIFT]:
            # A slow EWMA against the reference frozen at the end of the warm-up.
            drp = p.drift
            slow = self.slow[i]
            slow = np.where(first, x, slow + np.maximum(drp.alpha * pace, learn) * (x - slow))
            self.slow[i] = slow
            capture = n + 1 == drp.warmup
            ref = np.where(capture, slow, self.ref[i])
            ref_scale = np.where(capture, np.maximum(self.scale[i], floor), self.ref_scale[i])
            self.ref[i], self.ref_scale[i] = ref, ref_scale
            away = np.abs(slow - ref) / np.maximum(ref_scale, floor)
            ready = n + 1 >= drp.warmup
            bits |= _hold(
                self.c_drift, i, was, BIT[DRIFT], enabled, ready & (away > drp.k),
                away <= drp.clear_k, drp.persist, drp.clear_n,
            )  # fmt: skip
            ratios = np.maximum(ratios, np.where(ready, away / drp.k, 0.0))

        self.active[i] = bits
        self.n[i] = np.minimum(n + 1, _COUNT_CAP)
        self.last_x[i], self.last_t[i] = x, t
        return ratios


def _hold(
    counter: U8,
    i: I64,
    active: U8,
    bit: int,
    enabled: U8,
    opens: Bools,
    clears: Bools,
    persist: int,
    clear_n: int,
) -> U8:
    """Advance one detector's hysteresis: it opens after ``persist`` consecutive opening
    readings and clears after ``clear_n`` consecutive clearing ones.  Returns its bit."""
    was = (active & bit).astype(bool)
    toward = np.where(was, clears, opens & (enabled & bit).astype(bool))
    count = np.where(toward, counter[i] + 1, 0)
    flips = count >= np.where(was, clear_n, persist)
    now = was ^ flips
    counter[i] = np.where(flips, 0, count)
    return np.where(now, bit, 0).astype(np.uint8)


def _rounds(slots: I64, valid: Bools) -> list[I64]:
    """Positions of the batch split into rounds with at most one reading per slot, the
    k-th reading of each slot (in batch order) in round k."""
    positions = np.flatnonzero(valid)
    chosen = slots[positions]
    if len(np.unique(chosen)) == len(chosen):
        return [positions] if len(positions) else []
    order = np.argsort(chosen, kind="stable")
    ordered = chosen[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
    rank = np.arange(len(ordered)) - group_start
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(1, rank.max() + 1))
    return [positions[order[part]] for part in np.split(by_rank, bounds)]
