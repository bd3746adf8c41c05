"""What every device model shares: the sample type, seeded randomness, the advance loop,
heartbeats, offline silences and the hand-over of faults to the model.

A model is a small state machine in simulated time.  ``advance(until_ms)`` returns every
sample up to ``until_ms`` not returned before; the samples do not depend on how a run is cut
into calls, so a driver polled in real time and a batch generator produce the same data.

Every sample is a full snapshot of the device's signals, so any sample doubles as a
heartbeat and a rule can judge a reading on its own.  The base class makes sure a device
reports at least every ``family.heartbeat_s`` and at every fault boundary, that timestamps
strictly increase, and that nothing is returned while an ``offline`` fault is active.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import pairwise
from typing import ClassVar, NamedTuple

from jiayuan.catalogue import Family, Kind, family
from jiayuan.contract import Value
from simulators.faults import ALL_FAULT_SPECS, NOISY, OFFLINE, Fault
from simulators.registry import Device

Values = dict[str, Value]
# Devices power up at different instants: each one's first sample comes within this span.
FIRST_SAMPLE_SPREAD_MS = 2000
NEVER = 2**62


class Sample(NamedTuple):  # a tuple: cheap to make by the million
    ts: int  # epoch milliseconds, device time
    values: Values
    event: str | None = None  # a code the device itself flags (fire alarm bit, mains cut)


def device_rng(seed: int, device_id: str, purpose: str = "model") -> random.Random:
    """Randomness for one device, independent of every other device and of call order."""
    return random.Random(f"jiayuan/{seed}/{device_id}/{purpose}")


def noise(rng: random.Random, scale: float) -> float:
    """Zero-mean sensor noise with standard deviation ``scale``: a sum of two uniforms
    (triangular, within ±2.45 σ), several times cheaper than ``Random.gauss``."""
    return (rng.random() + rng.random() - 1.0) * scale * 2.449


class DeviceModel(ABC):
    """One simulated device; subclasses implement ``_emit`` and the fault hooks."""

    kind: ClassVar[Kind]

    def __init__(
        self, device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        if device.kind is not self.kind:
            raise ValueError(f"{type(self).__name__} cannot model a {device.kind.value} device")
        self.device = device
        self.family: Family = family(self.kind)
        self.rng = device_rng(seed, device.id)
        self.start_ms = start_ms
        self._heartbeat_ms = int(self.family.heartbeat_s * 1000)
        mine = sorted((f for f in faults if f.device == device.id), key=lambda f: f.start_ms)
        for fault in mine:
            if fault.fault_type not in ALL_FAULT_SPECS[self.kind]:
                raise ValueError(
                    f"{device.id}: unknown {self.kind.value} fault {fault.fault_type!r}"
                )
            if fault.end_ms <= fault.start_ms:
                raise ValueError(f"{device.id}: fault {fault.fault_id} ends before it starts")
        for before, after in pairwise(mine):
            if after.start_ms < before.end_ms:
                raise ValueError(
                    f"{device.id}: faults {before.fault_id} and {after.fault_id} overlap"
                )
        self._silences = [(f.start_ms, f.end_ms) for f in mine if f.fault_type == OFFLINE]
        self._noisy = [(f.start_ms, f.end_ms) for f in mine if f.fault_type == NOISY]
        self._model_faults = [f for f in mine if f.fault_type not in (OFFLINE, NOISY)]
        self._noise_rng = device_rng(seed, device.id, "noisy")
        # Every start and end is a sampling instant, so a fault shows from its first ms.
        self._boundaries = sorted({t for f in mine for t in (f.start_ms, f.end_ms)})
        self._next_fault = 0  # index into _model_faults of the next fault to start
        self.fault: Fault | None = None  # the model fault being applied now
        self._next_ms = start_ms + self.rng.randrange(FIRST_SAMPLE_SPREAD_MS)
        self.last_ms = start_ms  # the last instant the model was brought to

    def advance(self, until_ms: int) -> list[Sample]:
        """Every sample with ts ≤ ``until_ms`` not returned before, in time order."""
        samples: list[Sample] = []
        has_faults = bool(self._boundaries)  # most devices have none: skip the checks
        while self._next_ms <= until_ms:
            ts = self._next_ms
            if has_faults:
                self._apply_faults(ts)
            values, event, wanted = self._emit(ts)
            self.last_ms = ts
            next_ms = min(wanted, ts + self._heartbeat_ms)
            if has_faults:
                next_ms = min(next_ms, self._boundary_after(ts))
            self._next_ms = next_ms if next_ms > ts else ts + 1
            if has_faults and self._noisy and _within(self._noisy, ts):
                values = self._extra_noise(values)
            if not has_faults or not self._silent(ts):
                samples.append(Sample(ts, values, event))
        return samples

    def next_fault_start(self) -> int:
        """When the next model fault starts (NEVER if none): models keep normal activity
        such as a lift trip from running into it."""
        if self._next_fault < len(self._model_faults):
            return self._model_faults[self._next_fault].start_ms
        return NEVER

    @abstractmethod
    def _emit(self, ts: int) -> tuple[Values, str | None, int]:
        """Bring the model to ``ts``; return its values, an event code or None, and when
        it wants to sample next (the base class caps that at the heartbeat)."""

    @abstractmethod
    def _fault_started(self, fault: Fault, ts: int) -> None:
        """Begin applying ``fault`` at ``ts`` (its start_ms)."""

    @abstractmethod
    def _fault_ended(self, fault: Fault, ts: int) -> None:
        """Stop applying ``fault`` at ``ts`` (its end_ms) and head back to normal."""

    def _apply_faults(self, ts: int) -> None:
        while True:
            if self.fault is not None and self.fault.end_ms <= ts:
                ended, self.fault = self.fault, None
                self._fault_ended(ended, ended.end_ms)
                continue
            if (
                self.fault is None
                and self._next_fault < len(self._model_faults)
                and self._model_faults[self._next_fault].start_ms <= ts
            ):
                self.fault = self._model_faults[self._next_fault]
                self._next_fault += 1
                self._fault_started(self.fault, self.fault.start_ms)
                continue
            return

    def _boundary_after(self, ts: int) -> int:
        for boundary in self._boundaries:
            if boundary > ts:
                return boundary
        return NEVER

    def _silent(self, ts: int) -> bool:
        return _within(self._silences, ts)

    def _extra_noise(self, values: Values) -> Values:
        """A noisy but healthy sensor: more noise on the analogue signals, kept within
        the catalogue's range (its own randomness, so the model's draws stay the same)."""
        scales = EXTRA_NOISE.get(self.kind, {})
        noisy = dict(values)
        for name, value in values.items():
            signal = self.family.signal(name)
            scale = scales.get(signal.name) if signal is not None else None
            if scale is None or not isinstance(value, float) or value == 0.0 or signal is None:
                continue  # a zero is a stopped car or a dry road: exactly zero stays zero
            low = -math.inf if signal.minimum is None else signal.minimum
            high = math.inf if signal.maximum is None else signal.maximum
            noisy[name] = round(min(max(value + noise(self._noise_rng, scale), low), high), 3)
        return noisy


def _within(spans: Sequence[tuple[int, int]], ts: int) -> bool:
    return any(start <= ts < end for start, end in spans)


# Extra noise (σ) of a "noisy" device, about twice the models' own, so the total is about
# three times it; small enough that no healthy value reaches a rule threshold.
EXTRA_NOISE: dict[Kind, dict[str, float]] = {
    Kind.LIFT: {"speed": 0.008},
    Kind.FIRE: {"sprinkler_pressure": 0.004, "hydrant_pressure": 0.006, "tank_level": 0.01},
    Kind.WATER_TANK: {
        "free_chlorine": 0.006,
        "turbidity": 0.04,
        "ph": 0.06,
        "level_pct": 0.2,
        "supply_pressure": 0.006,
    },
    Kind.EBIKE_CHARGER: {"temp": 0.5},
    Kind.WATERLOGGING: {"depth": 0.4},
}
