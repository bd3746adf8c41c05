"""The gateway as one object: ``Gateway(config).start()`` … ``stop()``.

Wires MQTT ingest → processing thread (validation, duplicates, detection) → InfluxDB and
the dead-letter store, and serves the HTTP API from a background thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.api import ApiServer, create_app
from gateway.census import DeviceCensus
from gateway.collector import tune_collector
from gateway.detection.detector import Detector
from gateway.detection.resume import resume_detector
from gateway.detection.sites import load_sites
from gateway.detection.snapshot import Restored, save, take_back
from gateway.heap import HeapTrimmer, tune_malloc
from gateway.leftover import Leftover
from gateway.metrics import GatewayMetrics, GatewayStats
from gateway.pipeline import Pipeline, wall_ms
from gateway.processor import Processor
from gateway.storage.deadletters import DeadLetterFilter, DeadLetterStore, StoredDeadLetter
from gateway.storage.writer import BatchWriter
from gateway.throughput_log import ThroughputLog
from gateway.transport.inbox import BACKLOG, Inbox
from gateway.transport.ingest import ALL_STREETS, MqttIngest, owned_streets
from jiayuan import compiled
from jiayuan.anomaly import Anomaly
from jiayuan.api_auth import ApiAuth
from jiayuan.config import Config
from jiayuan.influx import InfluxClient
from jiayuan.registry.store import registry_path
from jiayuan.state import DEAD_LETTER_FILE, SNAPSHOT_FILE

if TYPE_CHECKING:
    from alerts.service import AlertService
    from score.service import ScoreService

log = logging.getLogger(__name__)

HEALTH_PING_TIMEOUT_S = 2.0


class Gateway:
    def __init__(self, config: Config, *, serve_api: bool = True) -> None:
        self.config = config
        # First: a bad interval is refused before anything is opened.
        trim_s = config.gateway.heap_trim_interval_s
        self.heap_trimmer = HeapTrimmer(trim_s) if trim_s != 0 else None
        # Before the sites' arrays and the threads (gateway/heap.py says why).
        tune_malloc(config.gateway.malloc_mmap_threshold_bytes, config.gateway.malloc_arena_max)
        self.metrics = GatewayMetrics()
        # The registry's sites are judged together (read at start: a registry import takes
        # effect at the next start).
        self.detector = Detector(
            sites=load_sites(
                registry_path(config),
                owned_streets(config.mqtt.street_filter),
                rows_dir=config.gateway.state_dir,
            )
        )
        state_dir = Path(config.gateway.state_dir)
        self._snapshot_path = state_dir / SNAPSHOT_FILE
        self.dead_letter_store = DeadLetterStore(state_dir / DEAD_LETTER_FILE)
        self._inbox = Inbox()
        self._give_up = threading.Event()
        self._influx = InfluxClient(config.influx)
        # A separate client with a short timeout, so /health never waits behind a write.
        self._influx_health = InfluxClient(replace(config.influx, timeout_s=HEALTH_PING_TIMEOUT_S))
        self.ingest = MqttIngest(config.mqtt, self._inbox)
        self.writer = BatchWriter(self._influx, self.metrics, self._give_up)
        self.pipeline = Pipeline(
            self.detector, self.metrics, window=Pipeline.window_of(config.gateway)
        )
        # Imported here: the alert side pulls in the registry, score and dispatch modules,
        # which a gateway run with alerts disabled does not need.
        self.alerts: AlertService | None = None
        self.score: ScoreService | None = None
        if config.alerts.enabled:
            from alerts.service import AlertService
            from score.service import ScoreService

            streets = self.ingest.streets
            owned = None if ALL_STREETS in streets else streets
            self.alerts = AlertService(
                config, streets=owned, population=DeviceCensus(self.detector.offline.places)
            )
            self.score = ScoreService(
                config,
                self.alerts.store,
                self.alerts.registry,
                self.alerts.clock,
                owned,
                stopping=self.alerts.stopping,
            )
            self.alerts.timers.append(self.score.tick)
            self.metrics.registry.register(self.alerts.outbox_collector())
        self.processor = Processor(
            config.gateway,
            self._inbox,
            self.pipeline,
            self.writer,
            self.dead_letter_store,
            self.ingest.ack,
            self.metrics,
            self._give_up,
            on_anomalies=self.alerts.on_anomalies if self.alerts is not None else None,
            on_edge_status=self.alerts.on_edge_status if self.alerts is not None else None,
        )
        self.api: ApiServer | None = None
        if serve_api:
            routers = self.alerts.routers() if self.alerts is not None else []
            if self.score is not None:
                routers.append(self.score.router())
            # Who may call what (docs/security_api.md); a broken tokens file stops the start.
            auth = ApiAuth.from_config(
                config.api,
                config.gateway.api_host,
                street_of=self.alerts.registry.street_of if self.alerts is not None else None,
            )
            self.api = ApiServer(
                create_app(self, routers, auth), config.gateway.api_host, config.gateway.api_port
            )
        self.throughput_log = ThroughputLog(lambda: self.stats)
        self._started_at: float | None = None
        self._stopped = False
        self._outbox_left: dict[str, int] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the threads and the API; returns at once.

        A broker or InfluxDB that is down is retried in the background (the messages wait
        at the broker), so the gateway can start before the servers do.
        """
        if self._started_at is not None:
            raise RuntimeError("a Gateway starts once; make a new one to start again")
        self._started_at = time.monotonic()
        tune_collector()
        compiled.log_state(log)
        # Before any traffic: the detection state of the last run, from the snapshot a
        # clean stop left, else the devices and open anomalies InfluxDB holds.
        restored = self._take_back_snapshot()
        try:
            self._influx.ensure_database()
            if restored is None:
                resume_detector(self.detector, self._influx, wall_ms(), self.ingest.streets)
        except Exception as error:  # the writer creates the database if still missing
            log.warning(
                "InfluxDB not ready at start (%s); will retry%s",
                error,
                "" if restored is not None else "; detection starts from scratch",
            )
        if self.api is not None:
            self.api.start()
            log.info("gateway API on %s", self.api.url)
        if self.alerts is not None:
            if self.api is not None:
                self.alerts.set_callback_url(f"{self.api.url}/opscentre/callback")
            self.alerts.start()
        self.processor.start()
        self.ingest.start()
        if self.heap_trimmer is not None:
            self.heap_trimmer.start()
        self.throughput_log.start()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Until the broker connection is up and the subscription is in place."""
        return self.ingest.wait_subscribed(timeout_s)

    def wait_idle(self, timeout_s: float = 10.0, quiet_s: float = 0.3) -> bool:
        """Until nothing has been waiting or being written for ``quiet_s`` (for tests)."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.processor.idle:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.02)
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Flush and acknowledge what has arrived, then disconnect and end the threads.

        If InfluxDB is still down after ``timeout_s`` the batch is left unacknowledged: the
        broker keeps it for the next start.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._started_at is not None:
            self.throughput_log.stop()
            self.processor.stop(timeout_s)
            self.ingest.stop()
            if self.processor.settled:
                self._save_snapshot()
            else:
                log.warning("stopped with batches not durable: no detection snapshot saved")
            if self.api is not None:
                self.api.stop()
            if self.heap_trimmer is not None:
                self.heap_trimmer.stop()
        if self.alerts is not None:
            self._outbox_left = self._outbox_waiting(self.alerts)
            self.alerts.stop()
        if self.score is not None:
            self.score.close()
        self._influx.close()
        self._influx_health.close()
        self.dead_letter_store.close()

    def leftover(self) -> Leftover:
        """What waits for the next start (after ``stop``): spooled batches, messages the
        broker keeps, alert messages not delivered."""
        spool = self.processor.handoff.spool
        stats = self.stats
        return Leftover(
            spool_path=spool.path,
            spooled_batches=spool.batches,
            spooled_lines=spool.lines,
            spooled_bytes=spool.bytes_stored,
            # Received but never acknowledged, and never taken from the inbox at all.
            unacknowledged=max(0, stats.messages - stats.acked) + stats.queued,
            outbox=dict(self._outbox_left),
            outbox_path=self.alerts.dispatcher.outbox.path if self.alerts is not None else None,
        )

    @staticmethod
    def _outbox_waiting(alerts: AlertService) -> dict[str, int]:
        from alerts.outbox import MessageState

        try:
            counts = alerts.dispatcher.outbox.counts()
        except sqlite3.Error as error:
            log.warning("cannot count the alert outbox at stop: %s", error)
            return {}
        return {s: n for s, n in counts.items() if s != MessageState.DELIVERED.value}

    def _take_back_snapshot(self) -> Restored | None:
        path, seen, streets = self._snapshot_path, self.pipeline.seen, self.ingest.streets
        try:
            restored = take_back(path, self.detector, seen, streets, wall_ms())
        except sqlite3.Error as error:  # unreadable: InfluxDB still holds what matters
            # Set aside, so the next clean stop can write a new one.
            aside = self._snapshot_path.with_name(self._snapshot_path.name + ".unreadable")
            self._snapshot_path.replace(aside)
            log.error(
                "cannot read the detection snapshot (%s), moved to %s; starting from InfluxDB",
                error,
                aside,
            )
            return None
        if restored is not None:
            self.metrics.open_anomalies.set(restored.open_anomalies)
            log.info(
                "detection state restored from the snapshot of %s: devices %d, "
                "open anomalies %d, %d bytes",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(restored.taken_ms / 1000)),
                restored.devices,
                restored.open_anomalies,
                restored.size_bytes,
            )
        return restored

    def _save_snapshot(self) -> None:
        path, seen, streets = self._snapshot_path, self.pipeline.seen, self.ingest.streets
        started = time.monotonic()
        try:
            size = save(path, self.detector, seen, streets, wall_ms())
        except (OSError, sqlite3.Error) as error:  # the next start resumes from InfluxDB
            log.error("cannot save the detection snapshot: %s", error)
            return
        log.info("detection state saved: %d bytes in %.2f s", size, time.monotonic() - started)

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the API, the demo and the tests read -------------------------------------------

    @property
    def stats(self) -> GatewayStats:
        return self.metrics.snapshot(
            anomalies_open=self.detector.book.open_count,
            queued=self._inbox.qsize(),
            messages_backlog=self._inbox.received(BACKLOG),
            queued_backlog=self._inbox.waiting(BACKLOG),
        )

    @property
    def api_url(self) -> str | None:
        return self.api.url if self.api is not None else None

    @property
    def mqtt_connected(self) -> bool:
        return self.ingest.connected

    @property
    def mqtt_unstable(self) -> bool:
        """The broker keeps closing the connection soon after making it
        (gateway.transport.mqtt_flaps)."""
        return self.ingest.unstable

    @property
    def uptime_s(self) -> float:
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    def influx_reachable(self) -> bool:
        return self._influx_health.ping()

    def delivery_health(self) -> dict[str, Any] | None:
        """Where alert messages go and what is stuck; None with alerts disabled."""
        return self.alerts.delivery_health().as_dict() if self.alerts is not None else None

    def anomalies(
        self,
        active: bool | None = None,
        kind: str | None = None,
        estate: str | None = None,
        limit: int = 1000,
    ) -> list[Anomaly]:
        """Open anomalies and recently closed ones, newest first."""
        return self.detector.book.list(active, kind, estate, limit)

    def dead_letters(
        self, limit: int = 100, where: DeadLetterFilter | None = None
    ) -> list[StoredDeadLetter]:
        return self.dead_letter_store.recent(limit, where)

    def metrics_exposition(self) -> bytes:
        self.metrics.queue_depth.set(self._inbox.qsize())
        self.metrics.backlog_queue_depth.set(self._inbox.waiting(BACKLOG))
        self.metrics.backlog_messages.set(self._inbox.received(BACKLOG))
        self.metrics.mqtt_unstable.set(1 if self.ingest.unstable else 0)
        return self.metrics.exposition()
