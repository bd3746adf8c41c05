"""Fault injection with ground truth: which fault, on which device, when, and what the
gateway is expected to raise.

Each fault type of a family is a ``FaultSpec``: the event code the gateway should raise,
how long after the fault's start the condition shows in the samples (onset), how long a
rule must see it before alerting (the catalogue's hold threshold), and a margin on top so
that sampling jitter and debouncing still leave the condition visible long enough.  A
fault lasts ``onset + hold + margin``.  Transients are compressed in time (a tank can drain
below 20 % in seconds) so that a 60-second run holds every fault type.

``plan_faults`` places every fault type (or the ones asked for) on devices round-robin
over the estates, at most one fault per device, each inside the run with margins; a fault
that cannot fit is reported in ``FaultPlan.skipped`` with the reason.

Labels file (``write_labels`` / ``read_labels``): a JSON list of objects with the fields
``fault_id``, ``kind``, ``fault_type``, ``expected_code``, ``estate``, ``device``,
``start_ms``, ``end_ms`` (the fault is applied for start ≤ ts < end), ``onset_ms`` (first
instant the condition is present in the samples), ``hold_s`` (how long the rule must see
the condition: the earliest legitimate alert is at ``onset_ms + hold_s``) and
``also_codes`` (other codes the same fault may legitimately raise, such as the 15 cm
warning on the way to 30 cm of water).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiayuan.catalogue import Kind, family, offline_code
from simulators.registry import Device, Registry

OFFLINE = "offline"
# Faults start this long into a run at the earliest, so every device has reported (each
# model's first sample comes within 2 s) and the gateway knows its normal state.
EARLIEST_START_S = 3.0
# And end this long before the run does, so the return to normal is seen too.
TAIL_S = 2.0


@dataclass(frozen=True)
class Fault:
    fault_id: str
    kind: Kind
    fault_type: str
    expected_code: str
    estate: str
    device: str
    start_ms: int
    end_ms: int
    onset_ms: int | None = None  # None: the condition shows at start_ms
    hold_s: float = 0.0
    also_codes: tuple[str, ...] = ()

    @property
    def condition_ms(self) -> int:
        """When the condition is first present in the samples."""
        return self.start_ms if self.onset_ms is None else self.onset_ms

    def active(self, ts: int) -> bool:
        return self.start_ms <= ts < self.end_ms


@dataclass(frozen=True)
class FaultSpec:
    kind: Kind
    fault_type: str
    expected_code: str
    description: str
    onset_s: float
    # Seconds, or the name of the catalogue threshold that holds the seconds.
    hold: float | str
    margin_s: float
    also_codes: tuple[str, ...] = ()

    @property
    def hold_s(self) -> float:
        if isinstance(self.hold, str):
            fam = family(self.kind)
            if self.hold == "offline_after_s":
                return fam.offline_after_s
            return fam.threshold(self.hold)
        return self.hold

    @property
    def duration_s(self) -> float:
        return self.onset_s + self.hold_s + self.margin_s


def _offline(kind: Kind) -> FaultSpec:
    # Silence from start to end; the gateway's dead-man timer needs offline_after_s after
    # the last sample, which came at most one heartbeat before the start.
    return FaultSpec(
        kind=kind,
        fault_type=OFFLINE,
        expected_code=offline_code(kind),
        description="the device sends nothing",
        onset_s=0.0,
        hold="offline_after_s",
        margin_s=15.0,
    )


# kind, type, expected code, what the samples show, onset s, hold (s or threshold), margin s
# fmt: off
_SPECS: tuple[FaultSpec, ...] = (
    FaultSpec(Kind.LIFT, "trapped", "lift.trapped",
              "someone inside, door closed, car stopped in the door zone",
              0.0, "trapped_in_zone_s", 10.0),
    FaultSpec(Kind.LIFT, "door_open_moving", "lift.door_open_moving",
              "the car creeps off the landing with the door open", 0.0, 0.0, 6.0),
    # Overspeed counts when it lasts ≥ 2 s (a governor trips on a sustained excess).
    FaultSpec(Kind.LIFT, "overspeed", "lift.overspeed",
              "the car runs at 1.25-1.35 × rated speed", 0.0, 2.0, 4.0),
    FaultSpec(Kind.LIFT, "power_loss", "lift.power_loss",
              "mains cut: power_status 2, car stopped and empty", 0.0, 0.0, 15.0),
    _offline(Kind.LIFT),
    FaultSpec(Kind.FIRE, "fire_alarm", "fire.alarm",
              "the panel reports 火警 (fire alarm bit)", 0.0, 0.0, 15.0),
    FaultSpec(Kind.FIRE, "low_pressure", "fire.sprinkler_pressure_low",
              "sprinkler pressure bleeds to 0.05-0.08 MPa, jockey pump off",
              2.0, "pressure_low_s", 10.0),
    _offline(Kind.FIRE),
    FaultSpec(Kind.WATER_TANK, "low_chlorine", "water_tank.chlorine_low",
              "free chlorine falls to 0.01-0.03 mg/L, dosing stopped",
              3.0, "quality_hold_s", 10.0),
    # No hold time for the level in the catalogue: allow for one like the quality hold.
    FaultSpec(Kind.WATER_TANK, "low_level", "water_tank.level_low",
              "the tank drains to 10-15 %, inlet closed", 4.0, "quality_hold_s", 10.0),
    _offline(Kind.WATER_TANK),
    FaultSpec(Kind.EBIKE_CHARGER, "over_temperature", "ebike_charger.over_temperature",
              "one port heats to 78-90 °C", 5.0, "over_hold_s", 10.0),
    FaultSpec(Kind.EBIKE_CHARGER, "over_current", "ebike_charger.over_current",
              "one port draws 9-12 A", 0.0, "over_hold_s", 10.0),
    _offline(Kind.EBIKE_CHARGER),
    FaultSpec(Kind.WATERLOGGING, "deep_water", "waterlogging.depth_30",
              "a downpour over a blocked drain: depth rises to 34-42 cm", 8.0, 0.0, 10.0,
              also_codes=("waterlogging.depth_15",)),
    _offline(Kind.WATERLOGGING),
)
# fmt: on

FAULT_SPECS: Mapping[Kind, Mapping[str, FaultSpec]] = {
    kind: {s.fault_type: s for s in _SPECS if s.kind is kind} for kind in Kind
}

# Hard cases, for the statistical detectors: slow, subtle or intermittent faults that stay
# inside the rules' thresholds for long.  Statistical codes have no hold: the condition is
# the fault itself, so onset and hold are 0 and the delay counts from the fault's start.
# They are kept out of FAULT_SPECS so the classic short plans stay as they are; the
# evaluation scenarios (simulators.scenarios) place them.
# fmt: off
HARD_SPECS: tuple[FaultSpec, ...] = (
    # Its onset (when it becomes detectable) is set by the scenario from the device's
    # model: the first reading below the pump's start pressure beyond the noise.
    FaultSpec(Kind.FIRE, "pressure_bleed", "fire.sprinkler_pressure_sagging",
              "jockey pump off, the sprinkler pipe bleeds 0.003-0.004 MPa/min: above "
              "0.10 MPa for about an hour; labelled for 40 min", 0.0, 0.0, 2400.0,
              also_codes=("fire.drift", "fire.level_shift", "fire.sprinkler_pressure_low")),
    FaultSpec(Kind.WATER_TANK, "chlorine_stuck", "water_tank.stuck",
              "the chlorine probe repeats one value while chlorine decays", 0.0, 0.0, 1800.0),
    FaultSpec(Kind.EBIKE_CHARGER, "hot_port", "ebike_charger.port_hotter_than_peers",
              "one charging port runs 12-16 °C hotter than its power explains, under 65 °C",
              0.0, 0.0, 1800.0, also_codes=("ebike_charger.level_shift",)),
    # One burst; a scenario places several on one device, each burst its own label.
    FaultSpec(Kind.LIFT, "intermittent_door_open_moving", "lift.door_open_moving",
              "a few seconds of creeping with the door open, minutes apart", 0.0, 0.0, 6.0),
)
# fmt: on

# Healthy look-alikes: normal events that look alarming.  Their labels expect nothing
# (expected_code ""), so any anomaly they cause is a false alert.
LOOK_ALIKE = ""
NOISY = "noisy"  # applied by simulators.base to any model, for as long as the label lasts
# fmt: off
LOOK_ALIKE_SPECS: tuple[FaultSpec, ...] = (
    FaultSpec(Kind.LIFT, "parked_open_cleaning", LOOK_ALIKE,
              "a cleaner parks the car with the door open, nobody inside", 0.0, 0.0, 240.0),
    FaultSpec(Kind.WATER_TANK, "refill_after_draw", LOOK_ALIKE,
              "a large draw takes the tank to 30-35 % in ten minutes, then it refills",
              0.0, 0.0, 900.0),
    *(FaultSpec(kind, NOISY, LOOK_ALIKE, "three times the usual sensor noise", 0.0, 0.0, 3600.0)
      for kind in Kind),
)
# fmt: on

# Every fault type a model accepts: the classic ones, the hard ones and the look-alikes.
ALL_FAULT_SPECS: Mapping[Kind, Mapping[str, FaultSpec]] = {
    kind: {s.fault_type: s for s in (*_SPECS, *HARD_SPECS, *LOOK_ALIKE_SPECS) if s.kind is kind}
    for kind in Kind
}


def fault_spec(kind: Kind, fault_type: str) -> FaultSpec:
    try:
        return ALL_FAULT_SPECS[kind][fault_type]
    except KeyError:
        known = ", ".join(ALL_FAULT_SPECS[kind])
        raise KeyError(f"{kind.value} has no fault type {fault_type!r}; known: {known}") from None


def make_fault(
    fault_id: str, spec: FaultSpec, device: Device, start_ms: int, duration_ms: int | None = None
) -> Fault:
    """One fault of ``spec`` on ``device`` from ``start_ms``, lasting ``duration_ms``
    (default the spec's duration)."""
    if duration_ms is None:
        duration_ms = round(spec.duration_s * 1000)
    return _fault(fault_id, spec, device, start_ms, duration_ms)


@dataclass(frozen=True)
class SkippedFault:
    kind: Kind
    fault_type: str
    reason: str


@dataclass(frozen=True)
class FaultPlan:
    faults: tuple[Fault, ...]
    skipped: tuple[SkippedFault, ...]

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)


