"""Daily and weekly profiles of one series, learned online: what is usual at this time.

Pump duty, water draw, charging at night and lift traffic follow the clock, and an operator
acts on "0.28 MPa, usually 0.34 ± 0.01 at 14:00 on weekdays".  Each reading falls in a
slot of the day (``slot_minutes`` wide, local time), on a weekday or at the weekend.  A
slot's *usual* value is the running mean of its mean on each day seen, then an EWMA over
its last ``horizon`` days (so readings of one day cannot predict each other); its *spread*
an EWMA of |x − usual| over its readings.  Between slots the usual value is interpolated
from the slots' middles where that has fitted the series better than steps (a smooth
curve, not a switch), and a reading is compared with the usual value nearest to it within
``tolerance_minutes`` either side (a pump that starts at 07:00 one day, 06:50 the next).

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

One series holds 2 × slots values and 2 × slots counts: 576 slots of 5 minutes are ~18 KB
in float64 and int64, 48 hourly slots ~1.5 KB.  ``jiayuan detect`` keeps one per series; the
gateway, at 2 KB a device for everything, does not keep them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY_MS = 86_400_000
MINUTE_MS = 60_000
# The profile must beat an EWMA of this weight (the level-shift baseline's) to be used.
RECENT_ALPHA = 0.05
# 1970-01-01 was a Thursday: day 0 is weekday 3 (Monday = 0).
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True)
class SeasonalParams:
    offset_s: int = 0  # local time = UTC + offset (the gateway: Shanghai, +8 h)
    slot_minutes: int = 5  # width of a slot of the day (divides 1440)
    horizon: int = 14  # days a slot's EWMA spans
    explains: float = 0.6  # the profile's error must be below this share of the level's
    error_horizon: int = 500  # readings the error EWMAs span
    spread_horizon: int = 100  # readings a slot's spread EWMA spans
    tolerance_minutes: int = 15  # how much earlier or later a daily pattern may come


@dataclass(frozen=True)
class Profiled:
    level: F64  # the mean of the seen slots before each reading (none: of all readings)
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


def profile(ts_ms: I64, values: F64, params: SeasonalParams | None = None) -> Profiled:
    """One series, in time order: each reading judged against the profile before it."""
    p = params if params is not None else SeasonalParams()
    if 1440 % p.slot_minutes:
        raise ValueError(f"slot_minutes must divide a day's 1,440 minutes, not {p.slot_minutes}")
    ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    slots = np.ascontiguousarray(slot_of(ts_ms, p.offset_s, p.slot_minutes), dtype=np.int64)
    # Where in its slot each reading falls, −0.5 … 0.5 from the slot's middle.
    width = p.slot_minutes * MINUTE_MS
    within = np.ascontiguousarray((ts_ms + p.offset_s * 1000) % width / width - 0.5)
    n = len(values)
    level, residual = np.empty(n), np.empty(n)
    usual, spread = np.empty(n), np.empty(n)
    in_use = np.zeros(n, dtype=np.uint8)
    _pass(ts_ms, values, slots, within, 1440 // p.slot_minutes, p.horizon, p.explains,
          p.error_horizon, p.spread_horizon, p.tolerance_minutes // p.slot_minutes,
          level, residual, usual, spread, in_use)  # fmt: skip
    return Profiled(level, residual, usual, spread, slots, in_use.astype(bool))


def _pass(
    ts_ms: I64,
    values: F64,
    slots: I64,
    within: F64,
    per_day: int,
    horizon: int,
    explains: float,
    error_horizon: int,
    spread_horizon: int,
    tolerance: int,
    level_out: F64,
    residual: F64,
    usual_out: F64,
    spread_out: F64,
    in_use: npt.NDArray[np.uint8],
) -> None:
    """The sequential pass (typed by seasonal.pxd, compiled: one reading costs a few dozen
    instructions)."""
    count_slots = 2 * per_day
    usual = np.zeros(count_slots)
    spread = np.zeros(count_slots)
    seen = np.zeros(count_slots, dtype=np.int64)  # days folded into each slot
    spread_n = np.zeros(count_slots, dtype=np.int64)  # readings in each slot's spread
    total = 0.0  # sum of the seen slots' usual values
    filled = 0  # slots seen
    err_profile = 0.0
    err_level = 0.0
    judged = 0  # readings judged against a seen slot (the error EWMAs' count)
    err_step = 0.0
    err_between = 0.0
    using = False
    anchor = 0.0
    amplitude = 0.0
    resolution = math.inf  # the smallest non-zero step between readings
    # Before any slot is complete: the running mean and mean |deviation| of all readings.
    run_mean = values[0] if len(values) else 0.0
    run_dev = 0.0
    recent = values[0] if len(values) else 0.0  # the detectors' own kind of baseline
    nan = math.nan
    visit_slot = -1  # the slot being accumulated today, and its readings' sum and count
    visit_day = -1
    visit_sum = 0.0
    visit_n = 0
    for r in range(len(values)):
        x = values[r]
        b = slots[r]
        day = ts_ms[r] // DAY_MS
        if b != visit_slot or day != visit_day:
            if visit_n > 0:  # the slot is over for today: fold its mean in
                mean = visit_sum / visit_n
                count = seen[visit_slot]
                if count == 0:
                    usual[visit_slot] = mean
                    total += mean
                    filled += 1
                else:
                    step = (mean - usual[visit_slot]) / min(count + 1, horizon)
                    usual[visit_slot] += step
                    total += step
                seen[visit_slot] = count + 1
                # The cycle's size: the mean distance of the seen slots from their level.
                amplitude = 0.0
                for near in range(count_slots):
                    if seen[near] > 0:
                        amplitude += abs(usual[near] - total / filled)
                amplitude /= filled
            visit_slot, visit_day, visit_sum, visit_n = b, day, 0.0, 0
        visit_sum += x
        visit_n += 1
        if r > 0 and x != values[r - 1] and abs(x - values[r - 1]) < resolution:
            resolution = abs(x - values[r - 1])
        level = total / filled if filled else run_mean
        level_out[r] = level
        a = 1.0 / min(r + 1, error_horizon)
        run_dev += a * (abs(x - run_mean) - run_dev)
        run_mean += a * (x - run_mean)
        recent_was = recent
        recent += max(RECENT_ALPHA, 1.0 / (r + 1)) * (x - recent)
        expected = level
        nearest = level
        calm = 1.0  # how much of the deviation counts: less where a slot usually varies more
        own = b
        twin = (b + per_day) % count_slots  # the same time on the other kind of day
        if seen[b] < 2 and seen[twin] > seen[b]:
            b = twin  # a weekend slot seen on fewer than two days: the weekdays' (or back)
        varies = spread[own] if spread_n[own] > 0 else spread[twin]
        if seen[b] > 0:
            expected = usual[b]
            # The neighbouring slot on the reading's side, within the same kind of day.
            base = b - b % per_day
            other = base + (b - base + (1 if within[r] >= 0.0 else per_day - 1)) % per_day
            if seen[other] > 0:
                between = expected + abs(within[r]) * (usual[other] - expected)
                a = 1.0 / min(judged + 1, error_horizon)
                err_step += a * (abs(x - expected) - err_step)
                err_between += a * (abs(x - between) - err_between)
                if err_between <= err_step:
                    expected = between
            # A daily pattern comes a little earlier or later from day to day: what the
            # detectors judge is the deviation from the usual value nearest the reading
            # within ``tolerance`` slots either side (the profile's errors and spreads are
            # against the slot's own, or a profile would fit white noise).
            nearest = expected
            # Only for a reading unusual for its own slot: choosing the nearest of several
            # would otherwise shrink the noise the detectors learn.
            for shift in range(1, tolerance + 1 if abs(x - expected) > 3.0 * varies else 1):
                for sign in (1, -1):
                    near = base + (b - base + sign * shift) % per_day
                    if seen[near] > 0 and abs(x - usual[near]) < abs(x - nearest):
                        nearest = usual[near]
            usual_out[r] = expected
            spread_out[r] = varies
            if varies > err_profile:
                calm = err_profile / varies
            a = 1.0 / min(judged + 1, error_horizon)
            # Errors clipped at four typical ones once there is a typical one: an anomaly
            # must not make every usual variation look small for the next day.
            miss = abs(x - expected)
            if judged > 50 and miss > 4.0 * err_profile:
                miss = 4.0 * err_profile
            err_profile += a * (miss - err_profile)
            miss = abs(x - recent_was)
            if judged > 50 and miss > 4.0 * err_level:
                miss = 4.0 * err_level
            err_level += a * (miss - err_level)
            judged += 1
            weight = 1.0 / min(spread_n[own] + 1, spread_horizon)
            spread[own] += weight * (abs(x - expected) - spread[own])
            spread_n[own] += 1
            # In use from when it explains the series until it does no better than the level.
            if using:
                using = err_profile <= err_level
            else:
                using = (
                    seen[b] >= 2 and err_profile < explains * err_level and amplitude > resolution
                )
                anchor = level  # deviations are judged around the level of this moment
        else:
            usual_out[r] = nan
            spread_out[r] = run_dev
        in_use[r] = 1 if using else 0
        residual[r] = anchor + calm * (x - nearest) if using else x
