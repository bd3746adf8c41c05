"""``jiayuan detect`` stays quiet on healthy series of shapes that no simulator of ours makes:
a clean cycle, a noisy one, a daily square wave with and without noise, a random walk, a
quantised constant and a pump's on/off status.
No row after the warm-up may score 0.5 or more (what the gateway would open an anomaly for)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tools.cli import main

ROWS = 10_000
PERIOD_S = 300
DAY = 86_400 // PERIOD_S  # rows a day
# Rows the scorer may spend learning a series: three days, as a daily cycle is learned from
# each hour seen on two days.
WARMUP = 3 * DAY
Series = npt.NDArray[np.float64]


def noiseless_sine(rng: np.random.Generator) -> Series:
    return 20.0 + 5.0 * np.sin(2 * np.pi * np.arange(ROWS) / DAY)


def noisy_sine(rng: np.random.Generator) -> Series:
    return noiseless_sine(rng) + rng.normal(0.0, 0.3, ROWS)


def random_walk(rng: np.random.Generator) -> Series:
    return 100.0 + np.cumsum(rng.normal(0.0, 1.0, ROWS))


def quantised_constant(rng: np.random.Generator) -> Series:
    # A transmitter resolving 0.1: its noise crosses a rounding boundary on ~1 % of rows.
    return np.round(12.3 + rng.normal(0.0, 0.02, ROWS), 1)


def daily_square(rng: np.random.Generator) -> Series:
    # A pump room's draw: high from 07:00 to 21:00, low at night, no noise at all.
    hours = (np.arange(ROWS) * PERIOD_S // 3600) % 24
    return np.where((hours >= 7) & (hours < 21), 40.0, 5.0)


def noisy_daily_square(rng: np.random.Generator) -> Series:
    return daily_square(rng) + rng.normal(0.0, 0.5, ROWS)


def pump_status(rng: np.random.Generator) -> Series:
    values: list[float] = []
    on = False
    while len(values) < ROWS:
        values += [1.0 if on else 0.0] * int(rng.geometric(1 / (30 if on else 60)))
        on = not on
    return np.array(values[:ROWS])


@pytest.mark.parametrize(
    "make",
    [
        noiseless_sine,
        noisy_sine,
        daily_square,
        noisy_daily_square,
        random_walk,
        quantised_constant,
        pump_status,
    ],
    ids=lambda make: make.__name__,
)
def test_no_row_of_a_healthy_series_scores_as_an_anomaly(
    tmp_path: Path, make: Callable[[np.random.Generator], Series]
) -> None:
    values = make(np.random.default_rng(26))
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        writer.writerows(
            [1_700_000_000 + PERIOD_S * k, f"{v:.6g}"] for k, v in enumerate(values.tolist())
        )
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        scores = np.array([float(row["anomaly_score"]) for row in csv.DictReader(handle)])
    high = np.flatnonzero(scores[WARMUP:] >= 0.5) + WARMUP
    assert len(high) == 0, f"{len(high)} rows score ≥ 0.5, the first at rows {high[:5].tolist()}"


def test_missing_rows_irregular_steps_and_a_gap_are_not_anomalies(tmp_path: Path) -> None:
    rng = np.random.default_rng(27)
    values = noisy_sine(rng)
    kept = rng.random(ROWS) > 0.2  # a fifth of the rows missing
    kept[5000 : 5000 + DAY] = False  # and a whole day
    stamps = 1_700_000_000 + PERIOD_S * np.arange(ROWS) + rng.integers(-60, 61, ROWS)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        writer.writerows([t, f"{v:.6g}"] for t, v in zip(stamps[kept], values[kept], strict=True))
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        scores = np.array([float(row["anomaly_score"]) for row in csv.DictReader(handle)])
    assert not (scores[WARMUP:] >= 0.5).any(), np.flatnonzero(scores >= 0.5)[:5]
