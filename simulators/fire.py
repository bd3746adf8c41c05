"""A building's fire panel with its sprinkler and hydrant pipes and fire water tank.

The panel reports its state bits (all 0 when healthy) with the analogue values every
10 s.  The sprinkler pipe holds a set-point of 0.30-0.40 MPa and leaks slowly; when it has
lost 0.05 MPa the jockey (稳压) pump is commanded, starts a second later and pumps it back
up to 0.02 MPa above the set-point.  The hydrant pipe sits at 0.40-0.50 MPa (GB 50974-2014
§7.4.12: 0.35-0.50 in high-rises, DOMAIN.md §2) and the tank at 3-5 m, both with noise.

Faults: ``fire_alarm`` (the 火警 bit, flagged as event ``fire.alarm`` when it rises) and
``low_pressure`` (the sprinkler pipe bleeds to 0.05-0.08 MPa, under the 0.10 MPa minimum of
GB 50974-2014 §5.2.2, with the jockey pump switched off, then the pump restores it).
Hard case ``pressure_bleed``: the jockey pump is off and the pipe bleeds at 0.003-0.004
MPa/min, so it stays above 0.10 MPa for about an hour; the pump restores it at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from jiayuan.catalogue import Kind
from simulators.base import DeviceModel, Values, noise
from simulators.faults import Fault
from simulators.registry import Device

CUT_IN_DROP = 0.05  # MPa below the set-point that starts the jockey pump (INF)
CUT_OUT_RISE = 0.02  # MPa above the set-point that stops it (INF)
PUMP_RISE_PER_S = 0.01  # MPa/s while the jockey pump runs
PUMP_FEEDBACK_MS = 1000  # from command to running feedback
SLOW_BLEED_PER_MIN = (0.003, 0.004)  # MPa/min of a pressure_bleed fault
BLEED_MS = 2000  # a low-pressure fault drops below the minimum within this
FAULT_TICK_MS = 2000  # "on threshold" reporting while something is wrong


class FireModel(DeviceModel):
    kind = Kind.FIRE

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        super().__init__(device, start_ms, seed, faults)
        p, rng = device.params, self.rng
        self.setpoint = float(p.get("sprinkler_setpoint", rng.uniform(0.30, 0.40)))
        self.hydrant = float(p.get("hydrant_setpoint", rng.uniform(0.40, 0.50)))
        self.tank = float(p.get("tank_level_m", rng.uniform(3.2, 4.8)))
        # A healthy pipe loses 0.05 MPa in roughly 8-25 minutes.
        self.leak_per_ms = rng.uniform(0.002, 0.006) / 60_000
        self.alarm = 0
        self._event: str | None = None
        # Sprinkler pressure is piecewise linear: (anchor time, anchor pressure, slope).
        self._mode = "leak"  # leak | commanded | pumping | bleed | low
        self._t0 = start_ms
        self._p0 = rng.uniform(self.setpoint - CUT_IN_DROP, self.setpoint + CUT_OUT_RISE)
        self._slope = -self.leak_per_ms
        self._mode_end = self._leak_end()

    def _pressure(self, ts: int) -> float:
        return self._p0 + self._slope * (ts - self._t0)

    def _set(self, mode: str, ts: int, pressure: float, slope: float, end: int) -> None:
        self._mode, self._t0, self._p0, self._slope, self._mode_end = mode, ts, pressure, slope, end

    def _leak_end(self) -> int:
        return self._t0 + max(
            1, round((self._p0 - (self.setpoint - CUT_IN_DROP)) / self.leak_per_ms)
        )

    def _advance_to(self, ts: int) -> None:
        while self._mode_end <= ts:
            t = self._mode_end
            pressure = self._pressure(t)
            if self._mode == "leak":
                self._set("commanded", t, pressure, -self.leak_per_ms, t + PUMP_FEEDBACK_MS)
            elif self._mode == "commanded":
                rise = PUMP_RISE_PER_S / 1000
                target = self.setpoint + CUT_OUT_RISE
                self._set(
                    "pumping", t, pressure, rise, t + max(1, round((target - pressure) / rise))
                )
            elif self._mode == "pumping":
                self._set("leak", t, pressure, -self.leak_per_ms, 0)
                self._mode_end = self._leak_end()
            elif self._mode == "bleed":
                self._set("low", t, pressure, 0.0, 2**62)
            elif self._mode == "slow_bleed":  # empty pipe: stays there
                self._set("low", t, 0.0, 0.0, 2**62)
            else:
                raise AssertionError(f"mode {self._mode} has no end")

    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        self._advance_to(ts)
        rng = self.rng
        sprinkler = max(0.0, self._pressure(ts) + noise(rng, 0.002))
        values: Values = {
            "fire_alarm": self.alarm,
            "fault": 0,
            "supervisory": 0,
            "isolated": 0,
            "sprinkler_pressure": round(sprinkler, 3),
            "hydrant_pressure": round(self.hydrant + noise(rng, 0.003), 3),
            "tank_level": round(self.tank + noise(rng, 0.005), 3),
            "pump_commanded": 1 if self._mode in ("commanded", "pumping") else 0,
            "pump_running": 1 if self._mode == "pumping" else 0,
        }
        event, self._event = self._event, None
        wanted = self._mode_end
        if self.fault is not None:
            wanted = min(wanted, ts + FAULT_TICK_MS)
        return values, event, wanted

    def _fault_started(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        if fault.fault_type == "fire_alarm":
            self.alarm, self._event = 1, "fire.alarm"
        elif fault.fault_type == "low_pressure":
            low = self.rng.uniform(0.05, 0.08)
            now = self._pressure(ts)
            self._set("bleed", ts, now, (low - now) / BLEED_MS, ts + BLEED_MS)
        elif fault.fault_type == "pressure_bleed":
            slope = self.rng.uniform(*SLOW_BLEED_PER_MIN) / 60_000
            now = self._pressure(ts)
            self._set("slow_bleed", ts, now, -slope, ts + max(1, round(now / slope)))

    def _fault_ended(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        if fault.fault_type == "fire_alarm":
            self.alarm = 0  # reset at the panel after the check
        elif fault.fault_type in ("low_pressure", "pressure_bleed"):  # jockey pump back on
            self._set("commanded", ts, self._pressure(ts), 0.0, ts + PUMP_FEEDBACK_MS)
