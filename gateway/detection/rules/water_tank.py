"""Secondary water supply rules (GB 5749-2022 quality limits, GB 17051 lockable covers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.detection.rules.base import Check, Values, flag, measure, number
from gateway.detection.rules.table import TableRules
from gateway.detection.rules.thresholds import Threshold
from jiayuan.catalogue import WATER_TANK


class WaterTankRules(TableRules):
    def __init__(
        self, overrides: Mapping[str, float] | None = None, vectorised: bool | None = None
    ) -> None:
        super().__init__(WATER_TANK, overrides, vectorised)

    def build_thresholds(self) -> Sequence[Threshold]:
        quality_hold_s = self.threshold("quality_hold_s")
        # Clear margins (INF): the value must come back clearly inside the limit.
        chlorine_margin = self.threshold("chlorine_clear_margin_mg_l")
        turbidity_margin = self.threshold("turbidity_clear_margin_ntu")
        level_margin = self.threshold("level_clear_margin_pct")
        # The level sloshes while pumps start and stop: judge it over a hold like quality.
        level_hold_s = self.setting("level_hold_s", quality_hold_s)
        return (
            Threshold(
                "water_tank.chlorine_low",
                "free_chlorine",
                False,
                self.threshold("free_chlorine_min"),
                chlorine_margin,
                quality_hold_s,
            ),
            Threshold(
                "water_tank.turbidity_high",
                "turbidity",
                True,
                self.threshold("turbidity_max"),
                turbidity_margin,
                quality_hold_s,
            ),
            Threshold(
                "water_tank.level_low",
                "level_pct",
                False,
                self.threshold("level_low_pct"),
                level_margin,
                level_hold_s,
            ),
            Threshold(
                "water_tank.overflow",
                "level_pct",
                True,
                self.threshold("level_overflow_pct"),
                level_margin,
                level_hold_s,
            ),
        )

    def reads(self) -> Sequence[str]:
        return ("ph", "lid_open")

    def build_checks(self) -> Sequence[Check]:
        quality_hold_s = self.threshold("quality_hold_s")
        ph_min, ph_max = self.threshold("ph_min"), self.threshold("ph_max")
        ph_margin = self.threshold("ph_clear_margin")

        def ph_outside(values: Values) -> bool:
            ph = number(values, "ph")
            return ph < ph_min or ph > ph_max

        def ph_back(values: Values) -> bool:
            ph = number(values, "ph")
            return ph_min + ph_margin <= ph <= ph_max - ph_margin

        def ph_limit(values: Values) -> float:
            return ph_min if number(values, "ph") < ph_min else ph_max

        return (
            Check(
                "water_tank.ph_out_of_range",
                ph_outside,
                ph_back,
                measure("ph"),
                ph_limit,
                hold_s=quality_hold_s,
            ),
            Check(
                "water_tank.lid_open",
                *flag("lid_open"),
                measure("lid_open"),
                self.threshold("lid_open_s"),
                hold_s=self.threshold("lid_open_s"),
            ),
        )