def plan_faults(
    registry: Registry,
    start_ms: int,
    duration_s: float,
    seed: int,
    types_per_kind: Mapping[Kind, Sequence[str]] | None = None,
    repeats: int = 1,
) -> FaultPlan:
    """Place each fault type ``repeats`` times, round-robin over estates.

    ``types_per_kind`` limits the fault types (a kind left out gets none); by default every
    type of every kind.  Start times are drawn uniformly between ``EARLIEST_START_S`` into
    the run and the latest start that still ends ``TAIL_S`` before the run does.
    """
    rng = random.Random(f"jiayuan/faults/{seed}")
    wanted = _wanted(types_per_kind)
    end_ms = start_ms + round(duration_s * 1000)
    faulted: set[str] = set()
    faults: list[Fault] = []
    skipped: list[SkippedFault] = []
    cursor = 0
    estates = registry.estates
    for _ in range(repeats):
        for spec in wanted:
            duration_ms = round(spec.duration_s * 1000)
            earliest = start_ms + round(EARLIEST_START_S * 1000)
            latest = end_ms - round(TAIL_S * 1000) - duration_ms
            if latest < earliest:
                needed = EARLIEST_START_S + spec.duration_s + TAIL_S
                skipped.append(
                    SkippedFault(
                        spec.kind,
                        spec.fault_type,
                        f"needs a run of {needed:g} s, this one has {duration_s:g} s",
                    )
                )
                continue
            device = None
            for step in range(len(estates)):
                estate = estates[(cursor + step) % len(estates)]
                free = [d for d in estate.of_kind(spec.kind) if d.id not in faulted]
                if free:
                    device = rng.choice(free)
                    cursor = (cursor + step + 1) % len(estates)
                    break
            if device is None:
                skipped.append(
                    SkippedFault(
                        spec.kind,
                        spec.fault_type,
                        f"no {spec.kind.value} device left without a fault",
                    )
                )
                continue
            faulted.add(device.id)
            start = rng.randint(earliest, latest)
            faults.append(_fault(f"f{len(faults) + 1:03d}", spec, device, start, duration_ms))
    return FaultPlan(tuple(faults), tuple(skipped))


