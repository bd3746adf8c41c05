"""Vectorised statistical detectors: level shift, rate of change, stuck and slow drift.

State lives in flat numpy arrays indexed by a series slot (one slot per device and numeric
signal), grown by an eighth at a time (not doubled: at 100,000 devices the slack is state
too, and a copy still costs O(1) a slot on average): memory grows by bytes per series,
never by a Python object.
A core holds only the arrays its detectors need (``detectors`` bits): a series judged for
stuck values alone costs 27 bytes, one judged by all four detectors 68 bytes in float32.
Per-series configuration (scale floor, physical minimum, enabled detectors) is a 2-byte
index into a small table of distinct specs, since thousands of series share a few.

``update`` takes a batch of readings across many series.  Readings of one slot within a
batch are handled in order by splitting the batch into rounds, each holding at most one
reading per slot (the k-th reading of every slot is in round k), so a batch gives exactly
what reading-by-reading processing gives.  Compiled, a float32 core (the gateway's) takes
the batch one reading at a time instead, in C (``_update_each``, typed by detectors.pxd),
with the same arithmetic and the same results bit for bit: every learned value is read as
float64, computed in float64 and stored in the core's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.detection.statistics.parameters import (
    ALL_BITS,
    BIT,
    DRIFT,
    LEVEL_SHIFT,
    RATE_OF_CHANGE,
    STUCK,
)
from gateway.detection.statistics.parameters import StatParams as StatParams
from jiayuan.compiled import is_extension

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

# Counters saturate here (uint16): every horizon and warm-up is far shorter.
_COUNT_CAP = 60_000
_SCALE_BITS = BIT[LEVEL_SHIFT] | BIT[RATE_OF_CHANGE] | BIT[DRIFT]
# A reading within this share of the distance between the baseline and the other known
# level (left at the last re-baselining, or where the last shift opened) is at that level.
KNOWN_SHARE = 0.25
# Compiled (detectors.pxd types ``_update_each`` to C), float32 cores judge a batch one
# reading at a time: a batch that repeats its series (a backlog, or a few devices at a
# high rate) takes as many numpy rounds as its most repeated series, and each round costs
# some thirty numpy calls whatever its size.
ONE_AT_A_TIME = is_extension(__file__)


def _layout(detectors: int) -> list[tuple[str, str]]:
    """(array name, dtype role) of the per-series arrays these detectors need; role
    "value" is the core's float dtype."""
    names = [("last_x", "value"), ("last_t", "i8"), ("n", "u2"), ("active", "u1"), ("spec", "u2")]
    if detectors & _SCALE_BITS:
        names += [("mean", "value"), ("scale", "value"), ("step", "value")]
    if detectors & BIT[LEVEL_SHIFT]:
        names += [("c_level", "u1"), ("held", "u2"), ("alt", "value")]
    if detectors & BIT[RATE_OF_CHANGE]:
        names += [("rate", "value"), ("c_rate", "u1")]
    if detectors & BIT[STUCK]:
        names += [("p_change", "value"), ("run", "u2"), ("run_s", "f4")]
    if detectors & BIT[DRIFT]:
        names += [("slow", "value"), ("ref", "value"), ("ref_scale", "value"), ("c_drift", "u1")]
        names += [("jitter", "value")]
    return names


