"""Seasonal profiles in the gateway: a tank's outlet pressure that follows the clock raises
nothing through a healthy week once its first day has shown its two levels, and the booster
running at day pressure at 02:00 opens one anomaly whose explanation names what is usual
at that hour.  Without the profile the same series raises drift at every draw peak and
the night run goes unseen (day pressure is a level the series' own detectors know)."""

from __future__ import annotations

import numpy as np

from gateway.detection.detector import Detector
from gateway.detection.statistics.parameters import StatParams
from gateway.detection.statistics.series import StatisticalDetectors
from jiayuan.anomaly import Anomaly
from tests.support.seasonal_support import (
    NIGHT_RUN,
    PER_DAY,
    PERIOD_MS,
    START_MS,
    feed,
    outlet_pressure,
)


def after_first_day(changed: list[Anomaly]) -> list[Anomaly]:
    return [a for a in changed if a.start_ms >= START_MS + PER_DAY * PERIOD_MS]


def test_a_week_of_a_daily_cycle_raises_nothing_after_its_first_day() -> None:
    detector = Detector()
    changed = feed(detector, outlet_pressure(8, seed=1))
    # On the first day the switches to day and to night pressure are levels never seen
    # before (an anomaly each, as for any series: no cycle is known yet); after it, nothing.
    assert len([a for a in changed if a.active]) <= 2, changed
    assert after_first_day(changed) == []
    statistical = detector.statistical
    assert statistical.seasonal.profiles == 1  # the gate saw the cycle
    devices, held = statistical.state_bytes()["water_tank"]
    # Own slot, gate, profile and seasonal slot of the one series.
    assert devices == 1 and held < 1000


def test_the_booster_running_at_two_in_the_morning_opens_one_explained_anomaly() -> None:
    values = outlet_pressure(8, seed=2)
    values[NIGHT_RUN] += 0.06
    opened = [a for a in after_first_day(feed(Detector(), values)) if a.active]
    assert len(opened) == 1, opened
    anomaly = opened[0]
    assert anomaly.code == "water_tank.level_shift" and anomaly.detail == "supply_pressure"
    assert START_MS + NIGHT_RUN.start * PERIOD_MS <= anomaly.start_ms
    assert anomaly.start_ms <= START_MS + (NIGHT_RUN.start + 5) * PERIOD_MS
    assert abs(anomaly.threshold - 0.30) < 0.005  # the usual value at 02:00
    text = anomaly.explanation
    assert text.startswith("出水压力 0.36"), text
    assert "MPa，工作日 02:00 通常 0.30" in text, text
    assert "/ outlet supply pressure 0.36" in text and "usually 0.30" in text, text
    assert text.endswith("MPa at 02:00 on weekdays"), text


def test_without_its_profile_the_draw_peaks_raise_drift_and_the_night_run_is_missed() -> None:
    """What the gateway did before seasonal profiles, on the same series."""
    values = outlet_pressure(8, seed=2)
    values[NIGHT_RUN] += 0.06
    plain = Detector(statistical=StatisticalDetectors(StatParams(seasonal=frozenset())))
    opened = [a for a in after_first_day(feed(plain, values)) if a.active]
    assert len([a for a in opened if a.code == "water_tank.drift"]) >= 7  # ~one a day
    night_ms = (START_MS + NIGHT_RUN.start * PERIOD_MS, START_MS + NIGHT_RUN.stop * PERIOD_MS)
    assert not [a for a in opened if night_ms[0] <= a.start_ms <= night_ms[1]]


def test_without_a_cycle_a_seasonal_signal_holds_only_its_gate() -> None:
    detector = Detector()
    flat = np.round(0.36 + np.random.default_rng(3).normal(0.0, 0.002, 3 * PER_DAY), 3)
    assert feed(detector, flat) == []
    statistical = detector.statistical
    assert statistical.seasonal.gates == 1 and statistical.seasonal.profiles == 0
