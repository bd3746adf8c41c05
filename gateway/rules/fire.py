"""Fire-system rules (GB/T 26875.3 state bits, GB 50974-2014 pressures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.rules.base import Check, TableRules, Values, below, flag, measure, negate
from jiayuan.catalogue import FIRE


def _pump_not_running(values: Values) -> bool:
    return values.get("pump_commanded") == 1 and values.get("pump_running") == 0


class FireRules(TableRules):
    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        super().__init__(FIRE, overrides)

    def build_checks(self) -> Sequence[Check]:
        hold_s = self.threshold("pressure_low_s")
        # Clear margins (INF) so a pressure hovering at its minimum does not flap.
        pressure_margin = self.setting("pressure_clear_margin_mpa", 0.01)
        level_margin = self.setting("tank_level_clear_margin_m", 0.1)
        sprinkler_min = self.threshold("sprinkler_pressure_min")
        hydrant_min = self.threshold("hydrant_pressure_min")
        tank_min = self.threshold("tank_level_min")
        checks = [
            Check(f"fire.{code}", *flag(signal), measure(signal), 1.0)
            for code, signal in (
                ("alarm", "fire_alarm"),
                ("fault", "fault"),
                ("supervisory", "supervisory"),
                ("isolated", "isolated"),
            )
        ]
        checks += [
            Check(
                "fire.sprinkler_pressure_low",
                *below("sprinkler_pressure", sprinkler_min, pressure_margin),
                measure("sprinkler_pressure"),
                sprinkler_min,
                hold_s=hold_s,
            ),
            Check(
                "fire.hydrant_pressure_low",
                *below("hydrant_pressure", hydrant_min, pressure_margin),
                measure("hydrant_pressure"),
                hydrant_min,
                hold_s=hold_s,
            ),
            Check(
                "fire.tank_level_low",
                *below("tank_level", tank_min, level_margin),
                measure("tank_level"),
                tank_min,
                hold_s=hold_s,
            ),
            Check(
                "fire.pump_not_started",
                _pump_not_running,
                negate(_pump_not_running),
                measure("pump_running"),
                self.threshold("pump_start_s"),
                hold_s=self.threshold("pump_start_s"),
            ),
        ]
        return checks
