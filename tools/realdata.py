"""The site model on third-party labelled data, beside a plain PCA T²/Q baseline run on the
same files: Tennessee Eastman (per-fault detection rate, false alarms on d00_te.dat) and
BATADAL (precision, recall, F1 and time to detect each attack).

The data sit outside the repository (``../shared/data`` by default, see its README); when a
data set is absent this says so and scores nothing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from gateway.detection.statistics.site_model import SiteModel

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Detector = Callable[[F64], Bools]

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TEP_FAULT_ROW = 160  # each d01..d21_te.dat turns faulty after row 160 (8 h at 3 min)
TEP_MINUTES_PER_ROW = 3
TEP_UNDETECTABLE = (3, 9, 15)  # excluded from the mean, as in the literature


class BaselinePca:
    """Textbook PCA monitoring: standardised signals, components holding 90 % of the
    variance, T² against its χ² limit and Q against Jackson–Mudholkar's, both at 99 %;
    a row is anomalous when either passes."""

    def __init__(self, healthy: F64, variance: float = 0.9, confidence: float = 0.99) -> None:
        self.mean = healthy.mean(axis=0)
        spread = healthy.std(axis=0)
        self.spread = np.where(spread > 1e-12, spread, 1.0)
        standard = (healthy - self.mean) / self.spread
        eigenvalues, vectors = np.linalg.eigh(np.cov(standard, rowvar=False))
        eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
        share = np.cumsum(eigenvalues) / eigenvalues.sum()
        kept = int(np.searchsorted(share, variance)) + 1
        self.loadings, self.eigenvalues = vectors[:, :kept], eigenvalues[:kept]
        z = NormalDist().inv_cdf(confidence)
        # χ²(k) quantile by Wilson–Hilferty.
        self.t2_limit = kept * (1 - 2 / (9 * kept) + z * math.sqrt(2 / (9 * kept))) ** 3
        rest = np.maximum(eigenvalues[kept:], 0.0)
        t1, t2, t3 = float(rest.sum()), float((rest**2).sum()), float((rest**3).sum())
        h0 = 1 - 2 * t1 * t3 / (3 * t2**2)
        self.q_limit = t1 * (
            z * math.sqrt(2 * t2 * h0**2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1**2
        ) ** (1 / h0)

    def __call__(self, rows: F64) -> Bools:
        standard = (rows - self.mean) / self.spread
        scores = standard @ self.loadings
        t2 = (scores**2 / self.eigenvalues).sum(axis=1)
        q = ((standard - scores @ self.loadings.T) ** 2).sum(axis=1)
        result: Bools = (t2 > self.t2_limit) | (q > self.q_limit)
        return result


def site_detector(healthy: F64, names: list[str]) -> Detector:
    model = SiteModel(healthy, names)
    return lambda rows: model.score(rows).anomalous


METHODS: dict[str, Callable[[F64, list[str]], Detector]] = {
    "site model": site_detector,
    "baseline PCA": lambda healthy, names: BaselinePca(healthy),
}


# -- Tennessee Eastman -------------------------------------------------------------------


@dataclass
class TepResult:
    false_alarm_rate: float
    detection: dict[int, float]  # fault → share of faulty rows flagged
    delay_min: dict[int, float | None]  # fault → minutes to the first flag

    @property
    def mean_detection(self) -> float:
        kept = [v for f, v in self.detection.items() if f not in TEP_UNDETECTABLE]
        return float(np.mean(kept))


def _tep(root: Path, name: str) -> F64:
    rows = np.loadtxt(root / "tep" / name)
    return rows.T if name == "d00.dat" else rows  # d00.dat is stored transposed


def tep(root: Path) -> dict[str, TepResult]:
    healthy = _tep(root, "d00.dat")
    names = [f"v{k + 1}" for k in range(healthy.shape[1])]
    normal = _tep(root, "d00_te.dat")
    faults = {f: _tep(root, f"d{f:02d}_te.dat") for f in range(1, 22)}
    out: dict[str, TepResult] = {}
    for method, make in METHODS.items():
        detect = make(healthy, names)
        detection: dict[int, float] = {}
        delay: dict[int, float | None] = {}
        for fault, rows in faults.items():
            after = detect(rows)[TEP_FAULT_ROW:]
            detection[fault] = float(after.mean())
            hits = np.flatnonzero(after)
            delay[fault] = float(hits[0] * TEP_MINUTES_PER_ROW) if len(hits) else None
        out[method] = TepResult(float(detect(normal).mean()), detection, delay)
    return out


def format_tep(results: dict[str, TepResult]) -> str:
    methods = list(results)
    head = f"{'fault':>5}" + "".join(f" {m + ' rate':>18} {'delay min':>9}" for m in methods)
    lines = [head, "-" * len(head)]
    for fault in range(1, 22):
        mark = "*" if fault in TEP_UNDETECTABLE else " "
        cells = ""
        for m in methods:
            delay = results[m].delay_min[fault]
            shown = "—" if delay is None else f"{delay:.0f}"
            cells += f" {results[m].detection[fault]:>18.3f} {shown:>9}"
        lines.append(f"{fault:>4}{mark}" + cells)
    lines.append("-" * len(head))
    lines.append(
        f"{'mean':>5}"
        + "".join(f" {results[m].mean_detection:>18.3f} {'':>9}" for m in methods)
        + "   (* excluded: faults 3, 9, 15)"
    )
    lines.append(
        f"{'FAR':>5}"
        + "".join(f" {results[m].false_alarm_rate:>18.3f} {'':>9}" for m in methods)
        + "   (rows flagged in d00_te.dat)"
    )
    return "\n".join(lines)


# -- BATADAL -----------------------------------------------------------------------------


@dataclass
class BatadalResult:
    precision: float
    recall: float
    f1: float
    flagged_share: float
    attacks: list[tuple[int, int, int | None]]  # (start row, hours, hours to detect)


def _batadal(root: Path, name: str) -> tuple[list[str], F64, Bools | None]:
    with (root / "batadal" / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [column.strip() for column in next(reader)]
        rows = [row for row in reader if row]
    signals = [c for c in header if c not in ("DATETIME", "ATT_FLAG")]
    where = [header.index(c) for c in signals]
    values = np.array([[float(row[k]) for k in where] for row in rows])
    labels = None
    if "ATT_FLAG" in header:
        flag = header.index("ATT_FLAG")
        labels = np.array([float(row[flag]) == 1.0 for row in rows])
    return signals, values, labels


def _windows(labels: Bools) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))


def batadal(root: Path) -> dict[str, dict[str, BatadalResult]]:
    names, healthy, _ = _batadal(root, "dataset03.csv")
    tests = {name: _batadal(root, name) for name in ("dataset04.csv", "test_dataset.csv")}
    out: dict[str, dict[str, BatadalResult]] = {}
    for method, make in METHODS.items():
        detect = make(healthy, names)
        for test, (_, rows, labels) in tests.items():
            assert labels is not None
            flags = detect(rows)
            tp = int((flags & labels).sum())
            precision = tp / max(int(flags.sum()), 1)
            recall = tp / max(int(labels.sum()), 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            attacks = []
            for start, end in _windows(labels):
                hits = np.flatnonzero(flags[start:end])
                attacks.append((start, end - start, int(hits[0]) if len(hits) else None))
            result = BatadalResult(precision, recall, f1, float(flags.mean()), attacks)
            out.setdefault(test, {})[method] = result
    return out


def format_batadal(results: dict[str, dict[str, BatadalResult]]) -> str:
    lines: list[str] = []
    for test, by_method in results.items():
        methods = list(by_method)
        lines.append(f"-- {test} (trained on dataset03.csv)")
        lines.append(f"{'':<22}" + "".join(f" {m:>14}" for m in methods))
        for label, field in (
            ("precision", "precision"),
            ("recall", "recall"),
            ("F1", "f1"),
            ("rows flagged", "flagged_share"),
        ):
            cells = "".join(f" {getattr(by_method[m], field):>14.3f}" for m in methods)
            lines.append(f"{label:<22}" + cells)
        first = by_method[methods[0]].attacks
        for k, (start, hours, _) in enumerate(first):
            label = f"attack {k + 1} row {start} {hours} h"
            cells = ""
            for m in methods:
                detected = by_method[m].attacks[k][2]
                cells += f" {'missed' if detected is None else f'{detected} h':>14}"
            lines.append(f"{label:<22}" + cells)
        lines.append("")
    return "\n".join(lines)


def run(dataset: str, root: Path | None = None) -> str:
    """The printed comparison for ``tep`` or ``batadal``, or why there is none."""
    root = root if root is not None else DEFAULT_DATA
    folder = root / dataset
    if not folder.is_dir():
        return f"{dataset}: no data at {folder.resolve()} (see ../shared/data/README.md); skipped"
    if dataset == "tep":
        return "== Tennessee Eastman: detection rate per fault (rows after 160)\n" + format_tep(
            tep(root)
        )
    return "== BATADAL: attack detection\n" + format_batadal(batadal(root))
