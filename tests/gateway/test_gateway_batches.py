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


def test_what_arrives_during_a_slow_write_goes_in_the_next_write(config: Config) -> None:
    # InfluxDB takes one write far longer than the batch window (a snapshot or compaction
    # at a district's cardinality) under a steady trickle that is never quiet.  What
    # arrives meanwhile must be one batch, written as soon as the slow write returns: cut
    # at the window into several batches, each would wait for the write before it, and
    # the last readings of the stall would be stored several writes late.
    harness = Harness(config)
    window_s, stall_s = 0.1, 1.0
    harness.processor.config = replace(harness.processor.config, flush_interval_s=window_s)
    writes: list[int] = []
    stalled, stall_over = threading.Event(), threading.Event()
    write = harness.client.write

    def slow_first_write(lines: Sequence[str] | bytes) -> None:
        if not writes:
            stalled.set()
            time.sleep(stall_s)
            stall_over.set()
        writes.append(len(lines))
        write(lines)

    harness.client.write = slow_first_write  # type: ignore[method-assign]
    harness.processor.start()
    try:
        sent = during_stall = 0
        while sent < 300:
            harness.inbox.put(harness.message())
            sent += 1
            during_stall += stalled.is_set() and not stall_over.is_set()
            time.sleep(0.005)
        harness.wait_acked(sent)
        assert during_stall > 10 * window_s / 0.005 / 4, "the trickle did not outlast the window"
        # The first write, then everything that arrived while it stalled, in one.
        assert len(writes) >= 2, writes
        assert writes[1] >= during_stall, (writes, during_stall)
    finally:
        harness.close()
