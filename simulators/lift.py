"""A residential lift: hall calls over the day, door cycles, trips with a speed profile.

The car answers calls that arrive with a daily pattern (a morning rush down to the lobby,
an evening rush up), cycles its door (opening → open → closing → closed), runs with a
trapezoidal speed profile up to its rated speed and reports about every second while it
moves.  Normal but alarming-looking moments are included: a cleaner parks the car with
the door held open for minutes (nobody inside), a door reopens on a late passenger, and a
passenger lingers in the closed car for a few seconds (well under the 20 s trapped time).

Faults: ``trapped`` (someone inside, door closed, stopped in zone), ``door_open_moving``
(the car creeps off the landing with the door open), ``overspeed`` (1.25-1.35 × rated),
``power_loss`` (mains cut; the monitor reports on its battery); the hard case
``intermittent_door_open_moving`` is one short burst of ``door_open_moving``, placed several
times.  Look-alike ``parked_open_cleaning``: the cleaner's parking, at a chosen time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from jiayuan.catalogue import Kind
from simulators.base import DeviceModel, Values, noise
from simulators.clock import HOUR_MS, local_hour
from simulators.faults import Fault
from simulators.registry import Device

# Door status values (GB/T 24476-2017 field set, DOMAIN.md §1).
CLOSED, OPEN, CLOSING, OPENING = 0, 1, 2, 3
SOMEONE, NOBODY = 1, 2
# Unlocking zone: ≤ 0.20 m from the landing (EN 81-20 5.3.8.1, DOMAIN.md §1).
DOOR_ZONE_M = 0.20
RUN_TICK_MS = 1000  # speed about every second while running
FAULT_TICK_MS = 500  # while moving abnormally
FAULT_REPORT_MS = 1000  # while stopped in a fault
CREEP_SPEED = 0.3  # m/s, levelling speed
# Hall calls per hour by local hour: morning and evening rushes (INF, typical residential).
# fmt: off
CALLS_PER_HOUR = (
    2, 1, 1, 1, 1, 3, 10, 28, 30, 14, 10, 10,
    14, 10, 9, 10, 14, 24, 28, 22, 16, 10, 6, 3,
)
# fmt: on
MAX_CALLS_PER_HOUR = max(CALLS_PER_HOUR)


class Motion:
    """A car movement from ``x0`` (metres above the lowest landing) in direction ``sign``,
    made of constant-acceleration segments given as (seconds, v_start, v_end)."""

    __slots__ = ("_segments", "distance", "duration_ms", "sign", "x0")

    def __init__(self, x0: float, sign: int, segments: Sequence[tuple[float, float, float]]):
        self.x0 = x0
        self.sign = sign
        self._segments: list[tuple[float, float, float, float, float]] = []
        t = d = 0.0
        for seconds, v0, v1 in segments:
            if seconds <= 0:
                continue
            self._segments.append((t, t + seconds, v0, v1, d))
            d += (v0 + v1) / 2 * seconds
            t += seconds
        self.distance = d
        self.duration_ms = math.ceil(t * 1000)

    @property
    def x1(self) -> float:
        return self.x0 + self.sign * self.distance

    def at(self, t: float) -> tuple[float, float]:
        """Speed and position ``t`` seconds after the movement began."""
        for t0, t1, v0, v1, d0 in self._segments:
            if t < t1:
                tau = max(0.0, t - t0)
                accel = (v1 - v0) / (t1 - t0)
                return v0 + accel * tau, self.x0 + self.sign * (d0 + v0 * tau + accel * tau**2 / 2)
        return 0.0 if not self._segments else self._segments[-1][3], self.x1


def trip(x0: float, x1: float, vmax: float, accel: float) -> Motion:
    """Rest to rest: accelerate, cruise at ``vmax`` if there is room, decelerate."""
    distance = abs(x1 - x0)
    sign = 1 if x1 >= x0 else -1
    ramp_s = vmax / accel
    ramp_m = vmax * ramp_s / 2
    if distance >= 2 * ramp_m:
        cruise_s = (distance - 2 * ramp_m) / vmax
        return Motion(x0, sign, ((ramp_s, 0.0, vmax), (cruise_s, vmax, vmax), (ramp_s, vmax, 0.0)))
    peak = math.sqrt(distance * accel)
    return Motion(x0, sign, ((peak / accel, 0.0, peak), (peak / accel, peak, 0.0)))


class Step(NamedTuple):
    name: str
    duration_ms: int
    door: int
    car: int
    passenger: int
    motion: Motion | None = None
    tick_ms: int = 0  # sample this often during the step (0: only at its start)


class LiftModel(DeviceModel):
    kind = Kind.LIFT

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        super().__init__(device, start_ms, seed, faults)
        p = device.params
        lowest, top = int(p.get("lowest_floor", 1)), int(p.get("top_floor", 11))
        # Chinese floor numbering has no floor 0: B1 is -1, the ground floor is 1.
        self.floors = [f for f in range(lowest, top + 1) if f != 0]
        self.lobby = self.floors.index(1)
        self.floor_h = float(p.get("floor_height", 2.9))
        self.rated = float(p.get("rated_speed", 1.0))
        self.accel = self.rng.uniform(0.7, 1.0)  # m/s², comfortable residential ramps
        self.usage = self.rng.uniform(0.6, 1.3)
        self.power = 1
        self.service = 1
        self._event: str | None = None
        self._plan: deque[Step] = deque()
        self._x = self.rng.randrange(len(self.floors)) * self.floor_h
        self._step = Step("idle", 0, CLOSED, 0, NOBODY)
        self._step_start = start_ms
        self._step_end = self._draw_call(start_ms)

    # --- sampling -------------------------------------------------------------------
    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        self._advance_to(ts)
        step = self._step
        speed, x = 0.0, self._x
        if step.motion is not None:
            speed, x = step.motion.at((ts - self._step_start) / 1000)
            jitter = 1 + noise(self.rng, 0.004)
            limit = math.inf if self.fault is not None else self.rated * 1.05
            speed = round(min(max(speed * jitter, 0.0), limit), 3)
        index = min(max(round(x / self.floor_h), 0), len(self.floors) - 1)
        in_zone = abs(x - index * self.floor_h) <= DOOR_ZONE_M
        moving = step.car == 1
        values: Values = {
            "car_status": step.car,
            "car_direction": (1 if step.motion.sign > 0 else 2) if moving and step.motion else 0,
            "door_zone": 1 if in_zone else 2,
            "car_position": self.floors[index],
            "door_status": step.door,
            "passenger_status": step.passenger,
            "service_mode": self.service,
            "up_limit": 0,
            "down_limit": 0,
            "power_status": self.power,
            "speed": speed,
            "rated_speed": self.rated,
            "fault_code": 0,
        }
        event, self._event = self._event, None
        wanted = self._step_end
        if step.tick_ms:
            wanted = min(wanted, ts + step.tick_ms)
        elif self.fault is not None:  # report a fault every second, not every heartbeat
            wanted = min(wanted, ts + FAULT_REPORT_MS)
        return values, event, wanted

    def _advance_to(self, ts: int) -> None:
        while self._step_end <= ts:
            t = self._step_end
            if self._step.motion is not None:
                self._x = self._step.motion.x1
            if self._step.name == "idle" and not self._plan:
                self._plan_call(t)
            self._start_next(t)

    def _start_next(self, t: int) -> None:
        self._step_start = t
        if self._plan:
            self._step = self._plan.popleft()
            self._step_end = t + self._step.duration_ms
        else:
            self._step = Step("idle", 0, CLOSED, 0, NOBODY)
            self._step_end = self._draw_call(t)

    # --- normal traffic ---------------------------------------------------------------
    def _draw_call(self, t: int) -> int:
        """The next hall call after ``t``: a Poisson process thinned by the hour's rate."""
        rate_per_ms = MAX_CALLS_PER_HOUR * self.usage / HOUR_MS
        while True:
            t += max(1, round(self.rng.expovariate(rate_per_ms)))
            if self.rng.random() * MAX_CALLS_PER_HOUR < CALLS_PER_HOUR[int(local_hour(t))]:
                return t

    def _plan_call(self, t: int) -> None:
        rng = self.rng
        hour = local_hour(t)
        here = round(self._x / self.floor_h)
        steps: list[Step] = []
        if 9 <= hour < 17 and rng.random() < 0.03:
            # A cleaner parks the car with the door held open (nobody in the car).
            steps += [
                Step("opening", rng.randint(2000, 2600), OPENING, 0, NOBODY),
                Step("parked_open", rng.randint(60_000, 240_000), OPEN, 0, NOBODY),
                Step("closing", rng.randint(2500, 3200), CLOSING, 0, NOBODY),
            ]
        else:
            up_share = 0.25 if 6 <= hour < 10 else 0.75 if 16 <= hour < 21 else 0.5
            ground = 0 if self.lobby > 0 and rng.random() < 0.3 else self.lobby
            upper = rng.randrange(self.lobby + 1, len(self.floors))
            pickup, dest = (ground, upper) if rng.random() < up_share else (upper, ground)
            if pickup != here:
                steps.append(self._run(here, pickup, NOBODY))
            steps += self._door_cycle(NOBODY, SOMEONE, reopen=rng.random() < 0.08)
            if rng.random() < 0.05:
                # The passenger takes a moment to press a button: stopped, door closed,
                # someone inside, but far below the trapped time.
                steps.append(Step("linger", rng.randint(3000, 10_000), CLOSED, 0, SOMEONE))
            steps.append(self._run(pickup, dest, SOMEONE))
            steps += self._door_cycle(SOMEONE, NOBODY, reopen=False)
        if t + sum(s.duration_ms for s in steps) + 2000 < self.next_fault_start():
            self._plan.extend(steps)  # otherwise the call goes unanswered before a fault

    def _run(self, start: int, end: int, passenger: int) -> Step:
        motion = trip(start * self.floor_h, end * self.floor_h, self.rated, self.accel)
        return Step("run", motion.duration_ms, CLOSED, 1, passenger, motion, RUN_TICK_MS)

    def _door_cycle(self, before: int, after: int, reopen: bool) -> list[Step]:
        """Open, passengers change at mid-point, close; optionally reopen once."""
        rng = self.rng
        steps = [
            Step("opening", rng.randint(2000, 2600), OPENING, 0, before),
            Step("open", rng.randint(1500, 3000), OPEN, 0, before),
            Step("open", rng.randint(1500, 3000), OPEN, 0, after),
        ]
        if reopen:
            steps += [
                Step("closing", rng.randint(800, 1500), CLOSING, 0, after),
                Step("opening", rng.randint(800, 1500), OPENING, 0, after),
                Step("open", rng.randint(1500, 3000), OPEN, 0, after),
            ]
        steps.append(Step("closing", rng.randint(2500, 3200), CLOSING, 0, after))
        return steps

    # --- faults -------------------------------------------------------------------------
    def _settle(self, ts: int) -> int:
        """Bring the model to ``ts`` and stop the car where it is; return the landing."""
        self._advance_to(ts)
        if self._step.motion is not None:
            self._x = self._step.motion.at((ts - self._step_start) / 1000)[1]
        self._plan.clear()
        self._step_start = ts
        return min(max(round(self._x / self.floor_h), 0), len(self.floors) - 1)

    def _hold(self, step: Step, until_ms: int) -> None:
        self._step = step
        self._step_end = until_ms

    def _fault_started(self, fault: Fault, ts: int) -> None:
        landing = self._settle(ts)
        self._x = landing * self.floor_h  # the fault begins at a landing
        duration = fault.end_ms - ts
        top = len(self.floors) - 1
        if fault.fault_type == "trapped":
            self._hold(Step("trapped", duration, CLOSED, 0, SOMEONE), fault.end_ms)
        elif fault.fault_type in ("door_open_moving", "intermittent_door_open_moving"):
            sign = 1 if landing < top else -1
            speed = self.rng.uniform(0.10, 0.20)
            motion = Motion(self._x, sign, ((duration / 1000, speed, speed),))
            self._hold(
                Step("creep_open", duration, OPEN, 1, NOBODY, motion, FAULT_TICK_MS), fault.end_ms
            )
        elif fault.fault_type == "overspeed":
            sign = 1 if top - landing >= landing else -1  # towards the longer run
            speed = self.rated * self.rng.uniform(1.25, 1.35)
            motion = Motion(self._x, sign, ((duration / 1000, speed, speed),))
            self._hold(
                Step("overspeed", duration, CLOSED, 1, NOBODY, motion, FAULT_TICK_MS), fault.end_ms
            )
        elif fault.fault_type == "power_loss":
            self.power, self.service, self._event = 2, 0, "lift.power_loss"
            self._hold(Step("no_power", duration, CLOSED, 0, NOBODY), fault.end_ms)
        elif fault.fault_type == "parked_open_cleaning":
            opening = self.rng.randint(2000, 2600)
            self._plan.append(Step("parked_open", duration - opening, OPEN, 0, NOBODY))
            self._hold(Step("opening", opening, OPENING, 0, NOBODY), ts + opening)

    def _fault_ended(self, fault: Fault, ts: int) -> None:
        step = self._step
        self._settle(ts)
        rng = self.rng
        if fault.fault_type == "trapped":  # rescued: the door opens, the passenger leaves
            self._plan.extend(self._door_cycle(SOMEONE, NOBODY, reopen=False))
        elif fault.fault_type in ("door_open_moving", "intermittent_door_open_moving"):
            # Stop, close, relevel to the landing.
            landing = round(self._x / self.floor_h) * self.floor_h
            self._plan.append(Step("closing", rng.randint(2500, 3200), CLOSING, 0, NOBODY))
            relevel = trip(self._x, landing, CREEP_SPEED, self.accel)
            self._plan.append(
                Step("relevel", relevel.duration_ms, CLOSED, 1, NOBODY, relevel, FAULT_TICK_MS)
            )
        elif fault.fault_type == "overspeed" and step.motion is not None:
            self._plan.append(self._brake(step.motion.sign, step.motion.at(0)[0]))
        elif fault.fault_type == "power_loss":
            self.power, self.service = 1, 1
        elif fault.fault_type == "parked_open_cleaning":
            self._plan.append(Step("closing", rng.randint(2500, 3200), CLOSING, 0, NOBODY))
        self._hold(Step("recover", 0, CLOSED, 0, NOBODY), ts)

    def _brake(self, sign: int, speed: float) -> Step:
        """From overspeed down to levelling speed, creep to the next landing, stop."""
        decel = 1.0
        slow_m = (speed**2 - CREEP_SPEED**2) / (2 * decel)
        stop_m = CREEP_SPEED**2 / (2 * decel)
        reach = self._x + sign * (slow_m + stop_m)
        landing = (math.ceil if sign > 0 else math.floor)(reach / self.floor_h - 1e-9)
        landing = min(max(landing, 0), len(self.floors) - 1)
        creep_m = max(0.0, abs(landing * self.floor_h - self._x) - slow_m - stop_m)
        motion = Motion(
            self._x,
            sign,
            (
                ((speed - CREEP_SPEED) / decel, speed, CREEP_SPEED),
                (creep_m / CREEP_SPEED, CREEP_SPEED, CREEP_SPEED),
                (CREEP_SPEED / decel, CREEP_SPEED, 0.0),
            ),
        )
        return Step("brake", motion.duration_ms, CLOSED, 1, NOBODY, motion, FAULT_TICK_MS)
