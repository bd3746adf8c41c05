"""E-bike charging rules: per-port over-temperature, over-current, over-power, site smoke,
and a port hotter than its peers.

Each port has its own checks; the anomaly is one per pile and condition (open while any
port is over), its ``detail`` names the port that opened it.

A port hotter than its peers: a pile reports all its ports in one reading, so each port's
temperature is compared with the median of the pile's other ports, after taking out the
heat their power explains (``port_temp_rise_per_w`` × the port's power passed through a
first-order lag of ``port_thermal_tau_s``, as a port warms and cools over minutes).  What
is left is the ambient temperature plus whatever a port's power does not explain, such as
a bad contact; a charging port whose excess over the median is ≥ ``port_peer_excess_c``
for ``port_peer_hold_s`` opens the check, which clears 3 °C below.  Idle ports count as
peers (they read the ambient temperature), so a pile with one bike charging is judged too;
at least three other ports must report.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from gateway.detection.rules.base import Check, Predicate, Values, as_number, flag, measure, number
from gateway.detection.rules.table import RowJudge, RowValues, TableRules
from gateway.detection.rules.thresholds import Threshold
from jiayuan.catalogue import EBIKE_CHARGER, MAX_PORTS, port_field
from jiayuan.contract import Reading, Value

MIN_PEERS = 3  # other ports needed for a median worth comparing with
_LAG_TS = "_lag_ts"


def lag_field(port: int) -> str:
    """Derived value: the port's power through the thermal lag, W."""
    return f"_p{port:02d}_power_lag"


def excess_field(port: int) -> str:
    """Derived value: how much hotter than its peers the port runs, °C."""
    return f"_p{port:02d}_peer_excess"


class EbikeChargerRules(TableRules):
    def __init__(
        self, overrides: Mapping[str, float] | None = None, vectorised: bool | None = None
    ) -> None:
        super().__init__(EBIKE_CHARGER, overrides, vectorised)
        self._rise_per_w = self.threshold("port_temp_rise_per_w")
        self._tau_ms = self.threshold("port_thermal_tau_s") * 1000.0
        # With the thresholds in their table, the openers are the smoke flag and the ports'
        # peer checks, which the judge asks on the row itself.
        if self.table is not None:
            self.judge = PileJudge(
                self._column_of,
                self._tau_ms,
                self._rise_per_w,
                self.threshold("port_peer_excess_c"),
            )

    def build_thresholds(self) -> Sequence[Threshold]:
        hold_s = self.threshold("over_hold_s")
        limits = (
            (
                "over_temperature",
                "temp",
                self.threshold("port_temp_max"),
                self.threshold("temp_clear_margin_c"),
            ),
            (
                "over_current",
                "current",
                self.threshold("port_current_max"),
                self.threshold("current_clear_margin_a"),
            ),
            (
                "over_power",
                "power",
                self.threshold("port_power_max"),
                self.threshold("power_clear_margin_w"),
            ),
        )
        return [
            Threshold(
                f"ebike_charger.{code}",
                port_field(port, signal),
                True,
                limit,
                margin,
                hold_s,
                detail=f"p{port:02d}",
            )
            for code, signal, limit, margin in limits
            for port in range(1, MAX_PORTS + 1)
        ]

    def build_checks(self) -> Sequence[Check]:
        checks = [Check("ebike_charger.smoke", *flag("smoke"), measure("smoke"), 1.0)]
        peer_excess = self.threshold("port_peer_excess_c")
        peer_margin = self.threshold("port_peer_clear_margin_c")
        for port in range(1, MAX_PORTS + 1):
            opens, clears = _hotter_than_peers(port, peer_excess, peer_margin)
            checks.append(
                Check(
                    "ebike_charger.port_hotter_than_peers",
                    opens,
                    clears,
                    measure(excess_field(port)),
                    peer_excess,
                    hold_s=self.threshold("port_peer_hold_s"),
                    detail=f"p{port:02d}",
                    signal=port_field(port, "temp"),
                )
            )
        return checks

    def reads(self) -> Sequence[str]:
        per_port = [
            name
            for port in range(1, MAX_PORTS + 1)
            for name in (
                port_field(port, "temp"),
                port_field(port, "power"),
                lag_field(port),
                excess_field(port),
            )
        ]
        return ("smoke", _LAG_TS, *per_port)

    def recomputes(self) -> Sequence[str]:
        # Every port with a temperature and a power gets its excess afresh on each reading
        # (NaN without enough peers): 12 values a pile not worth keeping.
        return [excess_field(port) for port in range(1, MAX_PORTS + 1)]

    def derive(self, values: MutableMapping[str, Value], reading: Reading) -> None:
        last = number(values, _LAG_TS)
        if math.isnan(last):
            gain, values[_LAG_TS] = 1.0, reading.ts
        else:
            gain = 1.0 - math.exp(-max(0.0, reading.ts - last) / self._tau_ms)
            values[_LAG_TS] = max(float(reading.ts), last)
        residual = _lagged_residuals(values, gain, self._rise_per_w)
        for port, excess in _peer_excess(residual).items():
            values[_EXCESS_NAMES[port]] = excess


