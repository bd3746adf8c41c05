"""Secondary water supply rules (GB 5749-2022 quality limits, GB 17051 lockable covers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.rules.base import Check, TableRules, Values, above, below, flag, measure, number
from jiayuan.catalogue import WATER_TANK


class WaterTankRules(TableRules):
    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        super().__init__(WATER_TANK, overrides)

    def build_checks(self) -> Sequence[Check]:
        quality_hold_s = self.threshold("quality_hold_s")
        chlorine_min = self.threshold("free_chlorine_min")
        turbidity_max = self.threshold("turbidity_max")
        ph_min, ph_max = self.threshold("ph_min"), self.threshold("ph_max")
        level_low, overflow = self.threshold("level_low_pct"), self.threshold("level_overflow_pct")
        # Clear margins (INF): the value must come back clearly inside the limit.
        chlorine_margin = self.setting("chlorine_clear_margin_mg_l", 0.02)
        turbidity_margin = self.setting("turbidity_clear_margin_ntu", 0.1)
        ph_margin = self.setting("ph_clear_margin", 0.1)
        level_margin = self.setting("level_clear_margin_pct", 2.0)
        # The level sloshes while pumps start and stop: judge it over a hold like quality.
        level_hold_s = self.setting("level_hold_s", quality_hold_s)

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
                "water_tank.chlorine_low",
                *below("free_chlorine", chlorine_min, chlorine_margin),
                measure("free_chlorine"),
                chlorine_min,
                hold_s=quality_hold_s,
            ),
            Check(
                "water_tank.turbidity_high",
                *above("turbidity", turbidity_max, turbidity_margin),
                measure("turbidity"),
                turbidity_max,
                hold_s=quality_hold_s,
            ),
            Check(
                "water_tank.ph_out_of_range",
                ph_outside,
                ph_back,
                measure("ph"),
                ph_limit,
                hold_s=quality_hold_s,
            ),
            Check(
                "water_tank.level_low",
                *below("level_pct", level_low, level_margin),
                measure("level_pct"),
                level_low,
                hold_s=level_hold_s,
            ),
            Check(
                "water_tank.overflow",
                *above("level_pct", overflow, level_margin),
                measure("level_pct"),
                overflow,
                hold_s=level_hold_s,
            ),
            Check(
                "water_tank.lid_open",
                *flag("lid_open"),
                measure("lid_open"),
                self.threshold("lid_open_s"),
                hold_s=self.threshold("lid_open_s"),
            ),
        )
