"""Daily and weekly profiles of series, learned online: what is usual at this time.

Pump duty, water draw, charging at night and lift traffic follow the clock, and an operator
acts on "0.28 MPa, usually 0.34 ± 0.01 at 14:00 on weekdays".  ``jiayuan detect`` and the
gateway run this same code: a ``SeasonalBank`` holds many series, each judged one reading
at a time.

**A series pays for a profile only once it shows a cycle.**  Until then it holds a *gate*:
time-weighted EWMAs (horizon ``gate_horizon_h``) of its level, of its mean |deviation| and
of its deviation times the cosine and sine of the time of day — the daily harmonic.  Once
a day has passed and the harmonic's amplitude reaches ``gate_share`` of the mean
|deviation| (a daily square wave gives ~1.3, a sine ~1.6, white noise ~0), the series gets
a profile and the gate is no longer updated.  A random walk may open the gate; its profile
then never comes into use (below), and costs only memory.

**A profile.**  Each reading falls in a slot of the day (``slot_minutes`` wide, local
time), on a weekday or at the weekend.  A slot's *usual* value is the running mean of its
mean on each day seen, then an EWMA over its last ``horizon`` days (so readings of one day
cannot predict each other); its *spread* an EWMA of |x − usual| over its readings.  Between
slots the usual value is interpolated from the slots' middles where that has fitted the
series better than steps (a smooth curve, not a switch), and a reading unusual for its slot
is compared with the usual value nearest to it within ``tolerance_minutes`` either side (a
pump that starts at 07:00 one day, 06:50 the next).

The profile is *in use* from when a slot seen on two days, the EWMA of |x − usual| below
``explains`` times the EWMA of |x − a recent baseline| (an EWMA of the readings like the
level-shift detector's), and a cycle (the slots' mean distance from their level) larger
than the smallest step between readings say it explains the series better than the recent
past does, until it does no better: white noise, a random walk, a quantised constant or an
on/off status without a daily rhythm never use it.  In use, the detectors judge
``anchor + c·(x − usual)``: the deviation from what is usual at that time, around the level
at the moment the profile came into use, shrunk by c = typical error / the slot's spread
where a slot usually varies more (a pump that starts some time between 07:00 and 07:30);
the typical errors are clipped at four times themselves, so one anomaly does not make the
next day's usual variations look small.

**Memory.**  A gate is 5 float32, an int64 time and an int32 profile index (32 bytes).  A
profile is ``2 × 1440 / slot_minutes`` slots of a float32 usual value, a float32 spread and
two uint8 counts (days seen, readings in the spread; both horizons are below 255) — hourly
slots: 48 × 10 = 480 bytes — and ``_STATE`` float64 numbers of its own (160 bytes): 640
bytes.  At 5-minute slots it would be 576 × 10 + 160 = 5,920 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])
DAY_MS = 86_400_000
MINUTE_MS = 60_000
# The profile must beat an EWMA of this weight (the level-shift baseline's) to be used.
RECENT_ALPHA = 0.05
# 1970-01-01 was a Thursday: day 0 is weekday 3 (Monday = 0).
_EPOCH_WEEKDAY = 3
_DAY_MS = DAY_MS  # typed by seasonal.pxd: the loop's arithmetic in C
_NEVER = -(1 << 63)  # a gate's last time before its first reading
_COUNT_CAP = 255  # uint8 slot counts saturate (the day and spread horizons are shorter)
# A gate's numbers (float32): seconds seen, level, mean |deviation|, cos and sin parts.
_G_SEEN, _G_MEAN, _G_DEV, _G_COS, _G_SIN = 0, 1, 2, 3, 4
_GATE = 5
# A profile's own numbers (float64), by column.
(_TOTAL, _FILLED, _ERR_PROFILE, _ERR_LEVEL, _JUDGED, _ERR_STEP, _ERR_BETWEEN, _USING,
 _ANCHOR, _AMPLITUDE, _RESOLUTION, _RUN_MEAN, _RUN_DEV, _RECENT, _VISIT_SLOT, _VISIT_DAY,
 _VISIT_SUM, _VISIT_N, _COUNT, _LAST_X) = range(20)  # fmt: skip
_STATE = 20
# Bits of ``Stepped.flags``.
IN_USE, WAS_IN_USE = 1, 2


@dataclass(frozen=True)
class SeasonalParams:
    offset_s: int = 0  # local time = UTC + offset (the gateway: Shanghai, +8 h)
    slot_minutes: int = 60  # width of a slot of the day (divides 1440)
    horizon: int = 14  # days a slot's EWMA spans
    explains: float = 0.6  # the profile's error must be below this share of the level's
    error_horizon: int = 500  # readings the error EWMAs span
    spread_horizon: int = 100  # readings a slot's spread EWMA spans
    tolerance_minutes: int = 15  # how much earlier or later a daily pattern may come
    gate_horizon_h: float = 48.0  # hours the gate's EWMAs span
    gate_min_h: float = 24.0  # hours a series is seen before it may get a profile
    gate_share: float = 0.5  # daily harmonic amplitude / mean |deviation| that opens it

    def __post_init__(self) -> None:
        if self.slot_minutes <= 0 or 1440 % self.slot_minutes:
            raise ValueError(
                f"slot_minutes must divide a day's 1,440 minutes, not {self.slot_minutes}"
            )
        for name in ("horizon", "spread_horizon"):  # a slot's counts are uint8
            if not 0 < getattr(self, name) < _COUNT_CAP:
                raise ValueError(f"{name} must be 1 to {_COUNT_CAP - 1}, not {getattr(self, name)}")

    @property
    def per_day(self) -> int:
        return 1440 // self.slot_minutes


@dataclass(frozen=True)
class Stepped:
    """Each reading of a ``SeasonalBank.step`` batch."""

    flags: U8  # IN_USE after the reading, WAS_IN_USE before it
    residual: F64  # what the detectors judge: anchor + c·(x − usual) in use, else x
    usual: F64  # the reading's usual value before it (NaN: no profile, or slot not seen)
    spread: F64  # that slot's EWMA |x − usual| before it (else the series' mean |dev|)
    level: F64  # the mean of the seen slots before it (no profile: the gate's level)
    slots: I64  # each reading's slot
    profiles: I64  # each reading's profile (−1: none yet)


@dataclass(frozen=True)
class Profiled:
    level: F64  # the mean of the seen slots before each reading (none: the series' level)
    residual: F64  # what the detectors judge: anchor + c·(x − usual) in use, else x
    usual: F64  # the reading's usual value before it (NaN: its slot not seen yet)
    spread: F64  # that slot's EWMA |x − usual| before it (not seen: of all readings')
    slots: I64  # each reading's slot
    in_use: npt.NDArray[np.bool_]  # whether the profile explained the series then


def slot_of(ts_ms: I64, offset_s: int, slot_minutes: int) -> I64:
    """Each time's slot: minute of the local day // width, + slots a day at weekends."""
    per_day = 1440 // slot_minutes
    local = ts_ms + offset_s * 1000
    days = local // DAY_MS
    slot = (local - days * DAY_MS) // (slot_minutes * MINUTE_MS)
    weekend = (days + _EPOCH_WEEKDAY) % 7 >= 5
    result: I64 = slot + per_day * weekend.astype(np.int64)
    return result


