"""Waterlogging rules: depth over 15 cm (GB 50014) and over 30 cm (Shanghai wording)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.rules.base import Check, TableRules, above, measure
from jiayuan.catalogue import WATERLOGGING


class WaterloggingRules(TableRules):
    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        super().__init__(WATERLOGGING, overrides)

    def build_checks(self) -> Sequence[Check]:
        margin = self.threshold("depth_clear_margin_cm")
        warning, high = self.threshold("depth_warning_cm"), self.threshold("depth_high_cm")
        return (
            Check(
                "waterlogging.depth_15", *above("depth", warning, margin), measure("depth"), warning
            ),
            Check("waterlogging.depth_30", *above("depth", high, margin), measure("depth"), high),
        )
