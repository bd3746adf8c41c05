"""A device's row numbers are int objects shared by every per-device table
(``gateway.detection.state.row_number``): a kind's rules, threshold table, offline check
and statistics, and the duplicate window hold one object a number between them, also
after a snapshot is read back."""

from __future__ import annotations

import pickle
from typing import Any

from gateway.detection.detector import Detector
from gateway.detection.state import row_number
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.transport.dedup import SeqWindow
from jiayuan.contract import Envelope, Reading, batch_topic, encode

NOW = 1_750_000_000_000
DEVICES = 600  # beyond the 256 small ints Python keeps one object of anyway


def _pipeline_with_devices() -> Pipeline:
    pipe = Pipeline(Detector(), GatewayMetrics(), clock=lambda: NOW)
    batch = Batch()
    for edge in range(3):
        readings = [
            Reading(f"L{edge}-{n}", "lift", 1, NOW - 1000, {"car_status": 0, "speed": 0.0})
            for n in range(DEVICES // 6)
        ] + [
            Reading(f"P{edge}-{n}", "ebike_charger", 1, NOW - 1000, {"port_count": 2})
            for n in range(DEVICES // 6)
        ]
        payload = encode(Envelope(v=1, edge=f"edge{edge}", readings=readings))
        topic = batch_topic("songjiang", "fangsong", f"e{edge}", f"edge{edge}")
        pipe.add(Message(topic, payload, edge + 1, 1, NOW), batch)
    assert not batch.dead
    pipe.detect(batch)
    return pipe


def _numbers(detector: Detector, seen: SeqWindow) -> list[int]:
    numbers = [row for rules in detector.rules.values() for row in rules.device_rows.values()]
    return numbers + [
        slot for known in seen.export_state()["_index"].values() for slot in known.values()
    ]


def _all_shared(numbers: list[Any]) -> bool:
    return all(number is row_number(number) for number in numbers)


def test_every_table_stores_the_one_object_of_each_row_number() -> None:
    pipe = _pipeline_with_devices()
    numbers = _numbers(pipe.detector, pipe.seen)
    assert len(numbers) == 2 * DEVICES
    assert max(numbers) >= DEVICES - 1
    assert _all_shared(numbers)


def test_the_numbers_are_shared_again_after_a_snapshot_is_read_back() -> None:
    pipe = _pipeline_with_devices()
    detector, seen = Detector(), SeqWindow()
    detector.import_state(pickle.loads(pickle.dumps(pipe.detector.export_state())))
    seen.import_state(pickle.loads(pickle.dumps(pipe.seen.export_state())))
    numbers = _numbers(detector, seen)
    assert len(numbers) == 2 * DEVICES
    assert _all_shared(numbers)
    # The kind's tables still share one dictionary of rows.
    lift = next(rules for kind, rules in detector.rules.items() if kind.value == "lift")
    assert detector.offline._clocks["lift"].rows is lift.device_rows
