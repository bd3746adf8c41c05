"""A secondary water-supply (二次供水) tank with its quality probes and pumps.

The level draws down with the estate's daily demand (morning and evening peaks, quiet
nights) and the inlet pump refills it from about 40 % to 90 %.  Free chlorine decays
exponentially and is dosed back to about 0.6 mg/L when it reaches about 0.25 mg/L, so a
healthy tank stays well above the 0.05 mg/L minimum of GB 5749-2022 (DOMAIN.md §3).
Turbidity sits at 0.2-0.4 NTU (limit 1 NTU), pH at 7.0-7.6 (6.5-8.5), supply pressure
near 0.25 MPa dipping a little at peak demand.

Faults: ``low_chlorine`` (dosing stops and chlorine falls to 0.01-0.03 mg/L) and
``low_level`` (the inlet closes and the tank drains to 10-15 %); both are compressed in
time, falling within seconds and recovering within seconds after the fault ends.
Hard case ``chlorine_stuck``: the probe repeats its last value while chlorine decays.
Look-alike ``refill_after_draw``: a large draw (cleaning, a burst main flushed) takes the
level to 30-35 % over ten minutes, then the inlet pump refills it as usual; healthy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jiayuan.catalogue import Kind
from simulators.base import NEVER, DeviceModel, Values, noise
from simulators.clock import local_hour
from simulators.faults import Fault
from simulators.registry import Device

TICK_MS = 10_000
FAULT_TICK_MS = 2000
# Demand as a share of the day's mean by local hour (INF: typical residential profile).
# fmt: off
DEMAND_BY_HOUR = (
    0.3, 0.2, 0.2, 0.2, 0.3, 0.6, 1.4, 2.0, 1.6, 1.0, 0.9, 1.1,
    1.2, 0.9, 0.8, 0.8, 0.9, 1.3, 1.9, 2.1, 1.7, 1.2, 0.8, 0.5,
)
# fmt: on
FALL_MS = 3000  # how fast a fault takes a value past its limit
DRAW_MS = 600_000  # a large draw lasts ten minutes


class WaterTankModel(DeviceModel):
    kind = Kind.WATER_TANK

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        super().__init__(device, start_ms, seed, faults)
        rng = self.rng
        # Mean demand in % of the tank per minute: at the evening peak a tank loses about
        # 0.3 %/min, less than the 0.8-1.2 %/min the inlet pump adds.
        self.demand = rng.uniform(0.08, 0.14) / 60_000
        self.refill = rng.uniform(0.8, 1.2) / 60_000
        self.low_set = rng.uniform(38.0, 42.0)
        self.high_set = rng.uniform(88.0, 92.0)
        # Free chlorine half-life of a few hours: 0.6 → 0.25 mg/L in about 3-5 h.
        self.decay_per_ms = rng.uniform(0.17, 0.28) / 3_600_000
        self.dose_at = rng.uniform(0.24, 0.28)
        self.dose_to = rng.uniform(0.55, 0.65)
        self.turbidity = rng.uniform(0.25, 0.35)
        self.ph = rng.uniform(7.1, 7.5)
        self.pressure = rng.uniform(0.24, 0.27)
        self.level = rng.uniform(self.low_set + 5, self.high_set - 2)
        self.pumping = rng.random() < 0.3
        self.chlorine = rng.uniform(self.dose_at + 0.02, self.dose_to)
        # Values a fault drives: name → (value before, target, ramp start, release time);
        # the value ramps to the target over FALL_MS and is held until released.
        self._forced: dict[str, tuple[float, float, int, int]] = {}
        self._stuck_chlorine: float | None = None
        # A large draw: (level before, level after, start, end); linear in between.
        self._draw: tuple[float, float, int, int] | None = None
        self._t = start_ms

    def _advance_to(self, ts: int) -> None:
        for name, (_, target, _, release) in list(self._forced.items()):
            if release <= ts:
                del self._forced[name]
                setattr(self, name, target)
        dt = ts - self._t
        self._t = ts
        if dt <= 0:
            return
        draw = self.demand * DEMAND_BY_HOUR[int(local_hour(ts))]
        if self._draw is not None:
            before, after, since, until = self._draw
            self.level = before + (after - before) * min(1.0, (ts - since) / (until - since))
            if ts >= until:  # the draw is over and the inlet pump refills as usual
                self._draw, self.pumping = None, True
        elif "level" not in self._forced:
            self.level += (self.refill * self.pumping - draw) * dt
            if self.pumping and self.level >= self.high_set:
                self.pumping = False
            elif not self.pumping and self.level <= self.low_set:
                self.pumping = True
            self.level = min(max(self.level, 0.0), 99.0)
        if "chlorine" not in self._forced:
            self.chlorine *= math.exp(-self.decay_per_ms * dt)
            if self.chlorine <= self.dose_at:
                self.chlorine = self.dose_to

    def _forced_value(self, name: str, ts: int) -> float:
        start_value, target, since, _ = self._forced[name]
        share = min(1.0, (ts - since) / FALL_MS)
        return start_value + (target - start_value) * share

    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        self._advance_to(ts)
        rng = self.rng
        level = self._forced_value("level", ts) if "level" in self._forced else self.level
        chlorine = (
            self._forced_value("chlorine", ts) if "chlorine" in self._forced else self.chlorine
        )
        peak = DEMAND_BY_HOUR[int(local_hour(ts))]
        reported = round(max(0.0, chlorine + noise(rng, 0.003)), 3)
        if self._stuck_chlorine is not None:
            reported = self._stuck_chlorine
        values: Values = {
            "free_chlorine": reported,
            "turbidity": round(max(0.05, self.turbidity + noise(rng, 0.02)), 3),
            "ph": round(self.ph + noise(rng, 0.03), 2),
            "level_pct": round(min(max(level + noise(rng, 0.1), 0.0), 100.0), 2),
            "supply_pressure": round(self.pressure - 0.01 * peak + noise(rng, 0.003), 3),
            "pump_running": 1 if self.pumping else 0,
            "lid_open": 0,
        }
        busy = self.fault is not None or self._forced
        return values, None, ts + (FAULT_TICK_MS if busy else TICK_MS)

    def _fault_started(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        if fault.fault_type == "low_chlorine":
            self._forced["chlorine"] = (self.chlorine, self.rng.uniform(0.01, 0.03), ts, NEVER)
        elif fault.fault_type == "low_level":
            self.pumping = False
            self._forced["level"] = (self.level, self.rng.uniform(10.0, 15.0), ts, NEVER)
        elif fault.fault_type == "chlorine_stuck":
            self._stuck_chlorine = round(self.chlorine, 3)
        elif fault.fault_type == "refill_after_draw":
            self.pumping = False
            self._draw = (self.level, self.rng.uniform(30.0, 35.0), ts, ts + DRAW_MS)

    def _fault_ended(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        if fault.fault_type == "low_chlorine":
            del self._forced["chlorine"]
            self.chlorine = self.dose_to  # dosing restarts with a full dose
        elif fault.fault_type == "low_level":
            low = self._forced["level"][1]
            # The inlet reopens at full bore: back above the low-level alarm in seconds.
            self._forced["level"] = (low, self.low_set - 10.0, ts, ts + FALL_MS)
            self.pumping = True
        elif fault.fault_type == "chlorine_stuck":
            self._stuck_chlorine = None
