"""Two threads: one turns messages into batches, the other makes batches durable and
then acknowledges them.

A batch closes at ``batch_max_readings`` readings and devices gone offline together (a
district's uplink failing is spread over batches a window apart, not held in memory at
once, and readings keep flowing between them), after
``flush_interval_s``, as soon as the inbox has been quiet for a moment (the broker sends
only so many unacknowledged messages, so waiting longer would only add latency), or, once
it is a moment old, when the gateway is keeping up (the inbox empty) and nothing is being
written: group commit, so the next batch gathers while this one is written and a batch
never waits on an idle writer.  While the last batch is still being written, neither the
window nor a quiet inbox closes the next: it gathers until the writer is free, so what
arrives during a slow write goes in the one write after it.
The processing thread validates, drops duplicates and runs detection once per batch (the
offline timer too, so all detection state has one writer); the commit thread writes
telemetry and anomalies to InfluxDB (one write per batch, in parts of at most 10,000
lines), records dead letters in SQLite and only then acknowledges every message of the
batch, in batch order.  At most one batch
waits between them, so the two overlap (CPU work on batch n+1 while batch n is written)
and a slow InfluxDB holds back the processing and, through unacknowledged messages, the
broker.

A batch InfluxDB does not take within ``spool_after_s`` goes to the disk spool instead and
is acknowledged from there (``SpoolingWriter``); while the spool holds batches, the commit
thread replays them between new batches, oldest first.  Anomalies reach the alert engine
before the acknowledgement either way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.metrics import GatewayMetrics, SpoolMetrics
from gateway.pipeline import Batch, Message, Pending, Pipeline
from gateway.storage.deadletters import DeadLetter, DeadLetterStore, Reason
from gateway.storage.spool import InfluxSpool
from gateway.storage.writer import BatchWriter, GaveUp, SpoolingWriter
from gateway.transport.inbox import Inbox
from jiayuan.anomaly import Anomaly
from jiayuan.config import GatewayConfig
from jiayuan.contract import EdgeStatus, Topic, parse_topic
from jiayuan.state import SPOOL_FILE

log = logging.getLogger(__name__)

QUIET_S = 0.02
# Keeping up and with nothing being written, a batch closes once it is this old
# (chosen on the latency at half the peak, bench/throughput.py).
GROUP_COMMIT_MIN_S = 0.02
TICK_S = 1.0
# How often an idle commit thread looks whether the gateway gave up (the processing thread
# then hands it nothing more, not even the end).
GIVE_UP_POLL_S = 0.5
_REPLAY_DUE = Batch()  # the commit thread's turn to replay the spool, not a batch


class Processor:
    def __init__(
        self,
        config: GatewayConfig,
        inbox: Inbox,
        pipeline: Pipeline,
        writer: BatchWriter,
        dead_letters: DeadLetterStore,
        ack: Callable[[Sequence[Message]], int],
        metrics: GatewayMetrics,
        give_up: threading.Event,
        on_anomalies: Callable[[Sequence[Anomaly]], None] | None = None,
        on_edge_status: Callable[[Sequence[tuple[Topic, EdgeStatus]]], None] | None = None,
    ) -> None:
        """``on_anomalies`` / ``on_edge_status``: the alert side, told of each batch's
        anomalies and edge agents' status messages before the batch is acknowledged."""
        self.config = config
        self._on_anomalies = on_anomalies
        self._on_edge_status = on_edge_status
        self.inbox = inbox
        self.pipeline = pipeline
        self.writer = writer
        self.handoff = SpoolingWriter(
            writer,
            InfluxSpool(
                Path(config.state_dir) / SPOOL_FILE,
                max_bytes=config.spool_max_bytes,
                warn_fraction=config.spool_warn_fraction,
            ),
            SpoolMetrics(metrics.registry, config.spool_max_bytes),
            config.spool_after_s,
        )
        self.dead_letters = dead_letters
        self._ack = ack
        self.metrics = metrics
        self._closing = threading.Event()
        self._give_up = give_up
        self._ready: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        self._threads = (
            threading.Thread(target=self._process, name="gateway-process", daemon=True),
            threading.Thread(target=self._commit_all, name="gateway-commit", daemon=True),
        )
        self._next_tick = 0.0
        self._share_sent = False  # the last batch was a share of a mass outage
        self._in_flight = 0  # batches made and not yet committed
        self._collecting = False  # a batch holds messages but is not handed over yet
        self._commit_failed = False  # a batch was left unacknowledged (and not durable)
        self._lock = threading.Lock()

    @property
    def settled(self) -> bool:
        """Stopped with every batch it made durable and acknowledged: nothing it processed
        will come back from the broker."""
        stopped = not any(thread.is_alive() for thread in self._threads)
        return stopped and not self._commit_failed and not self._give_up.is_set()

    @property
    def idle(self) -> bool:
        """Nothing waiting, being processed, being written or spooled for InfluxDB."""
        with self._lock:
            busy = self._in_flight or self._collecting or self.handoff.spool
            return not busy and self.inbox.empty()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float) -> None:
        """Process and commit what has arrived, then end; give up on InfluxDB after
        ``timeout_s`` (what is not durable by then stays unacknowledged at the broker)."""
        self._closing.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self._give_up.set()
            for thread in self._threads:
                thread.join()

    def _process(self) -> None:
        while True:
            batch = self._collect()
            with self._lock:
                self._collecting = False
                self._in_flight += bool(batch)
            if batch and not self._hand_over(batch):
                return
            if self._closing.is_set() and self.inbox.empty():
                self._hand_over(None)
                return

    def _hand_over(self, batch: Batch | None) -> bool:
        """Queue a batch for the commit thread; False once the gateway gave up."""
        while not self._give_up.is_set():
            try:
                self._ready.put(batch, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _commit_all(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    if batch is _REPLAY_DUE:
                        self._record_refused(self.handoff.replay(), [])
                    else:
                        self._commit(batch)
                except GaveUp:
                    log.warning("stopping with a batch not durable; the broker will redeliver it")
                    self._commit_failed = True
                    return
                except Exception:  # a bug: leave the batch unacknowledged but keep going
                    log.exception("committing a batch failed; its messages stay unacknowledged")
                    self._commit_failed = True
                finally:
                    if batch is not _REPLAY_DUE:
                        with self._lock:
                            self._in_flight -= 1
        finally:
            self.handoff.spool.close()  # what it holds is replayed at the next start

    def _next_batch(self) -> Batch | None:
        """The next batch, ``_REPLAY_DUE`` when the spool's next replay comes first, or None
        at the end: handed over by the processing thread, or the gateway gave up (then the
        processing thread hands over nothing more, and a stop would wait for ever)."""
        while True:
            wait = self.handoff.replay_wait()
            try:
                timeout = GIVE_UP_POLL_S if wait is None else min(wait, GIVE_UP_POLL_S)
                return self._ready.get(timeout=timeout)
            except queue.Empty:
                if self._give_up.is_set():
                    return None
                if wait is not None and wait <= GIVE_UP_POLL_S:
                    return _REPLAY_DUE

    def _collect(self) -> Batch:
        batch = Batch()
        if self._share_sent:
            # The last batch was a share of a mass outage: this one gathers readings for a
            # window before the next share, so they are not held up behind every share
            # (with alerts on, a share of 5,000 holds the commit thread for seconds, and
            # the next batch starts only once it is taken).
            self._share_sent = False
            self._next_tick = time.monotonic() + self.config.flush_interval_s
        deadline = None
        limit = self.config.batch_max_readings
        while batch.readings < limit:
            now = time.monotonic()
            if now >= self._next_tick:
                self._next_tick = now + TICK_S
                try:
                    more_due = self.pipeline.tick(batch, limit - batch.readings)
                except Exception:  # a bug in the timer must not stop ingest
                    log.exception("the offline check failed")
                    more_due = False
                if more_due:  # a mass outage: this batch is full; see _share_sent
                    self._share_sent = True
                    break
            if deadline is None:
                wait = max(0.0, min(self._next_tick - now, self.config.flush_interval_s))
            elif now >= deadline:
                if self._writer_free():
                    break
                wait = QUIET_S
            else:
                wait = max(0.0, min(deadline - now, QUIET_S))
            try:
                message = self.inbox.get(timeout=wait)
            except queue.Empty:
                if self._closing.is_set() or (
                    (batch.messages or batch.lines) and self._writer_free()
                ):
                    break
                continue
            if deadline is None:
                opened = time.monotonic()
                deadline = opened + self.config.flush_interval_s
                with self._lock:
                    self._collecting = True
            self.pipeline.add(message, batch)
            # Group commit: when the gateway is keeping up (nothing waiting in the inbox)
            # and nothing is being written, waiting out the window only adds latency; the
            # next batch gathers while this one is written.  Behind (a backlog), batches
            # still fill the window.  (Reads without the lock: a hint is enough here.)
            if (
                self._writer_free()
                and self.inbox.empty()
                and time.monotonic() - opened >= GROUP_COMMIT_MIN_S
            ):
                break
        self.pipeline.detect(batch)
        self.metrics.received(len(batch.messages), batch.readings)
        self.metrics.queue_depth.set(self.inbox.qsize())
        return batch

    def _writer_free(self) -> bool:
        """Whether no batch is being written.  While one is (InfluxDB slow for a moment),
        the batch gathering closes neither at its window nor on a quiet inbox: closed, it
        would only wait for that write, and the next batches behind it, each for the one
        before; gathering on until the writer is free sends all that arrived meanwhile
        in one write, the next.  (Read without the lock: a hint is enough here.)"""
        return not self._in_flight

    def _commit(self, batch: Batch) -> None:
        self._record_refused(self.handoff.hand_on(batch.lines), batch.dead)
        self._hand_on_anomalies(batch)
        self.metrics.acked(self._ack(batch.messages))

    def _record_refused(self, refused: list[Pending], dead: list[DeadLetter]) -> None:
        """Dead-letter what InfluxDB refused, with the batch's own dead letters."""
        dead = dead + [
            DeadLetter(
                p.received_ms,
                p.topic,
                Reason.REJECTED_BY_INFLUX,
                "InfluxDB refused this point",
                p.origin_json(),
            )
            for p in refused
        ]
        for _ in refused:
            self.metrics.dead_letter(Reason.REJECTED_BY_INFLUX)
        self._record_dead_letters(dead)

    def _hand_on_anomalies(self, batch: Batch) -> None:
        """Give the batch's anomalies to the alert engine before acknowledging.

        Before the ack, so a crash in between means redelivery (the engine treats a repeated
        anomaly as the same alert), never an anomaly that no alert heard of.  A failing
        listener is logged, not retried: the anomaly is already durable (InfluxDB or spool).
        """
        if self._on_edge_status is None and self._on_anomalies is None:
            return
        # Nearly every line is a reading: one pass to set those aside.
        others = [p for p in batch.lines if not p.is_reading]
        if self._on_edge_status is not None:
            # First: the devices' offline alerts of a batch join their edge's estate alert.
            statuses = [
                (parse_topic(p.topic), p.origin) for p in others if isinstance(p.origin, EdgeStatus)
            ]
            if statuses:
                try:
                    self._on_edge_status(statuses)
                except Exception:
                    log.exception("the alert engine failed on %d edge statuses", len(statuses))
        if self._on_anomalies is None:
            return
        anomalies = [p.origin for p in others if isinstance(p.origin, Anomaly)]
        if not anomalies:
            return
        try:
            self._on_anomalies(anomalies)
        except Exception:
            log.exception("the alert engine failed on %d anomalies", len(anomalies))

    def _record_dead_letters(self, dead: list[DeadLetter]) -> None:
        backoff = 0.2
        while True:
            try:
                self.dead_letters.add_many(dead)
                return
            except Exception as error:  # a full disk: keep the messages unacknowledged
                log.error("cannot record dead letters, retrying: %s", error)
                if self._give_up.wait(backoff):
                    raise GaveUp(str(error)) from error
                backoff = min(backoff * 2, 10.0)
