"""The site model: quiet on healthy rows it did not learn, flags a broken relation between
signals that each stay inside their own healthy range, and names the signals that broke it;
on the third-party data sets it beats a plain PCA T²/Q baseline (skipped without the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from gateway.detection.statistics.site_model import SiteModel
from tools import realdata

NAMES = ["outlet_pressure", "flow", "current", "vibration"]
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def pump_room(rows: int, seed: int) -> npt.NDArray[np.float64]:
    """A pump set: demand drives flow; current and pressure follow flow; vibration is noise."""
    rng = np.random.default_rng(seed)
    demand = 10 + 3 * np.sin(2 * np.pi * np.arange(rows) / 288) + rng.normal(0, 0.5, rows)
    flow = demand + rng.normal(0, 0.1, rows)
    current = 5 + 0.8 * flow + rng.normal(0, 0.1, rows)
    pressure = 0.5 - 0.01 * flow + rng.normal(0, 0.002, rows)
    vibration = 2 + rng.normal(0, 0.2, rows)
    return np.column_stack([pressure, flow, current, vibration])


def test_quiet_on_healthy_rows_it_did_not_learn() -> None:
    model = SiteModel(pump_room(3000, 1), NAMES)
    flagged = model.score(pump_room(3000, 2)).anomalous
    # Two charts at their 99 % out-of-fold limits: about 2 % of healthy rows, in runs.
    assert flagged.mean() < 0.05


def test_a_broken_relation_is_flagged_and_its_signals_named() -> None:
    model = SiteModel(pump_room(3000, 1), NAMES)
    rows = pump_room(600, 3)
    # A worn impeller: the motor draws 1.5 A more for the same flow, well inside the
    # current's own healthy range (5 + 0.8 × 7..13 A).
    rows[300:, 2] += 1.5
    low, high = pump_room(3000, 1)[:, 2].min(), pump_room(3000, 1)[:, 2].max()
    assert low <= rows[300:, 2].min() and rows[300:, 2].max() <= high + 1.5
    scores = model.score(rows)
    assert scores.anomalous[305:].mean() > 0.9
    assert scores.anomalous[:300].mean() < 0.03
    assert ((scores.score >= 0.5) == scores.anomalous).all()
    assert scores.contributors(400, NAMES)[0].startswith("current ")
    # What the flow makes of the current is some 1.5 A less than it draws.
    assert 0.5 < scores.values[400, 2] - scores.expected[400, 2] < 2.0
    assert "(预期 expected " in scores.contributors(400, NAMES)[0]


def test_too_few_healthy_rows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        SiteModel(pump_room(10, 1), NAMES)


def _need(dataset: str) -> None:
    if not (DATA / dataset).is_dir():
        pytest.skip(f"no {dataset} data at {DATA / dataset} (see ../shared/data/README.md)")


def test_tennessee_eastman_beats_the_pca_baseline() -> None:
    _need("tep")
    results = realdata.tep(DATA)
    model, baseline = results["site model"], results["baseline PCA"]
    assert model.mean_detection > baseline.mean_detection
    assert model.false_alarm_rate <= baseline.false_alarm_rate


def test_batadal_beats_the_pca_baseline_on_the_test_set() -> None:
    _need("batadal")
    results = realdata.batadal(DATA)["test_dataset.csv"]
    assert results["site model"].f1 > results["baseline PCA"].f1


def test_absent_data_is_reported_not_scored(tmp_path: Path) -> None:
    assert "no data" in realdata.run("tep", tmp_path)
