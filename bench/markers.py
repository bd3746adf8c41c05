"""Latency markers: readings of devices named ``mark-…`` whose arrival in InfluxDB a
benchmark polls for, noting when each was first seen."""

from __future__ import annotations

import time

from jiayuan.influx import InfluxClient


def note_marks(client: InfluxClient, measurement: str, field: str, seen: dict[str, float]) -> None:
    """Each marker device with a point in ``measurement`` now, at the time it was first
    seen (``field`` is any field of it: InfluxQL returns no rows for tags alone)."""
    series_list = client.query(
        f'SELECT "{field}", "device" FROM "{measurement}" WHERE "device" =~ /^mark-/'
    )
    now = time.time()
    for series in series_list:
        at = series.columns.index("device")
        for row in series.values:
            seen.setdefault(str(row[at]), now)
