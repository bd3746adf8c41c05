"""A waterlogging gauge on an estate road or a garage ramp, with a rain gauge beside it.

Dry, the depth reads 0.  Showers come a few times a day in the rainy season at 5-40 mm/h
for 10-60 minutes; water gathers towards a few centimetres (about 0.1 cm per mm/h) and
drains with a ten-minute time constant once the rain eases, far below the 15 cm of
GB 50014 (DOMAIN.md §5).  The gauge reports every 10 s.

Fault: ``deep_water`` (a downpour of 60-120 mm/h over a blocked drain: the depth climbs past
30 cm within 8 s to 34-42 cm, then drains fast once the drain is cleared).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jiayuan.catalogue import Kind
from simulators.base import DeviceModel, Values, noise
from simulators.clock import HOUR_MS, MINUTE_MS
from simulators.faults import Fault
from simulators.registry import Device

TICK_MS = 10_000
FAULT_TICK_MS = 2000
DRAIN_TAU_MS = 10 * MINUTE_MS
CM_PER_MM_H = 0.1  # steady depth per unit of rain intensity on a working drain (INF)
SHOWERS_PER_HOUR = 1 / 8  # the plum-rain season (梅雨) pace (INF)
RISE_MS = 8000
FALL_CM_PER_MS = 3.0 / 1000  # the cleared drain takes 3 cm/s


class WaterloggingModel(DeviceModel):
    kind = Kind.WATERLOGGING

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        super().__init__(device, start_ms, seed, faults)
        rng = self.rng
        self.depth = 0.0
        self.rain = 0.0
        self.rain_until = start_ms
        self.next_shower = start_ms + round(rng.expovariate(SHOWERS_PER_HOUR) * HOUR_MS)
        if rng.random() < 0.3:  # some gauges are already in a shower when the run starts
            self._shower(start_ms)
            self.depth = self.rain * CM_PER_MM_H * rng.uniform(0.3, 1.0)
        # A fault's depth ramp: (from, to, start, ramp length, release time).
        self._forced: tuple[float, float, int, int, int] | None = None
        self._t = start_ms

    def _shower(self, ts: int) -> None:
        rng = self.rng
        self.rain = rng.uniform(5.0, 40.0)
        self.rain_until = ts + round(rng.uniform(10, 60) * MINUTE_MS)
        self.next_shower = self.rain_until + round(rng.expovariate(SHOWERS_PER_HOUR) * HOUR_MS)

    def _advance_to(self, ts: int) -> None:
        dt = ts - self._t
        if dt <= 0:
            return
        self._t = ts
        if self._forced is not None and self._forced[4] <= ts:
            self.depth, self._forced = self._forced[1], None
        if self.rain > 0 and ts >= self.rain_until:
            self.rain = 0.0
        if self.rain == 0 and ts >= self.next_shower:
            self._shower(ts)
        if self._forced is None:
            steady = self.rain * CM_PER_MM_H
            self.depth = steady + (self.depth - steady) * math.exp(-dt / DRAIN_TAU_MS)
            if self.depth < 0.05:
                self.depth = 0.0

    def _depth(self, ts: int) -> float:
        if self._forced is None:
            return self.depth
        start, end, since, ramp, _ = self._forced
        return start + (end - start) * min(1.0, (ts - since) / ramp)

    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        self._advance_to(ts)
        rng = self.rng
        depth = self._depth(ts)
        wet = depth > 0
        rain = self.rain * (1.0 + noise(rng, 0.1)) if self.rain > 0 else 0.0
        values: Values = {
            # An ultrasonic gauge reads a steady 0 on a dry surface, ±2 mm when wet.
            "depth": round(max(0.0, depth + noise(rng, 0.2)), 1) if wet else 0.0,
            "rain_rate": round(min(max(rain, 0.0), 300.0), 1),
        }
        busy = self.fault is not None or self._forced is not None
        return values, None, ts + (FAULT_TICK_MS if busy else TICK_MS)

    def _fault_started(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        rng = self.rng
        self.rain = rng.uniform(60.0, 120.0)
        self.rain_until = fault.end_ms
        self._forced = (self.depth, rng.uniform(34.0, 42.0), ts, RISE_MS, fault.end_ms)

    def _fault_ended(self, fault: Fault, ts: int) -> None:
        self._advance_to(ts)
        deep = self._depth(ts)
        self.rain = 0.0
        self.next_shower = ts + round(self.rng.expovariate(SHOWERS_PER_HOUR) * HOUR_MS)
        shallow = self.rng.uniform(3.0, 6.0)
        ramp = max(1, round((deep - shallow) / FALL_CM_PER_MS))
        self._forced = (deep, shallow, ts, ramp, ts + ramp)
