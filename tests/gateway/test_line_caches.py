"""The line-protocol caches hold what repeats, not a copy per anomaly.

A district whose uplink fails opens an offline anomaly for every device at once; each
anomaly's tag set (device, code, severity …) is written at its opening and its closing
only, so caching it would keep some 900 bytes an open anomaly (``bench/memory_breakdown.py
--offline``) for a saving of one formatting.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.storage.points import anomaly_line
from jiayuan import influx
from jiayuan.anomaly import OPEN, Anomaly

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


def test_anomaly_lines_leave_the_line_caches_as_they_were() -> None:
    anomaly_line(OPENED)  # the names every anomaly shares, cached if ever
    entries = influx.cached_entries()
    for n in range(2_000):
        device = f"lift-{n}"
        line = anomaly_line(replace(OPENED, device=device, building=f"b{n % 7}"))
        assert f",device={device}," in line
    assert influx.cached_entries() == entries
