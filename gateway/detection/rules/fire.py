"""Fire-system rules (GB/T 26875.3 state bits, GB 50974-2014 pressures).

A healthy sprinkler pipe leaks slowly and its jockey (稳压) pump tops it up: the pressure is
a saw-tooth between the pump's start and stop pressures.  ``fire.sprinkler_pressure_sagging``
opens when the pressure, with the pump idle, is below the lowest a healthy saw-tooth goes:
the pump should have started, so the pipe is bleeding with the pump off or failed, long
before it reaches the 0.10 MPa minimum.

"The lowest a healthy saw-tooth goes" is learned per device: the pressure at which its pump
was last commanded (the start pressure, an EWMA over pump starts), less
``pump_start_margin_mpa``; the check then holds for ``pressure_sag_learned_s``.  Until a
pump start has been seen, and as a second bound, it is ``sprinkler_sag_max_mpa`` below the
highest reading since the pump last ran, held for ``pressure_sag_s``.  A start at a
pressure well below the learned one (the pump restored after a fault) is not learned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence

import numpy as np

from gateway.detection.rules.base import Check, Predicate, Values, flag, measure, negate, number
from gateway.detection.rules.table import RowJudge, RowValues, TableRules
from gateway.detection.rules.thresholds import Threshold
from jiayuan.catalogue import FIRE
from jiayuan.contract import Reading, Value

# Derived values: the sprinkler pressure's peak since the jockey pump last ran, the pump's
# learned start pressure, and the pressure below which the pipe is sagging (NaN while the
# pump is commanded or running).
PEAK = "_sprinkler_peak"
START = "_pump_start_pressure"
LIMIT = "_sprinkler_sag_limit"
_WAS_COMMANDED = "_pump_was_commanded"
STATES = ("fire_alarm", "fault", "supervisory", "isolated")  # GB/T 26875.3 state bits


def _pump_not_running(values: Values) -> bool:
    return values.get("pump_commanded") == 1 and values.get("pump_running") == 0


class FireRules(TableRules):
    def __init__(
        self, overrides: Mapping[str, float] | None = None, vectorised: bool | None = None
    ) -> None:
        super().__init__(FIRE, overrides, vectorised)
        self._sag_max = self.threshold("sprinkler_sag_max_mpa")
        # Beyond the reach of a healthy reading near the start pressure and of the noise in
        # the learned start pressure itself (the catalogue gives the reasoning).
        self._start_margin = self.threshold("pump_start_margin_mpa")
        self._start_weight = self.threshold("pump_start_learning")
        # The openers are the state bits, the pump and the sag, and the thresholds unless
        # they run in their table: the judge asks them all on the row itself.
        self.judge = FireJudge(
            self._column_of,
            self._sag_max,
            self._start_margin,
            self._start_weight,
            () if self.table is not None else self.thresholds,
        )

    def build_thresholds(self) -> Sequence[Threshold]:
        hold_s = self.threshold("pressure_low_s")
        # Clear margins (INF) so a pressure hovering at its minimum does not flap.
        pressure_margin = self.threshold("pressure_clear_margin_mpa")
        level_margin = self.threshold("tank_level_clear_margin_m")
        return (
            Threshold(
                "fire.sprinkler_pressure_low",
                "sprinkler_pressure",
                False,
                self.threshold("sprinkler_pressure_min"),
                pressure_margin,
                hold_s,
            ),
            Threshold(
                "fire.hydrant_pressure_low",
                "hydrant_pressure",
                False,
                self.threshold("hydrant_pressure_min"),
                pressure_margin,
                hold_s,
            ),
            Threshold(
                "fire.tank_level_low",
                "tank_level",
                False,
                self.threshold("tank_level_min"),
                level_margin,
                hold_s,
            ),
        )

    def build_checks(self) -> Sequence[Check]:
        pressure_margin = self.threshold("pressure_clear_margin_mpa")
        checks = [
            Check(f"fire.{code}", *flag(signal), measure(signal), 1.0)
            for code, signal in zip(
                ("alarm", "fault", "supervisory", "isolated"), STATES, strict=True
            )
        ]
        checks += [
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
                *below_limit("sprinkler_pressure", LIMIT, pressure_margin),
                measure("sprinkler_pressure"),
                measure(LIMIT),
                hold_s=self._sag_hold(),
                signal="sprinkler_pressure",
            ),
        ]
        return checks

    def reads(self) -> Sequence[str]:
        pump = ("pump_commanded", "pump_running", "sprinkler_pressure")
        return (*STATES, *pump, PEAK, START, LIMIT, _WAS_COMMANDED)

    def _sag_hold(self) -> Callable[[Values], float]:
        learned_s = self.threshold("pressure_sag_learned_s")
        fixed_s = self.threshold("pressure_sag_s")

        def hold(values: Values) -> float:
            return fixed_s if math.isnan(number(values, START)) else learned_s

        return hold

    def derive(self, values: MutableMapping[str, Value], reading: Reading) -> None:
        pressure = number(values, "sprinkler_pressure")
        commanded = values.get("pump_commanded") == 1
        if commanded and values.get(_WAS_COMMANDED) != 1:
            self._learn_start(values, pressure)
        values[_WAS_COMMANDED] = 1 if commanded else 0
        if commanded or values.get("pump_running") == 1:
            values[PEAK] = values[LIMIT] = math.nan
            return
        if math.isnan(pressure):
            return
        peak = number(values, PEAK)
        peak = pressure if math.isnan(peak) else max(peak, pressure)
        values[PEAK] = peak
        start = number(values, START)
        limit = peak - self._sag_max
        values[LIMIT] = limit if math.isnan(start) else max(limit, start - self._start_margin)

    def _learn_start(self, values: MutableMapping[str, Value], pressure: float) -> None:
        """A pump start at ``pressure``: learn it unless it restores a fault (a fall beyond
        the band from the peak, or below the learned start pressure's margin)."""
        peak, start = number(values, PEAK), number(values, START)
        if math.isnan(pressure) or math.isnan(peak) or peak - pressure > self._sag_max:
            return
        if math.isnan(start):
            values[START] = pressure
        elif pressure >= start - self._start_margin:
            values[START] = start + self._start_weight * (pressure - start)


class FireJudge(RowJudge):
    """``FireRules.derive`` and the openers of its checks in one pass over a panel's row
    (``RowValues``), on C doubles when compiled: no Python call a check.

    It writes what ``derive`` writes and says whether an opening condition holds, as
    ``derive`` and the openers do (tests/gateway/test_fire_judge.py holds it to that).
    ``thresholds``: the family's plain thresholds run as checks (none when they run in
    their table)."""

    def __init__(
        self,
        columns: Mapping[str, int],
        sag_max: float,
        start_margin: float,
        start_weight: float,
        thresholds: Sequence[Threshold],
    ) -> None:
        self.pressure = columns["sprinkler_pressure"]
        self.commanded = columns["pump_commanded"]
        self.running = columns["pump_running"]
        self.was_commanded = columns[_WAS_COMMANDED]
        self.peak = columns[PEAK]
        self.start = columns[START]
        self.limit = columns[LIMIT]
        self.states = np.array([columns[name] for name in STATES], dtype=np.intp)
        self.sag_max = sag_max
        self.start_margin = start_margin
        self.start_weight = start_weight
        # A threshold opens when sign × value > sign × limit: below a limit is
        # -value > -limit, the same comparison exactly (NaN opens neither).
        self.signals = tuple(t.signal for t in thresholds)
        self.columns = np.array([columns[t.signal] for t in thresholds], dtype=np.intp)
        self.signs = np.array([1.0 if t.rising else -1.0 for t in thresholds])
        self.limits = np.array([t.limit for t in thresholds], dtype=np.float64)

    def judge(self, view: RowValues, ts: int, present: Mapping[str, Value]) -> bool:
        """Derive the panel's values for its reading (``present``: the values it
        reported, already merged into the row); True when an opening condition holds."""
        pressure = view.real_at(self.pressure)
        commanded = view.holds(self.commanded, 1)
        if commanded and not view.holds(self.was_commanded, 1):
            self._learn_start(view, pressure)
        view.put(self.was_commanded, 1 if commanded else 0)
        if commanded or view.holds(self.running, 1):
            view.put_real(self.peak, math.nan)
            view.put_real(self.limit, math.nan)
        elif pressure == pressure:  # not NaN
            peak = view.real_at(self.peak)
            # max(peak, pressure) as Python's max orders them (the first unless exceeded).
            peak = pressure if peak != peak or pressure > peak else peak
            view.put_real(self.peak, peak)
            start = view.real_at(self.start)
            limit = peak - self.sag_max
            if start == start and start - self.start_margin > limit:
                limit = start - self.start_margin
            view.put_real(self.limit, limit)
        for at in range(len(self.signals)):
            if self.signals[at] in present:
                sign = self.signs[at]
                if sign * view.real_at(self.columns[at]) > sign * self.limits[at]:
                    return True
        for at in range(len(self.states)):
            if view.holds(self.states[at], 1):
                return True
        if commanded and view.holds(self.running, 0):  # the pump not started
            return True
        # Sagging: below the derived limit (NaN while the pump runs: no opening).
        return "sprinkler_pressure" in present and view.real_at(self.pressure) < view.real_at(
            self.limit
        )

    def _learn_start(self, view: RowValues, pressure: float) -> None:
        """``FireRules._learn_start`` on the row."""
        peak = view.real_at(self.peak)
        start = view.real_at(self.start)
        if pressure != pressure or peak != peak or peak - pressure > self.sag_max:
            return
        if start != start:
            view.put_real(self.start, pressure)
        elif pressure >= start - self.start_margin:
            view.put_real(self.start, start + self.start_weight * (pressure - start))

    def fill(self, view: RowValues) -> None:
        """Nothing: every value ``judge`` derives is kept in the row already."""


def below_limit(name: str, limit: str, margin: float) -> tuple[Predicate, Predicate]:
    """Open below the derived value ``limit``; clear at ``limit + margin``.  While the pump
    runs there is no limit: an open check stays open until the pump has stopped."""

    def opens(values: Values) -> bool:
        return number(values, name) < number(values, limit)

    def clears(values: Values) -> bool:
        return number(values, name) >= number(values, limit) + margin

    return opens, clears