class StatCore:
    """The detectors over many series; their parameters are in
    ``gateway.detection.statistics.parameters``.

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
    step: F64  # smallest non-zero |Δx| seen (the sensor's resolution; 0: none yet)
    c_level: U8  # readings towards the other state (hysteresis counters)
    held: npt.NDArray[np.uint16]  # readings the level shift has been open
    alt: F64  # the other known level: left at the last re-baselining, or where the last
    # shift opened (NaN: none yet)
    rate: F64  # EWMA of |Δx/Δt| beyond the noise band
    c_rate: U8
    p_change: F64  # EWMA share of readings whose value changed
    run: npt.NDArray[np.uint16]  # readings the current value has repeated
    run_s: npt.NDArray[np.float32]  # seconds the current value has repeated
    slow: F64  # slow EWMA (drift)
    ref: F64  # drift reference, frozen after warm-up
    ref_scale: F64  # scale at capture; inf for a series that wandered (no level to leave)
    c_drift: U8
    jitter: F64  # EWMA |Δx| (against scale: does the series sit at a level, or wander?)

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
        if self.detectors & BIT[LEVEL_SHIFT]:
            self.alt[slot] = np.nan
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
        for name in ("c_level", "held", "c_rate", "c_drift"):
            if hasattr(self, name):
                getattr(self, name)[slot] = 0
        if self.detectors & BIT[LEVEL_SHIFT]:
            self.alt[slot] = np.nan

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
        if ONE_AT_A_TIME and self.dtype == np.float32:
            return self.update_each(slots, ts_ms, values)
        return self.update_rounds(slots, ts_ms, values)

    def update_rounds(self, slots: I64, ts_ms: I64, values: F64) -> U8:
        """``update`` in numpy rounds (``_rounds``), whatever the build."""
        return self._run(slots, ts_ms, values, None)

    def update_each(self, slots: I64, ts_ms: I64, values: F64) -> U8:
        """``update`` reading by reading in batch order, in ``_update_each``: what the
        compiled build runs for float32 state (interpreted, it is far slower than the
        numpy rounds; the tests compare the two)."""
        return self._each(slots, ts_ms, values, None)

    def judge(self, slots: I64, ts_ms: I64, values: F64) -> tuple[U8, U8]:
        """Like ``update``, with each reading's detector bits before it too: the bits after
        the slot's previous reading in the batch, or its state before the batch for its
        first.  A non-finite value is not judged: 0 before and after it."""
        before = np.zeros(len(values), dtype=np.uint8)
        if ONE_AT_A_TIME and self.dtype == np.float32:
            return before, self._each(slots, ts_ms, values, None, before)
        return before, self._run(slots, ts_ms, values, None, before)

    def _each(
        self, slots: I64, ts_ms: I64, values: F64, scores: F64 | None, before: U8 | None = None
    ) -> U8:
        if self.dtype != np.float32:
            raise ValueError(f"one reading at a time is for float32 state, not {self.dtype}")
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        judged = np.isfinite(values)  # a non-finite value would poison the baseline
        if judged.all():
            positions = None
        else:
            positions = np.flatnonzero(judged)
            slots, ts_ms, values = slots[positions], ts_ms[positions], values[positions]
        stored = values.astype(np.float32).astype(np.float64)  # a new C-ordered array
        out = np.zeros(len(stored), dtype=np.uint8)
        ratios = np.zeros(len(stored))
        was: U8 | None = None  # each judged reading's bits before it, where wanted
        if before is not None:
            was = before if positions is None else np.zeros_like(out)
        _update_each(self, slots, ts_ms, stored, out, ratios, was)
        if scores is not None:
            scores[positions if positions is not None else slice(None)] = _scores(out, ratios)
        if positions is None:
            return out
        if before is not None and was is not None:
            before[positions] = was
        flags = np.zeros(len(judged), dtype=np.uint8)  # the non-finite ones stay 0
        flags[positions] = out
        return flags

    def update_scored(self, slots: I64, ts_ms: I64, values: F64) -> tuple[U8, F64]:
        """Like ``update``, plus a score in [0, 1] per reading from u, the largest deviation
        relative to its detector's threshold: 0.5 + u/(1+u)/2 while a detector is open (the
        gateway's anomaly), else u/(1+u)/2, below 0.5 and ordered by surprise."""
        scores = np.zeros(len(values))
        if ONE_AT_A_TIME and self.dtype == np.float32:
            return self._each(slots, ts_ms, values, scores), scores
        return self._run(slots, ts_ms, values, scores), scores

    def _run(
        self, slots: I64, ts_ms: I64, values: F64, scores: F64 | None, before: U8 | None = None
    ) -> U8:
        slots = np.asarray(slots, dtype=np.int64)
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        flags = np.zeros(len(values), dtype=np.uint8)
        # A non-finite value would poison the baseline: it is not judged.
        for positions in _rounds(slots, np.isfinite(values)):
            if before is not None:  # a round holds a slot once: its state is its "before"
                before[positions] = self.active[slots[positions]]
            ratios = self._round(slots[positions], ts_ms[positions], values[positions])
            flags[positions] = self.active[slots[positions]]
            if scores is not None:
                scores[positions] = _scores(flags[positions], ratios)
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
        adx = np.zeros(len(i))
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
            # The scale floor: the series' own, or half its smallest step (resolution).
            step = self.step[i].astype(np.float64)
            floor = np.maximum(floor, p.resolution_share * step)
            adx = np.abs(dx)
            mean, scale = self.mean[i], self.scale[i]
            dev = np.abs(x - mean)
            z = dev / np.maximum(scale, floor)
            # Level shift against the EWMA mean and EWMA |deviation|.
            ls = p.level_shift
            exceed = (n >= ls.warmup) & (z > ls.k)
            rebase = np.zeros(len(i), dtype=bool)
            known = np.zeros(len(i), dtype=bool)
            if on & BIT[LEVEL_SHIFT]:
                # A reading at the level the series left at its last re-baselining (a pump
                # set back on duty, a valve back to its other position) is a known state:
                # the baseline swaps to it at once, no shift, no rate.  "At" is within a
                # quarter of the distance between the two levels (the other level's noise
                # is not kept) or the clearing band of this one.
                alt = self.alt[i].astype(np.float64)
                near = KNOWN_SHARE * np.abs(alt - mean) + ls.clear_k * np.maximum(scale, floor)
                closed = (was & BIT[LEVEL_SHIFT]) == 0  # an open shift's own level is not
                known = closed & (n >= ls.warmup) & (np.abs(x - alt) <= near)
                swap = exceed & known
                exceed = exceed & ~known
                shifted = _hold(
                    self.c_level, i, was, BIT[LEVEL_SHIFT], enabled, exceed, z <= ls.clear_k,
                    ls.persist, ls.clear_n,
                )  # fmt: skip
                # Open for ``relearn`` readings: the new normal; the baseline restarts there.
                held = np.where(shifted > 0, np.minimum(self.held[i] + 1, _COUNT_CAP), 0)
                rebase = (held >= ls.relearn) | swap
                # Opening, the new level is remembered: the next visit there is known.
                opened = (shifted > 0) & ((was & BIT[LEVEL_SHIFT]) == 0)
                self.alt[i] = np.where(rebase, mean, np.where(opened, x, alt))
                self.held[i] = np.where(rebase, 0, held)
                self.c_level[i] = np.where(rebase, 0, self.c_level[i])
                bits |= np.where(rebase, 0, shifted).astype(np.uint8)
                ratios = np.maximum(ratios, np.where(n >= ls.warmup, z / ls.k, 0.0))
            else:
                exceed = np.zeros(len(i), dtype=bool)
            alpha = ls.alpha * pace
            a = np.where(exceed, alpha * ls.flagged_learning, np.maximum(alpha, learn))
            self.mean[i] = np.where(first | rebase, x, mean + a * (x - mean))
            self.scale[i] = np.where(first, 0.0, np.where(exceed, scale, scale + a * (dev - scale)))
            self.step[i] = np.where((adx > 0.0) & ((step == 0.0) | (adx < step)), adx, step)
            if on & BIT[DRIFT]:
                jitter = self.jitter[i].astype(np.float64)
                self.jitter[i] = np.where(
                    first, 0.0, np.where(exceed, jitter, jitter + a * (adx - jitter))
                )

        if on & BIT[RATE_OF_CHANGE]:
            # Rate of change against the series' own EWMA of |Δx/Δt|.  A step within the
            # noise band is not a rate, however short the interval.
            rp = p.rate
            band = rp.noise_band * np.maximum(scale, floor)
            speed = np.maximum(np.abs(dx) - band, 0.0) / dt_s
            rate = self.rate[i].astype(np.float64)
            limit = np.maximum(rate * rp.factor, floor * rp.floor_factor)
            fast = (n >= rp.warmup) & (speed > limit) & ~known
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
            share = self.p_change[i].astype(np.float64)
            # The share of changing readings freezes during a run, so the run being judged
            # cannot erode it; the run's readings are folded in when it ends (linearised:
            # (1 − a)^r ≈ 1 − a·r, which errs towards a lower share, a quieter detector).
            a_share = np.maximum(sp.alpha, 1.0 / np.maximum(n, 1.0))
            ended = ~first & ~same
            folded = share * (1.0 - np.minimum(a_share * old_run, 1.0))
            self.p_change[i] = np.where(ended, folded + a_share * (1.0 - folded), share)
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
            # A re-baselined level (a step reported by the level shift) is also the drift
            # reference's new level: one change, one anomaly.
            # A reading beyond the level-shift threshold is learned as slowly here as by the
            # baseline: a short excursion does not leave the slow mean off for hours.
            weight = np.maximum(drp.alpha * pace, learn)
            weight = np.where(exceed, weight * p.level_shift.flagged_learning, weight)
            slow = np.where(first | rebase, x, slow + weight * (x - slow))
            self.slow[i] = slow
            capture = n + 1 == drp.warmup
            ref = np.where(capture | rebase, slow, self.ref[i])
            settled = self.jitter[i] >= drp.stationary_ratio * self.scale[i].astype(np.float64)
            captured = np.where(settled, np.maximum(self.scale[i], floor), np.inf)
            ref_scale = np.where(capture, captured, self.ref_scale[i])
            self.ref[i], self.ref_scale[i] = ref, ref_scale
            away = np.abs(slow - ref) / np.maximum(ref_scale, floor)
            ready = n + 1 >= drp.warmup
            # While a level shift is open it reports the change; drift does not open too.
            opens = ready & (away > drp.k) & ((bits & BIT[LEVEL_SHIFT]) == 0)
            bits |= _hold(
                self.c_drift, i, was, BIT[DRIFT], enabled, opens, away <= drp.clear_k,
                drp.persist, drp.clear_n,
            )  # fmt: skip
            ratios = np.maximum(ratios, np.where(ready, away / drp.k, 0.0))

        self.active[i] = bits
        self.n[i] = np.minimum(n + 1, _COUNT_CAP)
        self.last_x[i], self.last_t[i] = x, t
        return ratios


