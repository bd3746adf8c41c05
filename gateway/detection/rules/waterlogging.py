"""Waterlogging rules: depth over 15 cm (GB 50014) and over 30 cm (Shanghai wording)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.detection.rules.base import Check
from gateway.detection.rules.table import TableRules
from gateway.detection.rules.thresholds import Threshold
from jiayuan.catalogue import WATERLOGGING


class WaterloggingRules(TableRules):
    def __init__(
        self, overrides: Mapping[str, float] | None = None, vectorised: bool | None = None
    ) -> None:
        super().__init__(WATERLOGGING, overrides, vectorised)

    def reads(self) -> Sequence[str]:
        return ()

    def build_checks(self) -> Sequence[Check]:
        return ()

    def build_thresholds(self) -> Sequence[Threshold]:
        margin = self.threshold("depth_clear_margin_cm")
        warning, high = self.threshold("depth_warning_cm"), self.threshold("depth_high_cm")
        return (
            Threshold("waterlogging.depth_15", "depth", True, warning, margin),
            Threshold("waterlogging.depth_30", "depth", True, high, margin),
        )
