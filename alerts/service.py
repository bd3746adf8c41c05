"""The alert side of the gateway process, as one object the gateway starts and stops.

Wires the lifecycle engine (SQLite state) to its sinks — the dispatch outbox (work orders,
property-manager notifications), the ``alert`` points for InfluxDB and the live stream —
and runs one timer thread that escalates overdue alerts, writes the alert points and the
``alert_open`` gauge, and then calls the ``timers`` added to it (the gateway adds the
estate safety score's).  It also provides the HTTP routers: alerts, the operations
centre's callback and the registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from fastapi import APIRouter

from alerts.api import create_alerts_router
from alerts.board import create_board_router
from alerts.callback import CallbackLedger, CallbackReport, CallbackStatus, create_callback_router
from alerts.delivery import DeliveryHealth, Dispatcher
from alerts.engine import AlertEngine, AlertEvent, Clock, wall_clock_ms
from alerts.grouping import DeviceCount
from alerts.links import LINKS_FILE, LinkLedger
from alerts.mobile import create_mobile_router
from alerts.outbox_api import create_outbox_router
from alerts.outbox_metrics import OutboxCollector
from alerts.points import PointBuffer, alert_open_lines
from alerts.policy import AlertPolicy
from alerts.store import AlertStore
from alerts.stream import Broadcaster
from jiayuan.anomaly import Anomaly
from jiayuan.config import Config
from jiayuan.contract import EdgeStatus, Topic
from jiayuan.influx import InfluxClient
from jiayuan.registry.api import create_registry_router
from jiayuan.registry.store import RegistryStore, registry_path
from jiayuan.state import ALERTS_FILE, CALLBACK_LEDGER_FILE

log = logging.getLogger(__name__)

TICK_S = 1.0
# How long a stop waits for the timer thread: one InfluxDB write's timeout and more.
STOP_WAIT_S = 30.0
OPEN_GAUGE_EVERY_S = 10.0
# Alert points waiting for InfluxDB while it is down; beyond this the oldest are dropped
# (the SQLite history keeps every step, so the points can be rebuilt from it).
MAX_PENDING_POINTS = 100_000
# Alert points sent to InfluxDB in one request at most: a district's outage raises an
# alert a device at once, and one request of all their lines would hold the lines, their
# joined body and its copy in the HTTP request side by side.
WRITE_CHUNK_POINTS = 5_000
COMPANIES_REFRESH_MS = 60_000
# Anomalies handed to the engine in one call (one transaction) at most.  A district's
# outage hands over a batch of 5,000 offline anomalies; the engine holds a call's events
# (alerts, history, lines) until its commit, and Python's allocator keeps for good the
# arenas such a peak filled, pinned by the few objects that outlive it: smaller calls
# leave less resident memory an open alert (bench/README.md, "Memory at 100,000
# devices").  Each call is as safe as a smaller gateway batch: an anomaly seen already
# raises nothing, and a message's key is queued once.
ENGINE_CALL_MAX = 500


class AlertService:
    def __init__(
        self,
        config: Config,
        clock: Clock = wall_clock_ms,
        streets: Collection[str] | None = None,
        population: DeviceCount | None = None,
    ) -> None:
        """``streets``: the streets whose devices this gateway receives (None: every one).
        A gateway that owns some streets scores only their estates (``score.service``).
        ``population``: devices known per estate and building, which an alert storm is
        weighed against (``alerts.grouping``)."""
        self.config = config
        self.clock = clock
        self.streets = frozenset(streets) if streets is not None else None
        state_dir = Path(config.gateway.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        settings = config.alerts
        policy = AlertPolicy.from_file(settings.policy_file) if settings.policy_file else None
        self.store = AlertStore(state_dir / ALERTS_FILE)
        self.registry = RegistryStore(registry_path(config))
        self.points = PointBuffer()
        self.stream: Broadcaster[AlertEvent] = Broadcaster()
        self.dispatcher = Dispatcher.from_config(settings, state_dir, "")
        self.dispatcher.company_of = self._company_of
        self.links = LinkLedger(state_dir / LINKS_FILE)
        self._companies: dict[str, str] | None = None
        self._companies_until_ms = 0
        self.engine = AlertEngine(
            self.store,
            policy or AlertPolicy(),
            clock=clock,
            sinks=(self.points, self.stream, self._route),
            sink_batch=self.dispatcher.outbox.batch,
            population=population,
        )
        self._ledger = CallbackLedger(state_dir / CALLBACK_LEDGER_FILE)
        self._influx = InfluxClient(config.influx)
        self._pending_lines: list[bytes] = []  # alert points in UTF-8, oldest first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts-timer", daemon=True)
        self._next_gauge_ms = 0
        # Called with the time on every tick, after the alert points are written.
        self.timers: list[Callable[[int], None]] = []

    # --- wiring ---------------------------------------------------------------------------

    def set_callback_url(self, url: str) -> None:
        """Where the operations centre calls back, once the API's port is known (a
        configured ``alerts.callback_url`` wins)."""
        if not self.config.alerts.callback_url:
            self.dispatcher.callback_url = url

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for first in range(0, len(anomalies), ENGINE_CALL_MAX):
            self.engine.on_anomalies(anomalies[first : first + ENGINE_CALL_MAX])

    def on_edge_status(self, statuses: Sequence[tuple[Topic, EdgeStatus]]) -> None:
        for topic, status in statuses:
            self.engine.on_edge_status(
                topic.district,
                topic.street,
                topic.estate,
                status.edge,
                status.state,
            )

    def routers(self) -> list[APIRouter]:
        settings = self.config.alerts
        routers = [
            create_alerts_router(self.engine, self.store, self.stream),
            create_outbox_router(self.dispatcher),
            create_registry_router(self.registry),
        ]
        routers.append(create_board_router())
        signer = self.dispatcher.links
        if signer is not None:
            routers.append(
                create_mobile_router(
                    self.engine, self.store, signer, self.links, self.dispatcher.ask_street
                )
            )
        # Callbacks must be authenticated: without a token and a secret there is no
        # callback endpoint (the operations centre cannot report, people still can).
        if settings.callback_token and settings.webhook_secret:
            routers.append(
                create_callback_router(
                    self._on_callback,
                    settings.callback_token,
                    settings.webhook_secret,
                    self._ledger,
                )
            )
        elif settings.opscentre_url:
            log.warning(
                "[alerts] opscentre_url is set but callback_token or webhook_secret is empty: "
                "the operations centre cannot call back"
            )
        return routers

    def delivery_health(self) -> DeliveryHealth:
        return self.dispatcher.health()

    def outbox_collector(self) -> OutboxCollector:
        """For the gateway's Prometheus registry."""
        return OutboxCollector(self.dispatcher.outbox)

    def _company_of(self, estate: str) -> str | None:
        """The estate's property company in the registry (its contacts hear of it); the
        registry is read again at most once a minute."""
        now = self.clock()
        if self._companies is None or now >= self._companies_until_ms:
            self._companies = self.registry.companies()
            self._companies_until_ms = now + COMPANIES_REFRESH_MS
        return self._companies.get(estate) or None

    def _route(self, event: AlertEvent) -> None:
        # Runs inside the engine's lock: it only queues (SQLite outbox), never sends.
        if event.routed and (event.work_order or event.notify_manager):
            self.dispatcher.dispatch(
                event.alert,
                event.action,
                event.at_ms,
                event.note,
                work_order=event.work_order,
                notify_manager=event.notify_manager,
            )

    def _on_callback(self, report: CallbackReport) -> None:
        actor = report.operator or "opscentre"
        if report.status is CallbackStatus.ACCEPTED:
            self.engine.dispatch(report.alert_id, actor, report.note, report.work_order_id)
        elif report.status is CallbackStatus.COMPLETED:
            self.engine.resolve(report.alert_id, actor, report.note)
        else:
            note = report.note or "工单被退回 work order rejected"
            self.engine.note(report.alert_id, actor, f"运行中心退回工单 rejected: {note}")

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.dispatcher.start()
        self._thread.start()

    @property
    def stopping(self) -> threading.Event:
        """Set once ``stop`` is called: long work of the timers (the score) ends early."""
        return self._stop

    def stop(self) -> None:
        """After the gateway's processing has stopped (no more anomalies arrive)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)
        if self._thread.is_alive():
            # Its stores stay open for it: closed under a running timer they would fail it.
            log.warning(
                "the alert timer thread did not end within %g s; stopping without it",
                STOP_WAIT_S,
            )
            self.dispatcher.stop()
            return
        self._flush_points(final=True)
        self.dispatcher.stop()
        self._ledger.close()
        self.links.close()
        self.registry.close()
        self.store.close()
        self._influx.close()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self.tick_once()

    def tick_once(self) -> None:
        """Escalate, write points, now and then the gauge, then the timers."""
        try:
            self.engine.tick()
        except Exception:
            log.exception("escalation check failed")
        now = self.clock()
        if now >= self._next_gauge_ms:
            self._next_gauge_ms = now + int(OPEN_GAUGE_EVERY_S * 1000)
            try:
                gauge = alert_open_lines(self.engine.open_counts(now), now)
                self._pending_lines += [line.encode("utf-8") for line in gauge]
            except Exception:
                log.exception("counting open alerts failed")
        self._flush_points()
        for timer in self.timers:
            timer(now)

    def _flush_points(self, final: bool = False) -> None:
        self._pending_lines += self.points.drain_encoded()
        if not self._pending_lines:
            return
        try:
            # In order, each chunk dropped once written: a failure keeps the rest.
            while self._pending_lines:
                self._influx.write(b"\n".join(self._pending_lines[:WRITE_CHUNK_POINTS]))
                del self._pending_lines[:WRITE_CHUNK_POINTS]
        except Exception as error:
            dropped = max(0, len(self._pending_lines) - MAX_PENDING_POINTS)
            del self._pending_lines[:dropped]
            if final or dropped:
                log.warning(
                    "alert points not written to InfluxDB (%s); %d kept, %d dropped",
                    error,
                    len(self._pending_lines),
                    dropped,
                )
