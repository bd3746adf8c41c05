"""E-bike charging rules: per-port over-temperature, over-current, over-power, site smoke.

Each port has its own checks; the anomaly is one per pile and condition (open while any
port is over), its ``detail`` names the port that opened it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.rules.base import Check, TableRules, above, flag, measure
from jiayuan.catalogue import EBIKE_CHARGER, MAX_PORTS, port_field


class EbikeChargerRules(TableRules):
    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        super().__init__(EBIKE_CHARGER, overrides)

    def build_checks(self) -> Sequence[Check]:
        hold_s = self.threshold("over_hold_s")
        limits = (
            (
                "over_temperature",
                "temp",
                self.threshold("port_temp_max"),
                self.setting("temp_clear_margin_c", 3.0),
            ),
            (
                "over_current",
                "current",
                self.threshold("port_current_max"),
                self.setting("current_clear_margin_a", 0.5),
            ),
            (
                "over_power",
                "power",
                self.threshold("port_power_max"),
                self.setting("power_clear_margin_w", 50.0),
            ),
        )
        checks = [Check("ebike_charger.smoke", *flag("smoke"), measure("smoke"), 1.0)]
        for code, signal, limit, margin in limits:
            for port in range(1, MAX_PORTS + 1):
                name = port_field(port, signal)
                checks.append(
                    Check(
                        f"ebike_charger.{code}",
                        *above(name, limit, margin),
                        measure(name),
                        limit,
                        hold_s=hold_s,
                        detail=f"p{port:02d}",
                        signal=name,
                    )
                )
        return checks