def _scores(flags: U8, ratios: F64) -> F64:
    """Scores from flags and ratios: [0.5, 1] while a detector is open, else [0, 0.5)."""
    ratios = np.nan_to_num(ratios, nan=0.0, posinf=1e300)  # 0/0, x/0 with a zero floor
    squashed = 0.5 * ratios / (1.0 + ratios)
    result: F64 = np.where(flags > 0, 0.5 + squashed, np.minimum(squashed, np.nextafter(0.5, 0)))
    return result


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


def _update_each(
    core: StatCore,
    slots: I64,
    stamps: I64,
    values: F64,
    flags: U8,
    ratios: F64,
    befores: U8 | None,
) -> None:
    """``StatCore._round``'s arithmetic for one reading at a time, in batch order, into a
    float32 core: the same results, bit for bit (every learned value is read as float64,
    computed in float64 and stored as float32 in both).  ``values`` are already rounded to
    float32 and finite; ``flags`` gets each reading's detector bits after it, ``ratios``
    its largest deviation relative to a threshold (as ``_round`` returns), ``befores`` (if
    given) its series' bits before it."""
    p, on = core.params, core.detectors
    # Parameters as plain locals: the compiled loop reads C numbers, not attributes.
    timed = p.min_period_s is not None
    min_period = p.min_period_s if p.min_period_s is not None else 1.0
    level, rated, stuck_bit, drift = (
        BIT[LEVEL_SHIFT], BIT[RATE_OF_CHANGE], BIT[STUCK], BIT[DRIFT]
    )  # fmt: skip
    scaled, has_level, has_rate = on & _SCALE_BITS, on & level, on & rated
    has_stuck, has_drift = on & stuck_bit, on & drift
    ls, rp, sp, drp = p.level_shift, p.rate, p.stuck, p.drift
    ls_warmup, ls_alpha, ls_k, ls_clear_k = ls.warmup, ls.alpha, ls.k, ls.clear_k
    ls_persist, ls_clear_n, ls_flagged = ls.persist, ls.clear_n, ls.flagged_learning
    ls_relearn, res_share = ls.relearn, p.resolution_share
    rp_warmup, rp_alpha, rp_factor = rp.warmup, rp.alpha, rp.factor
    rp_floor_factor, rp_band = rp.floor_factor, rp.noise_band
    rp_persist, rp_clear_n = rp.persist, rp.clear_n
    sp_epsilon, sp_min_readings, sp_min_seconds = sp.epsilon, sp.min_readings, sp.min_seconds
    sp_alpha, sp_min_share, sp_warmup = sp.alpha, sp.min_change_share, sp.warmup
    drp_warmup, drp_alpha, drp_k = drp.warmup, drp.alpha, drp.k
    drp_persist, drp_clear_k, drp_clear_n = drp.persist, drp.clear_k, drp.clear_n
    drp_ratio = drp.stationary_ratio
    # Every array a layout may hold: those of detectors this core does not run are None
    # (and never read).
    arrays: dict[str, Any] = {name: getattr(core, name, None) for name, _ in _layout(ALL_BITS)}
    last_x, last_t, count = arrays["last_x"], arrays["last_t"], arrays["n"]
    active, spec_of = arrays["active"], arrays["spec"]
    floors, minimums, enabled_specs = core.floors, core.minimums, core.enabled_specs
    mean, scale_of, c_level = arrays["mean"], arrays["scale"], arrays["c_level"]
    step_of, held_of, jitter_of = arrays["step"], arrays["held"], arrays["jitter"]
    alt_of = arrays["alt"]
    rate_of, c_rate = arrays["rate"], arrays["c_rate"]
    p_change, run_of, run_s_of = arrays["p_change"], arrays["run"], arrays["run_s"]
    slow_of, ref_of, ref_scale_of = arrays["slow"], arrays["ref"], arrays["ref_scale"]
    c_drift = arrays["c_drift"]
    keep_before = befores is not None
    for j in range(len(values)):
        slot = slots[j]
        t = stamps[j]
        x = values[j]
        n = count[slot]
        first = n == 0
        spec = spec_of[slot]
        enabled = enabled_specs[spec]
        floor = floors[spec]
        was = active[slot]
        if keep_before:
            befores[j] = was  # type: ignore[index]  # given when kept
        bits = 0
        ratio = 0.0
        dx = 0.0 if first else x - float(last_x[slot])
        gap_s = (t - last_t[slot]) / 1000.0
        dt_s = max(gap_s, 1e-3)
        learn = 1.0 / (n + 1.0)
        pace = min(dt_s / min_period, 1.0) if timed else 1.0
        scale = 0.0
        rebase = False
        known = False
        if scaled:
            least = float(step_of[slot])
            floor = max(floor, res_share * least)
            adx = abs(dx)
            mean_was = float(mean[slot])
            scale = float(scale_of[slot])
            dev = abs(x - mean_was)
            z = _quotient(dev, max(scale, floor))
            exceed = False
            if has_level:
                alt = float(alt_of[slot])
                near = KNOWN_SHARE * abs(alt - mean_was) + ls_clear_k * max(scale, floor)
                known = was & level == 0 and n >= ls_warmup and abs(x - alt) <= near
                exceed = n >= ls_warmup and z > ls_k
                swap = exceed and known
                exceed = exceed and not known
                if n >= ls_warmup and z / ls_k > ratio:
                    ratio = z / ls_k
                step = _held(
                    was & level, exceed and enabled & level, z <= ls_clear_k, c_level[slot],
                    ls_persist, ls_clear_n,
                )  # fmt: skip
                c_level[slot] = max(step, 0)
                is_open = (was & level != 0) != (step < 0)
                held = min(held_of[slot] + 1, _COUNT_CAP) if is_open else 0
                if held >= ls_relearn or swap:
                    rebase = True
                    held = 0
                    c_level[slot] = 0
                    alt_of[slot] = mean_was
                elif is_open:
                    bits |= level
                    if was & level == 0:  # opening: the next visit to this level is known
                        alt_of[slot] = x
                held_of[slot] = held
            alpha = ls_alpha * pace
            a = alpha * ls_flagged if exceed else max(alpha, learn)
            mean[slot] = x if first or rebase else mean_was + a * (x - mean_was)
            if first:
                scale_of[slot] = 0.0
            elif not exceed:
                scale_of[slot] = scale + a * (dev - scale)
            if adx > 0.0 and (least == 0.0 or adx < least):
                step_of[slot] = adx
            if has_drift:
                if first:
                    jitter_of[slot] = 0.0
                elif not exceed:
                    jitter = float(jitter_of[slot])
                    jitter_of[slot] = jitter + a * (adx - jitter)
        if has_rate:
            band = rp_band * max(scale, floor)
            speed = max(abs(dx) - band, 0.0) / dt_s
            rate = float(rate_of[slot])
            limit = max(rate * rp_factor, floor * rp_floor_factor)
            fast = n >= rp_warmup and speed > limit and not known
            if n >= rp_warmup and _quotient(speed, limit) > ratio:
                ratio = _quotient(speed, limit)
            step = _held(
                was & rated, fast and enabled & rated, not fast, c_rate[slot], rp_persist,
                rp_clear_n,
            )  # fmt: skip
            c_rate[slot] = max(step, 0)
            bits |= rated if (was & rated != 0) != (step < 0) else 0
            if n >= 1 and not fast:  # a rate needs two readings
                rate_of[slot] = rate + max(rp_alpha * pace, 1.0 / max(n, 1.0)) * (speed - rate)
        if has_stuck:
            same = not first and abs(dx) < sp_epsilon
            old_run = run_of[slot]
            run = min(old_run + 1, _COUNT_CAP) if same else 0
            run_s = float(run_s_of[slot]) + gap_s if same else 0.0
            share = float(p_change[slot])
            if not (first or same):
                a_share = max(sp_alpha, 1.0 / max(n, 1.0))
                folded = share * (1.0 - min(a_share * old_run, 1.0))
                p_change[slot] = folded + a_share * (1.0 - folded)
            run_of[slot] = run
            run_s_of[slot] = run_s
            if (
                enabled & stuck_bit
                and n >= sp_warmup
                and share >= sp_min_share
                and run + 1 >= sp_min_readings
                and run_s >= sp_min_seconds
                and x > minimums[spec] + sp_epsilon
            ):
                bits |= stuck_bit
        if has_drift:
            slow = float(slow_of[slot])
            weight = max(drp_alpha * pace, learn)
            if exceed:
                weight *= ls_flagged
            slow = x if first or rebase else slow + weight * (x - slow)
            slow_of[slot] = slow
            if n + 1 == drp_warmup:  # the reference is captured
                ref = slow
                settled = float(jitter_of[slot]) >= drp_ratio * float(scale_of[slot])
                ref_scale = max(float(scale_of[slot]), floor) if settled else math.inf
                ref_of[slot] = ref
                ref_scale_of[slot] = ref_scale
            else:
                ref = slow if rebase else float(ref_of[slot])
                ref_of[slot] = ref
                ref_scale = float(ref_scale_of[slot])
            away = _quotient(abs(slow - ref), max(ref_scale, floor))
            step = _held(
                was & drift,
                n + 1 >= drp_warmup and away > drp_k and enabled & drift and not bits & level,
                away <= drp_clear_k, c_drift[slot], drp_persist, drp_clear_n,
            )  # fmt: skip
            c_drift[slot] = max(step, 0)
            bits |= drift if (was & drift != 0) != (step < 0) else 0
            if n + 1 >= drp_warmup and away / drp_k > ratio:
                ratio = away / drp_k
        active[slot] = bits
        count[slot] = min(n + 1, _COUNT_CAP)
        last_x[slot] = x
        last_t[slot] = t
        flags[j] = bits
        ratios[j] = ratio


def _held(was: int, opens: int, clears: int, counter: int, persist: int, clear_n: int) -> int:
    """``_hold`` for one reading of one series: the counter's next value, or −1 when the
    detector flips (its counter then restarts at 0).  The counter is a uint8 (it wraps)."""
    count = (counter + 1) & 0xFF if (clears if was else opens) else 0
    return -1 if count >= (clear_n if was else persist) else count


def _quotient(a: float, b: float) -> float:
    """a / b for a ≥ 0 (or NaN) as numpy divides: by zero, inf or NaN, not an error."""
    if b != 0.0:
        return a / b
    return math.inf if a > 0.0 else math.nan
