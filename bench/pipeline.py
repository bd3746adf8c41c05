"""Gateway pipeline throughput, without servers, against a decode-only baseline.

Simulated traffic of many estates is packed into batch messages the way edge agents send
it. The baseline is decoding the same messages with msgspec (the floor any gateway pays);
the measured figure is the gateway's whole in-process pipeline: topic parsing, decoding,
per-reading validation, duplicate window, rules and statistical detectors and InfluxDB line
formatting, with messages gathered into processor batches of ``--batch-readings`` readings
(the gateway's ``batch_max_readings``) and each batch judged in one detection call. Both run
in this process on the same messages, so the ratio is comparable across machines.

    .venv/bin/python bench/pipeline.py [--estates 20] [--minutes 10] [--batch 100]
        [--batch-readings 5000]
    .venv/bin/python bench/pipeline.py --devices 100000 [--rounds 4] [--profile]

``--devices N`` measures the per-reading cost at a district's cardinality instead: N
distinct devices (the simulated estates cloned under new estate, edge and device names),
each sending its readings in rounds, every round one reading of every device, so a
processor batch holds about one reading per device (as a district of 100,000 devices
reporting every 5-60 s does).  The first round (every device new) is timed apart from
the rest; beside it, in the same run, the default traffic (few devices, each many times
in a batch).  ``--profile`` prints a cProfile of the rounds after the first instead.

``--memory-devices N`` measures instead what the whole pipeline holds per device (detector,
duplicate window, offline check, the line-protocol caches: everything a ``Pipeline`` keeps)
by ``tracemalloc`` once N devices have each sent their first readings: the simulated
estates cloned under new estate, edge and device names until there are N devices.  It
also times the detection snapshot of that state (``gateway.detection.snapshot``: what a clean stop
saves and the next start takes back), against writing and reading the same number of
bytes as one SQLite blob.

The pipeline runs three times: with the default rules (plain thresholds vectorised in the
families where that pays), with every family's thresholds vectorised, and with every
threshold checked per reading (the reference path).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import msgspec

from gateway.collector import tune_collector
from gateway.detection.detector import Detector
from gateway.detection.rules import all_rules
from gateway.detection.snapshot import save, take_back
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.transport.dedup import SeqWindow
from jiayuan.config import GatewayConfig
from jiayuan.contract import Envelope, Reading, batch_topic, decode_envelope, encode
from jiayuan.state import SNAPSHOT_FILE
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import Estate, build_registry
from tools.replay import as_gateway_input


def build_messages(estates: int, minutes: float, batch: int) -> tuple[list[Message], int]:
    registry = build_registry(estates, seed=1)
    # The traffic ends a minute ago: readings from the future would be dead-lettered.
    received_ms = int(time.time() * 1000)
    start_ms = received_ms - 60_000 - int(minutes * 60_000)
    faults = plan_faults(registry, start_ms, minutes * 60, seed=1).faults
    per_estate: dict[str, list[tuple[Estate, Reading]]] = defaultdict(list)
    samples = generate(registry, faults, start_ms, start_ms + int(minutes * 60_000), 1)
    for estate, _, reading in as_gateway_input(samples):
        per_estate[estate.id].append((estate, reading))
    messages: list[Message] = []
    readings = 0
    for rows in per_estate.values():
        estate = rows[0][0]
        topic = batch_topic(estate.district, estate.street, estate.id, estate.edge_id)
        for first in range(0, len(rows), batch):
            chunk = [reading for _, reading in rows[first : first + batch]]
            payload = encode(Envelope(v=1, edge=estate.edge_id, readings=chunk))
            messages.append(Message(topic, payload, len(messages) + 1, 1, received_ms))
            readings += len(chunk)
    return messages, readings


def run_batches(pipeline: Pipeline, messages: list[Message], max_readings: int) -> list[Batch]:
    """The messages through the pipeline as the processor takes them: batches of up to
    ``max_readings`` readings, each judged in one detection call."""
    batches = [Batch()]
    for message in messages:
        pipeline.add(message, batches[-1])
        if batches[-1].readings >= max_readings:
            pipeline.detect(batches[-1])
            batches.append(Batch())
    pipeline.detect(batches[-1])
    return batches


class DeviceClones:
    """The simulated estates' first readings (three per device, so every signal is seen
    and every check's state allocated), cloned under new estate, edge and device names
    until there are at least ``devices`` devices: the traffic of a district far larger
    than the simulator builds, for memory measurements."""

    def __init__(self, devices: int, end_ms: int) -> None:
        registry = build_registry(6, seed=1)
        start_ms = end_ms - 120_000
        self._per_estate: dict[str, list[Reading]] = defaultdict(list)
        self._estates: dict[str, Estate] = {}
        firsts: dict[str, int] = defaultdict(int)
        for estate, _, reading in as_gateway_input(generate(registry, [], start_ms, end_ms, 1)):
            if firsts[reading.device] < 3:
                firsts[reading.device] += 1
                self._per_estate[estate.id].append(reading)
                self._estates[estate.id] = estate
        self.devices_per_clone = len(firsts)
        self.clones = -(-devices // self.devices_per_clone)

    def wires(self, clone: int) -> list[tuple[str, bytes, int]]:
        """One clone's batch messages: (topic, payload, readings), one per estate."""
        out = []
        for estate_id, readings in self._per_estate.items():
            estate = self._estates[estate_id]
            edge = f"{estate.edge_id}.c{clone}"
            topic = batch_topic(estate.district, estate.street, f"{estate_id}.c{clone}", edge)
            renamed = [
                msgspec.structs.replace(reading, device=f"{reading.device}.c{clone}")
                for reading in readings
            ]
            payload = encode(Envelope(v=1, edge=edge, readings=renamed))
            out.append((topic, payload, len(renamed)))
        return out


