"""``jiayuan detect`` on CSV files: extra columns pass through, scores stay in [0, 1], an
injected step scores 1, and a bad row stops the command with its line number."""

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
    assert got[0] == ["timestamp", "value", "label", "anomaly_score"]
    assert [r[:3] for r in got] == rows
    scores = np.array([float(r[3]) for r in got[1:]])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[250:255].max() == 1.0
    assert scores[:250].max() < 1.0


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
