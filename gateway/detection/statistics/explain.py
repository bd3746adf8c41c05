"""Explanations of statistical anomalies that an operator can act on: the value, what is
usual, and when it is usual ("出水压力 0.28 MPa，工作日 14:00 通常 0.34 ± 0.01 MPa /
outlet supply pressure 0.28 MPa, usually 0.34 ± 0.01 MPa at 14:00 on weekdays"), Chinese
first, then ``jiayuan.anomaly.HALVES`` and English (so a message in two parts can show
each half in its own).  Signal names and units come from the catalogue."""

from __future__ import annotations

import math

from jiayuan.anomaly import HALVES
from jiayuan.catalogue import PORT_FIELD, family


def _decimals(spread: float) -> int:
    """Decimals that show the spread to one significant digit (0 to 6)."""
    if not math.isfinite(spread) or spread <= 0.0:
        return 2
    return min(6, max(0, -math.floor(math.log10(spread))))


def signal_label(kind: str, field: str) -> tuple[str, str, str]:
    """A payload field as operators know it, in Chinese and English, and its unit:
    ("出水压力", "outlet supply pressure", "MPa"), ("p03 充电口温度", "p03 port
    temperature", "°C"); the field name itself where the catalogue does not know it."""
    try:
        signal = family(kind).signal(field)
    except KeyError:
        signal = None
    if signal is None:
        return field, field, ""
    port = PORT_FIELD.fullmatch(field) if signal.per_port else None
    prefix = f"p{port.group(1)} " if port is not None else ""
    name_zh = signal.name_zh or signal.description
    return prefix + name_zh, prefix + signal.description, signal.unit


def explain(
    name: tuple[str, str],
    value: float,
    usual: float,
    spread: float,
    unit: str = "",
    when: tuple[str, str] | None = None,
) -> str:
    """ "出水压力 0.28 MPa，工作日 14:00 通常 0.34 ± 0.01 MPa / outlet supply pressure 0.28
    MPa, usually 0.34 ± 0.01 MPa at 14:00 on weekdays": Chinese first, then the same in
    English.  ``name`` is the signal's (Chinese, English) name; ``when`` the
    (Chinese, English) time the usual value is for, from ``seasonal.describe_slot``."""
    digits = _decimals(spread)
    unit_text = f" {unit}" if unit else ""
    now = f"{value:.{digits}f}{unit_text}"
    usual_text = f"{usual:.{digits}f} ± {spread:.{digits}f}{unit_text}"
    name_zh, name_en = name
    if when is None:
        return f"{name_zh} {now}，通常 {usual_text}{HALVES}{name_en} {now}, usually {usual_text}"
    when_zh, when_en = when
    return (
        f"{name_zh} {now}，{when_zh} 通常 {usual_text}{HALVES}"
        f"{name_en} {now}, usually {usual_text} at {when_en}"
    )


def explain_repeat(name: tuple[str, str], value: float, readings: int, unit: str = "") -> str:
    """A value that stopped changing: how many readings it has repeated for."""
    now = f"{value:g}{' ' + unit if unit else ''}"
    name_zh, name_en = name
    return (
        f"{name_zh} {now}，已连续 {readings} 次读数不变{HALVES}"
        f"{name_en} {now}, the same value for {readings} readings"
    )
