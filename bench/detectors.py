"""Statistical detector core throughput on one core, against a plain numpy baseline.

``--series`` series (devices × signals) each get a noisy baseline; readings come in
batches of ``--batch`` with slots drawn at random (so a batch holds repeats of a slot, which
the core handles in rounds).  The baseline is one plain numpy pass over the same arrays,
``np.abs(values - values.mean())``, timed in the same run; the ratio compares across
machines.  ``--healthy-hours`` also feeds the simulators' healthy traffic through the
gateway's ``Detector`` and reports statistical anomalies per 1,000 device-hours.

    .venv/bin/python bench/detectors.py [--series 100000] [--batch 50000] [--batches 40]
    .venv/bin/python bench/detectors.py --healthy-hours 4 [--estates 6] [--seed 7]
    .venv/bin/python bench/detectors.py --memory [--estates 6] [--seed 7]
    .venv/bin/python bench/detectors.py --seasonal [--series 10000] [--seed 7]

``--memory`` feeds 10 simulated minutes of ``--estates`` estates and one synthetic 12-port
pile through the gateway's ``Detector`` and prints the statistical state per device and
kind (arrays), and what the whole detector (rules included, Python objects and all) holds
per device as ``tracemalloc`` sees it.  It then does the same at scale (``--devices``,
100,000 by default): each simulated device cloned under new names at the estates' mix,
and as many 12-port piles, each fed its first readings (every signal it reports, every
check's state allocated); the figure is what the ``Detector`` holds, by ``tracemalloc``,
divided by the devices.

``--seasonal`` times the seasonal profiles (``SeasonalBank.step``) over ``--series`` series
with a daily cycle at 10-minute readings: a day with gates only, then a week once every
series holds a profile; and prints the bytes of a gate and of a profile.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.detection.statistics.detectors import StatCore
from gateway.detection.statistics.parameters import GATEWAY_MIN_PERIOD_S, StatParams
from gateway.detection.statistics.series import STATE_DTYPE
from jiayuan.catalogue import STATISTICAL_EVENTS


def throughput(series: int, batch: int, batches: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = StatParams(min_period_s=GATEWAY_MIN_PERIOD_S)
    core = StatCore(params, capacity=series, dtype=STATE_DTYPE)  # as in the gateway
    for _ in range(series):
        core.add_series(floor=0.01)
    level = rng.uniform(0.0, 100.0, series)
    data = []
    t0 = 1_750_000_000_000
    for b in range(batches):
        slots = rng.integers(0, series, batch, dtype=np.int64)
        ts = t0 + b * 10_000 + np.arange(batch, dtype=np.int64) // 100
        values = level[slots] + rng.normal(0.0, 0.5, batch)
        data.append((slots, ts, values))
    # Warm the baselines up first: the judged state is the steady one.
    for slots, ts, values in data[: batches // 4]:
        core.update(slots, ts, values)
    timed = data[batches // 4 :]
    readings = sum(len(v) for _, _, v in timed)

    start = time.perf_counter()
    for _, _, values in timed:
        np.abs(values - values.mean())
    base_s = time.perf_counter() - start

    start = time.perf_counter()
    for slots, ts, values in timed:
        core.update(slots, ts, values)
    core_s = time.perf_counter() - start

    print(f"series: {series:,}, batch: {batch:,}, timed readings: {readings:,}")
    print(f"baseline: numpy |x - mean| pass   {readings / base_s:>14,.0f} readings/s")
    print(f"statistical core (4 detectors)    {readings / core_s:>14,.0f} readings/s")
    print(f"ratio core / baseline             {base_s / core_s:>14.4f}")
    print(f"state per series, all 4 detectors {core.bytes_per_series:>14,} bytes")


def pile_readings(name: str) -> list[tuple[Any, Any, int]]:
    """Three readings of a 12-port pile, every port charging: (place, reading, received)."""
    from jiayuan.catalogue import MAX_PORTS, port_field
    from jiayuan.contract import Reading, Value
    from jiayuan.places import Place

    place = Place("d", "s", "e", "b", "ebike_charger", name)
    out = []
    for k in range(3):
        values: dict[str, Value] = {"port_count": MAX_PORTS, "smoke": 0, "total_power": 0.0}
        for port in range(1, MAX_PORTS + 1):
            values[port_field(port, "temp")] = 25.0 + 0.1 * k
            values[port_field(port, "current")] = 2.0
            values[port_field(port, "power")] = 100.0
        ts = 1_750_000_000_000 + k * 1000
        out.append((place, Reading(name, "ebike_charger", k + 1, ts, values), ts))
    return out


def memory(estates: int, seed: int) -> None:
    import tracemalloc

    from gateway.detection.detector import Detector
    from jiayuan.timezone import parse_start
    from simulators.driver import generate
    from simulators.registry import build_registry
    from tools.replay import as_gateway_input

    registry = build_registry(estates, seed)
    start = parse_start("2025-07-01T09:30:00")
    samples = list(as_gateway_input(generate(registry, [], start, start + 600_000, seed)))
    warm = Detector()  # first use fills caches and imports: not per-device state
    for _, place, reading in samples:
        warm.readings([(place, reading, reading.ts)])
    tracemalloc.start()
    detector = Detector()
    for _, place, reading in samples:
        detector.readings([(place, reading, reading.ts)])
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stat = detector.statistical.state_bytes()
    devices = sum(d for d, _ in stat.values())
    print(f"statistical state (arrays) per device, {devices} simulated devices:")
    for kind, (count, total) in sorted(stat.items()):
        print(f"  {kind:<14} {count:>5} devices {total / count:>8,.0f} B/device")
    mix = sum(total for _, total in stat.values()) / devices
    print(f"  {'estate mix':<14} {devices:>5} devices {mix:>8,.0f} B/device")
    print(f"whole Detector, tracemalloc: {held / devices:,.0f} B/device (rules' state included)")
    for kind, rules in detector.rules.items():
        arrays = getattr(rules, "bytes_per_device", None)
        if arrays is not None:
            print(f"  of which {kind.value} rules' arrays: {arrays} B/device")

    pile = Detector()
    for item in pile_readings("PILE12"):
        pile.readings([item])
    _, pile_bytes = pile.statistical.state_bytes()["ebike_charger"]
    print(f"12-port pile (12 port temperatures + total power tracked): {pile_bytes:,} B")


def memory_at_scale(devices: int, estates: int, seed: int) -> None:
    import tracemalloc

    import msgspec

    from gateway.detection.detector import Detector
    from jiayuan.contract import Reading
    from jiayuan.places import Place
    from jiayuan.timezone import parse_start
    from simulators.driver import generate
    from simulators.registry import build_registry
    from tools.replay import as_gateway_input

    registry = build_registry(estates, seed)
    start = parse_start("2025-07-01T09:30:00")
    first: dict[str, list[tuple[Place, Reading]]] = {}
    for _, place, reading in as_gateway_input(generate(registry, [], start, start + 120_000, seed)):
        kept = first.setdefault(reading.device, [])
        if len(kept) < 4:  # every signal of the device, its checks' state allocated
            kept.append((place, reading))
    models = list(first.values())

    def clone(model: list[tuple[Place, Reading]], name: str) -> list[tuple[Place, Reading, int]]:
        return [
            (
                Place(p.district, p.street, p.estate, p.building, p.kind, name),
                msgspec.structs.replace(r, device=name),
                r.ts,
            )
            for p, r in model
        ]

    def held(make: Callable[[int], list[tuple[Place, Reading, int]]]) -> float:
        Detector().readings(make(0))  # caches and imports: not per-device state
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        detector = Detector()
        for block in range(0, devices, 500):
            batch = [item for n in range(block, min(devices, block + 500)) for item in make(n)]
            detector.readings(batch)
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return (after - before) / devices

    mix = held(
        lambda n: clone(models[n % len(models)], f"{models[n % len(models)][0][0].device}~{n}")
    )
    print(
        f"whole Detector, tracemalloc, {devices:,} devices at the estate mix: {mix:,.0f} B/device"
    )
    piles = held(lambda n: pile_readings(f"PILE12~{n}"))
    print(f"whole Detector, tracemalloc, {devices:,} 12-port piles: {piles:,.0f} B/device")


def seasonal(series: int, seed: int) -> None:
    from gateway.detection.statistics.parameters import SHANGHAI_OFFSET_S
    from gateway.detection.statistics.seasonal import SeasonalBank, SeasonalParams

    bank = SeasonalBank(SeasonalParams(offset_s=SHANGHAI_OFFSET_S), capacity=series)
    gates = np.array([bank.add_gate() for _ in range(series)], dtype=np.int64)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2 * np.pi, series)
    t0, step_ms, per_day = 1_795_968_000_000, 600_000, 144

    def run(first: int, steps: int) -> float:
        spent = 0.0
        for k in range(first, first + steps):
            ts = np.full(series, t0 + k * step_ms, dtype=np.int64)
            hour = 2 * np.pi * (k % per_day) / per_day
            values = 10.0 + 3.0 * np.sin(hour + phase) + rng.normal(0.0, 0.3, series)
            start = time.perf_counter()
            bank.step(gates, ts, values)
            spent += time.perf_counter() - start
        return series * steps / spent

    gated = run(0, per_day)
    profiled = run(per_day, 7 * per_day)
    print(f"seasonal, {series:,} series with a daily cycle, 10-minute readings:")
    print(f"  first day, gates only       {gated:>14,.0f} readings/s")
    print(f"  next week, profiles ({bank.profiles:,})  {profiled:>14,.0f} readings/s")
    print(f"  a gate {bank.gate_bytes} B, a profile {bank.profile_bytes} B")


def healthy(hours: float, estates: int, seed: int) -> None:
    from gateway.detection.detector import Detector
    from jiayuan.timezone import parse_start
    from simulators.driver import generate
    from simulators.registry import build_registry
    from tools.replay import as_gateway_input

    registry = build_registry(estates, seed)
    start = parse_start("2025-07-01T00:00:00")
    detector = Detector()
    suffixes = {f".{name}" for name, _, _ in STATISTICAL_EVENTS}
    opened: list[str] = []
    devices: set[str] = set()
    samples = generate(registry, [], start, start + int(hours * 3_600_000), seed)
    for _, place, reading in as_gateway_input(samples):
        devices.add(reading.device)
        for anomaly in detector.reading(place, reading, reading.ts):
            if anomaly.active and any(anomaly.code.endswith(s) for s in suffixes):
                opened.append(f"{anomaly.device} {anomaly.code} {anomaly.detail}")
    device_hours = len(devices) * hours
    print(f"healthy traffic: {len(devices)} devices × {hours:g} h = {device_hours:g} device-hours")
    print(f"statistical anomalies opened: {len(opened)}")
    print(f"per 1,000 device-hours: {1000 * len(opened) / device_hours:.2f}")
    bank = detector.statistical.seasonal
    print(
        f"seasonal: {bank.gates} gates, {bank.profiles} profiles, {bank.in_use} in use at the end"
    )
    for line in opened[:20]:
        print("  ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--healthy-hours", type=float, default=0.0)
    parser.add_argument("--estates", type=int, default=6)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seasonal", action="store_true")
    args = parser.parse_args()
    if args.seasonal:
        seasonal(args.series, args.seed)
    elif args.memory:
        memory(args.estates, args.seed)
        memory_at_scale(args.devices, args.estates, args.seed)
    elif args.healthy_hours > 0:
        healthy(args.healthy_hours, args.estates, args.seed)
    else:
        throughput(args.series, args.batch, args.batches, args.seed)


if __name__ == "__main__":
    main()
