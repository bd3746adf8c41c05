"""What the registry's site models cost the gateway, and what they raise on healthy traffic.

Sites are those ``jiayuan registry generate`` assigns (each estate's water tanks form its
pump room), at the simulated estates' mix of devices.

* Memory (``--devices``, 100,000 by default): the registry of as many simulated estates as
  hold that many devices, its sites' ``SiteDetectors`` fed synthetic rows until every site
  has its learning buffer full but one row (the peak: every site learning at once), then
  until every site has learnt; ``tracemalloc`` figures per site and per registry device.
* CPU: ``Detector.readings`` over the simulators' healthy traffic of ``--estates`` estates
  (``--minutes``, in batches of ``--batch``), with and without the sites (at 10 s slots,
  learning from their first ``--learn-rows`` rows, so most rows are judged: 18 times the
  rows of the gateway's 3-min slot), timed in the same run; and the site detectors alone
  per reading.  ``--devices 0`` skips the memory part.
* ``--pipeline-devices N``: the whole pipeline's traced memory per device after a
  district's first 20 s of traffic, without sites, with every site learnt and with every
  site learning (``pipeline_memory``).
* ``--restore-devices N``: what taking a detection snapshot back costs the gateway process
  at a restart with N district devices, the sites learnt or all learning
  (``restore_memory``): resident memory, the learning rows' shared maps and glibc's heap
  (in use, free) grown per device over the sites loaded, each in a fresh process with the
  gateway's malloc settings, after a collection and a heap trim.  Load-independent, and
  what fragments the heap shows, which tracemalloc does not.
* ``--healthy-hours H``: site anomalies opened on H hours of the simulators' healthy
  traffic (no faults), per 1,000 device-hours of the sites' devices.

    .venv/bin/python bench/sites.py [--devices 100000] [--estates 20] [--minutes 60]
    .venv/bin/python bench/sites.py --healthy-hours 24 --estates 6
    .venv/bin/python bench/sites.py --pipeline-devices 100000
    .venv/bin/python bench/sites.py --restore-devices 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.pipeline

from bench.alert_memory import glibc_heap_bytes
from gateway.detection.detector import Detector
from gateway.detection.sites import (
    LEARN_ROWS,
    MIN_SLOT_S,
    SiteDetectors,
    SiteSpec,
    load_sites,
    site_specs,
)
from gateway.detection.snapshot import save
from gateway.transport.dedup import SeqWindow
from jiayuan.contract import Reading
from jiayuan.places import Place
from simulators.driver import generate
from simulators.registry import Registry as SimRegistry
from simulators.registry import build_registry
from tools.registry_generate import generate_registry
from tools.replay import as_gateway_input

AS_OF = date(2026, 12, 1)
T0 = 1_750_000_000_000


def sites_of(simulated: SimRegistry) -> list[SiteSpec]:
    return site_specs(generate_registry(simulated, seed=1, as_of=AS_OF))


# Synthetic healthy rows: the tanks of a site share one demand cycle (their levels fall as
# the draw rises, their outlet pressures with them, each at its own level); chlorine,
# turbidity and pH wander on their own, as in tests/support/pump_room.py.  So a learnt
# model keeps as many components as such a pump room's (independent noise would keep
# them all).
CYCLE_ROWS = 40  # a demand cycle of 2 h at 3-min slots
_SYNTHETIC: dict[str, tuple[float, float, float]] = {  # field: (level, swing, noise)
    "free_chlorine": (0.4, 0.0, 0.003),
    "turbidity": (0.3, 0.0, 0.02),
    "ph": (7.3, 0.0, 0.03),
    "level_pct": (60.0, -15.0, 0.3),
    "supply_pressure": (0.25, -0.02, 0.001),
}


def synthetic_rows(specs: Sequence[SiteSpec], rows: int, sites: SiteDetectors, first: int) -> None:
    """``rows`` slots of every site: each member device one reading a slot."""
    rng = np.random.default_rng(first)
    members = []
    for spec in specs:
        devices: dict[str, list[str]] = {}
        for signal in spec.signals:
            devices.setdefault(signal.device, []).append(signal.field)
        anchor = spec.anchor
        for device, fields in devices.items():
            place = Place(
                anchor.district, anchor.street, spec.estate, "pumproom", anchor.kind, device
            )
            offset = float(rng.normal(0.0, 0.05))  # each tank a level of its own
            members.append((place, spec.slot_ms, fields, offset))
    for k in range(first, first + rows):
        draw = math.sin(2 * math.pi * k / CYCLE_ROWS)
        items = []
        for place, slot_ms, fields, offset in members:
            values: dict[str, float | int | str] = {}
            for name in fields:
                level, swing, noise = _SYNTHETIC.get(name, (1.0, 0.0, 0.1))
                values[name] = level * (1 + offset) + swing * draw + float(rng.normal(0, noise))
            reading = Reading(place.device, place.kind, k + 1, T0 + k * slot_ms, values)
            items.append((place, reading))
        sites.evaluate_many(items)


def site_snapshot(registry: Path, path: Path, rows: int, streets: Sequence[str] = ("+",)) -> str:
    """Save at ``path`` the detection snapshot a clean stop of a fresh gateway with this
    registry (for ``streets``) would leave after its sites had seen ``rows`` synthetic
    healthy rows: a restart from it holds every site learnt (``rows`` > ``LEARN_ROWS``)
    or every site with its learning rows (fewer).  What it holds, in words."""
    sites = load_sites(registry, streets)
    detector = Detector(sites=sites)
    synthetic_rows(sites.specs, rows, sites, 0)
    save(path, detector, SeqWindow(), streets, int(time.time() * 1000))
    return (
        f"{len(sites.specs):,} sites after {rows} rows: {sites.learnt():,} learnt, "
        f"{sites.learning():,} learning"
    )


def memory(devices: int) -> None:
    per_estate = len(build_registry(50, seed=1).devices()) / 50
    simulated = build_registry(int(devices / per_estate) + 1, seed=1)
    registry = generate_registry(simulated, seed=1, as_of=AS_OF)
    counted = len(simulated.devices())
    # One site learnt first: what numpy and the imports allocate once is not a site's.
    first = site_specs(registry)[:1]
    synthetic_rows(first, LEARN_ROWS + 2, SiteDetectors(first), 0)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    specs = site_specs(registry)  # the sites' definitions count too
    sites = SiteDetectors(specs)
    defined = tracemalloc.get_traced_memory()[0] - base
    synthetic_rows(specs, LEARN_ROWS, sites, 0)  # the last row completes with the next slot
    learning = tracemalloc.get_traced_memory()[0] - base  # the rows wait in a file
    synthetic_rows(specs, 2, sites, LEARN_ROWS)
    learnt = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert sites.learnt() == len(specs), (sites.learnt(), len(specs))
    signals = [len(s.signals) for s in specs]
    print(
        f"{counted:,} devices in {len(simulated.estates):,} estates, {len(specs):,} sites "
        f"({sum(signals):,} signals, {min(signals)}-{max(signals)} a site)"
    )
    for label, held in (("defined", defined), ("learning (peak)", learning), ("learnt", learnt)):
        print(
            f"  {label:<16} {held / len(specs):>8,.0f} B a site  "
            f"{held / counted:>6,.1f} B a registry device"
        )


def pipeline_memory(devices: int, modes: Sequence[str]) -> None:
    """What the gateway's whole pipeline (detector, duplicate window, offline check, site
    models) holds per device after a district's first 20 s of traffic
    (``simulators.district``, ``devices`` devices), traced by tracemalloc in this one
    process: load-independent, unlike the resident memory of ``bench/throughput.py
    --memory-devices``.  For each mode: none (no registry); learnt and learning (the
    district's registry and the detection snapshot of ``site_snapshot``, taken back as at
    a restart).  The snapshots are built before tracing starts."""
    import gc
    import shutil
    import tempfile

    from bench.pipeline import stream_batches
    from gateway.detection.snapshot import take_back
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline import Message, Pipeline
    from jiayuan.config import GatewayConfig
    from jiayuan.registry.store import RegistryStore
    from simulators.district import build_district

    district = build_district(devices, seed=1)
    end_ms = int(time.time() * 1000) - 5_000
    wires = district.traffic(end_ms - 20_000, end_ms).wires
    messages = [Message(t, p, i + 1, 1, end_ms) for i, (t, p, _) in enumerate(wires)]
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-sites-"))
    registry = workdir / "registry.sqlite"
    with RegistryStore(registry) as store:
        store.replace(generate_registry(district.registry, seed=1, as_of=AS_OF))
    snapshots = {}
    for mode in modes:
        if mode != "none":
            snapshots[mode] = workdir / f"{mode}.sqlite"
            rows = LEARN_ROWS + 2 if mode == "learnt" else LEARN_ROWS - 10
            print(f"{mode}: {site_snapshot(registry, snapshots[mode], rows)}")
    print(
        f"{district.devices:,} devices, {sum(w[2] for w in wires):,} readings in "
        f"{len(wires):,} messages; the pipeline's traced memory per device:"
    )
    # Once untraced first: what the first traffic allocates once (interned names, caches)
    # is no mode's.
    stream_batches(
        Pipeline(Detector(), GatewayMetrics()), messages, GatewayConfig().batch_max_readings
    )
    try:
        for mode in modes:
            gc.collect()
            tracemalloc.start()
            sites = load_sites(registry) if mode != "none" else SiteDetectors()
            pipeline = Pipeline(Detector(sites=sites), GatewayMetrics())
            if mode != "none":
                restored = take_back(
                    snapshots[mode], pipeline.detector, pipeline.seen, ("+",), end_ms
                )
                assert restored is not None, mode
            stream_batches(pipeline, messages, GatewayConfig().batch_max_readings)
            gc.collect()
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"  sites {mode:<9} held {held / district.devices:7,.0f} B, "
                f"peak {peak / district.devices:7,.0f} B  ({sites.learnt():,} sites learnt, "
                f"{sites.learning():,} learning)"
            )
            del pipeline, sites
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _process_bytes() -> dict[str, int]:
    """This process's resident memory, the part of it in shared maps, and glibc's heap in
    use and free, after a collection and a heap trim."""
    from gateway.heap import trim_heap

    gc.collect()
    trim_heap()
    status = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith(("VmRSS:", "RssShmem:"))
    }
    in_use, free = glibc_heap_bytes()
    return {
        "resident": status["VmRSS"],
        "shared maps (RssShmem)": status["RssShmem"],
        "glibc heap in use": in_use,
        "glibc heap free": free,
    }


def restore_child(registry: Path, snapshot: Path) -> None:
    """In a fresh process: the registry's sites loaded, then the snapshot taken back as a
    gateway takes it at a restart; JSON of what the process grew by meanwhile."""
    from gateway.detection.snapshot import take_back
    from gateway.heap import tune_malloc
    from jiayuan.config import GatewayConfig

    tuned = GatewayConfig()
    tune_malloc(tuned.malloc_mmap_threshold_bytes, tuned.malloc_arena_max)
    sites = load_sites(registry)
    detector = Detector(sites=sites)
    before = _process_bytes()
    restored = take_back(snapshot, detector, SeqWindow(), ("+",), int(time.time() * 1000))
    assert restored is not None, "the snapshot was refused"
    after = _process_bytes()
    held = f"{sites.learnt():,} learnt, {sites.learning():,} learning"
    grown = {part: after[part] - before[part] for part in after}
    print(json.dumps({"held": held, "grown": grown}))


def restore_memory(devices: int) -> None:
    """What a restart's snapshot costs with the sites learnt and with every site learning
    (the rows of 230 of 240 slots), each taken back in a fresh process
    (``restore_child``), per district device."""
    from jiayuan.registry.store import RegistryStore
    from simulators.district import build_district

    district = build_district(devices, seed=1)
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-sites-"))
    try:
        registry = workdir / "registry.sqlite"
        with RegistryStore(registry) as store:
            store.replace(generate_registry(district.registry, seed=1, as_of=AS_OF))
        print(f"{district.devices:,} devices; grown per device over the sites loaded:")
        for mode, rows in (("learnt", LEARN_ROWS + 2), ("learning", LEARN_ROWS - 10)):
            snapshot = workdir / f"{mode}.sqlite"
            site_snapshot(registry, snapshot, rows)
            done = subprocess.run(
                [sys.executable, __file__, "--restore-child", str(registry), str(snapshot)],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(done.stdout.splitlines()[-1])
            parts = "  ".join(
                f"{part} {grown / district.devices:5,.0f} B"
                for part, grown in measured["grown"].items()
            )
            print(f"  {mode:<9} {parts}  ({measured['held']})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def traffic(
    estates: int, minutes: float
) -> tuple[list[SiteSpec], list[tuple[Place, Reading, int]]]:
    simulated = build_registry(estates, seed=7)
    end = T0 + int(minutes * 60_000)
    items = [
        (place, reading, reading.ts)
        for _, place, reading in as_gateway_input(generate(simulated, [], T0, end, 7))
    ]
    return sites_of(simulated), items


def cpu(estates: int, minutes: float, batch: int, learn_rows: int) -> None:
    specs, items = traffic(estates, minutes)
    members = {s.device for spec in specs for s in spec.signals}
    in_sites = sum(1 for _, reading, _ in items if reading.device in members)
    timings: dict[str, float] = {}
    for label, sites in (
        ("without sites", None),
        ("with sites", SiteDetectors(specs, learn_rows=learn_rows)),
    ):
        detector = Detector(sites=sites)
        start = time.process_time()
        for first in range(0, len(items), batch):
            detector.readings(items[first : first + batch])
        timings[label] = time.process_time() - start
    print(
        f"Detector.readings, {len(items):,} readings of {estates} estates ({in_sites:,} of "
        f"site devices), {minutes:g} min, batches of {batch}:"
    )
    for label, seconds in timings.items():
        print(f"  {label:<14} {len(items) / seconds:>10,.0f} readings/s")
    cost = (timings["with sites"] - timings["without sites"]) / timings["without sites"]
    print(f"  the sites' share: {cost:+.1%} CPU")

    sites = SiteDetectors(specs, learn_rows=learn_rows)
    judged = [(place, reading) for place, reading, _ in items]
    start = time.process_time()
    for first in range(0, len(judged), batch):
        sites.evaluate_many(judged[first : first + batch])
    alone = time.process_time() - start
    outside = [pair for pair in judged if pair[1].device not in members] * 5
    start = time.process_time()
    for first in range(0, len(outside), batch):
        sites.evaluate_many(outside[first : first + batch])
    miss = time.process_time() - start
    rows = sum(state.count for state in sites.export_state()["_states"])
    print(
        f"SiteDetectors alone: {alone / max(in_sites, 1) * 1e6:.2f} µs a site device's reading "
        f"(rows included), {miss / len(outside) * 1e9:.0f} ns a reading of a device outside "
        f"every site; {rows:,} rows learnt"
    )


def healthy(estates: int, hours: float, slot_s: float) -> None:
    simulated = build_registry(estates, seed=11)
    specs = site_specs(generate_registry(simulated, seed=1, as_of=AS_OF), slot_s)
    sites = SiteDetectors(specs)
    opened: list[str] = []
    step_ms = 3_600_000
    for hour in range(int(np.ceil(hours))):
        start = T0 + hour * step_ms
        end = start + min(step_ms, int((hours - hour) * step_ms))
        samples = generate(simulated, [], start, end, 11)
        pairs = [(place, reading) for _, place, reading in as_gateway_input(samples)]
        for place, change in sites.evaluate_many(pairs):
            if change.opened:
                opened.append(f"{place.device} {change.detail[:120]}")
    device_hours = sum(len({s.device for s in spec.signals}) for spec in specs) * hours
    print(
        f"{len(opened)} site anomalies opened in {hours:g} h of {len(specs)} sites' healthy "
        f"traffic: {1000 * len(opened) / device_hours:.2f} per 1,000 device-hours"
    )
    for line in opened[:10]:
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--estates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--learn-rows", type=int, default=60)
    parser.add_argument("--healthy-hours", type=float, default=0.0)
    parser.add_argument("--slot-s", type=float, default=MIN_SLOT_S, help="sites' minimum slot")
    parser.add_argument(
        "--pipeline-devices",
        type=int,
        default=0,
        help="only the whole pipeline's traced memory per device with N district devices, "
        "without sites, with every site learnt and with every site learning",
    )
    parser.add_argument(
        "--restore-devices",
        type=int,
        default=0,
        help="only what taking a detection snapshot back costs the gateway process with N "
        "district devices, the sites learnt or learning",
    )
    parser.add_argument("--restore-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_child:
        restore_child(*args.restore_child)
        return
    if args.restore_devices:
        restore_memory(args.restore_devices)
        return
    if args.pipeline_devices:
        pipeline_memory(args.pipeline_devices, ("none", "learnt", "learning"))
        return
    if args.healthy_hours:
        healthy(args.estates, args.healthy_hours, args.slot_s)
        return
    if args.devices:
        memory(args.devices)
    cpu(args.estates, args.minutes, args.batch, args.learn_rows)


if __name__ == "__main__":
    main()
