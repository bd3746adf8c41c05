"""Every dashboard Jiayuan ships, in the order the operations centre reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboards import (
    alerts_board,
    ebike_charger,
    estate,
    fire,
    lift,
    overview,
    water_tank,
    waterlogging,
)

BUILDERS: tuple[Callable[[], dict[str, Any]], ...] = (
    overview.dashboard,
    estate.dashboard,
    alerts_board.dashboard,
    lift.dashboard,
    fire.dashboard,
    water_tank.dashboard,
    ebike_charger.dashboard,
    waterlogging.dashboard,
)


def all_dashboards() -> list[dict[str, Any]]:
    """The JSON model of each dashboard (uid, title, templating, panels …)."""
    return [build() for build in BUILDERS]
