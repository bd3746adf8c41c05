"""The gateway's HTTP API (FastAPI): health, anomalies, dead letters, Prometheus metrics.

Served by uvicorn in a background thread of the gateway process.  Pydantic models at the
boundary give the operations centre an OpenAPI description (``/docs``, ``/openapi.json``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from gateway.metrics import GatewayStats
from gateway.storage.deadletters import REASON_TITLES, DeadLetterFilter, Reason, StoredDeadLetter
from jiayuan.anomaly import Anomaly
from jiayuan.api_auth import ApiAuth, BodyLimit, Caller, Role, current_caller
from jiayuan.contract import BATCH, SEGMENT_PATTERN, TOPIC_KINDS, ContractError, parse_topic
from jiayuan.loopback import is_loopback

log = logging.getLogger(__name__)

# A caller who reaches only part of the registry gets the newest of this many, filtered.
REACH_SCAN_LIMIT = 100_000


class ApiSource(Protocol):
    """What the API reads from the running gateway."""

    @property
    def stats(self) -> GatewayStats: ...

    @property
    def mqtt_connected(self) -> bool: ...

    @property
    def mqtt_unstable(self) -> bool: ...

    @property
    def uptime_s(self) -> float: ...

    def influx_reachable(self) -> bool: ...

    def delivery_health(self) -> dict[str, Any] | None: ...

    def anomalies(
        self,
        active: bool | None = None,
        kind: str | None = None,
        estate: str | None = None,
        limit: int = 100,
    ) -> list[Anomaly]: ...

    def dead_letters(
        self, limit: int = 100, where: DeadLetterFilter | None = None
    ) -> list[StoredDeadLetter]: ...

    def metrics_exposition(self) -> bytes: ...


class StatsOut(BaseModel):
    messages: int = Field(description="MQTT messages received")
    readings_received: int = Field(description="readings in valid envelopes")
    readings_stored: int = Field(description="readings written to InfluxDB")
    duplicates: int = Field(description="readings dropped as already seen")
    dead_letters: int = Field(description="messages or readings dead-lettered")
    dead_letters_by_reason: dict[str, int]
    anomalies_opened: dict[str, int] = Field(description="anomalies opened, by event code")
    anomalies_closed: int
    anomalies_open: int
    edge_status: int = Field(description="edge status messages recorded")
    batches: int = Field(description="batches written to InfluxDB")
    write_retries: int
    acked: int = Field(description="MQTT messages acknowledged")
    queued: int = Field(description="messages waiting for the processing thread")
    messages_backlog: int = Field(
        description="messages received marked as an edge's replayed backlog (docs/protocol.md)"
    )
    queued_backlog: int = Field(
        description="of the messages waiting, those of the backlog lane (taken after live "
        "ones, at a guaranteed share)"
    )
    replayed_unjudged: int = Field(
        description="replayed readings stored without being judged (older than their "
        "device's live readings; events are judged)"
    )
    seq_faults: int = Field(
        description="readings stored that broke their device's numbering: a sequence "
        "number back with a newer timestamp (an edge box replaced) or far ahead"
    )
    seq_faults_by_device: dict[str, int] = Field(
        description="sequence faults per 'edge/device', of the devices with the most"
    )


class DestinationOut(BaseModel):
    channel: str = Field(description="workorder, email or manager_webhook")
    destination: str = Field(description="URL or mail server, without credentials")
    problem: str = Field(description="why it cannot deliver (中文在前); empty when it can")


class DeliveryOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded while a channel cannot deliver (e.g. no [alerts] opscentre_url) "
        "or messages are parked"
    )
    status_zh: str
    problems: list[str] = Field(description="中文在前，英文在后 Chinese first, English beside it")
    destinations: list[DestinationOut]
    outbox: dict[str, int] = Field(description="messages per state: pending, delivered, parked")
    parked_by_channel: dict[str, int]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok when the broker is connected, the connection is stable and InfluxDB answers"
    )
    status_zh: str = Field(description="状态（中文）")
    mqtt_connected: bool
    mqtt_unstable: bool = Field(
        description="the broker keeps closing the connection within seconds of making it: "
        "another gateway with the same client id, or a failing link (see the log)"
    )
    influx_reachable: bool
    uptime_s: float
    counters: StatsOut
    delivery: DeliveryOut | None = Field(
        None,
        description="alert messages (work orders, notifications): where they go, what is "
        "parked; its own status, not part of the gateway's (null with alerts disabled)",
    )


class AnomalyOut(BaseModel):
    title: str = Field(
        description="Chinese first, English beside it, e.g. '困人 Passenger trapped'"
    )
    title_zh: str
    title_en: str
    code: str = Field(description="event code from the catalogue, e.g. lift.trapped")
    kind: str
    severity: str
    state: Literal["open", "closed"]
    active: bool
    district: str
    street: str
    estate: str
    building: str
    device: str
    detail: str = Field(description="which part of the device, e.g. charging port p03")
    explanation: str = Field(
        description="statistical anomalies: the value and what is usual for it, Chinese "
        "first (' / ' before the English); empty for the rules'"
    )
    value: float = Field(description="measured value when it opened")
    threshold: float
    start_ms: int = Field(description="device time, epoch ms")
    end_ms: int = Field(description="device time, epoch ms; 0 while open")
    start: datetime
    end: datetime | None


class DeadLetterOut(BaseModel):
    id: int
    received_ms: int
    received_at: datetime
    topic: str
    reason: str = Field(
        description="bad_topic, bad_payload, bad_status, bad_reading, "
        "rejected_by_influx or internal_error"
    )
    reason_title: str = Field(description="Chinese first, English beside it")
    detail: str = Field(description="what exactly was wrong")
    payload: str = Field(
        description="the raw payload (or the one bad reading), as UTF-8 with invalid bytes replaced"
    )
    payload_bytes: int


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def anomaly_out(anomaly: Anomaly) -> AnomalyOut:
    return AnomalyOut(
        title=anomaly.title,
        title_zh=anomaly.title_zh,
        title_en=anomaly.title_en,
        code=anomaly.code,
        kind=anomaly.kind,
        severity=anomaly.severity,
        state="open" if anomaly.active else "closed",
        active=anomaly.active,
        district=anomaly.district,
        street=anomaly.street,
        estate=anomaly.estate,
        building=anomaly.building,
        device=anomaly.device,
        detail=anomaly.detail,
        explanation=anomaly.explanation,
        value=anomaly.value,
        threshold=anomaly.threshold,
        start_ms=anomaly.start_ms,
        end_ms=anomaly.end_ms,
        start=_when(anomaly.start_ms),
        end=_when(anomaly.end_ms) if anomaly.end_ms else None,
    )


def dead_letter_out(letter: StoredDeadLetter) -> DeadLetterOut:
    try:
        zh, en = REASON_TITLES[Reason(letter.reason)]
        title = f"{zh} {en}"
    except ValueError:
        title = letter.reason
    return DeadLetterOut(
        id=letter.id,
        received_ms=letter.received_ms,
        received_at=_when(letter.received_ms),
        topic=letter.topic,
        reason=letter.reason,
        reason_title=title,
        detail=letter.detail,
        payload=letter.payload.decode("utf-8", "replace"),
        payload_bytes=len(letter.payload),
    )


def _epoch_ms(name: str, when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        # Naive times are ambiguous here: the header says +08:00, the server runs in UTC.
        raise _bad_value(name, "give a time zone, e.g. 2026-12-07T08:00:00+08:00 or ...Z")
    return round(when.timestamp() * 1000)


def _bad_value(name: str, message: str) -> HTTPException:
    return HTTPException(
        422,
        detail=[{"loc": ["query", name], "msg": message, "type": "value_error"}],
    )


def _at(letter: StoredDeadLetter, kind: str | None, estate: str | None) -> bool:
    """Whether the dead letter's topic names this kind and estate (None: any)."""
    try:
        topic = parse_topic(letter.topic)
    except ContractError:
        return False  # no place, so not at any
    if estate is not None and topic.estate != estate:
        return False
    if kind is None:
        return True
    if topic.kind == BATCH:
        # One bad reading from an edge's batch is stored on its own: its kind says more.
        try:
            reading = msgspec.json.decode(letter.payload)
        except msgspec.DecodeError:
            reading = None
        if isinstance(reading, dict) and isinstance(reading.get("kind"), str):
            return bool(reading["kind"] == kind)
    return topic.kind == kind


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is refused (400), not ignored: a misspelt
    filter would otherwise answer with everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise HTTPException(
            400,
            detail=f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
            f"{route.path} takes: {takes}",
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _in_reach(caller: Caller, topic: str) -> bool:
    """A dead letter's place comes from its topic; one with no valid place is nobody's."""
    if caller.everywhere:
        return True
    try:
        place = parse_topic(topic)
    except ContractError:
        return False
    return caller.reaches(place.street, place.estate)


def create_app(
    source: ApiSource, routers: Sequence[APIRouter] = (), auth: ApiAuth | None = None
) -> FastAPI:
    """The gateway's app; ``routers`` add the alert, dispatch, registry and score APIs.

    ``auth`` (``ApiAuth.from_config``) guards every route but /health, the API description
    and the operations centre's callback; None serves without tokens (loopback only).
    """
    policy = auth if auth is not None else ApiAuth.off()
    # /docs and /redoc load Swagger UI and ReDoc from the app itself: operations-centre
    # intranets reach no CDN.
    app = FastAPIOffline(
        title="家园网关 Jiayuan gateway",
        description="物联网安全监测网关：健康状态、异常、死信与指标。"
        " IoT safety-monitoring gateway: health, anomalies, dead letters and metrics.",
        # Every route, including the routers' below, needs a caller (see PUBLIC_PATHS) and
        # takes only the query parameters it declares.
        dependencies=[Depends(current_caller), Depends(refuse_unknown_query)],
    )
    app.state.api_auth = policy
    app.add_middleware(BodyLimit, max_bytes=policy.max_body_bytes)

    @app.get("/health", response_model=HealthOut, summary="网关健康状态 Gateway health")
    def health() -> HealthOut:
        mqtt_ok, influx_ok = source.mqtt_connected, source.influx_reachable()
        unstable = source.mqtt_unstable
        ok = mqtt_ok and influx_ok and not unstable
        stats = source.stats
        delivery = source.delivery_health()
        return HealthOut(
            status="ok" if ok else "degraded",
            status_zh="正常" if ok else "降级",
            mqtt_connected=mqtt_ok,
            mqtt_unstable=unstable,
            influx_reachable=influx_ok,
            uptime_s=source.uptime_s,
            counters=StatsOut.model_validate(stats, from_attributes=True),
            delivery=None if delivery is None else DeliveryOut.model_validate(delivery),
        )

    @app.get(
        "/anomalies", response_model=list[AnomalyOut], summary="异常列表 Anomalies, newest first"
    )
    def anomalies(
        caller: Annotated[Caller, Depends(current_caller)],
        active: Annotated[
            bool | None,
            Query(description="true: open only; false: recently closed only; absent: both"),
        ] = None,
        kind: Annotated[str | None, Query(description="family, e.g. lift")] = None,
        estate: Annotated[str | None, Query(description="estate id")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AnomalyOut]:
        if caller.everywhere:
            return [anomaly_out(a) for a in source.anomalies(active, kind, estate, limit)]
        found = source.anomalies(active, kind, estate, REACH_SCAN_LIMIT)
        return [anomaly_out(a) for a in found if caller.reaches(a.street, a.estate)][:limit]

    @app.get(
        "/dead-letters",
        response_model=list[DeadLetterOut],
        summary="死信 Dead letters, newest first",
    )
    def dead_letters(
        caller: Annotated[Caller, Depends(current_caller)],
        reason: Annotated[
            list[Reason] | None, Query(description="only these reasons (repeat for several)")
        ] = None,
        kind: Annotated[
            str | None,
            Query(
                description="family from the topic, e.g. lift; a bad reading from an edge's "
                "batch counts under its own kind"
            ),
        ] = None,
        estate: Annotated[
            str | None,
            Query(description="estate id from the topic", pattern=f"^{SEGMENT_PATTERN}$"),
        ] = None,
        since: Annotated[
            datetime | None,
            Query(description="received at or after: ISO 8601 with a time zone, or epoch ms"),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(description="received at or before: ISO 8601 with a time zone, or epoch ms"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[DeadLetterOut]:
        # Raw payloads of any estate: the operations centre's, for the streets it reaches.
        caller.require_role([Role.OPS_CENTRE], "dead letters")
        if kind is not None and kind not in TOPIC_KINDS:
            raise _bad_value("kind", f"{kind!r} is not one of {', '.join(sorted(TOPIC_KINDS))}")
        where = DeadLetterFilter(
            frozenset(r.value for r in reason or ()),
            _epoch_ms("since", since),
            _epoch_ms("until", until),
        )
        since_ms, until_ms = where.since_ms, where.until_ms
        if since_ms is not None and until_ms is not None and until_ms < since_ms:
            raise _bad_value("until", "is before since")
        by_place = not caller.everywhere or kind is not None or estate is not None
        found = source.dead_letters(REACH_SCAN_LIMIT if by_place else limit, where)
        if by_place:
            found = [d for d in found if _in_reach(caller, d.topic) and _at(d, kind, estate)]
        return [dead_letter_out(letter) for letter in found[:limit]]

    @app.get("/metrics", summary="Prometheus 指标 Prometheus metrics", response_class=Response)
    def metrics(caller: Annotated[Caller, Depends(current_caller)]) -> Response:
        # Counts with estate labels: not for a property manager, who sees only its own.
        caller.require_role([Role.OPS_CENTRE, Role.VIEWER], "metrics")
        return Response(source.metrics_exposition(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


class ApiServer:
    """uvicorn in a background thread; ``port`` 0 picks a free one."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="gateway-api", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        state = getattr(self._server.config.app, "state", None)
        auth = getattr(state, "api_auth", None)  # set by create_app; other apps have none
        if isinstance(auth, ApiAuth) and not auth.enabled:
            # Without tokens every caller reaches every estate: only this machine may call.
            if not is_loopback(self.host):
                raise RuntimeError(
                    f"the API has no authentication and would listen on {self.host}: bind it "
                    "to a loopback address or set [api] tokens_file (docs/security_api.md)"
                )
            log.warning("API on %s:%s serves WITHOUT authentication", self.host, self.port)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the API did not start on {self.host}:{self.port} (is the port in use?)"
                )
            time.sleep(0.01)
        for server in self._server.servers:
            for sock in server.sockets:
                self.port = int(sock.getsockname()[1])
                break

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
