"""``jiayuan detect`` on CSV files: extra columns pass through, scores stay in [0, 1], an
injected step scores ≥ 0.5 and nothing before it does, and a bad row stops the command with
its line number."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from gateway.detect_cli import parse_timestamp
from tools.cli import main


def write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def series_rows(n: int = 400, step_at: int = 250) -> list[list[str]]:
    values = 20.0 + np.random.default_rng(2).normal(0, 0.2, n)
    values[step_at:] += 5.0
    rows = [["timestamp", "value", "label"]]
    rows += [
        [str(1_700_000_000 + 60 * k), f"{v:.3f}", str(int(k >= step_at))]
        for k, v in enumerate(values)
    ]
    return rows


def test_scores_round_trip_columns_and_flag_a_step(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = series_rows()
    write(src, rows)
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        got = list(csv.reader(handle))
    assert got[0] == ["timestamp", "value", "label", "anomaly_score", "explanation"]
    assert [r[:3] for r in got] == rows
    scores = np.array([float(r[3]) for r in got[1:]])
    assert all((r[4] != "") == (float(r[3]) >= 0.5) for r in got[1:])
    assert ((scores >= 0) & (scores <= 1)).all()
    # ≥ 0.5 exactly where an anomaly is open: the jump at once (rate of change), then the shift.
    assert (scores[250:260] >= 0.5).all()
    assert scores[:250].max() < 0.5


def test_iso_timestamps_and_other_column_names(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, [["time", "v"], ["2025-07-01T00:00:00Z", "1.5"], ["2025-07-01 00:00:10", "1.6"]])
    args = ["detect", "--csv", str(src), "--out", str(out), "--column", "v"]
    assert main([*args, "--timestamp-column", "time"]) == 0
    assert parse_timestamp("2025-07-01T00:00:10") == parse_timestamp("1751328010")
    assert parse_timestamp("1751328010000") == 1751328010000


@pytest.mark.parametrize(
    ("bad_row", "column"),
    [(["notatime", "1.0", "x"], "timestamp"), (["1700000000", "", "x"], "value")],
)
def test_a_bad_row_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_row: list[str], column: str
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = series_rows(20, 10)
    rows.insert(6, bad_row)  # line 7 of the file
    write(src, rows)
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: line 7: column {column!r}" in err


def test_a_missing_column_or_short_row_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, [["timestamp", "reading"], ["1", "2"]])
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 2
    assert "line 1: no column 'value'" in capsys.readouterr().err
    write(src, [["timestamp", "value", "x"], ["1", "2", "3"], ["2", "3"]])
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 2
    assert "line 3: expected 3 fields" in capsys.readouterr().err


def test_columns_are_judged_together_and_contributors_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    flow = 10 + rng.normal(0, 1.0, 1500)
    current = 5 + 0.8 * flow + rng.normal(0, 0.1, 1500)
    current[1200:] += 1.0  # more current for the same flow, within the current's own range
    noise = rng.normal(0, 1.0, 1500)
    rows = [["timestamp", "flow", "current", "noise"]]
    rows += [
        [str(60 * k), f"{f:.4f}", f"{c:.4f}", f"{v:.4f}"]
        for k, (f, c, v) in enumerate(zip(flow, current, noise, strict=True))
    ]
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, rows)
    args = ["detect", "--csv", str(src), "--out", str(out), "--columns", "flow,current,noise"]
    assert main(args) == 0
    with out.open(newline="") as handle:
        got = list(csv.DictReader(handle))
    scores = np.array([float(row["anomaly_score"]) for row in got])
    assert (scores[1205:] >= 0.5).mean() > 0.9 and (scores[:1200] >= 0.5).mean() < 0.05
    # Flow and current break their relation together; the other signal is not named.
    assert "current" in got[1300]["contributors"] and "noise" not in got[1300]["contributors"]
    assert all(row["contributors"] == "" for row in got if float(row["anomaly_score"]) < 0.5)
    # Learned from a healthy file instead of the first rows: the same columns, read the same.
    healthy = tmp_path / "healthy.csv"
    write(healthy, rows[:1001])
    assert main([*args, "--train", str(healthy)]) == 0
    write(healthy, [["flow"], ["1.0"]])
    assert main([*args, "--train", str(healthy)]) == 2


def test_an_anomaly_is_explained_by_what_is_usual_at_that_hour(tmp_path: Path) -> None:
    # Outlet pressure over two weeks at 5 min (UTC = local here): a daily swing of ±0.02 MPa
    # around 0.32, highest at 12:00; on day 9 (a weekday) it sags to 0.28 from 14:00.
    start = 1_700_438_400  # Monday 2023-11-20 00:00
    stamps = start + 300 * np.arange(14 * 288)
    hours = (stamps - start) % 86_400 / 3600
    values = 0.32 + 0.02 * np.cos(2 * np.pi * (hours - 12) / 24)
    values += np.random.default_rng(5).normal(0, 0.001, len(stamps))
    sag = (stamps >= start + 8 * 86_400 + 14 * 3600) & (stamps < start + 8 * 86_400 + 16 * 3600)
    values[sag] = 0.28
    rows = [["timestamp", "outlet_pressure"]]
    rows += [[str(t), f"{v:.4f}"] for t, v in zip(stamps.tolist(), values.tolist(), strict=True)]
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, rows)
    args = ["detect", "--csv", str(src), "--out", str(out), "--column", "outlet_pressure"]
    assert main(args) == 0
    with out.open(newline="") as handle:
        got = list(csv.DictReader(handle))
    flagged = [k for k, row in enumerate(got) if float(row["anomaly_score"]) >= 0.5]
    assert flagged and all(sag[k] or sag[k - 3] for k in flagged)
    text = got[flagged[0]]["explanation"]
    # At 14:00 the usual value is 0.32 + 0.02 cos(2π/12) ≈ 0.337.
    assert text.startswith("outlet_pressure 0.28"), text
    assert "工作日 14:00 通常 0.337" in text and "at 14:00 on weekdays" in text, text


@pytest.mark.parametrize("content", ["", "\n\n", "\ufeff"])
def test_an_empty_file_is_called_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(content, encoding="utf-8")
    assert main(["detect", "--csv", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: empty file" in err
    assert "no column" not in err
    assert not out.exists()