class PileJudge(RowJudge):
    """``EbikeChargerRules.derive`` and the openers of its checks in one pass over a pile's
    row (``RowValues``), on C doubles when compiled: no Python object a port.

    ``judge`` writes the ports' lags to the row as ``derive`` does and keeps their
    excesses over their peers here; they go into the row's derived values (``fill``)
    only for a reading whose checks are stepped.  It gives what ``derive`` and the
    openers give (tests/gateway/test_pile_judge.py holds it to that)."""

    def __init__(
        self, columns: Mapping[str, int], tau_ms: float, rise_per_w: float, peer_excess: float
    ) -> None:
        ports = range(1, MAX_PORTS + 1)
        self.power = np.array([columns[port_field(p, "power")] for p in ports], dtype=np.intp)
        self.temp = np.array([columns[port_field(p, "temp")] for p in ports], dtype=np.intp)
        self.lag = np.array([columns[lag_field(p)] for p in ports], dtype=np.intp)
        self.lag_ts = columns[_LAG_TS]
        self.smoke = columns["smoke"]
        self.temp_names = tuple(port_field(p, "temp") for p in ports)
        self.excess_names = tuple(excess_field(p) for p in ports)
        self.tau_ms = tau_ms
        self.rise_per_w = rise_per_w
        self.peer_excess = peer_excess
        # Per port, of the last reading judged: whether it had a temperature and a power,
        # its residual (temperature less the heat its lagged power explains) and excess.
        self.reported = np.zeros(MAX_PORTS, dtype=np.uint8)
        self.residual = np.zeros(MAX_PORTS, dtype=np.float64)
        self.excess = np.zeros(MAX_PORTS, dtype=np.float64)
        self.ordered = np.zeros(MAX_PORTS, dtype=np.float64)  # the residuals, sorted

    def judge(self, view: RowValues, ts: int, present: Mapping[str, Value]) -> bool:
        """Derive the pile's values for its reading at ``ts`` (``present``: the values it
        reported, already merged into the row); True when an opening condition holds."""
        last = view.real_at(self.lag_ts)
        if last != last:  # NaN: the first reading
            gain = 1.0
            view.put(self.lag_ts, ts)
        else:
            gain = 1.0 - math.exp(-max(0.0, ts - last) / self.tau_ms)
            view.put_real(self.lag_ts, max(float(ts), last))
        count = 0
        for port in range(MAX_PORTS):
            self.reported[port] = 0
            power = view.real_at(self.power[port])
            temp = view.real_at(self.temp[port])
            if power != power or temp != temp:  # NaN: not reported, or not a number
                continue
            lag = view.real_at(self.lag[port])
            lag = power if lag != lag else lag + (power - lag) * gain
            view.put_real(self.lag[port], lag)
            residual = temp - self.rise_per_w * lag
            self.residual[port] = residual
            self.reported[port] = 1
            # Insertion into the sorted residuals (stable, as ``sorted``).
            at = count
            while at > 0 and self.ordered[at - 1] > residual:
                self.ordered[at] = self.ordered[at - 1]
                at -= 1
            self.ordered[at] = residual
            count += 1
        self._excesses(count)
        opens = view.cell(self.smoke, None) == 1
        for port in range(MAX_PORTS):
            if (
                not opens
                and self.reported[port]
                and self.temp_names[port] in present
                and view.real_at(self.power[port]) > 0.0
                and self.excess[port] >= self.peer_excess
            ):
                opens = True
        return opens

    def _excesses(self, count: int) -> None:
        """Each reported port's excess over the median of the others, as
        ``_peer_excess`` computes it (NaN with too few)."""
        if count <= MIN_PEERS:
            for port in range(MAX_PORTS):
                self.excess[port] = math.nan
            return
        for at in range(count):
            if not math.isfinite(self.ordered[at]):
                residual = {
                    port + 1: float(self.residual[port])
                    for port in range(MAX_PORTS)
                    if self.reported[port]
                }
                for numbered, excess in _peer_excess(residual).items():
                    self.excess[numbered - 1] = excess
                return
        others = count - 1
        half = others // 2
        for port in range(MAX_PORTS):
            if not self.reported[port]:
                continue
            own = self.residual[port]
            below = 0  # bisect_left: the residuals less than one's own
            while below < count and self.ordered[below] < own:
                below += 1
            upper = self.ordered[half] if half < below else self.ordered[half + 1]
            if others % 2:
                self.excess[port] = own - upper
            else:
                lower = self.ordered[half - 1] if half - 1 < below else self.ordered[half]
                self.excess[port] = own - (lower + upper) / 2

    def fill(self, view: RowValues) -> None:
        """Put the excesses of the reading last judged into its derived values, for the
        checks to be stepped on."""
        for port in range(MAX_PORTS):
            if self.reported[port]:
                excess = self.excess[port]
                # NaN (too few peers) as ``math.nan`` itself, as ``_peer_excess`` gives it.
                view.derived[self.excess_names[port]] = (
                    float(excess) if excess == excess else math.nan
                )


