"""Simulated traffic through the gateway's pipeline; prints what it would write, hashed.

    python tests/support/compiled_digest.py compiled|source

``source`` imports every hot module from its ``.py`` file even where a compiled one sits
beside it, so the two runs compare the compiled hot path with the interpreted one.  Prints
one JSON object: which hot modules were extension modules, the lines and anomalies
written, and a SHA-256 of the lines in order.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict

from jiayuan import compiled

if sys.argv[1] == "source":  # before any hot module is imported
    compiled.import_sources_first()

from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from jiayuan.contract import Envelope, Reading, batch_topic, encode
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import Estate, build_registry
from tools.replay import as_gateway_input

T0 = 1_750_000_000_000
MINUTES = 15


def main() -> None:
    registry = build_registry(3, seed=2)
    end_ms = T0 + MINUTES * 60_000
    faults = plan_faults(registry, T0, MINUTES * 60, seed=2).faults
    per_estate: dict[str, list[tuple[Estate, Reading]]] = defaultdict(list)
    for estate, _, reading in as_gateway_input(generate(registry, faults, T0, end_ms, 2)):
        per_estate[estate.id].append((estate, reading))
    messages = []
    for rows in per_estate.values():
        estate = rows[0][0]
        topic = batch_topic(estate.district, estate.street, estate.id, estate.edge_id)
        for first in range(0, len(rows), 50):
            chunk = [reading for _, reading in rows[first : first + 50]]
            payload = encode(Envelope(v=1, edge=estate.edge_id, readings=chunk))
            messages.append(Message(topic, payload, len(messages) + 1, 1, end_ms))
    # Interleaved as many edges publish, so detection batches mix devices and families.
    messages.sort(key=lambda m: (m.payload.split(b'"ts":', 1)[1][:13], m.topic))
    now = [end_ms]
    pipeline = Pipeline(Detector(), GatewayMetrics(), clock=lambda: now[0])
    digest = hashlib.sha256()
    lines = anomalies = 0
    batch = Batch()
    for message in [*messages, None]:
        if message is not None:
            pipeline.add(message, batch)
        if message is None or batch.readings >= 2_000:
            pipeline.detect(batch)
            if message is None:  # and a while later: the devices that went silent
                now[0] = end_ms + 3_600_000
                pipeline.tick(batch)
            for pending in batch.lines:
                digest.update(pending.line.encode() + b"\n")
                lines += 1
                anomalies += not pending.is_reading
            assert not batch.dead, batch.dead[0].detail
            batch = Batch()
    print(
        json.dumps(
            {
                "compiled": compiled.compiled(),
                "lines": lines,
                "anomalies": anomalies,
                "sha256": digest.hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main()
