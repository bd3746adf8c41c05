"""Explanations of statistical anomalies that an operator can act on: the value, what is
usual, and when it is usual ("出水压力 outlet pressure 0.28 MPa，工作日 14:00 通常 0.34 ±
0.01 MPa / usually 0.34 ± 0.01 MPa at 14:00 on weekdays"), Chinese first."""

from __future__ import annotations

import math


def _decimals(spread: float) -> int:
    """Decimals that show the spread to one significant digit (0 to 6)."""
    if not math.isfinite(spread) or spread <= 0.0:
        return 2
    return min(6, max(0, -math.floor(math.log10(spread))))


def explain(
    name: str,
    value: float,
    usual: float,
    spread: float,
    unit: str = "",
    when: tuple[str, str] | None = None,
) -> str:
    """``name`` is the signal as operators know it (Chinese first where known); ``when`` the
    (Chinese, English) time the usual value is for, from ``seasonal.describe_bin``."""
    digits = _decimals(spread)
    unit_text = f" {unit}" if unit else ""
    now = f"{value:.{digits}f}{unit_text}"
    usual_text = f"{usual:.{digits}f} ± {spread:.{digits}f}{unit_text}"
    if when is None:
        return f"{name} {now}，通常 {usual_text} / usually {usual_text}"
    when_zh, when_en = when
    return f"{name} {now}，{when_zh} 通常 {usual_text} / usually {usual_text} at {when_en}"
