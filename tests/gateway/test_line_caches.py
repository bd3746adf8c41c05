"""The line-protocol caches hold what repeats, not a copy per anomaly.

A district whose uplink fails opens an offline anomaly for every device at once; each
anomaly's tag set (device, code, severity …) is written at its opening and its closing
only, so caching it would keep some 900 bytes an open anomaly (``bench/memory_breakdown.py
--offline``) for a saving of one formatting.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.storage.points import ANOMALY, NO_BUILDING, anomaly_line
from jiayuan import influx
from jiayuan.anomaly import CLOSED, OPEN, Anomaly
from jiayuan.influx import format_line

OPENED = Anomaly(
    "pudong",
    "zhangjiang",
    "estate-1",
    "b 1",  # a building that needs escaping
    "lift-1",
    "lift",
    "lift.offline",
    "warning",
    "设备离线",
    "device offline",
    61.5,
    60.0,
    1_764_000_000_000,
    0,
    OPEN,
    "silent for 61.5 s",
)


def _reference(anomaly: Anomaly) -> str:
    """The anomaly's line through format_line, as it was always written."""
    tags = {
        "district": anomaly.district,
        "street": anomaly.street,
        "estate": anomaly.estate,
        "building": anomaly.building or NO_BUILDING,
        "device": anomaly.device,
        "kind": anomaly.kind,
        "code": anomaly.code,
        "severity": anomaly.severity,
    }
    fields: dict[str, influx.Value] = {
        "value": float(anomaly.value),
        "threshold": float(anomaly.threshold),
        "start": anomaly.start_ms,
        "end": anomaly.end_ms,
        "state": anomaly.state,
        "title_zh": anomaly.title_zh,
        "title_en": anomaly.title_en,
        "detail": anomaly.detail,
    }
    if anomaly.explanation:
        fields["explanation"] = anomaly.explanation
    return format_line(ANOMALY, tags, fields, anomaly.start_ms)


def test_anomaly_lines_are_what_format_line_writes() -> None:
    closed = replace(OPENED, end_ms=OPENED.start_ms + 5_000, state=CLOSED, building="")
    explained = replace(OPENED, explanation="出水压力 0.28 MPa，通常 0.34 outlet pressure")
    odd = replace(OPENED, device="lift 1,=x", estate="estate=2")
    for anomaly in (OPENED, closed, explained, odd):
        assert anomaly_line(anomaly) == _reference(anomaly)


def test_anomaly_lines_leave_the_line_caches_as_they_were() -> None:
    anomaly_line(OPENED)  # the names every anomaly shares, cached if ever
    entries = influx.cached_entries()
    for n in range(2_000):
        device = f"lift-{n}"
        line = anomaly_line(replace(OPENED, device=device, building=f"b{n % 7}"))
        assert f",device={device}," in line
    assert influx.cached_entries() == entries
