"""The alert side of the gateway process, as one object the gateway starts and stops.

Wires the lifecycle engine (SQLite state) to its sinks — the dispatch outbox (work orders,
property-manager notifications), the ``alert`` points for InfluxDB and the live stream —
and runs one timer thread that escalates overdue alerts, writes the alert points and the
``alert_open`` gauge, and recomputes the estate safety scores.  It also provides the HTTP
routers: alerts, the operations centre's callback, the registry and the score.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from fastapi import APIRouter

from alerts.api import create_alerts_router
from alerts.callback import CallbackLedger, CallbackReport, CallbackStatus, create_callback_router
from alerts.delivery import DeliveryHealth, Dispatcher
from alerts.engine import AlertEngine, AlertEvent, Clock, wall_clock_ms
from alerts.grouping import DeviceCount
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
from score.aggregate import write_aggregate_rows
from score.api import create_score_router
from score.config import load_score_config
from score.estate import score_report
from score.grades import ALL
from score.points import write_score_points

log = logging.getLogger(__name__)

TICK_S = 1.0
OPEN_GAUGE_EVERY_S = 10.0
# Alert points waiting for InfluxDB while it is down; beyond this the oldest are dropped
# (the SQLite history keeps every step, so the points can be rebuilt from it).
MAX_PENDING_POINTS = 100_000
# The district and city rows of a split set count the estates scored in this many intervals.
AGGREGATE_INTERVALS = 3


class AlertService:
    def __init__(
        self,
        config: Config,
        clock: Clock = wall_clock_ms,
        streets: Collection[str] | None = None,
        population: DeviceCount | None = None,
    ) -> None:
        """``streets``: the streets whose devices this gateway receives (None: every one).
        A gateway that owns some streets scores only their estates and writes only their
        street rows of the grade distribution: district, city and company figures need
        every street, and another instance scores the rest (docs/scaling.md).
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
        self.score_config = load_score_config(settings.score_weights_file or None)
        self.points = PointBuffer()
        self.stream: Broadcaster[AlertEvent] = Broadcaster()
        self.dispatcher = Dispatcher.from_config(settings, state_dir, "")
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
        self._pending_lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts-timer", daemon=True)
        self._next_gauge_ms = 0
        self._next_score_ms = 0

    # --- wiring ---------------------------------------------------------------------------

    def set_callback_url(self, url: str) -> None:
        """Where the operations centre calls back, once the API's port is known (a
        configured ``alerts.callback_url`` wins)."""
        if not self.config.alerts.callback_url:
            self.dispatcher.callback_url = url

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        self.engine.on_anomalies(anomalies)

    def on_edge_status(self, statuses: Sequence[tuple[Topic, EdgeStatus]]) -> None:
        for topic, status in statuses:
            self.engine.on_edge_status(
                topic.district,
                topic.street,
                topic.estate,
                status.edge,
                online=status.state == "online",
            )

    def routers(self) -> list[APIRouter]:
        settings = self.config.alerts
        routers = [
            create_alerts_router(self.engine, self.store, self.stream),
            create_outbox_router(self.dispatcher),
            create_registry_router(self.registry),
            create_score_router(
                self.registry, self.store, self.score_config, self.clock, self.streets
            ),
        ]
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

    def stop(self) -> None:
        """After the gateway's processing has stopped (no more anomalies arrive)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        self._flush_points(final=True)
        self.dispatcher.stop()
        self._ledger.close()
        self.registry.close()
        self.store.close()
        self._influx.close()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self.tick_once()

    def tick_once(self) -> None:
        """Escalate, write points, and now and then the gauge and the scores."""
        try:
            self.engine.tick()
        except Exception:
            log.exception("escalation check failed")
        now = self.clock()
        if now >= self._next_gauge_ms:
            self._next_gauge_ms = now + int(OPEN_GAUGE_EVERY_S * 1000)
            try:
                self._pending_lines += alert_open_lines(self.engine.open_counts(now), now)
            except Exception:
                log.exception("counting open alerts failed")
        self._flush_points()
        if now >= self._next_score_ms:
            self._next_score_ms = now + int(self.config.alerts.score_interval_s * 1000)
            self.write_scores(now)

    def write_scores(self, now_ms: int | None = None) -> int:
        """Score every registered estate on this gateway's streets and write the points;
        the number scored."""
        now = self.clock() if now_ms is None else now_ms
        try:
            registry = self.registry.load()
            if self.streets is not None:
                registry = registry.on_streets(self.streets)
            scored = 0
            if registry.estates:
                report = score_report(registry, self.store, now, self.score_config)
                distributions = report.distributions
                if self.streets is not None:  # the district and city rows would be partial
                    distributions = tuple(d for d in distributions if d.street != ALL)
                write_score_points(self._influx, report.cards, distributions, now)
                scored = len(report.cards)
            if self.streets is not None and self.config.alerts.score_aggregate:
                # Every instance's estates scored in the last few intervals (one that
                # stopped scoring drops out of the district rows after that).
                window_ms = int(AGGREGATE_INTERVALS * self.config.alerts.score_interval_s * 1000)
                write_aggregate_rows(
                    self._influx, self.score_config.targets_at(now).targets, now - window_ms, now
                )
            return scored
        except Exception:
            log.exception(
                "scoring the estates failed; next try in %s s", self.config.alerts.score_interval_s
            )
            return 0

    def _flush_points(self, final: bool = False) -> None:
        self._pending_lines += self.points.drain()
        if not self._pending_lines:
            return
        try:
            self._influx.write(self._pending_lines)
            self._pending_lines = []
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
