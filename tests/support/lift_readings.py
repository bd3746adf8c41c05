"""A lift reading at rest (door closed in the levelling zone, nobody inside), for the
gateway tests that put lifts through the real broker and InfluxDB."""

from __future__ import annotations

from jiayuan.contract import Reading, Value

AT_REST: dict[str, Value] = {
    "car_status": 0,
    "door_status": 0,
    "door_zone": 1,
    "passenger_status": 2,
    "service_mode": 1,
    "power_status": 1,
    "speed": 0.0,
    "rated_speed": 1.75,
    "car_position": 3,
}


def lift_reading(
    seq: int, ts: int, device: str = "L1", building: str = "b2", **values: Value
) -> Reading:
    """The lift at rest with ``values`` changed (``passenger_status=1``: someone inside)."""
    return Reading(
        device=device,
        kind="lift",
        seq=seq,
        ts=ts,
        values={**AT_REST, **values},
        building=building,
    )
