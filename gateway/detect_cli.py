"""``jiayuan detect``: the statistical detectors on a CSV file; what it does is said once,
in ``DESCRIPTION`` (its ``--help``)."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import UTC, datetime
from typing import Any

SCORE_COLUMN = "anomaly_score"
DESCRIPTION = f"""\
jiayuan detect: score any timestamp,value CSV with the statistical detectors.

The file is one univariate series, scored as a stream (each row sees only the rows before
it). Every column passes through; {SCORE_COLUMN} in [0, 1] is appended. A row that
cannot be read stops the command with its file, line and column: dropping it silently
would shift every score after it."""
# Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 1e11


class CsvError(ValueError):
    pass


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score a timestamp,value CSV with the statistical detectors",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--csv", required=True, metavar="IN.csv", help="input CSV with a header")
    parser.add_argument("--out", required=True, metavar="OUT.csv", help="output CSV")
    parser.add_argument("--column", default="value", help="value column (default: value)")
    parser.add_argument(
        "--timestamp-column",
        default="timestamp",
        help="timestamp column: epoch seconds or ms, or ISO 8601 (default: timestamp)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        count = score_file(args.csv, args.out, args.column, args.timestamp_column)
    except (CsvError, OSError) as error:
        print(f"jiayuan detect: {error}", file=sys.stderr)
        return 2
    print(f"scored {count} rows into {args.out}")
    return 0


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds from epoch seconds, epoch milliseconds or ISO 8601 (naive = UTC)."""
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return round(stamp.timestamp() * 1000)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {text!r}")
    return round(number if abs(number) >= MS_THRESHOLD else number * 1000)


def score_file(path: str, out: str, column: str, ts_column: str) -> int:
    import numpy as np

    from gateway.detection.statistics.detectors import StatCore

    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        if not any(name.strip() for name in header):
            if not any(line.strip() for line in handle):
                raise CsvError(f"{path}: empty file (no header line)")
            raise CsvError(f"{path}: line 1: blank where the header belongs")
        for name in (ts_column, column):
            if name not in header:
                raise CsvError(f"{path}: line 1: no column {name!r} (columns: {header})")
        if SCORE_COLUMN in header:
            raise CsvError(f"{path}: line 1: already has a column {SCORE_COLUMN!r}")
        rows: list[dict[str, str]] = []
        stamps: list[int] = []
        values: list[float] = []
        for row in reader:
            line = reader.line_num
            if None in row or any(row[name] is None for name in header):
                raise CsvError(f"{path}: line {line}: expected {len(header)} fields")
            try:
                stamps.append(parse_timestamp(row[ts_column]))
            except ValueError as error:
                raise CsvError(f"{path}: line {line}: column {ts_column!r}: {error}") from None
            try:
                value = float(row[column])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise CsvError(
                    f"{path}: line {line}: column {column!r}: not a finite number: {row[column]!r}"
                )
            values.append(value)
            rows.append(row)
    # No physical minimum and every detector on: the series' meaning is unknown.  A tiny
    # floor, relative to the first value, keeps a perfectly flat start from dividing by 0.
    core = StatCore(capacity=1)
    array = np.array(values)
    slot = core.add_series(floor=1e-6 * max(1.0, abs(values[0]) if values else 1.0))
    _, scores = core.update_scored(
        np.full(len(values), slot, dtype=np.int64), np.array(stamps, dtype=np.int64), array
    )
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*header, SCORE_COLUMN])
        writer.writeheader()
        for row, score in zip(rows, scores.tolist(), strict=True):
            writer.writerow({**row, SCORE_COLUMN: f"{score:.6f}"})
    return len(rows)
