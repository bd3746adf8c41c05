"""A pump room of two water tanks whose signals keep healthy relations: both tanks' levels
follow one demand cycle (20 min) and each outlet pressure falls as the draw rises; chlorine,
turbidity and pH wander on their own.  ``broken`` makes tank 1's outlet pressure rise with
the draw instead: every value stays inside its healthy range, only the relation breaks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from jiayuan.contract import Reading, Value
from jiayuan.places import Place

T0 = 1_750_000_000_000
PERIOD_S = 10
CYCLE_S = 1200
TANKS = (("W01", 60.0, 0.25), ("W02", 55.0, 0.26))


def tank_id(estate: str, tank: str) -> str:
    return f"{estate}-{tank}"


def tank_values(rng: np.random.Generator, t_s: float, broken: bool, tank: int) -> dict[str, Value]:
    draw = math.sin(2 * math.pi * t_s / CYCLE_S)
    _, level, pressure = TANKS[tank]
    # Broken: rising with the draw, a little less far than it fell (inside its range).
    swing = 0.015 if broken and tank == 0 else -0.02
    return {
        "free_chlorine": round(0.4 + rng.normal(0, 0.003), 3),
        "turbidity": round(0.3 + rng.normal(0, 0.02), 3),
        "ph": round(7.3 + rng.normal(0, 0.03), 2),
        "level_pct": round(level + 15 * draw + rng.normal(0, 0.3), 2),
        "supply_pressure": round(pressure + swing * draw + rng.normal(0, 0.001), 4),
    }


def pump_room(
    places: tuple[Place, Place],
    seconds: int,
    seed: int = 0,
    broken: tuple[int, int] = (0, 0),
    start_ms: int = T0,
    skip: frozenset[int] = frozenset(),
    period_s: int = PERIOD_S,
) -> Iterator[Reading]:
    """Both tanks' readings, every ``period_s`` with a few seconds between the tanks and
    some jitter; ``broken`` is a (from, to) span of seconds; tank 2 is silent in the
    periods numbered in ``skip``."""
    rng = np.random.default_rng(seed)
    for k in range(seconds // period_s):
        t_s = k * period_s
        for tank, place in enumerate(places):
            if tank == 1 and k in skip:
                continue
            ts = start_ms + t_s * 1000 + 3000 * tank + int(rng.integers(0, 500))
            values = tank_values(rng, t_s, broken[0] <= t_s < broken[1], tank)
            yield Reading(place.device, place.kind, k + 1, ts, values, place.building)
