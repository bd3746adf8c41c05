"""How the processor cuts batches: group commit when it keeps up, full windows when behind
(against the real InfluxDB, which the commit thread writes to)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.processor import Processor
from gateway.storage.deadletters import DeadLetterStore
from gateway.storage.writer import BatchWriter
from gateway.transport.inbox import Inbox
from jiayuan.config import Config
from jiayuan.contract import Envelope, batch_topic, encode
from jiayuan.influx import InfluxClient
from tests.support.lift_readings import lift_reading
from tests.support.mqtt_publisher import EDGE, PLACE

WINDOW_S = 2.0  # far longer than any batch group commit cuts


class CountingPipeline(Pipeline):
    """Records how many messages each batch held (detect runs once per batch)."""

    def __init__(self) -> None:
        super().__init__(Detector(), GatewayMetrics())
        self.sizes: list[int] = []

    def detect(self, batch: Batch) -> None:
        if batch.messages and batch.undetected:
            self.sizes.append(len(batch.messages))
        super().detect(batch)


class Harness:
    def __init__(self, config: Config) -> None:
        self.inbox: Inbox = Inbox()
        self.pipeline = CountingPipeline()
        self.acked = 0
        self.give_up = threading.Event()
        self.client = InfluxClient(config.influx)
        metrics = GatewayMetrics()
        self.dead = DeadLetterStore(f"{config.gateway.state_dir}/dead.sqlite")
        self.processor = Processor(
            replace(config.gateway, flush_interval_s=WINDOW_S),
            self.inbox,
            self.pipeline,
            BatchWriter(self.client, metrics, self.give_up),
            self.dead,
            self._ack,
            metrics,
            self.give_up,
        )
        self.seq = 0

    def _ack(self, messages: Sequence[Message]) -> int:
        self.acked += len(messages)
        return len(messages)

    def message(self) -> Message:
        self.seq += 1
        reading = lift_reading(self.seq, int(time.time() * 1000) - 1000)
        payload = encode(Envelope(v=1, edge=EDGE, readings=[reading]))
        return Message(batch_topic(*PLACE, EDGE), payload, self.seq, 1, int(time.time() * 1000))

    def wait_acked(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while self.acked < count:
            assert time.monotonic() < deadline, f"{self.acked} of {count} acknowledged"
            time.sleep(0.01)

    def close(self) -> None:
        self.processor.stop(10)
        self.client.close()
        self.dead.close()


@pytest.fixture
def harness(config: Config) -> Iterator[Harness]:
    running = Harness(config)
    running.processor.start()
    yield running
    running.close()


def test_keeping_up_a_batch_does_not_wait_out_the_window(harness: Harness) -> None:
    # A steady trickle, never quiet for the 20 ms that closes a batch otherwise: without
    # group commit it would all wait for the two-second window in one batch.
    for _ in range(100):
        harness.inbox.put(harness.message())
        time.sleep(0.005)
    harness.wait_acked(100)
    assert sum(harness.pipeline.sizes) == 100
    assert len(harness.pipeline.sizes) >= 3, harness.pipeline.sizes


def test_behind_a_backlog_batches_still_fill_the_window(harness: Harness) -> None:
    # A backlog waiting in the inbox: group commit must not cut it into small batches.
    for _ in range(2000):
        harness.inbox.put(harness.message())
    harness.wait_acked(2000)
    assert sum(harness.pipeline.sizes) == 2000
    assert harness.pipeline.sizes[0] >= 1000, harness.pipeline.sizes


def test_a_stop_that_gives_up_ends_while_the_commit_thread_is_busy(config: Config) -> None:
    # The commit thread is slow (here its acknowledgements; in a district's outage, the
    # alert engine) and the processing thread waits to hand over the next batch when the
    # stop's time runs out: the gateway gives up, the processing thread hands over nothing
    # more, and the commit thread must still end once it is idle.
    harness = Harness(config)
    slow = threading.Event()

    def slow_ack(messages: Sequence[Message]) -> int:
        slow.wait(2.0)
        return Harness._ack(harness, messages)

    harness.processor._ack = slow_ack
    harness.processor.start()
    try:
        # Three batches (a quiet gap closes each): the first being committed, the second
        # waiting for the commit thread, the third waiting to be handed over.
        for _ in range(3):
            for _ in range(50):
                harness.inbox.put(harness.message())
            time.sleep(0.2)
        stopping = threading.Thread(target=harness.processor.stop, args=(0.2,))
        stopping.start()
        stopping.join(15)
        assert not stopping.is_alive(), "the stop waits for ever on the commit thread"
        assert not harness.processor.settled  # it gave up: what was not acknowledged returns
    finally:
        slow.set()
        harness.client.close()
        harness.dead.close()
