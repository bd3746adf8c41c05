"""The statistical core on synthetic series: each detector fires on its own case within a
bounded number of readings and stays quiet on healthy, constant, discrete and ramping
series; a batch gives what reading-by-reading processing gives, in numpy rounds and one
reading at a time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway.detection.detector import Detector
from gateway.detection.statistics import detectors as statistical
from gateway.detection.statistics.detectors import StatCore, StatParams
from gateway.detection.statistics.parameters import (
    ALL_BITS,
    BIT,
    DRIFT,
    LEVEL_SHIFT,
    RATE_OF_CHANGE,
    STUCK,
)
from jiayuan import compiled
from jiayuan.contract import Reading, Value
from jiayuan.places import Place

PERIOD_MS = 10_000
T0 = 1_750_000_000_000


def noisy(
    n: int, level: float = 0.4, sigma: float = 0.003, seed: int = 1
) -> npt.NDArray[np.float64]:
    return np.round(level + np.random.default_rng(seed).normal(0.0, sigma, n), 3)


def run(
    values: npt.NDArray[np.float64], floor: float = 0.005, minimum: float = 0.0
) -> npt.NDArray[np.uint8]:
    """Flags of one series fed reading by reading."""
    core = StatCore()
    slot = core.add_series(floor, minimum)
    flags = [
        int(core.update(np.array([slot]), np.array([T0 + k * PERIOD_MS]), values[k : k + 1])[0])
        for k in range(len(values))
    ]
    return np.array(flags, dtype=np.uint8)


def first(flags: npt.NDArray[np.uint8], bit: int) -> int:
    hits = np.flatnonzero(flags & bit)
    return int(hits[0]) if len(hits) else -1


def test_level_shift_fires_on_a_step_within_a_few_readings() -> None:
    values = noisy(600)
    values[300:] -= 0.1
    flags = run(values)
    assert 300 <= first(flags, BIT[LEVEL_SHIFT]) <= 305
    assert not flags[:300].any()


def test_a_sustained_shift_is_one_anomaly_then_the_new_normal() -> None:
    values = noisy(900)
    values[300:] -= 0.1
    flags = run(values)
    relearn = StatParams().level_shift.relearn
    # Not learned away in minutes: open from the step until it has held ``relearn`` readings,
    # then the baseline restarts at the new level and nothing reopens (drift included).
    opened = first(flags, BIT[LEVEL_SHIFT])
    assert (flags[opened : opened + relearn - 1] & BIT[LEVEL_SHIFT]).all()
    assert not flags[opened + relearn :].any()
    assert not (flags & BIT[DRIFT]).any()


def test_rate_of_change_fires_on_a_jump_and_clears() -> None:
    values = noisy(400)
    values[200] += 0.15
    flags = run(values)
    assert first(flags, BIT[RATE_OF_CHANGE]) == 200
    assert not flags[:200].any()
    assert not (flags[210:] & BIT[RATE_OF_CHANGE]).any()


def test_stuck_fires_on_a_flat_lined_noisy_series_and_clears() -> None:
    values = noisy(300, level=0.3)
    values[150:250] = values[150]
    flags = run(values)
    hit = first(flags, BIT[STUCK])
    assert 150 + 18 <= hit <= 150 + 20  # 20 readings and 3 minutes at a 10 s period
    assert not (flags[251:] & BIT[STUCK]).any()
    assert not flags[:150].any()


def test_slow_drift_over_hours_is_caught_and_level_shift_is_not_raised() -> None:
    values = noisy(2160)  # 6 h at 10 s
    values[720:] -= np.linspace(0.0, 0.1, 2160 - 720)  # −0.1 MPa over 4 h
    flags = run(values)
    hit = first(flags, BIT[DRIFT])
    # k = 4 scale floors is 0.02 MPa: caught before the pipe has lost 0.03 MPa (~72 min).
    assert 720 < hit < 720 + 430
    assert not flags[:720].any()
    assert first(flags, BIT[LEVEL_SHIFT]) == -1


@pytest.mark.slow
def test_quiet_on_noisy_healthy_series() -> None:
    for seed in range(5):
        assert not run(noisy(3000, sigma=0.01, seed=seed)).any()


def test_quiet_on_constant_and_discrete_series() -> None:
    assert not run(np.zeros(500)).any()  # a dry gauge
    assert not run(np.full(500, 1.75)).any()  # a rated speed
    bits = np.random.default_rng(3).integers(0, 2, 500).astype(np.float64)
    held = run(np.repeat(bits, 30)[:3000], floor=0.01)  # a state bit, held for minutes
    assert not (held & BIT[STUCK]).any()


def test_quiet_on_a_refill_like_ramp_with_rate_and_stuck() -> None:
    # Tank level: 0.1 %/min draw-down then a 1 %/min refill, noise 0.1 %; a level
    # detector is opted out for tank level in the gateway, the others must hold.
    minutes = np.arange(0, 600, 1 / 6)
    level = np.where(minutes < 300, 90 - 0.1 * minutes, 60 + 1.0 * (minutes - 300))
    level = np.minimum(level, 90) + np.random.default_rng(5).normal(0, 0.1, len(minutes))
    flags = run(np.round(level, 2).astype(np.float64), floor=0.2)
    assert not (flags & (BIT[RATE_OF_CHANGE] | BIT[STUCK])).any()


def test_a_batch_with_repeated_slots_equals_sequential_processing() -> None:
    rng = np.random.default_rng(9)
    series, per = 7, 400
    values = rng.normal(0, 1, (series, per)) + np.arange(series)[:, None]
    values[2, 200:] += 8  # a shift
    values[4, 150:260] = values[4, 150]  # stuck
    slots = np.repeat(np.arange(series)[None, :], per, axis=0).ravel()
    ts = T0 + np.repeat(np.arange(per) * PERIOD_MS, series)
    flat = values.T.ravel()
    order = rng.permutation(len(flat))
    order = order[np.argsort(slots[order] * 0 + ts[order], kind="stable")]  # time order

    def fresh() -> StatCore:
        core = StatCore(capacity=2)  # grows by doubling on the way
        for _ in range(series):
            core.add_series(0.01)
        return core

    one = fresh()
    single = np.array(
        [int(one.update(slots[k : k + 1], ts[k : k + 1], flat[k : k + 1])[0]) for k in order]
    )
    many = fresh()
    batched = np.concatenate(
        [
            many.update(slots[order[a : a + 500]], ts[order[a : a + 500]], flat[order[a : a + 500]])
            for a in range(0, len(order), 500)
        ]
    )
    assert (single == batched).all()
    assert single.any()
    for name in ("mean", "scale", "rate", "slow", "ref", "p_change"):
        assert np.array_equal(getattr(one, name)[:series], getattr(many, name)[:series]), name


def test_non_finite_values_are_not_judged() -> None:
    core = StatCore()
    slot = core.add_series(0.01)
    flags = core.update(np.array([slot, slot]), np.array([T0, T0 + 1]), np.array([np.nan, 1.0]))
    assert flags.tolist() == [0, 0]
    assert core.n[slot] == 1


def test_the_gateway_detector_raises_and_clears_a_statistical_anomaly() -> None:
    detector = Detector()
    place = Place("d", "s", "e", "b1", "fire", "F01")
    hydrant = noisy(200, level=0.45)
    hydrant[100:150] -= 0.1  # the hydrant pipe loses pressure, still above the rule's 0.07
    changes = []
    for k, value in enumerate(hydrant.tolist()):
        values = {"hydrant_pressure": value, "fire_alarm": 0, "tank_level": 4.0 + k % 2 * 0.01}
        reading = Reading("F01", "fire", k + 1, T0 + k * PERIOD_MS, values, "b1")
        changes += detector.reading(place, reading, T0 + k * PERIOD_MS)
    shift = [a for a in changes if a.code == "fire.level_shift"]
    assert [a.state for a in shift] == ["open", "closed"], changes
    opened, closed = shift
    assert opened.detail == "hydrant_pressure" and opened.severity == "warning"
    assert abs(opened.threshold - 0.45) < 0.01 and abs(opened.value - 0.35) < 0.01
    assert T0 + 100 * PERIOD_MS <= opened.start_ms <= T0 + 105 * PERIOD_MS
    assert T0 + 150 * PERIOD_MS <= closed.end_ms <= T0 + 160 * PERIOD_MS
    assert {a.code for a in changes} <= {"fire.level_shift", "fire.rate_of_change"}


def test_float32_state_flags_what_float64_state_flags() -> None:
    # Stuck needs an exact repeat: float32 state must still see one.
    values = noisy(900, level=0.3)
    values[300:] -= 0.1  # a shift
    values[600:750] = values[600]  # then a stuck stretch
    flags = {}
    for dtype in (np.float64, np.float32):
        core = StatCore(dtype=dtype)
        slot = core.add_series(0.005, 0.0)
        stamps = T0 + np.arange(len(values)) * PERIOD_MS
        flags[dtype] = core.update(np.full(len(values), slot), stamps, values)
    assert (flags[np.float64] & BIT[STUCK]).any() and (flags[np.float64] & BIT[LEVEL_SHIFT]).any()
    assert np.array_equal(flags[np.float64], flags[np.float32])


def test_a_twelve_port_pile_holds_under_one_kilobyte_of_statistical_state() -> None:
    detector = Detector()
    place = Place("d", "s", "e", "b1", "ebike_charger", "PILE")
    for k in range(3):
        values: dict[str, Value] = {"port_count": 12, "smoke": 0, "total_power": 50.0 + k}
        for port in range(1, 13):
            values[f"p{port:02d}_temp"] = 25.0 + 0.1 * k
            values[f"p{port:02d}_current"] = 2.0 + 0.01 * k
            values[f"p{port:02d}_power"] = 100.0 + k
        reading = Reading("PILE", "ebike_charger", k + 1, T0 + k * 1000, values, "b1")
        detector.reading(place, reading, reading.ts)
    devices, total = detector.statistical.state_bytes()["ebike_charger"]
    assert devices == 1 and total <= 1024, total
    # Every port's temperature and the pile's total power are judged; a port's current and
    # power (bursty, the rules' to judge) are not.
    assert sum(core.size for core in detector.statistical.cores.values()) == 12 + 1


def test_with_a_minimum_period_a_burst_of_fast_readings_teaches_what_its_time_covers() -> None:
    # 200 quiet readings 5 s apart, then 20 readings 1 s apart one unit higher (inside
    # the level-shift band, so they are learned at the normal weight).
    quiet = [T0 + 5000 * k for k in range(200)]
    stamps = quiet + [quiet[-1] + 1000 * (k + 1) for k in range(20)]
    values = np.array([30.0] * 200 + [31.0] * 20)
    learned = {}
    for period in (None, 5.0):
        core = StatCore(StatParams(min_period_s=period))
        slot = core.add_series(0.46, 0.0)
        core.update(np.full(len(values), slot), np.array(stamps), values)
        learned[period] = float(core.mean[slot]) - 30.0
    # Counting readings, 20 readings move the baseline 1 - 0.95^20 = 64 % of the way; in
    # time, 20 s teach what four 5-second readings teach: 1 - 0.99^20 = 18 %.
    assert abs(learned[None] - (1 - 0.95**20)) < 1e-6
    assert abs(learned[5.0] - (1 - 0.99**20)) < 1e-6


def test_the_core_grows_by_an_eighth_not_by_doubling() -> None:
    core = StatCore(capacity=1024)
    for _ in range(100_000):
        core.add_series(0.01)
    assert core.size == 100_000
    assert core.capacity <= 100_000 * 9 // 8 + 1024, core.capacity  # doubling: 131,072
    # The slots added while growing keep their state: the last one is judged as a new one.
    flags = core.update(np.array([99_999, 0]), np.array([T0, T0]), np.array([1.0, 2.0]))
    assert flags.tolist() == [0, 0] and core.last_x[99_999] == 1.0 and core.last_x[0] == 2.0


def _eventful_series(
    rng: np.random.Generator, series: int, per: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Interleaved series (slot, ms, value) with a shift, a stuck stretch and a drift each,
    at irregular gaps (some under a second), some rounded to one decimal."""
    slots, stamps, values = [], [], []
    for slot in range(series):
        gaps = rng.choice([200, 1_000, 5_000, 10_000], size=per)
        # Noise about a level (a random walk has no level to drift from).
        walk = rng.normal(0.0, 1.0, per) * 0.01 + rng.uniform(-5.0, 50.0)
        walk[per // 3 : per // 2] += rng.uniform(-3.0, 3.0)
        walk[per // 2 : per // 2 + 40] = walk[per // 2]
        walk[2 * per // 3 :] += np.linspace(0.0, rng.uniform(0.0, 2.0), per - 2 * per // 3)
        slots.append(np.full(per, slot))
        stamps.append(T0 + np.cumsum(gaps))
        values.append(np.round(walk, 1) if slot % 5 == 0 else walk)
    order = np.argsort(np.concatenate(stamps), kind="stable")
    return (
        np.concatenate(slots)[order],
        np.concatenate(stamps)[order],
        np.concatenate(values)[order],
    )


@pytest.mark.parametrize("min_period_s", [None, 5.0])
@pytest.mark.parametrize("detectors", range(1, ALL_BITS + 1))
def test_one_reading_at_a_time_gives_the_numpy_rounds_results_bit_for_bit(
    detectors: int, min_period_s: float | None
) -> None:
    # Batches of 700 hold each of 20 series 35 times: 35 rounds against one pass.  The
    # drift reference is captured (reading 180) before the first event (reading 200).
    slots, stamps, values = _eventful_series(np.random.default_rng(detectors), 20, 600)
    params = StatParams(min_period_s=min_period_s)
    flags, cores = [], []
    for one_at_a_time in (False, True):
        core = StatCore(params, capacity=8, detectors=detectors, dtype=np.float32)
        for slot in range(20):  # zero floors too: numpy divides by zero without an error
            enabled = ALL_BITS if slot % 4 else BIT[LEVEL_SHIFT] | BIT[STUCK]
            core.add_series([0.0, 0.01, 0.5][slot % 3], [-np.inf, 0.0][slot % 2], enabled)
        update = core.update_each if one_at_a_time else core.update_rounds
        batches = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for a in range(0, len(values), 700):
                batches.append(update(slots[a : a + 700], stamps[a : a + 700], values[a : a + 700]))
        flags.append(np.concatenate(batches))
        cores.append(core)
    assert np.array_equal(flags[0], flags[1])
    assert flags[0].any()
    rounds, each = cores
    for name, _ in statistical._layout(detectors):
        assert np.array_equal(getattr(rounds, name), getattr(each, name), equal_nan=True), name


def test_the_compiled_core_judges_float32_state_one_reading_at_a_time() -> None:
    compiled_here = "gateway.detection.statistics.detectors" in compiled.compiled()
    assert statistical.ONE_AT_A_TIME is compiled_here
    with pytest.raises(ValueError, match="float32"):
        StatCore().update_each(np.array([0]), np.array([T0]), np.array([1.0]))


def test_scores_one_reading_at_a_time_equal_the_numpy_rounds_scores() -> None:
    # ``jiayuan detect`` scores with the gateway's path; ≥ 0.5 exactly while a flag is up.
    slots, stamps, values = _eventful_series(np.random.default_rng(3), 5, 600)
    got = []
    for one_at_a_time in (False, True):
        core = StatCore(capacity=8, dtype=np.float32)
        for _ in range(5):
            core.add_series(0.01)
        scores = np.zeros(len(values))
        run = core._each if one_at_a_time else core._run
        flags = run(slots, stamps, values, scores)
        assert ((scores >= 0.5) == (flags > 0)).all()
        got.append(scores)
    assert np.allclose(got[0], got[1], rtol=1e-12, atol=0.0)


def test_a_pump_switching_between_two_states_is_flagged_only_the_first_time() -> None:
    # Flow ~94 m³/h while the pump runs, exactly 0 while it rests for 15 readings, again
    # and again: the first rest is a change; after it the resting level is a known state.
    rng = np.random.default_rng(8)
    values = 94 + rng.normal(0, 2, 1200)
    rests = [range(start, start + 15) for start in range(100, 1200, 60)]
    for rest in rests:
        values[rest.start : rest.stop] = 0.0
    flags = run(values, floor=0.01, minimum=-np.inf)
    assert (flags[rests[0].start + 3 : rests[0].stop] & BIT[LEVEL_SHIFT]).all()
    assert not flags[rests[1].start :].any()
    # A level never seen is still a shift.
    values[1150:] = 50.0
    assert (run(values, floor=0.01, minimum=-np.inf)[1153:1170] & BIT[LEVEL_SHIFT]).all()
