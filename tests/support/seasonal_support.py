"""A water tank's outlet pressure that follows the clock, fed through the gateway's
``Detector`` (the seasonal tests of the gateway and of the alerts)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.detection.detector import Detector
from jiayuan.anomaly import Anomaly
from jiayuan.contract import Reading
from jiayuan.places import Place

PERIOD_MS = 60_000
PER_DAY = 1440
START_MS = 1_795_968_000_000  # Monday 2026-11-30 00:00 in Shanghai (UTC+8)
PLACE = Place("d", "s", "e", "b1", "water_tank", "T01")
NIGHT_RUN = slice(4 * PER_DAY + 120, 4 * PER_DAY + 180)  # Friday 02:00-03:00


def outlet_pressure(days: int, seed: int) -> npt.NDArray[np.float64]:
    """A booster set's outlet: 0.36 MPa by day, 0.30 at night (23:00-06:00, the night
    pressure reduction), lower while the estate draws water at the morning (07:00-09:00,
    −0.03) and evening (18:00-21:00, −0.02) peaks, reached within half an hour;
    transmitter noise 0.0015, reported to 0.001."""
    hours = (np.arange(days * PER_DAY) % PER_DAY) / 60.0
    night = (hours < 6.0) | (hours >= 23.0)
    values = np.where(night, 0.30, 0.36)
    for begin, end, depth in ((7.0, 9.0, 0.03), (18.0, 21.0, 0.02)):
        rise = np.clip((hours - begin) * 2.0, 0.0, 1.0) * np.clip((end - hours) * 2.0, 0.0, 1.0)
        values -= depth * rise
    noise = np.random.default_rng(seed).normal(0.0, 0.0015, len(hours))
    result: npt.NDArray[np.float64] = np.round(values + noise, 3)
    return result


def feed(detector: Detector, values: npt.NDArray[np.float64]) -> list[Anomaly]:
    changed: list[Anomaly] = []
    batch: list[tuple[Place, Reading, int]] = []
    for k, value in enumerate(values.tolist()):
        ts = START_MS + k * PERIOD_MS
        reading = Reading("T01", "water_tank", k + 1, ts, {"supply_pressure": value}, "b1")
        batch.append((PLACE, reading, ts))
        if len(batch) == 30:  # half an hour a batch, as a backlog comes
            changed += detector.readings(batch)
            batch = []
    return changed + detector.readings(batch)