class DistrictTraffic:
    """The first ``rounds`` readings of each simulated device, cloned under new estate,
    edge and device names until there are at least ``devices`` devices, as batch
    messages in rounds: round k holds every device's k-th reading (one message per
    estate), so a device appears about once in a processor batch."""

    def __init__(self, devices: int, rounds: int, end_ms: int) -> None:
        registry = build_registry(6, seed=1)
        start_ms = end_ms - 20 * 60_000
        by_device: dict[str, list[Reading]] = defaultdict(list)
        estate_of: dict[str, Estate] = {}
        for estate, _, reading in as_gateway_input(generate(registry, [], start_ms, end_ms, 1)):
            if len(by_device[reading.device]) < rounds:
                by_device[reading.device].append(reading)
                estate_of[reading.device] = estate
        self.devices_per_clone = len(by_device)
        self.clones = -(-devices // self.devices_per_clone)
        self.devices = self.clones * self.devices_per_clone
        self.rounds: list[list[Message]] = []
        self.readings: list[int] = []
        for k in range(rounds):
            per_estate: dict[str, list[Reading]] = defaultdict(list)
            for device, readings in by_device.items():
                if k < len(readings):
                    per_estate[estate_of[device].id].append(readings[k])
            messages: list[Message] = []
            count = 0
            for clone in range(self.clones):
                for estate_id, readings in per_estate.items():
                    estate = estate_of[readings[0].device]
                    edge = f"{estate.edge_id}.c{clone}"
                    topic = batch_topic(
                        estate.district, estate.street, f"{estate_id}.c{clone}", edge
                    )
                    renamed = [
                        msgspec.structs.replace(reading, device=f"{reading.device}.c{clone}")
                        for reading in readings
                    ]
                    payload = encode(Envelope(v=1, edge=edge, readings=renamed))
                    messages.append(Message(topic, payload, len(messages) + 1, 1, end_ms))
                    count += len(renamed)
            self.rounds.append(messages)
            self.readings.append(count)


def stream_batches(pipeline: Pipeline, messages: list[Message], max_readings: int) -> int:
    """``run_batches`` without keeping the batches (what is written is not state);
    returns the readings dead-lettered."""
    dead = 0
    batch = Batch()
    for message in messages:
        pipeline.add(message, batch)
        if batch.readings >= max_readings:
            pipeline.detect(batch)
            dead += len(batch.dead)
            batch = Batch()
    pipeline.detect(batch)
    return dead + len(batch.dead)


def district(devices: int, rounds: int, batch_readings: int, profile: bool) -> None:
    """The per-reading cost with one reading per device per batch, beside the default
    traffic's (few devices, many readings each in a batch)."""
    end_ms = int(time.time() * 1000) - 60_000
    traffic = DistrictTraffic(devices, rounds, end_ms)
    messages, readings = build_messages(20, 10.0, 100)
    print(
        f"district: {traffic.devices:,} devices, readings per round "
        f"{', '.join(f'{n:,}' for n in traffic.readings)}; beside it {readings:,} readings "
        f"of the default traffic (20 estates, 10 simulated minutes)"
    )

    def per_reading(pipeline: Pipeline, messages: list[Message], count: int) -> float:
        started = time.perf_counter()
        dead = stream_batches(pipeline, messages, batch_readings)
        elapsed = time.perf_counter() - started
        if dead:
            raise SystemExit(f"{dead} readings dead-lettered")
        return elapsed / count * 1e6

    pipeline = Pipeline(Detector(), GatewayMetrics())
    first = per_reading(pipeline, traffic.rounds[0], traffic.readings[0])
    later = traffic.rounds[1:]
    later_count = sum(traffic.readings[1:])
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for messages_k in later:
            stream_batches(pipeline, messages_k, batch_readings)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    started = time.perf_counter()
    for messages_k in later:
        stream_batches(pipeline, messages_k, batch_readings)
    steady = (time.perf_counter() - started) / later_count * 1e6
    default_pipeline = Pipeline(Detector(), GatewayMetrics())
    default = per_reading(default_pipeline, messages, readings)
    print(f"district, first round (every device new): {first:6.2f} µs a reading")
    print(f"district, later rounds ({later_count:,} readings): {steady:6.2f} µs a reading")
    print(f"default traffic ({readings:,} readings):        {default:6.2f} µs a reading")
    print(f"district / default, per reading: {steady / default:.2f}")


def memory_per_device(devices: int, batch_readings: int) -> tuple[Pipeline, int, float]:
    """(the pipeline, devices measured, bytes it holds per device) by tracemalloc."""
    import tracemalloc

    end_ms = int(time.time() * 1000) - 60_000
    cloned = DeviceClones(devices, end_ms)

    def messages_of(clone: int) -> list[Message]:
        return [Message(topic, payload, 1, 1, end_ms) for topic, payload, _ in cloned.wires(clone)]

    pipeline = Pipeline(Detector(), GatewayMetrics())
    # One clone more first, for the imports and first caches.
    run_batches(pipeline, messages_of(cloned.clones), batch_readings)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for clone in range(cloned.clones):
        batches = run_batches(pipeline, messages_of(clone), batch_readings)
        if any(batch.dead for batch in batches):
            raise SystemExit(f"dead-lettered: {next(b.dead[0].detail for b in batches if b.dead)}")
        del batches  # what is written and acknowledged is not per-device state
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    measured = cloned.clones * cloned.devices_per_clone
    return pipeline, measured, (after - before) / measured


def snapshot_times(pipeline: Pipeline, workdir: Path) -> tuple[int, float, float, float]:
    """(bytes, seconds to save, seconds to take back, seconds for the baseline: the same
    bytes written to and read from SQLite as one blob)."""
    path = workdir / SNAPSHOT_FILE
    started = time.perf_counter()
    size = save(path, pipeline.detector, pipeline.seen, ("+",), int(time.time() * 1000))
    saved_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = take_back(path, Detector(), SeqWindow(), ("+",), int(time.time() * 1000))
    taken_s = time.perf_counter() - started
    if restored is None:
        raise SystemExit("the snapshot was not taken back")
    blob = os.urandom(size)
    started = time.perf_counter()
    with closing(sqlite3.connect(workdir / "baseline.sqlite")) as db:
        db.execute("CREATE TABLE t (body BLOB)")
        with db:
            db.execute("INSERT INTO t VALUES (?)", (blob,))
        db.execute("SELECT body FROM t").fetchone()
    return size, saved_s, taken_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100, help="readings per message")
    parser.add_argument(
        "--batch-readings",
        type=int,
        default=GatewayConfig().batch_max_readings,
        help="readings per processor batch (one detection call each)",
    )
    parser.add_argument(
        "--memory-devices",
        type=int,
        metavar="N",
        help="measure the memory held per device with N devices instead of the speed",
    )
    parser.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="time N distinct devices, one reading per device per batch, instead",
    )
    parser.add_argument("--rounds", type=int, default=4, help="readings per device (--devices)")
    parser.add_argument("--profile", action="store_true", help="cProfile instead (--devices)")
    args = parser.parse_args()
    tune_collector()  # as the gateway runs (gateway/collector.py)
    if args.devices:
        district(args.devices, args.rounds, args.batch_readings, args.profile)
        return
    if args.memory_devices:
        pipeline, measured, per_device = memory_per_device(args.memory_devices, args.batch_readings)
        print(
            f"whole pipeline, tracemalloc, {measured:,} devices (the simulated estate mix): "
            f"{per_device:,.0f} B/device"
        )
        with tempfile.TemporaryDirectory() as workdir:
            size, saved_s, taken_s, baseline_s = snapshot_times(pipeline, Path(workdir))
        print(
            f"detection snapshot: {size:,} bytes ({size / measured:,.0f} B/device); "
            f"save {saved_s:.2f} s, take back {taken_s:.2f} s; baseline (the same bytes "
            f"as one SQLite blob, written and read) {baseline_s:.2f} s; ratio "
            f"(save + take back) / baseline {(saved_s + taken_s) / baseline_s:.1f}"
        )
        return
    messages, readings = build_messages(args.estates, args.minutes, args.batch)

    started = time.perf_counter()
    for message in messages:
        decode_envelope(message.payload)
    baseline_s = time.perf_counter() - started

    def timed(vectorised: bool | None) -> float:
        pipeline = Pipeline(Detector(rules=all_rules(vectorised=vectorised)), GatewayMetrics())
        started = time.perf_counter()
        batches = run_batches(pipeline, messages, args.batch_readings)
        elapsed = time.perf_counter() - started
        dead = sum(len(batch.dead) for batch in batches)
        if dead:  # the figure would measure dead-lettering, not the pipeline
            raise SystemExit(f"{dead} readings dead-lettered: {batches[0].dead[0].detail}")
        return elapsed

    print(
        f"{readings} readings in {len(messages)} messages ({args.estates} estates, "
        f"{args.minutes:g} simulated minutes, {args.batch} readings per message)"
    )
    print(f"baseline  msgspec decode only : {readings / baseline_s:12,.0f} readings/s")
    # The default (thresholds vectorised where that pays), every family's thresholds in
    # the vectorised table, and every threshold per reading (the reference path).
    for label, vectorised in (("default", None), ("all vectorised", True), ("per reading", False)):
        measured_s = timed(vectorised)
        print(
            f"gateway   pipeline, thresholds {label:<15}: {readings / measured_s:10,.0f} "
            f"readings/s, ratio to decode {baseline_s / measured_s:.3f}"
        )


if __name__ == "__main__":
    main()
