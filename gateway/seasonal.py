"""Daily and weekly profiles of one series, learned online: what is usual at this hour.

Pump duty, water draw, charging at night and lift traffic follow the clock, and an operator
acts on "0.28 MPa, usually 0.34 ± 0.01 at 14:00 on weekdays".  Each reading
falls in one of 48 bins: its local hour of the day, on a weekday or at the weekend.  A
bin's *usual* value is the running mean of that hour's mean on the days seen, then an EWMA
over its last ``horizon`` days; its *spread* an EWMA of |x − usual| over its readings.

The profile *explains* a series once a bin has seen two days and while the EWMA of
|x − its bin's usual value| stays below ``explains`` times the EWMA of |x − the level| (the
mean of the bins): white noise, a random walk or an on/off status without a daily rhythm
never do.  Explanations quote the hour's usual value where the profile explains the
series, the overall level otherwise.  The detectors do not judge against the profile (yet):
see docs/detection.md.

The state is 48 × 2 float64 values and 48 counts a series (about 1.2 KB; 600 bytes in
float32), so the gateway does not keep it for every series (its budget is 2 KB a device for
everything).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BINS = 48  # 24 hours × (weekday, weekend)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# 1970-01-01 was a Thursday: day 0 is weekday 3 (Monday = 0).
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True)
class SeasonalParams:
    offset_s: int = 0  # local time = UTC + offset (the gateway: Shanghai, +8 h)
    horizon: int = 14  # visits (days) a bin's EWMA spans
    explains: float = 0.6  # the profile's error must be below this share of the level's
    error_horizon: int = 500  # readings the two error EWMAs span


@dataclass(frozen=True)
class Profiled:
    level: F64  # the mean of the seen bins before each reading (none: of all readings)
    usual: F64  # the reading's bin's usual value before it (NaN: bin not seen yet)
    spread: F64  # that bin's EWMA |x − usual| before it (not seen: of all readings')
    bins: I64  # each reading's bin
    in_use: npt.NDArray[np.bool_]  # whether the profile explained the series then


def bin_of(ts_ms: I64, offset_s: int) -> I64:
    """Each time's bin: local hour, +24 on Saturdays and Sundays."""
    local = ts_ms + offset_s * 1000
    days = local // DAY_MS
    hours = (local - days * DAY_MS) // HOUR_MS
    weekend = (days + _EPOCH_WEEKDAY) % 7 >= 5
    result: I64 = hours + 24 * weekend.astype(np.int64)
    return result


def describe_bin(index: int) -> tuple[str, str]:
    """(Chinese, English) for a bin: "工作日 14:00", "14:00 on weekdays"."""
    hour, weekend = index % 24, index >= 24
    return (
        f"{'周末' if weekend else '工作日'} {hour:02d}:00",
        f"{hour:02d}:00 {'at weekends' if weekend else 'on weekdays'}",
    )


def profile(ts_ms: I64, values: F64, params: SeasonalParams | None = None) -> Profiled:
    """One series, in time order: each reading judged against the profile before it."""
    p = params if params is not None else SeasonalParams()
    ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    bins = np.ascontiguousarray(bin_of(ts_ms, p.offset_s), dtype=np.int64)
    # Where in its hour each reading falls, −0.5 … 0.5 from the hour's middle.
    local = ts_ms + p.offset_s * 1000
    within = np.ascontiguousarray((local % HOUR_MS) / HOUR_MS - 0.5, dtype=np.float64)
    n = len(values)
    level, usual, spread = np.empty(n), np.empty(n), np.empty(n)
    in_use = np.zeros(n, dtype=np.uint8)
    _pass(ts_ms, values, bins, within, p.horizon, p.explains, p.error_horizon,
          level, usual, spread, in_use)  # fmt: skip
    return Profiled(level, usual, spread, bins, in_use.astype(bool))


def _pass(
    ts_ms: I64,
    values: F64,
    bins: I64,
    within: F64,
    horizon: int,
    explains: float,
    error_horizon: int,
    level_out: F64,
    usual_out: F64,
    spread_out: F64,
    in_use: npt.NDArray[np.uint8],
) -> None:
    """The sequential pass (typed by seasonal.pxd, compiled: one reading costs a few dozen
    instructions).  A bin learns once per visit (its hour of one day), from that hour's
    mean, so readings of the same hour cannot predict each other; the usual value at a
    time is interpolated between the middles of its hour and the nearest other hour."""
    usual = np.zeros(BINS)
    spread = np.zeros(BINS)
    seen = np.zeros(BINS, dtype=np.int64)  # visits (days) folded into each bin
    total = 0.0  # sum of the seen bins' usual values
    filled = 0  # bins seen
    err_profile = 0.0
    err_level = 0.0
    judged = 0  # readings judged against a seen bin (the error EWMAs' count)
    # Before any hour is complete: the running mean and mean |deviation| of all readings.
    run_mean = values[0] if len(values) else 0.0
    run_dev = 0.0
    nan = math.nan
    visit_bin = -1  # the hour being accumulated, and its readings' sum and count
    visit_day = -1
    visit_sum = 0.0
    visit_n = 0
    for r in range(len(values)):
        x = values[r]
        b = bins[r]
        day = ts_ms[r] // DAY_MS
        if b != visit_bin or day != visit_day:
            if visit_n > 0:  # the hour is over: fold its mean into its bin
                mean = visit_sum / visit_n
                count = seen[visit_bin]
                if count == 0:
                    usual[visit_bin] = mean
                    total += mean
                    filled += 1
                else:
                    updated = usual[visit_bin] + (mean - usual[visit_bin]) / min(count + 1, horizon)
                    total += updated - usual[visit_bin]
                    usual[visit_bin] = updated
                seen[visit_bin] = count + 1
            visit_bin, visit_day, visit_sum, visit_n = b, day, 0.0, 0
        visit_sum += x
        visit_n += 1
        level = total / filled if filled else run_mean
        level_out[r] = level
        a = 1.0 / min(r + 1, error_horizon)
        run_dev += a * (abs(x - run_mean) - run_dev)
        run_mean += a * (x - run_mean)
        use = False
        expected = level
        if seen[b] == 0 and seen[(b + 24) % BINS] > 0:
            b = (b + 24) % BINS  # no weekend seen yet: the same hour on weekdays (or back)
        if seen[b] > 0:
            expected = usual[b]
            # The neighbouring hour on the side of the reading, within the same day type.
            other = b - b % 24 + (b % 24 + (1 if within[r] >= 0.0 else 23)) % 24
            if seen[other] > 0:
                expected += abs(within[r]) * (usual[other] - expected)
            usual_out[r] = expected
            spread_out[r] = spread[b]
            a = 1.0 / min(judged + 1, error_horizon)
            err_profile += a * (abs(x - expected) - err_profile)
            err_level += a * (abs(x - level) - err_level)
            judged += 1
            spread[b] += (abs(x - expected) - spread[b]) / min(seen[b] * 12 + 1, 12 * horizon)
            use = seen[b] >= 2 and err_profile < explains * err_level
        else:
            usual_out[r] = nan
            spread_out[r] = run_dev
        in_use[r] = 1 if use else 0
