"""What every family's rules share: the place of a device, a held check, the interface.

A family's rules are a table of ``Check``s read against the device's latest known values
(readings may carry only the values that changed, so each device keeps a merged view).
A check opens once its opening condition has held for ``hold_s`` of *device* time and
closes once its clearing condition has held for ``clear_hold_s``; opening and clearing are
separate predicates so analog signals get a clear margin (hysteresis) and alerts do not
flap.  Device time, not the wall clock, so an accelerated replay behaves like real time.

Several checks may share one event code (one per charging port, say): the anomaly for that
code is open while any of them is, because an alert is one per device and condition.

Plain thresholds (a signal above or below a limit, held, cleared with a margin), which most
rules are, are declared as ``Threshold``s and judged for whole batches at once by a
``ThresholdTable`` (``gateway.rules.thresholds``); the other checks run per reading here.
``TableRules(vectorised=False)`` runs the thresholds as per-reading checks instead: the
reference the vectorised table is tested against; by default a family vectorises when it
has ``VECTORISE_FROM`` thresholds or more (where the table measured faster).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from jiayuan.catalogue import Family
from jiayuan.contract import Reading, Value

if TYPE_CHECKING:
    from gateway.rules.thresholds import Threshold

Values = Mapping[str, Value]
# A family with this many thresholds per reading or more runs them in a ThresholdTable by
# default: a table call costs ~50 µs plus ~2 µs a reading, a per-reading threshold check
# ~1.5 µs, and the gateway judges one MQTT message (~20 readings of a family) at a time,
# so a pile's 36 per-port thresholds pay for the table (and leave 36 Python state objects
# per pile for 360 bytes of arrays) and a fire panel's 3 do not.
VECTORISE_FROM = 8
Predicate = Callable[[Values], bool]
Measure = Callable[[Values], float]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a device is; ``key`` leaves out the building, which is a label, not identity."""

    district: str
    street: str
    estate: str
    building: str
    kind: str
    device: str

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.district, self.street, self.estate, self.kind, self.device)


@dataclass(frozen=True, slots=True)
class AnomalyChange:
    """A rule's verdict on one reading: this code opened or closed at ``ts_ms``."""

    code: str
    opened: bool
    ts_ms: int
    value: float
    threshold: float
    detail: str = ""  # which part of the device, e.g. the port "p03"


class FamilyRules(Protocol):
    """One family's rules."""

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]: ...

    def evaluate_many(self, items: Sequence[tuple[Place, Reading]]) -> list[list[AnomalyChange]]:
        """The changes of each reading, in order (vectorised across the batch)."""
        ...

    def forget(self, place: Place) -> None:
        """Drop the device's state (it was removed or went silent for good)."""
        ...


def _never(values: Values) -> bool:
    return False


def negate(predicate: Predicate) -> Predicate:
    def negated(values: Values) -> bool:
        return not predicate(values)

    return negated


@dataclass(frozen=True)
class Check:
    """One condition of one family, evaluated on the merged values of a device.

    ``opens`` and ``clears`` are separate so analog signals can clear with a margin;
    ``hold_s`` may depend on the values (a trapped passenger is judged sooner inside the
    door zone than outside it).  ``suppressed`` (inspection mode, say) keeps the check from
    opening and closes it if open.  ``min_count`` opens the check after that many
    consecutive readings even before ``hold_s`` has passed.
    """

    code: str
    opens: Predicate
    clears: Predicate
    value: Measure
    threshold: float | Measure
    hold_s: float | Callable[[Values], float] = 0.0
    clear_hold_s: float = 0.0
    min_count: int | None = None
    suppressed: Predicate = _never
    detail: str = ""
    # When set, a check at rest is only evaluated on readings that carry this value (a
    # pile reports only the ports it has, so the other ports' checks cost nothing).
    signal: str = ""

    def hold_for(self, values: Values) -> float:
        return self.hold_s(values) if callable(self.hold_s) else self.hold_s

    def threshold_for(self, values: Values) -> float:
        return self.threshold(values) if callable(self.threshold) else self.threshold