def describe_slot(index: int, slot_minutes: int) -> tuple[str, str]:
    """(Chinese, English) for a slot: "工作日 14:00", "14:00 on weekdays"."""
    per_day = 1440 // slot_minutes
    minute, weekend = (index % per_day) * slot_minutes, index >= per_day
    clock = f"{minute // 60:02d}:{minute % 60:02d}"
    return (
        f"{'周末' if weekend else '工作日'} {clock}",
        f"{clock} {'at weekends' if weekend else 'on weekdays'}",
    )


class SeasonalBank:
    """Gates and profiles of many series, in arrays: ``add_gate`` gives a series its gate,
    ``step`` judges a batch of readings in order."""

    def __init__(self, params: SeasonalParams | None = None, capacity: int = 16) -> None:
        self.params = params if params is not None else SeasonalParams()
        slots = 2 * self.params.per_day
        self.gates = 0
        self.gate_last_t = np.full(capacity, _NEVER, dtype=np.int64)
        self.gate_state = np.zeros((capacity, _GATE), dtype=np.float32)
        self.gate_profile = np.full(capacity, -1, dtype=np.int32)
        self.profiles = 0
        self.state = np.zeros((0, _STATE))
        self.usual = np.zeros((0, slots), dtype=np.float32)
        self.spread = np.zeros((0, slots), dtype=np.float32)
        self.seen = np.zeros((0, slots), dtype=np.uint8)
        self.spread_n = np.zeros((0, slots), dtype=np.uint8)

    @property
    def gate_bytes(self) -> int:
        return int(self.gate_last_t.itemsize + self.gate_state[0:1].nbytes) + 4

    @property
    def profile_bytes(self) -> int:
        per_slot = sum(a.itemsize for a in (self.usual, self.spread, self.seen, self.spread_n))
        return per_slot * self.usual.shape[1] + _STATE * 8

    @property
    def state_bytes(self) -> int:
        """Bytes of the gates and profiles handed out."""
        return self.gates * self.gate_bytes + self.profiles * self.profile_bytes

    @property
    def in_use(self) -> int:
        """Profiles in use now."""
        return int(np.count_nonzero(self.state[: self.profiles, _USING]))

    def add_gate(self) -> int:
        if self.gates == len(self.gate_last_t):
            grown = len(self.gate_last_t) + max(16, len(self.gate_last_t) // 8)
            self.gate_last_t = _grown(self.gate_last_t, grown, _NEVER)
            self.gate_state = _grown(self.gate_state, grown, 0.0)
            self.gate_profile = _grown(self.gate_profile, grown, -1)
        self.gates += 1
        return self.gates - 1

    def _add_profile(self, gate: int) -> None:
        if self.profiles == len(self.state):
            grown = len(self.state) + max(4, len(self.state) // 8)
            self.state = _grown(self.state, grown, 0.0)
            self.usual = _grown(self.usual, grown, 0.0)
            self.spread = _grown(self.spread, grown, 0.0)
            self.seen = _grown(self.seen, grown, 0)
            self.spread_n = _grown(self.spread_n, grown, 0)
        profile = self.profiles
        self.profiles += 1
        row = self.state[profile]
        row[:] = 0.0
        row[_RESOLUTION] = math.inf
        row[_VISIT_SLOT] = row[_VISIT_DAY] = -1.0
        self.gate_profile[gate] = profile

    def profile_of(self, gate: int) -> int:
        return int(self.gate_profile[gate])

    def step(self, gates: I64, ts_ms: I64, values: F64) -> Stepped:
        p = self.params
        gates = np.ascontiguousarray(gates, dtype=np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        slots = np.ascontiguousarray(slot_of(ts_ms, p.offset_s, p.slot_minutes), dtype=np.int64)
        # Where in its slot each reading falls, −0.5 … 0.5 from the slot's middle.
        width = p.slot_minutes * MINUTE_MS
        within = np.ascontiguousarray((ts_ms + p.offset_s * 1000) % width / width - 0.5)
        n = len(values)
        flags = np.zeros(n, dtype=np.uint8)
        residual, usual, spread, level = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        profiles = np.empty(n, dtype=np.int64)
        start = 0
        while start < n:
            start = _steps(
                start, gates, ts_ms, values, slots, within, p.per_day, p.horizon, p.explains,
                p.error_horizon, p.spread_horizon, p.tolerance_minutes, p.slot_minutes,
                p.gate_horizon_h * 3600.0, p.gate_min_h * 3600.0, p.gate_share,
                p.offset_s * 1000, self.gate_last_t, self.gate_state, self.gate_profile,
                self.state, self.usual, self.spread, self.seen, self.spread_n,
                flags, residual, usual, spread, level, profiles,
            )  # fmt: skip
            if start < n:  # its gate opened: the series gets a profile from this reading
                self._add_profile(int(gates[start]))
        return Stepped(flags, residual, usual, spread, level, slots, profiles)


def _grown(array: _Array, rows: int, fill: float) -> _Array:
    """``array`` with ``rows`` rows, the new ones ``fill``."""
    grown = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return cast(_Array, grown)


def profile(ts_ms: I64, values: F64, params: SeasonalParams | None = None) -> Profiled:
    """One series, in time order: each reading judged against the profile before it."""
    bank = SeasonalBank(params, capacity=1)
    gate = bank.add_gate()
    stepped = bank.step(np.full(len(values), gate, dtype=np.int64), ts_ms, values)
    return Profiled(
        stepped.level,
        stepped.residual,
        stepped.usual,
        stepped.spread,
        stepped.slots,
        (stepped.flags & IN_USE).astype(bool),
    )


def _steps(
    start: int,
    gates: I64,
    ts_ms: I64,
    values: F64,
    slots: I64,
    within: F64,
    per_day: int,
    horizon: int,
    explains: float,
    error_horizon: int,
    spread_horizon: int,
    tolerance: float,
    slot_minutes: int,
    gate_horizon_s: float,
    gate_min_s: float,
    gate_share: float,
    offset_ms: int,
    gate_last_t: I64,
    gate_state: npt.NDArray[np.float32],
    gate_profile: npt.NDArray[np.int32],
    state: F64,
    usual: npt.NDArray[np.float32],
    spread: npt.NDArray[np.float32],
    seen: npt.NDArray[np.uint8],
    spread_n: npt.NDArray[np.uint8],
    flags: U8,
    residual: F64,
    usual_out: F64,
    spread_out: F64,
    level_out: F64,
    profile_out: I64,
) -> int:
    """The readings from ``start`` in order (typed by seasonal.pxd, compiled: one reading
    costs a few dozen instructions).  Returns where it stopped: the length, or a reading
    whose series' gate just opened and which needs a profile first."""
    count_slots = 2 * per_day
    nan = math.nan
    for j in range(start, len(values)):
        g = gates[j]
        x = values[j]
        t = ts_ms[j]
        b = slots[j]
        k = gate_profile[g]
        if k < 0:
            # The gate: no profile until the series shows a daily cycle.
            seen_s = float(gate_state[g, _G_SEEN])
            dev = float(gate_state[g, _G_DEV])
            c = float(gate_state[g, _G_COS])
            s = float(gate_state[g, _G_SIN])
            if (
                seen_s >= gate_min_s
                and dev > 0.0
                and 2.0 * math.sqrt(c * c + s * s) >= (gate_share * dev)
            ):
                return j
            mean = float(gate_state[g, _G_MEAN])
            if gate_last_t[g] == _NEVER:
                mean = x
            else:
                dt = (t - gate_last_t[g]) / 1000.0
                if dt < 0.0:
                    dt = 0.0
                seen_s += dt
                a = 1.0
                if seen_s > 0.0:
                    a = dt / seen_s if seen_s < gate_horizon_s else dt / gate_horizon_s
                if a > 1.0:
                    a = 1.0
                d = x - mean
                angle = 2.0 * math.pi * ((t + offset_ms) % _DAY_MS) / _DAY_MS
                mean += a * d
                dev += a * (abs(d) - dev)
                c += a * (d * math.cos(angle) - c)
                s += a * (d * math.sin(angle) - s)
            gate_last_t[g] = t
            gate_state[g, _G_SEEN] = seen_s
            gate_state[g, _G_MEAN] = mean
            gate_state[g, _G_DEV] = dev
            gate_state[g, _G_COS] = c
            gate_state[g, _G_SIN] = s
            flags[j] = 0
            residual[j] = x
            usual_out[j] = nan
            spread_out[j] = dev
            level_out[j] = mean
            profile_out[j] = -1
            continue
        profile_out[j] = k
        total = state[k, _TOTAL]
        filled = state[k, _FILLED]
        err_profile = state[k, _ERR_PROFILE]
        err_level = state[k, _ERR_LEVEL]
        judged = state[k, _JUDGED]
        err_step = state[k, _ERR_STEP]
        err_between = state[k, _ERR_BETWEEN]
        using = state[k, _USING] != 0.0
        anchor = state[k, _ANCHOR]
        amplitude = state[k, _AMPLITUDE]
        resolution = state[k, _RESOLUTION]
        run_mean = state[k, _RUN_MEAN]
        run_dev = state[k, _RUN_DEV]
        recent = state[k, _RECENT]
        visit_slot = int(state[k, _VISIT_SLOT])
        visit_day = int(state[k, _VISIT_DAY])
        visit_sum = state[k, _VISIT_SUM]
        visit_n = state[k, _VISIT_N]
        r = state[k, _COUNT]
        if r == 0.0:
            run_mean = x
            recent = x
        was_using = using
        day = (t + offset_ms) // _DAY_MS
        if b != visit_slot or day != visit_day:
            if visit_n > 0.0:  # the slot is over for today: fold its mean in
                mean_of_day = visit_sum / visit_n
                count = int(seen[k, visit_slot])
                if count == 0:
                    usual[k, visit_slot] = mean_of_day
                    total += float(usual[k, visit_slot])
                    filled += 1.0
                else:
                    was = float(usual[k, visit_slot])
                    usual[k, visit_slot] = was + (mean_of_day - was) / min(count + 1, horizon)
                    total += float(usual[k, visit_slot]) - was
                seen[k, visit_slot] = min(count + 1, _COUNT_CAP)
                # The cycle's size: the mean distance of the seen slots from their level.
                amplitude = 0.0
                for near in range(count_slots):
                    if seen[k, near] > 0:
                        amplitude += abs(float(usual[k, near]) - total / filled)
                amplitude /= filled
            visit_slot, visit_day, visit_sum, visit_n = b, day, 0.0, 0.0
        visit_sum += x
        visit_n += 1.0
        if r > 0.0 and x != state[k, _LAST_X] and abs(x - state[k, _LAST_X]) < resolution:
            resolution = abs(x - state[k, _LAST_X])
        level = total / filled if filled > 0.0 else run_mean
        level_out[j] = level
        a = 1.0 / min(r + 1.0, error_horizon)
        run_dev += a * (abs(x - run_mean) - run_dev)
        run_mean += a * (x - run_mean)
        recent_was = recent
        recent += max(RECENT_ALPHA, 1.0 / (r + 1.0)) * (x - recent)
        expected = level
        nearest = level
        calm = 1.0  # how much of the deviation counts: less where a slot usually varies more
        own = b
        twin = (b + per_day) % count_slots  # the same time on the other kind of day
        if seen[k, b] < 2 and seen[k, twin] > seen[k, b]:
            b = twin  # a weekend slot seen on fewer than two days: the weekdays' (or back)
        varies = float(spread[k, own]) if spread_n[k, own] > 0 else float(spread[k, twin])
        if seen[k, b] > 0:
            expected = float(usual[k, b])
            # The neighbouring slot on the reading's side, within the same kind of day.
            base = b - b % per_day
            other = base + (b - base + (1 if within[j] >= 0.0 else per_day - 1)) % per_day
            if seen[k, other] > 0:
                between = expected + abs(within[j]) * (float(usual[k, other]) - expected)
                a = 1.0 / min(judged + 1.0, error_horizon)
                err_step += a * (abs(x - expected) - err_step)
                err_between += a * (abs(x - between) - err_between)
                if err_between <= err_step:
                    expected = between
            # A daily pattern comes a little earlier or later from day to day: what the
            # detectors judge is the deviation from the usual value nearest the reading
            # within ``tolerance`` minutes either side (the profile's errors and spreads are
            # against the slot's own, or a profile would fit white noise).
            nearest = expected
            # Only for a reading unusual for its own slot: choosing the nearest of several
            # would otherwise shrink the noise the detectors learn.  The slots compared are
            # those the times ``tolerance`` minutes before and after the reading fall in.
            if abs(x - expected) > 3.0 * varies:
                position = (within[j] + 0.5) * slot_minutes
                lowest = math.floor((position - tolerance) / slot_minutes)
                highest = math.floor((position + tolerance) / slot_minutes)
                for shift in range(lowest, highest + 1):
                    near = base + (b - base + shift) % per_day
                    if seen[k, near] > 0 and abs(x - float(usual[k, near])) < abs(x - nearest):
                        nearest = float(usual[k, near])
            usual_out[j] = expected
            spread_out[j] = varies
            if varies > err_profile:
                calm = err_profile / varies
            a = 1.0 / min(judged + 1.0, error_horizon)
            # Errors clipped at four typical ones once there is a typical one: an anomaly
            # must not make every usual variation look small for the next day.
            miss = abs(x - expected)
            if judged > 50.0 and miss > 4.0 * err_profile:
                miss = 4.0 * err_profile
            err_profile += a * (miss - err_profile)
            miss = abs(x - recent_was)
            if judged > 50.0 and miss > 4.0 * err_level:
                miss = 4.0 * err_level
            err_level += a * (miss - err_level)
            judged += 1.0
            weight = 1.0 / min(int(spread_n[k, own]) + 1, spread_horizon)
            spread[k, own] = float(spread[k, own]) + weight * (
                abs(x - expected) - float(spread[k, own])
            )
            spread_n[k, own] = min(int(spread_n[k, own]) + 1, _COUNT_CAP)
            # In use from when it explains the series until it does no better than the level.
            if using:
                using = err_profile <= err_level
            else:
                using = (
                    seen[k, b] >= 2
                    and err_profile < explains * err_level
                    and amplitude > resolution
                )
                anchor = level  # deviations are judged around the level of this moment
        else:
            usual_out[j] = nan
            spread_out[j] = run_dev
        flags[j] = (1 if using else 0) | (2 if was_using else 0)  # IN_USE, WAS_IN_USE
        residual[j] = anchor + calm * (x - nearest) if using else x
        state[k, _TOTAL] = total
        state[k, _FILLED] = filled
        state[k, _ERR_PROFILE] = err_profile
        state[k, _ERR_LEVEL] = err_level
        state[k, _JUDGED] = judged
        state[k, _ERR_STEP] = err_step
        state[k, _ERR_BETWEEN] = err_between
        state[k, _USING] = 1.0 if using else 0.0
        state[k, _ANCHOR] = anchor
        state[k, _AMPLITUDE] = amplitude
        state[k, _RESOLUTION] = resolution
        state[k, _RUN_MEAN] = run_mean
        state[k, _RUN_DEV] = run_dev
        state[k, _RECENT] = recent
        state[k, _VISIT_SLOT] = visit_slot
        state[k, _VISIT_DAY] = visit_day
        state[k, _VISIT_SUM] = visit_sum
        state[k, _VISIT_N] = visit_n
        state[k, _COUNT] = r + 1.0
        state[k, _LAST_X] = x
    return len(values)
