"""Seasonal profiles: used only where a daily rhythm explains the series, and then an
excursion at an unusual time of day is what the detectors see, not the daily switches."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.detection.statistics import seasonal
from tools.cli import main

PERIOD_S = 300
DAY = 86_400 // PERIOD_S
START = 1_700_438_400  # Monday 2023-11-20 00:00 UTC


def stamps(days: int) -> npt.NDArray[np.int64]:
    return (START + PERIOD_S * np.arange(days * DAY)) * 1000


def pump_draw(days: int, seed: int) -> npt.NDArray[np.float64]:
    """High from 07:00 to 21:00 (± 5 minutes a day), low at night, noisy."""
    rng = np.random.default_rng(seed)
    minute = (np.arange(days * DAY) * PERIOD_S // 60) % 1440
    jitter = np.repeat(rng.integers(-5, 6, days), DAY)
    on = (minute >= 420 + jitter) & (minute < 1260 + jitter)
    return np.where(on, 40.0, 5.0) + rng.normal(0.0, 0.5, days * DAY)


def test_used_only_where_a_daily_rhythm_explains_the_series() -> None:
    rng = np.random.default_rng(1)
    noise = seasonal.profile(stamps(14), 20 + rng.normal(0, 1, 14 * DAY))
    walk = seasonal.profile(stamps(14), 20 + rng.normal(0, 1, 14 * DAY).cumsum())
    draw = seasonal.profile(stamps(14), pump_draw(14, 2))
    assert not noise.in_use.any() and not walk.in_use.any()
    assert draw.in_use[3 * DAY :].all()
    # In use, what the detectors judge stays near one level through the daily switches.
    assert np.abs(np.diff(draw.residual[3 * DAY :])).max() < 6.0
    assert np.isnan(draw.usual[0]) and abs(draw.usual[10 * DAY + 12 * 12] - 40.0) < 1.0


def test_a_pump_running_at_night_is_flagged_and_the_daily_switches_are_not(
    tmp_path: Path,
) -> None:
    values = pump_draw(14, 3)
    night = slice(10 * DAY + 2 * 12, 10 * DAY + 4 * 12)  # day 10, 02:00-04:00
    values[night] = 40.0 + np.random.default_rng(4).normal(0.0, 0.5, 24)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        writer.writerows([t // 1000, f"{v:.3f}"] for t, v in zip(stamps(14), values, strict=True))
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = np.array([float(row["anomaly_score"]) for row in rows])
    flagged = np.flatnonzero(scores[3 * DAY :] >= 0.5) + 3 * DAY
    assert (scores[night.start + 3 : night.stop] >= 0.5).all()
    # Beyond the excursion and its clearing, nothing.
    assert set(flagged.tolist()) <= set(range(night.start, night.stop + 12))
    assert "工作日 02:" in rows[night.start + 3]["explanation"]
