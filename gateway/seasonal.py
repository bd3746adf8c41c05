"""Daily and weekly profiles of one series, learned online: what is usual at this time.

Pump duty, water draw, charging at night and lift traffic follow the clock, and an operator
acts on "0.28 MPa, usually 0.34 ± 0.01 at 14:00 on weekdays".  Each reading falls in a
slot of the day (``slot_minutes`` wide, local time), on a weekday or at the weekend.  A
slot's *usual* value is the running mean of its mean on each day seen, then an EWMA over
its last ``horizon`` days (so readings of one day cannot predict each other); its *spread*
an EWMA of |x − usual| over its readings.  Between slots the usual value is interpolated
from the slots' middles where that has fitted the series better than steps (a smooth
curve, not a switch).

The profile is *in use* from when a slot seen on two days and the EWMA of |x − usual|
below ``explains`` times the EWMA of |x − the level| (the mean of the slots) say it
explains the series, until it does no better than the level: white noise, a random walk
or an on/off status without a daily rhythm never use it.  In use, the detectors judge
``anchor + c·(x − usual)``: the deviation from what is usual at that time, around the level
at the moment the profile came into use, shrunk by c = typical error / the slot's spread
where a slot usually varies more (a pump that starts some time between 07:00 and 07:30).

One series holds 2 × 2 × slots values and 2 × slots counts: 576 slots of 5 minutes are
~14 KB in float64, 48 hourly slots ~1.2 KB.  ``jiayuan detect`` keeps one per series; the
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
          p.error_horizon, p.spread_horizon, level, residual, usual, spread, in_use)  # fmt: skip
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
    # Before any slot is complete: the running mean and mean |deviation| of all readings.
    run_mean = values[0] if len(values) else 0.0
    run_dev = 0.0
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
            visit_slot, visit_day, visit_sum, visit_n = b, day, 0.0, 0
        visit_sum += x
        visit_n += 1
        level = total / filled if filled else run_mean
        level_out[r] = level
        a = 1.0 / min(r + 1, error_horizon)
        run_dev += a * (abs(x - run_mean) - run_dev)
        run_mean += a * (x - run_mean)
        expected = level
        calm = 1.0  # how much of the deviation counts: less where a slot usually varies more
        if seen[b] == 0 and seen[(b + per_day) % count_slots] > 0:
            b = (b + per_day) % count_slots  # no weekend seen yet: weekdays' (or back)
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
            usual_out[r] = expected
            spread_out[r] = spread[b]
            if spread[b] > err_profile:
                calm = err_profile / spread[b]
            a = 1.0 / min(judged + 1, error_horizon)
            err_profile += a * (abs(x - expected) - err_profile)
            err_level += a * (abs(x - level) - err_level)
            judged += 1
            spread[b] += (abs(x - expected) - spread[b]) / min(spread_n[b] + 1, spread_horizon)
            spread_n[b] += 1
            # In use from when it explains the series until it does no better than the level.
            if using:
                using = err_profile <= err_level
            else:
                using = seen[b] >= 2 and err_profile < explains * err_level
                anchor = level  # deviations are judged around the level of this moment
        else:
            usual_out[r] = nan
            spread_out[r] = run_dev
        in_use[r] = 1 if using else 0
        residual[r] = anchor + calm * (x - expected) if using else x
