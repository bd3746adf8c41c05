"""Named, seeded evaluation scenarios: an estate registry, a stretch of simulated time, and
the labelled faults and healthy look-alikes placed in it.

``standard`` holds every classic fault type twice, ``hard`` the slow, subtle and
intermittent ones (pressure bleed, stuck chlorine probe, hot charging port, bursts of a
door open while moving), ``healthy`` no fault at all but noisy sensors and normal events
that look alarming (a lift parked open for cleaning, a tank refilling after a large draw),
for false alerts per 1,000 device-hours.  ``build(name, seed)`` returns the same
``Scenario`` for the same name and seed.

The default sizes (standard 3 estates × 10 min, hard 8 × 1.5 h, healthy 2 × 2 h) keep
``jiayuan eval`` under a minute on two cores; ``duration_s`` and ``estates`` may be
overridden for longer runs.  The hard scenario places ``HARD_LABELS`` labels of each hard
fault type when it has the devices (8 estates of seed 1 do: 13 tanks, 14 piles).

A pressure bleed's label onset is when it becomes detectable, not the fault's start: the
first reading, pump idle, below the pump's start pressure by more than the sensor noise can
reach.  Before that the pipe looks exactly like a healthy one whose pump is not yet due
(the bleed rates lie within the healthy leak rates), so no detector can tell them apart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from jiayuan.catalogue import Kind
from jiayuan.timezone import parse_start
from simulators.faults import (
    EARLIEST_START_S,
    HARD_SPECS,
    NOISY,
    TAIL_S,
    Fault,
    FaultSpec,
    fault_spec,
    make_fault,
    plan_faults,
)
from simulators.fire import CUT_IN_DROP, FireModel
from simulators.registry import Device, Registry, build_registry

# Mid-morning on a weekday, so the cleaners' hours (09-17) and normal traffic are covered.
START = "2025-07-01T09:30:00"
# Bursts of an intermittent fault: how many, and the normal minutes between them.
BURSTS = 3
BURST_GAP_S = (60.0, 180.0)
# Statistical detectors learn a baseline first: hard faults start this late at the earliest.
WARM_UP_S = 20 * 60.0
# A pressure bleed is judged against the pump's learned start pressure, so its device must
# have seen a pump start first: a healthy pipe takes up to 35 min to leak from its highest
# to its start pressure (0.07 MPa at 0.002 MPa/min, simulators.fire).
WARM_UP_BY_TYPE_S = {"pressure_bleed": 40 * 60.0}
# Labels of each hard fault type in the hard scenario (bursts: rounded up to whole groups).
HARD_LABELS = 10
# The fire model's sensor noise stays within ±2.45 σ (σ = 0.002 MPa, simulators.base.noise).
PRESSURE_NOISE_REACH_MPA = 0.005


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    registry: Registry
    start_ms: int
    duration_s: float
    faults: tuple[Fault, ...]  # labels; look-alikes expect no code at all

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration_s * 1000)

    @property
    def device_hours(self) -> float:
        return len(self.registry.devices()) * self.duration_s / 3600.0


def _standard(seed: int, estates: int, duration_s: float) -> Scenario:
    registry = build_registry(estates, seed)
    start = parse_start(START)
    plan = plan_faults(registry, start, duration_s, seed, repeats=2)
    return Scenario(
        "standard",
        "every classic fault type, twice",
        seed,
        registry,
        start,
        duration_s,
        plan.faults,
    )


def _hard(seed: int, estates: int, duration_s: float) -> Scenario:
    registry = build_registry(estates, seed)
    start = parse_start(START)
    placer = _Placer(registry, start, duration_s, seed)
    for spec in HARD_SPECS:
        if spec.fault_type == "intermittent_door_open_moving":
            for _ in range(-(-HARD_LABELS // BURSTS)):
                placer.bursts(spec)
        else:
            for _ in range(HARD_LABELS):
                placer.once(spec)
    faults = tuple(
        replace(f, onset_ms=_detectable_bleed_ms(f, registry, start, seed))
        if f.fault_type == "pressure_bleed"
        else f
        for f in placer.placed()
    )
    return Scenario(
        "hard",
        "slow drift, stuck probe, hot port, intermittent door-open-moving",
        seed,
        registry,
        start,
        duration_s,
        faults,
    )


def _detectable_bleed_ms(fault: Fault, registry: Registry, start_ms: int, seed: int) -> int:
    """The first reading of a pressure bleed, pump idle, below the pump's start pressure by
    more than the noise reaches (the device's own model, run alone, gives the same samples
    as the scenario: its randomness is per device)."""
    from simulators.driver import build_model  # the driver imports this module's models

    model = build_model(registry.device(fault.device), start_ms, seed, [fault])
    assert isinstance(model, FireModel)
    limit = model.setpoint - CUT_IN_DROP - PRESSURE_NOISE_REACH_MPA
    for sample in model.advance(fault.end_ms - 1):
        values = sample.values
        if (
            sample.ts >= fault.start_ms
            and values["pump_commanded"] == 0
            and float(values["sprinkler_pressure"]) < limit
        ):
            return sample.ts
    return fault.end_ms  # never detectable within the fault


def _healthy(seed: int, estates: int, duration_s: float) -> Scenario:
    registry = build_registry(estates, seed)
    start = parse_start(START)
    placer = _Placer(registry, start, duration_s, seed)
    for kind in (Kind.LIFT, Kind.WATER_TANK):
        for _ in range(2):
            placer.once(fault_spec(kind, _LOOK_ALIKE[kind]))
    for kind in Kind:  # one noisy device of every kind, noisy all along
        placer.whole_run(fault_spec(kind, NOISY))
    return Scenario(
        "healthy",
        "no faults: noisy sensors, a lift parked open for cleaning, tank refills",
        seed,
        registry,
        start,
        duration_s,
        placer.placed(),
    )


_LOOK_ALIKE = {Kind.LIFT: "parked_open_cleaning", Kind.WATER_TANK: "refill_after_draw"}


@dataclass(frozen=True)
class _Recipe:
    build: Callable[[int, int, float], Scenario]
    estates: int
    duration_s: float


SCENARIOS: Mapping[str, _Recipe] = {
    "standard": _Recipe(_standard, 3, 600.0),
    "hard": _Recipe(_hard, 8, 1.5 * 3600.0),
    "healthy": _Recipe(_healthy, 2, 2 * 3600.0),
}
DEFAULT_SCENARIOS = tuple(SCENARIOS)


def build(
    name: str, seed: int = 1, estates: int | None = None, duration_s: float | None = None
) -> Scenario:
    """The scenario ``name``; the same for the same arguments."""
    try:
        recipe = SCENARIOS[name]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"no scenario {name!r}; known: {known}") from None
    return recipe.build(
        seed,
        recipe.estates if estates is None else estates,
        recipe.duration_s if duration_s is None else duration_s,
    )


class _Placer:
    """Places faults on devices of their kind, round-robin over estates, one device per
    fault (bursts share theirs), each inside the run after the warm-up."""

    def __init__(self, registry: Registry, start_ms: int, duration_s: float, seed: int):
        self.rng = random.Random(f"jiayuan/scenario/{seed}")
        self.start_ms = start_ms
        self.end_ms = start_ms + round(duration_s * 1000)
        self._free: dict[Kind, list[Device]] = {kind: [] for kind in Kind}
        # Interleave estates so consecutive faults land in different estates.
        by_estate = [list(e.devices) for e in registry.estates]
        for round_ in range(max(len(d) for d in by_estate)):
            for devices in by_estate:
                if round_ < len(devices):
                    self._free[devices[round_].kind].append(devices[round_])
        self._faults: list[Fault] = []

    def placed(self) -> tuple[Fault, ...]:
        return tuple(sorted(self._faults, key=lambda f: (f.start_ms, f.device)))

    def _device(self, kind: Kind) -> Device | None:
        return self._free[kind].pop(0) if self._free[kind] else None

    def _id(self) -> str:
        return f"f{len(self._faults) + 1:03d}"

    def _start(self, span_ms: int, warm_up_s: float = WARM_UP_S) -> int | None:
        earliest = self.start_ms + round(max(warm_up_s, EARLIEST_START_S) * 1000)
        latest = self.end_ms - round(TAIL_S * 1000) - span_ms
        if latest < earliest:  # a short run: start as early as the device can
            earliest = self.start_ms + round(EARLIEST_START_S * 1000)
            if latest < earliest:
                return None
        return self.rng.randint(earliest, latest)

    def once(self, spec: FaultSpec) -> None:
        device = self._device(spec.kind)
        warm_up_s = WARM_UP_BY_TYPE_S.get(spec.fault_type, WARM_UP_S)
        start = self._start(round(spec.duration_s * 1000), warm_up_s)
        if device is not None and start is not None:
            self._faults.append(make_fault(self._id(), spec, device, start))

    def whole_run(self, spec: FaultSpec) -> None:
        device = self._device(spec.kind)
        if device is not None:
            duration = self.end_ms - self.start_ms
            self._faults.append(make_fault(self._id(), spec, device, self.start_ms, duration))

    def bursts(self, spec: FaultSpec, count: int = BURSTS) -> None:
        """``count`` bursts on one device, normal minutes between them; one label each."""
        gaps = [round(self.rng.uniform(*BURST_GAP_S) * 1000) for _ in range(count - 1)]
        burst_ms = round(spec.duration_s * 1000)
        start = self._start(burst_ms * count + sum(gaps))
        device = self._device(spec.kind)
        if device is None or start is None:
            return
        for gap in [*gaps, 0]:
            self._faults.append(make_fault(self._id(), spec, device, start))
            start += burst_ms + gap


def describe(scenario: Scenario) -> str:
    hours = scenario.duration_s / 3600
    return (
        f"{scenario.name}: {len(scenario.registry.estates)} estates, "
        f"{len(scenario.registry.devices())} devices, {hours:g} h, "
        f"{len(scenario.faults)} labels"
    )


def labelled_types(faults: Sequence[Fault]) -> set[tuple[Kind, str]]:
    return {(f.kind, f.fault_type) for f in faults}
