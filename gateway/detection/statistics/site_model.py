"""Several signals of one site judged together: a model of healthy operation.

A pump set reports pressure, flow, current, vibration and temperature; a fault often shows
as a broken relation between them before any one value leaves its band.  ``SiteModel``
learns healthy operation as dynamic PCA (each row with its ``lags`` previous rows, so
relations in time count too) on standardised signals, keeping the components that hold
``variance`` of it: T² measures how unusual a row is inside that subspace, Q (the squared
residual) how far it leaves it, i.e. which healthy relations it breaks.  Both are divided
by their limits and averaged into one index.

The limits are quantiles of the index on healthy rows that the model did not see: the
training rows are cut into ``folds`` blocks and each block is scored by a model learned
on the others (in-sample statistics understate Q, and a limit set on them fires on
healthy data).  The index is watched twice: as it is, for an abrupt break, and as an
EWMA (``smoothing``) for a small persistent one; each has its own out-of-fold limit.
A row is anomalous when either passes its limit; its score is u / (1 + u), u the larger
ratio of chart to limit, so ≥ 0.5 exactly on anomalous rows.  The signals named for a
row are those with the largest share of its index (their squared residual and their
part of T²), summed over their lags, each with its value and what its healthy relations
with the others make of it (its projection on the healthy subspace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SiteParams:
    lags: int = 2  # each row with its two previous rows (dynamic PCA)
    variance: float = 0.99  # components kept: the residual holds only near-exact relations
    quantile: float = 0.99  # of the out-of-fold healthy index, per chart
    folds: int = 5
    smoothing: tuple[float, ...] = (1.0, 0.1)  # EWMA weights of the charts (1.0: raw)
    # T²'s weight in the index (Q has the rest); 0: broken relations only, as the gateway
    # judges a site whose single values its own detectors already judge.
    t2_weight: float = 0.5
    # What one row adds to a smoothed chart at most (None: all of it): a single large break
    # is the raw chart's; the EWMA watches small persistent ones, and one spike must not
    # hold it over its limit for dozens of rows.
    ewma_clip: float | None = None


@dataclass(frozen=True)
class SiteScores:
    index: F64  # combined T²/Q index per row (1.0: at the healthy limits)
    score: F64  # in [0, 1], ≥ 0.5 exactly where ``anomalous``
    anomalous: npt.NDArray[np.bool_]
    contributions: F64  # rows × signals: each signal's share of its row's index
    values: F64  # rows × signals as read
    expected: F64  # rows × signals: what healthy relations with the others make of each

    def contributors(self, row: int, names: Sequence[str], top: int = 3) -> list[str]:
        """The signals with the largest shares of a row's index, with their value and what
        the other signals make it: "current 62% 12.3 (expected 10.8)"."""
        shares = self.contributions[row]
        order = np.argsort(shares)[::-1][:top]
        return [
            f"{names[j]} {shares[j]:.0%} {self.values[row, j]:.4g} "
            f"(预期 expected {self.expected[row, j]:.4g})"
            for j in order.tolist()
            if shares[j] >= 0.05
        ]


class _Pca:
    """PCA of standardised lagged rows: T² and Q of rows, and their per-column parts."""

    def __init__(self, lagged: F64, variance: float) -> None:
        self.mean = lagged.mean(axis=0)
        spread = lagged.std(axis=0)
        # A signal constant in healthy operation: any change of it is a change of one unit.
        self.spread = np.where(spread > 1e-12, spread, 1.0)
        standard = (lagged - self.mean) / self.spread
        eigenvalues, vectors = np.linalg.eigh(np.cov(standard, rowvar=False))
        eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
        share = np.cumsum(eigenvalues) / max(float(eigenvalues.sum()), 1e-300)
        kept = min(int(np.searchsorted(share, variance)) + 1, len(eigenvalues))
        self.loadings = vectors[:, :kept]
        # The residual space's basis: Q's residual is also its projection on it.
        self.complement = vectors[:, kept:]
        self.eigenvalues = np.maximum(eigenvalues[:kept], 1e-12)

    def parts(self, lagged: F64) -> tuple[F64, F64, F64]:
        """Per row and column: its part of T², its squared residual (Q's part), and its
        projection on the healthy subspace in the signal's units (what the relations
        make of it)."""
        standard = (lagged - self.mean) / self.spread
        scores = standard @ self.loadings
        projected = scores @ self.loadings.T
        residual = standard - projected
        # T² = zᵀ P Λ⁻¹ Pᵀ z = Σⱼ zⱼ (P Λ⁻¹ Pᵀ z)ⱼ: column j's part (it may be negative).
        t2_parts = standard * ((scores / self.eigenvalues) @ self.loadings.T)
        return t2_parts, residual**2, self.mean + self.spread * projected


def lagged_rows(values: F64, lags: int) -> F64:
    """Each row followed by its ``lags`` previous rows (the first rows repeat row 0)."""
    if lags == 0:
        return values
    padded = np.vstack([np.repeat(values[:1], lags, axis=0), values])
    n = len(values)
    return np.hstack([padded[lags - lag : lags - lag + n] for lag in range(lags + 1)])


def ewma(values: F64, weight: float, start: float) -> F64:
    """EWMA of a sequence, from ``start``."""
    if weight >= 1.0:
        return values.copy()
    out = np.empty_like(values)
    level = start
    for k, value in enumerate(values.tolist()):
        level += weight * (value - level)
        out[k] = level
    return out


class SiteModel:
    """A site's healthy operation, learned from rows × signals of it."""

    def __init__(self, healthy: F64, names: Sequence[str], params: SiteParams | None = None):
        self.params = params if params is not None else SiteParams()
        self.names = list(names)
        healthy = np.asarray(healthy, dtype=np.float64)
        p = self.params
        if healthy.ndim != 2 or healthy.shape[1] != len(self.names):
            raise ValueError(f"healthy rows must have {len(self.names)} columns")
        if len(healthy) < max(2 * p.folds, 3 * healthy.shape[1] * (p.lags + 1) // 2):
            raise ValueError(
                f"{len(healthy)} healthy rows are too few for {healthy.shape[1]} signals "
                f"with {p.lags} lags: at least {3 * healthy.shape[1] * (p.lags + 1) // 2}"
            )
        lagged = lagged_rows(healthy, p.lags)
        # Out-of-fold statistics: each block scored by a model that did not learn it.
        blocks = np.array_split(np.arange(len(lagged)), p.folds)
        t2_held, q_held = np.empty(len(lagged)), np.empty(len(lagged))
        for block in blocks:
            rest = np.setdiff1d(np.arange(len(lagged)), block)
            t2_parts, q_parts, _ = _Pca(lagged[rest], p.variance).parts(lagged[block])
            t2_held[block], q_held[block] = t2_parts.sum(axis=1), q_parts.sum(axis=1)
        self.t2_limit = float(np.quantile(t2_held, p.quantile))
        self.q_limit = float(np.quantile(q_held, p.quantile))
        held_index = self._index(t2_held, q_held)[p.lags :]  # not the padded first rows
        # Where the charts start, and what the first rows (no history to lag) count as.
        self.typical = float(np.median(held_index))
        self.chart_limits = [
            float(np.quantile(ewma(self._clipped(held_index, w), w, self.typical), p.quantile))
            for w in p.smoothing
        ]
        self._pca = _Pca(lagged, p.variance)

    @property
    def projection(self) -> tuple[F64, F64, F64, F64]:
        """Mean and spread of the lagged columns, loadings and eigenvalues: what judging a
        row needs (the gateway keeps them in float32 and judges row by row)."""
        pca = self._pca
        return pca.mean, pca.spread, pca.loadings, pca.eigenvalues

    @property
    def complement(self) -> F64:
        """An orthonormal basis of the residual space (the columns the loadings leave
        out): a standardised row's residual is its projection on it, which needs fewer
        numbers than the loadings when few components are left out."""
        return self._pca.complement

    @property
    def components(self) -> int:
        return int(self._pca.loadings.shape[1])

    def _clipped(self, index: F64, weight: float) -> F64:
        clip = self.params.ewma_clip
        return index if clip is None or weight >= 1.0 else np.minimum(index, clip)

    def _index(self, t2: F64, q: F64) -> F64:
        w = self.params.t2_weight
        return w * t2 / self.t2_limit + (1.0 - w) * q / self.q_limit

    def score(self, rows: F64) -> SiteScores:
        """Judge rows (in time order, each after the ones before it)."""
        rows = np.asarray(rows, dtype=np.float64)
        t2_parts, q_parts, projected = self._pca.parts(lagged_rows(rows, self.params.lags))
        index = self._index(t2_parts.sum(axis=1), q_parts.sum(axis=1))
        index[: self.params.lags] = self.typical  # rows without the history to lag
        ratio = np.zeros(len(rows))
        for weight, limit in zip(self.params.smoothing, self.chart_limits, strict=True):
            smoothed = ewma(self._clipped(index, weight), weight, self.typical)
            ratio = np.maximum(ratio, smoothed / limit)
        signals = len(self.names)
        parts = self._index(t2_parts, q_parts)
        per_signal = parts.reshape(len(rows), self.params.lags + 1, signals).sum(axis=1)
        positive = np.maximum(per_signal, 0.0)
        shares = positive / np.maximum(positive.sum(axis=1, keepdims=True), 1e-300)
        expected = projected[:, :signals]  # the current row's block (then its lags)
        return SiteScores(index, ratio / (1.0 + ratio), ratio >= 1.0, shares, rows, expected)
