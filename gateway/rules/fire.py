"""Fire-system rules (GB/T 26875.3 state bits, GB 50974-2014 pressures).

A healthy sprinkler pipe leaks slowly and its jockey (稳压) pump tops it up: the pressure is
a saw-tooth whose fall between two pump runs is the pump's band (start to stop pressure).
``fire.sprinkler_pressure_sagging`` opens when the pressure has fallen more than
``sprinkler_sag_max_mpa`` below its highest reading since the pump last ran, for
``pressure_sag_s``, with the pump idle: the pump should have started, so the pipe is
bleeding with the pump off or failed, long before it reaches the 0.10 MPa minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from gateway.rules.base import (
    Check,
    DeviceState,
    TableRules,
    Values,
    above,
    below,
    flag,
    measure,
    negate,
    number,
)
from jiayuan.catalogue import FIRE
from jiayuan.contract import Reading

# Derived values: the sprinkler pressure's peak since the jockey pump last ran, and how far
# the pressure is below it (NaN while the pump is commanded or running).
PEAK = "_sprinkler_peak"
SAG = "_sprinkler_sag"


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
            Check(
                "fire.sprinkler_pressure_sagging",
                *above(SAG, self.threshold("sprinkler_sag_max_mpa"), pressure_margin),
                measure(SAG),
                self.threshold("sprinkler_sag_max_mpa"),
                hold_s=self.threshold("pressure_sag_s"),
                signal="sprinkler_pressure",
            ),
        ]
        return checks

    def derive(self, device: DeviceState, reading: Reading) -> None:
        values = device.values
        pressure = number(values, "sprinkler_pressure")
        if values.get("pump_commanded") == 1 or values.get("pump_running") == 1:
            values[PEAK] = values[SAG] = math.nan
            return
        if math.isnan(pressure):
            return
        peak = number(values, PEAK)
        peak = pressure if math.isnan(peak) else max(peak, pressure)
        values[PEAK] = peak
        values[SAG] = peak - pressure