def _wanted(types_per_kind: Mapping[Kind, Sequence[str]] | None) -> list[FaultSpec]:
    if types_per_kind is None:
        return list(_SPECS)
    wanted = []
    for kind, types in types_per_kind.items():
        for fault_type in types:
            wanted.append(fault_spec(Kind(kind), fault_type))
    return wanted


def _fault(fault_id: str, spec: FaultSpec, device: Device, start: int, duration_ms: int) -> Fault:
    return Fault(
        fault_id=fault_id,
        kind=spec.kind,
        fault_type=spec.fault_type,
        expected_code=spec.expected_code,
        estate=device.estate,
        device=device.id,
        start_ms=start,
        end_ms=start + duration_ms,
        onset_ms=start + round(spec.onset_s * 1000),
        hold_s=spec.hold_s,
        also_codes=spec.also_codes,
    )


def faults_json(faults: Sequence[Fault]) -> list[dict[str, Any]]:
    return [
        {
            "fault_id": f.fault_id,
            "kind": f.kind.value,
            "fault_type": f.fault_type,
            "expected_code": f.expected_code,
            "estate": f.estate,
            "device": f.device,
            "start_ms": f.start_ms,
            "end_ms": f.end_ms,
            "onset_ms": f.condition_ms,
            "hold_s": f.hold_s,
            "also_codes": list(f.also_codes),
        }
        for f in faults
    ]


def write_labels(path: str | Path, faults: Sequence[Fault]) -> None:
    Path(path).write_text(json.dumps(faults_json(faults), indent=1) + "\n", encoding="utf-8")


def read_labels(path: str | Path) -> list[Fault]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [
        Fault(
            fault_id=str(item["fault_id"]),
            kind=Kind(item["kind"]),
            fault_type=str(item["fault_type"]),
            expected_code=str(item["expected_code"]),
            estate=str(item["estate"]),
            device=str(item["device"]),
            start_ms=int(item["start_ms"]),
            end_ms=int(item["end_ms"]),
            onset_ms=None if item.get("onset_ms") is None else int(item["onset_ms"]),
            hold_s=float(item.get("hold_s", 0.0)),
            also_codes=tuple(str(c) for c in item.get("also_codes", ())),
        )
        for item in data
    ]
