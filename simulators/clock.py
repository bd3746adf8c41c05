"""Simulated time: epoch milliseconds, Shanghai local hour, and parsing a run's start.

Models never read the wall clock; they see only the timestamps they are given, so a seed
and a start time fix every sample.  Only the command line turns "now" into a start time.
"""

from __future__ import annotations

import math

from jiayuan.timezone import SHANGHAI as SHANGHAI
from jiayuan.timezone import parse_start as parse_start

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
_OFFSET_MS = 8 * HOUR_MS


def local_hour(ts_ms: int) -> float:
    """Hour of the day in Shanghai, 0 ≤ h < 24, with fractions."""
    return ((ts_ms + _OFFSET_MS) % DAY_MS) / HOUR_MS


def daily_wave(ts_ms: int, peak_hour: float) -> float:
    """A cosine over the day in [-1, 1] that peaks at ``peak_hour`` local time."""
    return math.cos(2.0 * math.pi * (local_hour(ts_ms) - peak_hour) / 24.0)
