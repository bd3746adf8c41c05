"""Detection rules, one module per sensor family, and the offline (dead-man) check."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.detection.rules.base import AnomalyChange, FamilyRules
from gateway.detection.rules.ebike_charger import EbikeChargerRules
from gateway.detection.rules.fire import FireRules
from gateway.detection.rules.lift import LiftRules
from gateway.detection.rules.offline import OfflineMonitor
from gateway.detection.rules.water_tank import WaterTankRules
from gateway.detection.rules.waterlogging import WaterloggingRules
from jiayuan.catalogue import Kind
from jiayuan.places import Place

RULES: Mapping[Kind, Callable[[Mapping[str, float] | None, bool | None], FamilyRules]] = {
    Kind.LIFT: LiftRules,
    Kind.FIRE: FireRules,
    Kind.WATER_TANK: WaterTankRules,
    Kind.EBIKE_CHARGER: EbikeChargerRules,
    Kind.WATERLOGGING: WaterloggingRules,
}


def all_rules(
    overrides: Mapping[Kind, Mapping[str, float]] | None = None,
    vectorised: bool | None = None,
) -> dict[Kind, FamilyRules]:
    """One rules object per family, with per-family threshold overrides if given; plain
    thresholds run in a vectorised table where that pays (``vectorised=None``), in every
    family (True) or per reading everywhere (False: the reference path)."""
    chosen = overrides or {}
    return {kind: make(chosen.get(kind), vectorised) for kind, make in RULES.items()}


__all__ = ["RULES", "AnomalyChange", "FamilyRules", "OfflineMonitor", "Place", "all_rules"]
