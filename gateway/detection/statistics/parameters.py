"""Parameters of the statistical detectors, with their defaults and why.

Every EWMA here counts *readings*: devices report on a fixed period (5-10 s in the
catalogue), and a count-based horizon keeps the state to one number per series.  Devices
also report faster during events (a pile every second while a port is hot); with
``min_period_s`` set (the gateway: ``GATEWAY_MIN_PERIOD_S``) such readings count for their
share of that period, so a horizon never gets shorter in time than the count times the
period.  Each dataclass is frozen and documented; ``StatParams`` gathers them with the
per-signal opt-outs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.detection.statistics.seasonal import SeasonalParams

LEVEL_SHIFT, RATE_OF_CHANGE, STUCK, DRIFT = "level_shift", "rate_of_change", "stuck", "drift"
# Bit of each detector in the flag bytes returned by the core (order = STATISTICAL_EVENTS).
DETECTORS = (LEVEL_SHIFT, RATE_OF_CHANGE, STUCK, DRIFT)
BIT = {name: 1 << index for index, name in enumerate(DETECTORS)}
ALL_BITS = (1 << len(DETECTORS)) - 1


@dataclass(frozen=True)
class LevelShiftParams:
    """Robust level shift: |x − EWMA mean| / max(EWMA |deviation|, floor) > k."""

    warmup: int = 30  # readings before judging: 5 min at a 10 s period
    alpha: float = 0.05  # baseline horizon ~20 readings
    k: float = 8.0  # mean |deviation| is ~0.8 σ for Gaussian noise, so k = 8 is ~6.4 σ
    persist: int = 3  # consecutive readings over k before opening (a lone spike is not a shift)
    clear_k: float = 4.0  # hysteresis: clear below this
    clear_n: int = 3  # ... for this many consecutive readings
    # A reading over k updates the baseline this much slower, so a sustained fault is not
    # learned away in minutes (it is in hours, when it has become the new normal).
    flagged_learning: float = 0.02
    # A shift still open after this many readings is the new normal: the baseline restarts
    # at the current value and the anomaly closes (one change, one anomaly; a slow fault
    # is the drift detector's, whose reference does not move).
    relearn: int = 120


@dataclass(frozen=True)
class RateParams:
    """Rate of change: |Δx/Δt| > max(factor × EWMA |Δx/Δt|, floor_factor × floor / 1 s)."""

    warmup: int = 30
    alpha: float = 0.05
    factor: float = 12.0
    floor_factor: float = 1.0  # absolute floor: one scale floor per second
    # Only the part of a step beyond this many scales counts (readings 1 s apart differ by
    # noise alone, which divided by 1 s would look fast).  For Gaussian noise 8 mean
    # |deviations| are 4.5 σ of a difference: once in ~150,000 readings (at 6, once in 1,500,
    # and a rate needs no persistence).
    noise_band: float = 8.0
    persist: int = 1  # a jump is one reading
    clear_n: int = 3


@dataclass(frozen=True)
class StuckParams:
    """Flat-lined: |Δx| < epsilon for ≥ min_readings readings and ≥ min_seconds, on a series
    that normally changes on most readings, at a value other than its physical minimum (a
    dry gauge reading 0 cm, an idle port at 0 A are at rest, not stuck)."""

    epsilon: float = 1e-9  # readings are rounded by the device: a stuck one repeats exactly
    min_readings: int = 20
    min_seconds: float = 180.0  # with 20 readings: 3-4 min at 10 s, within the 5 min target
    alpha: float = 0.02  # horizon of the share of readings that change
    min_change_share: float = 0.6  # only series whose value changes on ≥ 60 % of readings
    warmup: int = 50


@dataclass(frozen=True)
class DriftParams:
    """Slow drift: a slow EWMA leaves the reference frozen after warm-up by > k × scale."""

    warmup: int = 180  # reference captured after 180 readings (30 min at 10 s)
    alpha: float = 1.0 / 60  # slow EWMA, horizon 60 readings (10 min at 10 s)
    k: float = 4.0  # in units of max(baseline scale at capture, floor)
    persist: int = 6
    clear_k: float = 2.0
    clear_n: int = 6
    # Only a series that sat at a level during its warm-up can drift from it: one whose
    # reading-to-reading change (EWMA |Δx|) is below this share of its deviation from the
    # baseline (EWMA |x − mean|) wanders or cycles (a random walk, a daily curve), and its
    # slow mean leaves any frozen reference without a fault.  White noise gives ~1.4.
    stationary_ratio: float = 0.8


# Signals whose healthy behaviour is bursty or cyclic, so that a baseline detector would
# raise on normal operation: lift speed (parked at 0, then ramps), charging-port current
# and power (a bike plugged in or finishing), pile power, rain and water depth (showers),
# tank level (draw-down and refill), free chlorine (decays for hours, then a dose steps it
# back up), the sprinkler pipe (jockey pump saw-tooth).  Keys are "kind.signal" with the
# per-port prefix removed ("ebike_charger.current" covers p01_current … p12_current).
BURSTY = frozenset(
    {
        "lift.speed",
        "ebike_charger.current",
        "ebike_charger.power",
        "ebike_charger.total_power",
        "waterlogging.depth",
        "waterlogging.rain_rate",
        "water_tank.level_pct",
        "water_tank.free_chlorine",
        "fire.sprinkler_pressure",
    }
)
# Charging-port temperature warms over a charge (a slow, legitimate trend): no drift there.
NO_DRIFT = BURSTY | {"ebike_charger.temp"}
# Signals not judged at all.  A charging port's current and power: both are bursty, so only
# the stuck detector would run on them, and a port at constant current while a bike charges
# repeats its value legitimately; their faults are the rules' (over-current, over-power per
# port), which catch every labelled e-bike fault in ``jiayuan eval`` without them, and
# leaving their 24 series out of a 12-port pile saves ~370 bytes a pile (memory target:
# 1 KB a device at 100,000 piles).  The pile's total power keeps the stuck detector.  A
# lift's rated speed is its nameplate value (for the overspeed rule), not a measurement.
UNTRACKED = frozenset({"ebike_charger.current", "ebike_charger.power", "lift.rated_speed"})


# Signals that follow the clock in a healthy estate, and so may get a seasonal profile
# (``seasonal.py``): a tank's outlet pressure falls with the draw at the morning and evening
# peaks (and many booster sets lower it at night), its level follows the draw and the
# refills.  Only these hold a gate (32 bytes a series and an int32 cell), and a profile
# (640 bytes, and 58 for its slot in a seasonal core once in use) only once the gate sees a
# daily cycle: the others, and most devices, pay nothing.  Water tanks are few (9 of the 121
# devices of the estate mix), so even with every tank's two series profiled the gateway
# holds ~110 bytes a device more.  Left out: a pile's total power (highest at night, but
# piles are the gateway's largest devices, 13 of the 121: a profile on each would add ~80
# bytes a device at the mix and ~730 bytes a pile, beyond 2 KB for a gateway of piles; it
# keeps the stuck detector) and lift traffic (a car's speed is 0 or its rated speed, whose
# hourly mean is no usual value).
SEASONAL = frozenset({"water_tank.supply_pressure", "water_tank.level_pct"})
# Shanghai local time (UTC+8 all year): the slots of the day are the estate's hours.
SHANGHAI_OFFSET_S = 8 * 3600

# The shortest period the catalogue's devices report at when nothing happens (piles: 5 s).
GATEWAY_MIN_PERIOD_S = 5.0


@dataclass(frozen=True)
class StatParams:
    level_shift: LevelShiftParams = field(default_factory=LevelShiftParams)
    rate: RateParams = field(default_factory=RateParams)
    stuck: StuckParams = field(default_factory=StuckParams)
    drift: DriftParams = field(default_factory=DriftParams)
    # Scale floor per series: this share of the signal's catalogue range (2.5 MPa → 0.005
    # MPa, 230 °C → 0.46 °C), so a quiet sensor's tiny noise does not make every wiggle
    # a "shift".  Overridable per "kind.signal".
    # EWMA weights (level, rate, drift) count readings; a reading closer than this after
    # the previous one counts for (gap / min_period_s) of one, so a horizon of 20 readings
    # is at least 20 × min_period_s.  None: count readings only (a generic series).
    min_period_s: float | None = None
    floor_share: float = 0.002
    # The scale is also floored by what the sensor resolves: this share of the smallest
    # non-zero step seen in the series (a quantised reading's own noise is about half a
    # step), so a clean, quantised, constant or on/off series has no infinite sigma.
    resolution_share: float = 0.5
    floors: dict[str, float] = field(default_factory=dict)
    # Per-detector opt-outs by "kind.signal"; stuck runs on every float signal (its own
    # rules keep discrete and resting signals out).
    untracked: frozenset[str] = UNTRACKED
    # Signals that may get a seasonal profile; while it is in use, level shift and rate of
    # change (and drift, where not opted out) judge the deviation from what is usual at
    # that hour instead of the value, whatever the signal's opt-outs (a profile that
    # explains the series is what makes a cyclic signal judgeable); stuck judges the value.
    # Drift judges them only so: a daily cycle leaves any frozen reference every day.
    seasonal: frozenset[str] = SEASONAL
    seasonal_params: SeasonalParams = field(
        default_factory=lambda: SeasonalParams(offset_s=SHANGHAI_OFFSET_S)
    )
    opt_out: dict[str, frozenset[str]] = field(
        default_factory=lambda: {
            LEVEL_SHIFT: BURSTY,
            RATE_OF_CHANGE: BURSTY,
            STUCK: frozenset(),
            DRIFT: NO_DRIFT,
        }
    )

    def enabled_bits(self, signal_key: str) -> int:
        bits = 0
        for name in DETECTORS:
            if signal_key not in self.opt_out.get(name, frozenset()):
                bits |= BIT[name]
        return bits
