"""An e-bike charging pile (电动自行车集中充电) with 8-12 ports.

Bikes arrive mostly in the evening.  A session charges at constant current (2-4 A) while
the pack voltage climbs from its nominal 48 V or 60 V to about 12 % above it, then the
current tapers exponentially until the port draws under 20 W, when the pile cuts it off
as full (DOMAIN.md §4: full-charge detection below ~20 W); the bike stays plugged in for a
while before its owner unplugs it.  Port temperature follows power with a ten-minute lag,
settling at 35-45 °C on a busy port.  The pile reports every 5 s.

Faults: ``over_temperature`` (one port heats to 78-90 °C within 5 s, then is cut off and
cools) and ``over_current`` (one port draws 9-12 A, then is cut off).  The faulty port is
one that is charging, or a bike plugged in as the fault starts.  Hard case ``hot_port``: a
bad contact makes one charging port run 12-16 °C hotter than its power explains (reaching
it within a minute, losing it in the fault's last minute), still under the 65 °C cut-off;
the session lasts the whole fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from jiayuan.catalogue import MAX_PORTS, Kind, port_field
from simulators.base import NEVER, DeviceModel, Values
from simulators.clock import HOUR_MS, MINUTE_MS, daily_wave, local_hour
from simulators.faults import Fault
from simulators.registry import Device

TICK_MS = 5000
FAULT_TICK_MS = 1000
FULL_W = 20.0  # below this the port counts as full (PROD)
THERMAL_TAU_MS = 10 * MINUTE_MS
WATTS_TO_KELVIN = 0.07  # port temperature rise per watt at equilibrium (INF)
RISE_MS = 5000  # an over-temperature fault reaches its peak within this
COOL_PER_MS = 10.0 / 1000  # °C/ms once a hot port is cut off
HOT_PORT_RISE_MS = MINUTE_MS  # a hot contact reaches its excess within this
HOT_PORT_CEILING = 61.0  # °C: a hot_port fault stays clear of the 65 °C rule
# Bikes arriving per free port per hour, by local hour: after work and evenings (INF).
# fmt: off
ARRIVALS_PER_HOUR = (
    0.04, 0.03, 0.02, 0.02, 0.02, 0.03, 0.05, 0.08, 0.08, 0.06, 0.06, 0.07,
    0.10, 0.08, 0.07, 0.07, 0.10, 0.16, 0.25, 0.30, 0.30, 0.25, 0.15, 0.08,
)
# fmt: on
_FIELDS = tuple(
    (
        port_field(p, "plugged"),
        port_field(p, "current"),
        port_field(p, "power"),
        port_field(p, "temp"),
    )
    for p in range(1, MAX_PORTS + 1)
)


@dataclass(slots=True)
class Port:
    plugged: bool = False
    plug_ms: int = 0
    amps: float = 0.0  # constant-current phase
    volts: float = 48.0  # nominal pack voltage
    cc_end_ms: int = 0
    taper_ms: float = 1.0  # time constant of the tapering current
    full_ms: int = 0  # cut off as full from here
    unplug_ms: int = 0
    temp: float = 25.0
    forced_amps: float | None = None
    # Temperature ramp forced by a fault: (from, to, start, ramp length, release time).
    forced_temp: tuple[float, float, int, int, int] | None = None
    # A hot contact (hot_port fault): (excess °C, since, until); the excess ramps in over a
    # minute and out over the last minute, as the contact heats and cools.
    hot: tuple[float, int, int] | None = None
    now_amps: float = 0.0  # as of the last tick, before sensor noise
    now_volts: float = 0.0

    def current(self, ts: int) -> float:
        if not self.plugged or ts >= self.full_ms:
            return 0.0
        if ts < self.cc_end_ms:
            return self.amps
        return self.amps * math.exp(-(ts - self.cc_end_ms) / self.taper_ms)

    def voltage(self, ts: int) -> float:
        progress = min(1.0, (ts - self.plug_ms) / max(1, self.cc_end_ms - self.plug_ms))
        return self.volts * (1.0 + 0.12 * progress)


class EbikeChargerModel(DeviceModel):
    kind = Kind.EBIKE_CHARGER

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        super().__init__(device, start_ms, seed, faults)
        rng = self.rng
        self.n_ports = min(int(device.params.get("ports", 10)), MAX_PORTS)
        self.ambient_mean = rng.uniform(22.0, 28.0)
        self.ports = [Port() for _ in range(self.n_ports)]
        self._t = start_ms
        self._fault_port: Port | None = None
        ambient = self._ambient(start_ms)
        for port in self.ports:
            if rng.random() < 0.45:  # some bikes are already charging when the run starts
                self._plug(port, start_ms - round(rng.uniform(0, 6) * HOUR_MS))
                if port.unplug_ms <= start_ms:
                    port.plugged = False
            watts = port.current(start_ms) * port.voltage(start_ms)
            port.temp = ambient + WATTS_TO_KELVIN * watts

    def _ambient(self, ts: int) -> float:
        return self.ambient_mean + 3.0 * daily_wave(ts, 15.0)  # warmest mid-afternoon

    def _plug(self, port: Port, ts: int) -> None:
        rng = self.rng
        port.plugged = True
        port.plug_ms = ts
        port.amps = rng.uniform(2.0, 4.0)
        port.volts = 48.0 if rng.random() < 0.7 else 60.0
        port.cc_end_ms = ts + round(rng.uniform(1.5, 4.0) * HOUR_MS)
        port.taper_ms = rng.uniform(15, 45) * MINUTE_MS
        full_watts = port.amps * port.volts * 1.12
        port.full_ms = port.cc_end_ms + round(port.taper_ms * math.log(full_watts / FULL_W))
        port.unplug_ms = port.full_ms + round(rng.uniform(5, 90) * MINUTE_MS)

    def _advance_to(self, ts: int) -> None:
        dt = ts - self._t
        if dt <= 0:
            return
        self._t = ts
        rand = self.rng.random
        arrival = 1.0 - math.exp(-ARRIVALS_PER_HOUR[int(local_hour(ts))] * dt / HOUR_MS)
        ambient = self._ambient(ts)
        lag = 1.0 - math.exp(-dt / THERMAL_TAU_MS)
        for port in self.ports:
            if port.plugged:
                if ts >= port.unplug_ms and port.forced_amps is None:
                    port.plugged = False
            elif rand() < arrival:
                self._plug(port, ts)
            if port.forced_temp is not None and port.forced_temp[4] <= ts:
                port.forced_temp = None
            if port.plugged:
                self._refresh(port, ts)
                watts = port.now_amps * port.now_volts
            else:
                port.now_amps = port.now_volts = watts = 0.0
            port.temp += (ambient + WATTS_TO_KELVIN * watts - port.temp) * lag

    def _refresh(self, port: Port, ts: int) -> None:
        """Recompute a port's electrics at ts after a fault changed it."""
        port.now_amps = amps = self._amps(port, ts)
        port.now_volts = port.voltage(ts) if amps > 0 else 0.0

    def _amps(self, port: Port, ts: int) -> float:
        return port.forced_amps if port.forced_amps is not None else port.current(ts)

    def _temp(self, port: Port, ts: int) -> float:
        if port.forced_temp is None:
            return port.temp
        start, end, since, ramp, _ = port.forced_temp
        return start + (end - start) * min(1.0, (ts - since) / ramp)

    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        self._advance_to(ts)
        rand = self.rng.random
        values: Values = {"port_count": self.n_ports, "smoke": 0}
        total = 0.0
        busy = self.fault is not None
        for port, (f_plugged, f_current, f_power, f_temp) in zip(self.ports, _FIELDS, strict=False):
            if port.now_amps > 0:
                # ±1 % current noise; the meter reads to the mA and the tenth of a watt.
                amps = round(port.now_amps * (0.99 + 0.02 * rand()), 3)
                watts = round(amps * port.now_volts, 1)
                total += watts
                values[f_plugged] = 1
            else:
                amps = watts = 0.0
                values[f_plugged] = 1 if port.plugged else 0
            values[f_current] = amps
            values[f_power] = watts
            if port.forced_temp is None:
                temp = port.temp
            else:
                temp, busy = self._temp(port, ts), True
            if port.hot is not None:
                excess, since, until = port.hot
                ramp = min(ts - since, until - ts) / HOT_PORT_RISE_MS
                temp += excess * min(1.0, max(0.0, ramp))
            # ±0.25 °C noise, read to the tenth of a degree.
            values[f_temp] = round(temp - 0.25 + 0.5 * rand(), 1)
        values["total_power"] = round(total, 1)
        return values, None, ts + (FAULT_TICK_MS if busy else TICK_MS)

    def _faulty_port(self, ts: int) -> Port:
        charging = [p for p in self.ports if p.current(ts) > 0]
        if charging:
            return self.rng.choice(charging)
        port = next((p for p in self.ports if not p.plugged), self.ports[0])
        self._plug(port, ts)
        return port

    def _fault_started(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        port = self._faulty_port(ts)
        self._fault_port = port
        if fault.fault_type == "hot_port":
            self._hot_port(port, fault, ts)
            return
        if fault.fault_type == "over_temperature":
            peak = self.rng.uniform(78.0, 90.0)
            port.forced_temp = (port.temp, peak, ts, RISE_MS, NEVER)
        elif fault.fault_type == "over_current":
            port.forced_amps = self.rng.uniform(9.0, 12.0)
        self._refresh(port, ts)

    def _fault_ended(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        port = self._fault_port
        if port is None:
            return
        if fault.fault_type == "hot_port":  # the contact is reseated: back to normal
            port.hot = None
            return
        # The pile cuts the port off; the bike stays plugged until its owner comes.
        port.forced_amps = None
        port.full_ms = ts
        port.unplug_ms = ts + round(self.rng.uniform(5, 30) * MINUTE_MS)
        if port.forced_temp is not None:
            hot = self._temp(port, ts)
            cool = self._ambient(ts) + 10.0
            ramp = max(1, round((hot - cool) / COOL_PER_MS))
            port.forced_temp = (hot, cool, ts, ramp, ts + ramp)
            port.temp = cool
        self._refresh(port, ts)

    def _hot_port(self, port: Port, fault: Fault, ts: int) -> None:
        # The bike charges through the whole fault, at constant current, so the excess is
        # heat the power does not explain.
        if port.cc_end_ms < fault.end_ms:
            port.cc_end_ms = fault.end_ms
            full_watts = port.amps * port.volts * 1.12
            port.full_ms = port.cc_end_ms + round(port.taper_ms * math.log(full_watts / FULL_W))
            port.unplug_ms = port.full_ms + round(self.rng.uniform(5, 90) * MINUTE_MS)
        self._refresh(port, ts)
        settled = self._ambient(ts) + WATTS_TO_KELVIN * port.now_amps * port.now_volts * 1.12
        excess = min(self.rng.uniform(12.0, 16.0), HOT_PORT_CEILING - max(settled, port.temp))
        port.hot = (excess, ts, fault.end_ms)