def _lagged_residuals(
    values: MutableMapping[str, Value], gain: float, rise_per_w: float
) -> dict[int, float]:
    """Each reported port's temperature less the heat its lagged power explains; updates
    the ports' lags in ``values``.  A function, not a method, so that the compiled build
    can type its locals (ebike_charger.pxd): it runs for every port of every pile reading."""
    residual: dict[int, float] = {}
    # The device's row read directly (no Python call a value) unless a test swapped in
    # another mapping.
    row = values if isinstance(values, RowValues) else None
    for port, power_name, temp_name, lag_name in _PORT_NAMES:
        power = _real(values, row, power_name)
        temp = _real(values, row, temp_name)
        if power != power or temp != temp:  # NaN: not reported, or not a number
            continue
        lag = _real(values, row, lag_name)
        lag = power if lag != lag else lag + (power - lag) * gain
        values[lag_name] = lag
        residual[port] = temp - rise_per_w * lag
    return residual


def _real(values: Mapping[str, Value], row: RowValues | None, name: str) -> float:
    """``as_number`` of the named value, from the device's row when given."""
    if row is not None:
        return row.real(name)
    value = values.get(name)
    return value if type(value) is float else as_number(value)


def _peer_excess(residual: dict[int, float]) -> dict[int, float]:
    """Each port's residual less the median of the other ports' (NaN with too few)."""
    if len(residual) <= MIN_PEERS:
        return {port: math.nan for port in residual}
    ordered = sorted(residual.values())
    if not _all_finite(ordered):  # no total order: as statistics does
        return {
            port: own - statistics.median([r for p, r in residual.items() if p != port])
            for port, own in residual.items()
        }
    # The median of the others read off the sorted list with one's own value left out (the
    # first equal one: the same median either way), as statistics.median computes it.
    count = len(ordered) - 1
    half = count // 2
    excess: dict[int, float] = {}
    for port, own in residual.items():
        at = bisect.bisect_left(ordered, own)
        upper = ordered[half] if half < at else ordered[half + 1]
        if count % 2:
            excess[port] = own - upper
        else:
            lower = ordered[half - 1] if half - 1 < at else ordered[half]
            excess[port] = own - (lower + upper) / 2
    return excess


def _all_finite(numbers: list[float]) -> bool:
    # A loop, not all() over a generator: a typed loop in the compiled build.
    for each in numbers:  # noqa: SIM110
        if not math.isfinite(each):
            return False
    return True


_PORT_NAMES = tuple(
    (port, port_field(port, "power"), port_field(port, "temp"), lag_field(port))
    for port in range(1, MAX_PORTS + 1)
)
_EXCESS_NAMES = {port: excess_field(port) for port in range(1, MAX_PORTS + 1)}


def _hotter_than_peers(port: int, excess: float, margin: float) -> tuple[Predicate, Predicate]:
    power, name = port_field(port, "power"), excess_field(port)

    def opens(values: Values) -> bool:
        return number(values, power, 0.0) > 0.0 and number(values, name) >= excess

    def clears(values: Values) -> bool:
        # Cut off, unplugged or back among its peers; no peers to compare with clears too.
        value = number(values, name)
        return number(values, power, 0.0) <= 0.0 or not value >= excess - margin

    return opens, clears