@dataclass(slots=True)
class HeldState:
    """Where one check stands for one device: active or not, and since when."""

    active: bool = False
    since_ms: int | None = None  # when the condition towards the other state began
    count: int = 0  # consecutive readings with that condition


@dataclass(slots=True)
class DeviceState:
    values: dict[str, Value] = field(default_factory=dict)
    held: list[HeldState] = field(default_factory=list)
    last_ts: int = 0


def step(check: Check, state: HeldState, values: Values, ts_ms: int) -> bool:
    """Advance one check by one reading; True when it changed state."""
    if check.suppressed(values):
        state.since_ms, state.count = None, 0
        if state.active:
            state.active = False
            return True
        return False
    condition = check.clears(values) if state.active else check.opens(values)
    if not condition:
        state.since_ms, state.count = None, 0
        return False
    if state.since_ms is None:
        state.since_ms = ts_ms
    state.count += 1
    held_s = max(0, ts_ms - state.since_ms) / 1000.0
    need_s = check.clear_hold_s if state.active else check.hold_for(values)
    enough = held_s >= need_s or (
        not state.active and check.min_count is not None and state.count >= check.min_count
    )
    if not enough:
        return False
    state.active, state.since_ms, state.count = not state.active, None, 0
    return True


class TableRules:
    """Rules given as a table of checks per device; each family module builds its table."""

    def __init__(
        self,
        family: Family,
        overrides: Mapping[str, float] | None = None,
        vectorised: bool | None = None,
    ) -> None:
        from gateway.rules.thresholds import ThresholdTable  # it builds on this module

        self.family = family
        self._overrides = dict(overrides or {})
        self._devices: dict[tuple[str, str, str, str, str], DeviceState] = {}
        self.thresholds: Sequence[Threshold] = self.build_thresholds()
        others = self.build_checks()
        shared = {t.code for t in self.thresholds} & {c.code for c in others}
        if shared:
            raise ValueError(f"{family.kind}: codes both thresholds and checks: {shared}")
        if vectorised is None:  # measured (bench/README.md): where it pays
            vectorised = len(self.thresholds) >= VECTORISE_FROM
        self.table = ThresholdTable(self.thresholds) if vectorised and self.thresholds else None
        threshold_checks = [] if self.table is not None else [t.check() for t in self.thresholds]
        self.checks: Sequence[Check] = [*threshold_checks, *others]
        self._members: dict[str, list[int]] = {}
        for index, check in enumerate(self.checks):
            self._members.setdefault(check.code, []).append(index)
        codes = set(self._members) | {t.code for t in self.thresholds}
        unknown = codes - {e.code for e in family.events}
        if unknown:
            raise KeyError(f"{family.kind}: checks use codes not in the catalogue: {unknown}")

    def threshold(self, name: str) -> float:
        """A threshold from the catalogue unless this deployment overrides it."""
        return self._overrides.get(name, self.family.threshold(name))

    def setting(self, name: str, default: float) -> float:
        """A value the catalogue does not (yet) hold, such as a clear margin."""
        if name in self._overrides:
            return self._overrides[name]
        try:
            return self.family.threshold(name)
        except KeyError:
            return default

    def build_checks(self) -> Sequence[Check]:
        """The family's checks other than plain thresholds, the same for every device."""
        raise NotImplementedError

    def build_thresholds(self) -> Sequence[Threshold]:
        """The family's plain thresholds (vectorised); by default none."""
        return ()

    def derive(self, device: DeviceState, reading: Reading) -> None:
        """Add values computed from the device's history to ``device.values`` before the
        checks run (a port's lagged power, the peak since a pump last ran); by default none.
        Derived names start with ``_`` so they cannot collide with a reported signal."""

    def forget(self, place: Place) -> None:
        self._devices.pop(place.key, None)
        if self.table is not None:
            self.table.forget(place.key)

    def evaluate(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        return self.evaluate_many([(place, reading)])[0]

    def evaluate_many(self, items: Sequence[tuple[Place, Reading]]) -> list[list[AnomalyChange]]:
        """Per reading: the thresholds' changes (one vectorised call for the batch), then
        the other checks'."""
        if self.table is None:
            return [self._evaluate_checks(place, reading) for place, reading in items]
        out = self.table.evaluate([(place.key, reading) for place, reading in items])
        for changes, (place, reading) in zip(out, items, strict=True):
            changes += self._evaluate_checks(place, reading)
        return out

    def _evaluate_checks(self, place: Place, reading: Reading) -> list[AnomalyChange]:
        device = self._devices.get(place.key)
        if device is None:
            device = self._devices[place.key] = DeviceState()
            device.held = [HeldState() for _ in self.checks]
        device.values.update(reading.values)
        self.derive(device, reading)
        device.last_ts = max(device.last_ts, reading.ts)
        values, held, checks, ts = device.values, device.held, self.checks, reading.ts
        present = reading.values
        changed: list[int] = []
        for index, check in enumerate(checks):
            state = held[index]
            if (
                check.signal
                and check.signal not in present
                and not state.active
                and state.since_ms is None
            ):
                continue
            if step(check, state, values, ts):
                changed.append(index)
        if not changed:
            return []
        return self._code_changes(changed, held, values, ts)

    def _code_changes(
        self, changed: list[int], held: Sequence[HeldState], values: Values, ts: int
    ) -> list[AnomalyChange]:
        """Turn check transitions into anomaly transitions: a code shared by several
        checks opens with the first of them and closes with the last."""
        changes: list[AnomalyChange] = []
        done: set[str] = set()
        for index in changed:
            check = self.checks[index]
            if check.code in done:
                continue
            done.add(check.code)
            members = self._members[check.code]
            now_open = any(held[j].active for j in members)
            was_open = any(held[j].active != (j in changed) for j in members)
            if now_open and not was_open:
                first = next(
                    self.checks[j]
                    for j in changed
                    if self.checks[j].code == check.code and held[j].active
                )
                changes.append(
                    AnomalyChange(
                        check.code,
                        True,
                        ts,
                        first.value(values),
                        first.threshold_for(values),
                        first.detail,
                    )
                )
            elif was_open and not now_open:
                changes.append(
                    AnomalyChange(
                        check.code,
                        False,
                        ts,
                        check.value(values),
                        check.threshold_for(values),
                        check.detail,
                    )
                )
        return changes


def number(values: Values, name: str, default: float = float("nan")) -> float:
    """A numeric value, or ``default`` when the device has not reported it (yet)."""
    value = values.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def flag(name: str, on: int = 1) -> tuple[Predicate, Predicate]:
    """Opening and clearing predicates for a state bit: open at ``on``, clear otherwise."""

    def opens(values: Values) -> bool:
        return values.get(name) == on

    def clears(values: Values) -> bool:
        return name in values and values.get(name) != on

    return opens, clears


def below(name: str, limit: float, margin: float) -> tuple[Predicate, Predicate]:
    """Open below ``limit``; clear only at or above ``limit + margin``."""

    def opens(values: Values) -> bool:
        return number(values, name) < limit

    def clears(values: Values) -> bool:
        return number(values, name) >= limit + margin

    return opens, clears


def above(name: str, limit: float, margin: float) -> tuple[Predicate, Predicate]:
    """Open above ``limit``; clear only at or below ``limit - margin``."""

    def opens(values: Values) -> bool:
        return number(values, name) > limit

    def clears(values: Values) -> bool:
        return number(values, name) <= limit - margin

    return opens, clears


def measure(name: str) -> Measure:
    def value(values: Values) -> float:
        return number(values, name)

    return value
