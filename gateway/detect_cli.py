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
CONTRIBUTORS_COLUMN = "contributors"
EXPLANATION_COLUMN = "explanation"
DESCRIPTION = f"""\
jiayuan detect: score a CSV with the gateway's statistical detectors.

By default the file is one univariate series (timestamp,value), scored as a stream (each
row sees only the rows before it). With --columns a,b,c the named columns are one site's
signals, judged together by the site model, learned from --train FILE (healthy operation)
or else from the file's first --learn-rows rows; {CONTRIBUTORS_COLUMN} names the signals
behind each anomalous row.

Every column passes through; {SCORE_COLUMN} in [0, 1] is appended, at least 0.5 exactly on
the rows the gateway would hold an anomaly open for, and below that ordered by surprise;
{EXPLANATION_COLUMN} says, on those rows, what the value usually is (at that hour of a
weekday or weekend day, where the series follows the clock). A row that cannot be read
stops the command with its file, line and column: dropping it silently would shift every
score after it."""
# Width of the seasonal profile's slots of the day (gateway/detection/statistics/seasonal.py).
SLOT_MINUTES = 60
# Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 1e11


class CsvError(ValueError):
    pass


def _check_header(path: str, header: list[str], rest: Any) -> None:
    """An empty file is called empty, not a file without the expected columns."""
    if any(name.strip() for name in header):
        return
    if not any(line.strip() for line in rest):
        raise CsvError(f"{path}: empty file (no header line)")
    raise CsvError(f"{path}: line 1: blank where the header belongs")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score a timestamp,value CSV (or --columns of one site) with the statistical "
        "detectors",
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
    parser.add_argument(
        "--columns",
        metavar="A,B,C",
        help="score these columns together with the site model instead of one series",
    )
    parser.add_argument(
        "--train",
        metavar="HEALTHY.csv",
        help="with --columns: learn the site model from this file of healthy operation",
    )
    parser.add_argument(
        "--learn-rows",
        type=int,
        default=1000,
        metavar="N",
        help="with --columns and no --train: learn from the first N rows, at most half the "
        "file (default: 1000)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.columns:
            names = [name.strip() for name in args.columns.split(",") if name.strip()]
            count = score_site_file(args.csv, args.out, names, args.train, args.learn_rows)
        else:
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

    from gateway.detection.statistics import seasonal
    from gateway.detection.statistics.detectors import StatCore
    from gateway.detection.statistics.explain import explain
    from gateway.detection.statistics.parameters import ALL_BITS, BIT, STUCK
    from gateway.detection.statistics.series import STATE_DTYPE

    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        _check_header(path, header, handle)
        for name in (ts_column, column):
            if name not in header:
                raise CsvError(f"{path}: line 1: no column {name!r} (columns: {header})")
        for added in (SCORE_COLUMN, EXPLANATION_COLUMN):
            if added in header:
                raise CsvError(f"{path}: line 1: already has a column {added!r}")
        at_ts, at_value, width = header.index(ts_column), header.index(column), len(header)
        rows: list[list[str]] = []
        stamps: list[int] = []
        values: list[float] = []
        for row in reader:
            line = reader.line_num
            if len(row) != width:
                raise CsvError(f"{path}: line {line}: expected {width} fields")
            try:
                stamps.append(parse_timestamp(row[at_ts]))
            except ValueError as error:
                raise CsvError(f"{path}: line {line}: column {ts_column!r}: {error}") from None
            try:
                value = float(row[at_value])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise CsvError(
                    f"{path}: line {line}: column {column!r}: not a finite number: "
                    f"{row[at_value]!r}"
                )
            values.append(value)
            rows.append(row)
    # The gateway's core (float32 state, judged one reading at a time when compiled), with
    # no physical minimum and every detector on: the series' meaning is unknown.  A tiny
    # floor, relative to the first value, keeps a perfectly flat start from dividing by 0.
    times = np.array(stamps, dtype=np.int64)
    raw = np.array(values)
    # Where a daily or weekly cycle explains the series, the level, rate and drift
    # detectors judge the deviation from what is usual at that hour, at the series' level
    # (gateway/detection/statistics/seasonal.py); they start afresh whenever the profile
    # comes into or out of use.  Stuck judges the values as sent (a frozen sensor repeats
    # them exactly).
    cycle = seasonal.profile(times, raw, seasonal.SeasonalParams(slot_minutes=SLOT_MINUTES))
    floor = 1e-6 * max(1.0, abs(values[0]) if values else 1.0)
    level = StatCore(capacity=1, detectors=ALL_BITS & ~BIT[STUCK], dtype=STATE_DTYPE)
    stuck = StatCore(capacity=1, detectors=BIT[STUCK], dtype=STATE_DTYPE)
    slot = level.add_series(floor)
    stuck.add_series(floor)
    everywhere = np.full(len(values), slot, dtype=np.int64)
    _, scores = stuck.update_scored(everywhere, times, raw)
    switches = np.flatnonzero(np.diff(cycle.in_use.astype(np.int8))) + 1
    for start, end in zip([0, *switches.tolist()], [*switches.tolist(), len(values)], strict=True):
        if start > 0:
            level.reset(slot)
        part = slice(start, end)
        _, judged = level.update_scored(everywhere[part], times[part], cycle.residual[part])
        scores[part] = np.maximum(scores[part], judged)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, SCORE_COLUMN, EXPLANATION_COLUMN])
        for k, (row, score) in enumerate(zip(rows, scores.tolist(), strict=True)):
            text = ""
            if score >= 0.5:
                cyclic = bool(cycle.in_use[k])
                when = seasonal.describe_slot(int(cycle.slots[k]), SLOT_MINUTES)
                text = explain(
                    (column, column),
                    values[k],
                    float(cycle.usual[k] if cyclic else cycle.level[k]),
                    float(cycle.spread[k]),
                    when=when if cyclic else None,
                )
            writer.writerow([*row, f"{score:.6f}", text])
    return len(rows)


