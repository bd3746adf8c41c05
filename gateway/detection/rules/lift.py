"""Lift rules (GB/T 24476-2017 field set; trapped-passenger times from products)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.detection.rules.base import Check, Values, flag, measure, negate, number
from gateway.detection.rules.table import RowJudge, RowValues, TableRules
from jiayuan.catalogue import LIFT
from jiayuan.contract import Value

STOPPED, RUNNING = 0, 1
DOOR_CLOSED, DOOR_OPEN = 0, 1
IN_ZONE, OUT_OF_ZONE = 1, 2
SOMEONE = 1
INSPECTION = 2
POWER_CUT = 2
# Controller code 40 means "back to normal operation", not a fault (GB/T 24476-2017).
NOT_A_FAULT = {0, 40}


def _in_inspection(values: Values) -> bool:
    # Maintenance staff work with the car in inspection mode: doors open while moving and
    # stops out of zone are expected then, and nobody is trapped.
    return values.get("service_mode") == INSPECTION


def _trapped(values: Values) -> bool:
    return (
        values.get("passenger_status") == SOMEONE
        and values.get("door_status") == DOOR_CLOSED
        and values.get("car_status") == STOPPED
    )


def _moving_with_door_open(values: Values) -> bool:
    return values.get("car_status") == RUNNING and values.get("door_status") == DOOR_OPEN


def _stopped_out_of_zone(values: Values) -> bool:
    return values.get("car_status") == STOPPED and values.get("door_zone") == OUT_OF_ZONE


def _has_fault(values: Values) -> bool:
    return _is_fault(values.get("fault_code"))


def _is_fault(code: object) -> bool:
    return isinstance(code, int) and code not in NOT_A_FAULT


class LiftRules(TableRules):
    def __init__(
        self, overrides: Mapping[str, float] | None = None, vectorised: bool | None = None
    ) -> None:
        super().__init__(LIFT, overrides, vectorised)
        self.judge = LiftJudge(self._column_of, self.threshold("overspeed_ratio"))

    def reads(self) -> Sequence[str]:
        return (
            "passenger_status",
            "door_status",
            "car_status",
            "door_zone",
            "service_mode",
            "fault_code",
            "speed",
            "rated_speed",
            "up_limit",
            "down_limit",
            "power_status",
            "car_position",
        )

    def build_checks(self) -> Sequence[Check]:
        in_zone_s = self.threshold("trapped_in_zone_s")
        out_of_zone_s = self.threshold("trapped_out_of_zone_s")
        ratio = self.threshold("overspeed_ratio")

        def trapped_hold(values: Values) -> float:
            return in_zone_s if values.get("door_zone") == IN_ZONE else out_of_zone_s

        def overspeed_limit(values: Values) -> float:
            # rated_speed arrives in heartbeats; the merged values remember it per device.
            return ratio * number(values, "rated_speed")

        def overspeeding(values: Values) -> bool:
            return number(values, "speed") > overspeed_limit(values)

        def back_to_rated(values: Values) -> bool:
            return not number(values, "speed") > number(values, "rated_speed")

        top, bottom, power = flag("up_limit"), flag("down_limit"), flag("power_status", POWER_CUT)
        return (
            Check(
                "lift.trapped",
                _trapped,
                negate(_trapped),
                trapped_hold,
                trapped_hold,
                hold_s=trapped_hold,
                suppressed=_in_inspection,
            ),
            # Seen in two readings in a row, or for a second: one odd sample is not enough.
            Check(
                "lift.door_open_moving",
                _moving_with_door_open,
                negate(_moving_with_door_open),
                measure("speed"),
                0.0,
                hold_s=1.0,
                min_count=2,
                suppressed=_in_inspection,
            ),
            # Sustained, as a governor judges it: a single fast sample may be sensor noise.
            Check(
                "lift.overspeed",
                overspeeding,
                back_to_rated,
                measure("speed"),
                overspeed_limit,
                hold_s=self.threshold("overspeed_hold_s"),
            ),
            Check("lift.power_loss", *power, measure("power_status"), POWER_CUT),
            Check("lift.overtravel_top", *top, measure("up_limit"), 1.0),
            Check("lift.overtravel_bottom", *bottom, measure("down_limit"), 1.0),
            Check(
                "lift.stop_out_of_zone",
                _stopped_out_of_zone,
                negate(_stopped_out_of_zone),
                measure("car_position"),
                self.threshold("stop_out_of_zone_s"),
                hold_s=self.threshold("stop_out_of_zone_s"),
                suppressed=_in_inspection,
            ),
            Check(
                "lift.fault_code",
                _has_fault,
                negate(_has_fault),
                measure("fault_code"),
                0.0,
                suppressed=_in_inspection,
            ),
        )


class LiftJudge(RowJudge):
    """The openers of ``LiftRules``' checks in one pass over a lift's row (``RowValues``),
    on C numbers when compiled: no Python call a check.  It says whether an opening
    condition holds as the openers and ``_in_inspection`` do (tests/gateway/
    test_lift_judge.py holds it to that)."""

    def __init__(self, columns: Mapping[str, int], overspeed_ratio: float) -> None:
        self.passenger = columns["passenger_status"]
        self.door = columns["door_status"]
        self.car = columns["car_status"]
        self.zone = columns["door_zone"]
        self.mode = columns["service_mode"]
        self.fault = columns["fault_code"]
        self.speed = columns["speed"]
        self.rated = columns["rated_speed"]
        self.top = columns["up_limit"]
        self.bottom = columns["down_limit"]
        self.power = columns["power_status"]
        self.ratio = overspeed_ratio

    def judge(self, view: RowValues, ts: int, present: Mapping[str, Value]) -> bool:
        """True when an opening condition holds on the lift's values (``present`` already
        merged into the row); a lift derives nothing."""
        if not view.holds(self.mode, INSPECTION):  # what inspection mode suppresses
            stopped = view.holds(self.car, STOPPED)
            if (
                stopped
                and view.holds(self.passenger, SOMEONE)
                and view.holds(self.door, DOOR_CLOSED)
            ):
                return True  # trapped
            if view.holds(self.car, RUNNING) and view.holds(self.door, DOOR_OPEN):
                return True  # moving with the door open
            if stopped and view.holds(self.zone, OUT_OF_ZONE):
                return True
            if _is_fault(view.cell(self.fault, None)):
                return True
        if view.real_at(self.speed) > self.ratio * view.real_at(self.rated):
            return True
        if view.holds(self.power, POWER_CUT):
            return True
        return view.holds(self.top, 1) or view.holds(self.bottom, 1)

    def fill(self, view: RowValues) -> None:
        """Nothing: a lift derives no values."""
