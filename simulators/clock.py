"""Simulated time: epoch milliseconds, Shanghai local hour, and parsing a run's start.

Models never read the wall clock; they see only the timestamps they are given, so a seed
and a start time fix every sample.  Only the command line turns "now" into a start time.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# Shanghai keeps UTC+8 all year (no daylight saving), so a fixed offset is exact.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
_OFFSET_MS = 8 * HOUR_MS


def local_hour(ts_ms: int) -> float:
    """Hour of the day in Shanghai, 0 ≤ h < 24, with fractions."""
    return ((ts_ms + _OFFSET_MS) % DAY_MS) / HOUR_MS


def daily_wave(ts_ms: int, peak_hour: float) -> float:
    """A cosine over the day in [-1, 1] that peaks at ``peak_hour`` local time."""
    return math.cos(2.0 * math.pi * (local_hour(ts_ms) - peak_hour) / 24.0)


def parse_start(text: str) -> int:
    """A run's start as epoch ms: ``now``, epoch milliseconds, or ISO 8601.

    ISO times without a zone are read as Shanghai time.
    """
    if text == "now":
        return (int(time.time() * 1000) // SECOND_MS) * SECOND_MS
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"start {text!r} is not 'now', epoch milliseconds or an ISO 8601 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return int(parsed.timestamp() * 1000)