def read_columns(path: str, names: list[str]) -> tuple[list[str], list[dict[str, str]], Any]:
    """Header, rows and the named columns as a rows × columns float array."""
    import numpy as np

    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        _check_header(path, header, handle)
        missing = [name for name in names if name not in header]
        if missing:
            raise CsvError(f"{path}: line 1: no column {missing[0]!r} (columns: {header})")
        rows: list[dict[str, str]] = []
        values: list[list[float]] = []
        for row in reader:
            line = reader.line_num
            if None in row or any(row[name] is None for name in header):
                raise CsvError(f"{path}: line {line}: expected {len(header)} fields")
            numbers = []
            for name in names:
                try:
                    number = float(row[name])
                except ValueError:
                    number = math.nan
                if not math.isfinite(number):
                    raise CsvError(
                        f"{path}: line {line}: column {name!r}: not a finite number: {row[name]!r}"
                    )
                numbers.append(number)
            values.append(numbers)
            rows.append(row)
    return header, rows, np.array(values, dtype=np.float64).reshape(len(rows), len(names))


def score_site_file(
    path: str, out: str, names: list[str], train: str | None, learn_rows: int
) -> int:
    from gateway.detection.statistics.site_model import SiteModel

    if len(names) < 2:
        raise CsvError("--columns needs at least two columns (one series: --column)")
    header, rows, values = read_columns(path, names)
    for column in (SCORE_COLUMN, CONTRIBUTORS_COLUMN):
        if column in header:
            raise CsvError(f"{path}: line 1: already has a column {column!r}")
    healthy = read_columns(train, names)[2] if train else values[: min(learn_rows, len(rows) // 2)]
    try:
        model = SiteModel(healthy, names)
    except ValueError as error:
        raise CsvError(f"{train or path}: {error}") from None
    scores = model.score(values)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*header, SCORE_COLUMN, CONTRIBUTORS_COLUMN])
        writer.writeheader()
        for k, row in enumerate(rows):
            named = "; ".join(scores.contributors(k, names)) if scores.anomalous[k] else ""
            score = f"{scores.score[k]:.6f}"
            writer.writerow({**row, SCORE_COLUMN: score, CONTRIBUTORS_COLUMN: named})
    return len(rows)
