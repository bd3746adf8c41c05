"""The rules against the simulators: every injected fault type is caught on its device
(and nothing else is raised there), the anomaly closes once the fault is over, and a
normal busy period raises nothing.  Pure computation, no servers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import pytest

from gateway.detection.detector import Detector
from jiayuan.anomaly import Anomaly
from jiayuan.timezone import parse_start
from simulators.driver import generate
from simulators.faults import Fault, plan_faults
from simulators.registry import Registry, build_registry
from tools.replay import as_gateway_input

SEED = 11
TICK_MS = 1000


def detect(registry: Registry, faults: Sequence[Fault], start: int, seconds: int) -> list[Anomaly]:
    """Feed the simulated samples through the detector, ticking the offline timer on device
    time as a replay would; every anomaly change in order."""
    detector = Detector()
    changes: list[Anomaly] = []
    next_tick = start
    samples = generate(registry, faults, start, start + seconds * 1000, SEED)
    for _, place, reading in as_gateway_input(samples):
        while next_tick <= reading.ts:
            changes += detector.tick(next_tick)
            next_tick += TICK_MS
        changes += detector.reading(place, reading, reading.ts)
    return changes


def test_every_injected_fault_type_is_caught_and_closes() -> None:
    registry = build_registry(4, seed=SEED)
    start = parse_start("2025-07-01T10:00:00")
    seconds = 150
    plan = plan_faults(registry, start, seconds, seed=SEED)
    assert not plan.skipped
    changes = detect(registry, list(plan), start, seconds + 60)
    by_device: dict[str, list[Anomaly]] = defaultdict(list)
    for change in changes:
        by_device[change.device].append(change)
    for fault in plan:
        seen = by_device.pop(fault.device, [])
        codes = {a.code for a in seen}
        assert fault.expected_code in codes, (fault, seen)
        assert codes <= {fault.expected_code, *fault.also_codes}, (fault, seen)
        closed = [a for a in seen if a.state == "closed" and a.code == fault.expected_code]
        assert closed and closed[0].end_ms >= fault.end_ms - 1000, (fault, seen)
        opened = next(a for a in seen if a.code == fault.expected_code)
        # Not before the condition could have been seen for long enough (offline counts
        # from the last sample, up to one heartbeat before the silence began).
        assert opened.start_ms <= fault.end_ms
    assert by_device == {}, "anomalies on devices without a fault"


@pytest.mark.slow
def test_a_busy_normal_half_hour_raises_nothing() -> None:
    # Morning rush: lifts busy, parked with doors open, passengers lingering and leaving.
    registry = build_registry(3, seed=SEED + 1)
    start = parse_start("2025-07-01T07:30:00")
    assert detect(registry, [], start, 1800) == []
