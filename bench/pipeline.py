"""Gateway pipeline throughput, without servers, against a decode-only baseline.

Simulated traffic of many estates is packed into batch messages the way edge agents send
it. The baseline is decoding the same messages with msgspec (the floor any gateway pays);
the measured figure is the gateway's whole in-process pipeline: topic parsing, decoding,
per-reading validation, duplicate window, rules and InfluxDB line formatting. Both run in
this process on the same messages, so the ratio is comparable across machines.

    .venv/bin/python bench/pipeline.py [--estates 20] [--minutes 10] [--batch 100]

The pipeline runs three times: with the default rules (plain thresholds vectorised in the
families where that pays), with every family's thresholds vectorised, and with every
threshold checked per reading (the reference path).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from gateway.detection import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.rules import all_rules
from jiayuan.contract import Envelope, Reading, batch_topic, decode_envelope, encode
from jiayuan.replay import as_gateway_input
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import Estate, build_registry


def build_messages(estates: int, minutes: float, batch: int) -> tuple[list[Message], int]:
    registry = build_registry(estates, seed=1)
    start_ms = int(time.time() * 1000)
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
            messages.append(Message(topic, payload, len(messages) + 1, 1, start_ms))
            readings += len(chunk)
    return messages, readings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100, help="readings per message")
    args = parser.parse_args()
    messages, readings = build_messages(args.estates, args.minutes, args.batch)

    started = time.perf_counter()
    for message in messages:
        decode_envelope(message.payload)
    baseline_s = time.perf_counter() - started

    def timed(vectorised: bool | None) -> float:
        pipeline = Pipeline(Detector(rules=all_rules(vectorised=vectorised)), GatewayMetrics())
        started = time.perf_counter()
        batch = Batch()
        for message in messages:
            pipeline.add(message, batch)
        return time.perf_counter() - started

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
