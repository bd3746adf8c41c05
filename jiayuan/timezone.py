"""Shanghai time, and a run's start as given on the command line."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

# Shanghai keeps UTC+8 all year (no daylight saving), so a fixed offset is exact.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def parse_start(text: str) -> int:
    """A run's start as epoch ms: ``now``, epoch milliseconds, or ISO 8601.

    ISO times without a zone are read as Shanghai time.
    """
    if text == "now":
        return (int(time.time() * 1000) // 1000) * 1000
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
