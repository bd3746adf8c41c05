"""Vectorised statistical detectors: level shift, rate of change, stuck and slow drift.

State lives in flat numpy arrays indexed by a series slot (one slot per device and numeric
signal), grown by doubling: memory grows by bytes per series, never by a Python object.
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

_FLOATS: tuple[str, ...] = ("last_x", "mean", "scale", "rate", "p_change", "slow", "ref")
_FLOATS += ("ref_scale", "floor", "minimum")
_INTS = ("last_t", "since_t")  # int64 ms
_COUNTS = ("n", "run")  # int32
_HOLDS = ("c_level", "c_rate", "c_drift")  # int16: readings towards the other state
_BYTES = ("active", "enabled")  # uint8 detector bits


class StatCore:
    """The four detectors over many series; see ``gateway.stat_params`` for parameters."""

    last_x: F64
    mean: F64  # EWMA mean (level baseline)
    scale: F64  # EWMA |x - mean| (robust scale)
    rate: F64  # EWMA of |Δx/Δt| beyond the noise band
    p_change: F64  # EWMA share of readings whose value changed
    slow: F64  # slow EWMA (drift)
    ref: F64  # drift reference, frozen after warm-up
    ref_scale: F64
    floor: F64  # configuration: scale floor
    minimum: F64  # configuration: physical minimum (a run there is rest, not stuck)
    last_t: I64
    since_t: I64  # when the current value was first seen
    n: npt.NDArray[np.int32]
    run: npt.NDArray[np.int32]
    c_level: npt.NDArray[np.int16]
    c_rate: npt.NDArray[np.int16]
    c_drift: npt.NDArray[np.int16]
    active: U8
    enabled: U8  # configuration: detector bits that may open

    def __init__(self, params: StatParams | None = None, capacity: int = 1024) -> None:
        self.params = params if params is not None else StatParams()
        self.capacity = 0
        self.size = 0  # slots handed out
        self._grow(max(1, capacity))

    # -- state ------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        def resized(name: str, dtype: Any, fill: float = 0) -> None:
            new = np.full(capacity, fill, dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                new[: self.capacity] = old
            setattr(self, name, new)

        for name in _FLOATS:
            resized(name, np.float64)
        for name in _INTS:
            resized(name, np.int64)
        for name in _COUNTS:
            resized(name, np.int32)
        for name in _HOLDS:
            resized(name, np.int16)
        for name in _BYTES:
            resized(name, np.uint8)
        self.capacity = capacity

    def add_series(self, floor: float, minimum: float = -np.inf, enabled: int = ALL_BITS) -> int:
        """A new series slot with its scale floor, physical minimum and detector bits."""
        if self.size == self.capacity:
            self._grow(self.capacity * 2)
        slot = self.size
        self.size += 1
        self.floor[slot] = floor
        self.minimum[slot] = minimum
        self.enabled[slot] = enabled
        return slot

    def reset(self, slot: int) -> None:
        """Forget what a series has learned (a replaced sensor starts a new baseline)."""
        self.n[slot] = 0
        self.active[slot] = 0
        self.c_level[slot] = self.c_rate[slot] = self.c_drift[slot] = 0

    @property
    def state_bytes(self) -> int:
        """Bytes of per-series state for the slots in use."""
        names = _FLOATS + _INTS + _COUNTS + _HOLDS + _BYTES
        per: int = sum(int(getattr(self, name).itemsize) for name in names)
        return per * self.size

    def baseline(self, slot: int, detector: str) -> float:
        """What a detector compares against: the drift reference, else the EWMA mean."""
        return float(self.ref[slot] if detector == DRIFT else self.mean[slot])

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
            self._round(positions, slots, ts_ms, values, flags, scores)
        return flags

    def _round(
        self,
        pos: I64,
        all_slots: I64,
        all_ts: I64,
        all_values: F64,
        flags: U8,
        scores: F64 | None,
    ) -> None:
        p = self.params
        i, t, x = all_slots[pos], all_ts[pos], all_values[pos]
        n = self.n[i]
        first = n == 0
        enabled, active = self.enabled[i], self.active[i]
        floor = self.floor[i]
        dx = np.where(first, 0.0, x - self.last_x[i])
        dt_s = np.maximum((t - self.last_t[i]) / 1000.0, 1e-3)
        learn = 1.0 / (n + 1.0)  # a running mean until the horizon is reached

        # Level shift against the EWMA mean and EWMA |deviation|.
        ls = p.level_shift
        mean, scale = self.mean[i], self.scale[i]
        dev = np.abs(x - mean)
        z = dev / np.maximum(scale, floor)
        exceed = (n >= ls.warmup) & (z > ls.k)
        on_level = _hold(
            self.c_level, i, active, BIT[LEVEL_SHIFT], enabled, exceed, z <= ls.clear_k,
            ls.persist, ls.clear_n,
        )  # fmt: skip
        a = np.where(exceed, ls.alpha * ls.flagged_learning, np.maximum(ls.alpha, learn))
        self.mean[i] = np.where(first, x, mean + a * (x - mean))
        self.scale[i] = np.where(first, 0.0, np.where(exceed, scale, scale + a * (dev - scale)))

        # Rate of change against the series' own EWMA of |Δx/Δt|.
        rp = p.rate
        # A step within the noise band is not a rate, however short the interval.
        speed = np.maximum(np.abs(dx) - rp.noise_band * np.maximum(scale, floor), 0.0) / dt_s
        rate = self.rate[i]
        limit = np.maximum(rate * rp.factor, floor * rp.floor_factor)
        fast = (n >= rp.warmup) & (speed > limit)
        on_rate = _hold(
            self.c_rate, i, active, BIT[RATE_OF_CHANGE], enabled, fast, ~fast,
            rp.persist, rp.clear_n,
        )  # fmt: skip
        seen = n >= 1  # a rate needs two readings
        a_rate = np.maximum(rp.alpha, 1.0 / np.maximum(n, 1.0))
        self.rate[i] = np.where(seen & ~fast, rate + a_rate * (speed - rate), rate)

        # Stuck: a run of unchanged values on a series that usually changes.
        sp = p.stuck
        same = ~first & (np.abs(dx) < sp.epsilon)
        run = np.where(same, self.run[i] + 1, 0)
        since = np.where(same, self.since_t[i], t)
        share = self.p_change[i]
        # The share of changing readings freezes during a run, so the run cannot erode it.
        a_share = np.maximum(sp.alpha, 1.0 / np.maximum(n, 1.0))
        keep = first | (same & (self.run[i] > 0))
        self.p_change[i] = np.where(keep, share, share + a_share * (~same - share))
        stuck = (
            (enabled & BIT[STUCK]).astype(bool)
            & (n >= sp.warmup)
            & (share >= sp.min_change_share)
            & (run + 1 >= sp.min_readings)
            & ((t - since) >= sp.min_seconds * 1000.0)
            & (x > self.minimum[i] + sp.epsilon)
        )
        self.run[i], self.since_t[i] = run, since

        # Drift: a slow EWMA against the reference frozen at the end of the warm-up.
        drp = p.drift
        slow = self.slow[i]
        slow = np.where(first, x, slow + np.maximum(drp.alpha, learn) * (x - slow))
        self.slow[i] = slow
        capture = n + 1 == drp.warmup
        ref = np.where(capture, slow, self.ref[i])
        ref_scale = np.where(capture, np.maximum(self.scale[i], floor), self.ref_scale[i])
        self.ref[i], self.ref_scale[i] = ref, ref_scale
        away = np.abs(slow - ref) / np.maximum(ref_scale, floor)
        ready = n + 1 >= drp.warmup
        on_drift = _hold(
            self.c_drift, i, active, BIT[DRIFT], enabled, ready & (away > drp.k),
            away <= drp.clear_k, drp.persist, drp.clear_n,
        )  # fmt: skip

        bits = on_level | on_rate | on_drift | np.where(stuck, BIT[STUCK], 0).astype(np.uint8)
        self.active[i] = bits
        flags[pos] = bits
        self.n[i] = np.minimum(n + 1, 2**30)
        self.last_x[i], self.last_t[i] = x, t
        if scores is not None:
            ratios = np.maximum.reduce(
                [
                    np.where(n >= ls.warmup, z / ls.k, 0.0),
                    np.where(n >= rp.warmup, speed / limit, 0.0),
                    np.where(ready, away / drp.k, 0.0),
                ]
            )
            scores[pos] = np.where(bits > 0, 1.0, ratios / (1.0 + ratios))


def _hold(
    counter: npt.NDArray[np.int16],
    i: I64,
    active: U8,
    bit: int,
    enabled: U8,
    opens: npt.NDArray[np.bool_],
    clears: npt.NDArray[np.bool_],
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


def _rounds(slots: I64, valid: npt.NDArray[np.bool_]) -> list[I64]:
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
