"""Alert storms grouped by cause: the vocabulary and arithmetic of group alerts.

When an estate's uplink or edge agent fails, every device behind it falls silent; when a
building loses power or its switch, every device in it does.  One alert and one work order
stand for the cause ("小区上行中断 estate uplink down", "楼栋设备全部离线 building devices all
offline") and the devices' own offline alerts are held under it.  The engine
(``alerts.engine``) applies this; ``docs/alerts.md`` ("Alert storms") explains the rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from alerts.model import Alert
from alerts.policy import NoisePolicy

# Group alerts are not any device family's: their kind names what they stand for.
GROUP_KIND = "estate"
ESTATE_UPLINK_DOWN = "estate.uplink_down"
BUILDING_DOWN = "estate.building_down"
# Someone stopped the estate's edge agent (its status "stopped"): no outage to dispatch,
# but nothing of the estate is monitored until it runs again.
ESTATE_EDGE_STOPPED = "estate.edge_stopped"
GROUP_CODES = frozenset({ESTATE_UPLINK_DOWN, BUILDING_DOWN, ESTATE_EDGE_STOPPED})
GROUP_TITLES = {
    ESTATE_UPLINK_DOWN: ("小区上行中断", "Estate uplink down"),
    BUILDING_DOWN: ("楼栋设备全部离线", "Building devices all offline"),
    ESTATE_EDGE_STOPPED: ("边缘网关已停止", "Edge stopped"),
}
# A stopped edge is information (no work order, no deadlines); an outage is urgent.
GROUP_SEVERITY = {ESTATE_UPLINK_DOWN: "high", BUILDING_DOWN: "high", ESTATE_EDGE_STOPPED: "info"}
# The group alert an edge agent's status raises for its estate (``online`` raises none).
EDGE_STATE_CAUSES = {"offline": ESTATE_UPLINK_DOWN, "stopped": ESTATE_EDGE_STOPPED}
OFFLINE_SUFFIX = ".offline"
# How many devices a work order's note names; the rest are counted (the API lists all).
LISTED_DEVICES = 200

# (district, street, estate, building) → how many devices the gateway knows there;
# building "" means the whole estate.  0: not known (no grouping by silence).
DeviceCount = Callable[[str, str, str, str], int]


def is_offline_code(code: str) -> bool:
    return code.endswith(OFFLINE_SUFFIX)


def needed(population: int, fraction: float, minimum: int) -> int:
    """How many devices must fall silent within one window to make a group; 0 when the
    population is unknown (then silence alone never groups)."""
    if population <= 0:
        return 0
    return max(minimum, math.ceil(fraction * population - 1e-9))


def estate_threshold(noise: NoisePolicy, population: int) -> int:
    return needed(population, noise.storm_fraction, noise.storm_min_devices)


def building_threshold(noise: NoisePolicy, population: int) -> int:
    return needed(population, noise.building_fraction, noise.building_min_devices)


def group_title(code: str, building: str = "") -> tuple[str, str]:
    zh, en = GROUP_TITLES[code]
    if building:
        return f"{zh}（{building}）", f"{en} ({building})"
    return zh, en


def device_list(children: Sequence[Alert]) -> str:
    """The held devices as a work order's note names them: building/device (kind)."""
    names = sorted(f"{a.building}/{a.device} ({a.kind})" for a in children)
    shown = ", ".join(names[:LISTED_DEVICES])
    more = len(names) - LISTED_DEVICES
    if more > 0:
        shown += f" … 另{more}台 {more} more"
    return f"离线设备 devices offline ({len(names)}): {shown}" if names else ""
