"""HTTP API of the alert lifecycle: list, view, step, silence, incidents, live stream.

``create_alerts_router(engine, store, broadcaster)`` gives a FastAPI router the gateway
mounts.  Refused steps answer 409 with the reason, unknown alerts 404, bad bodies 422
naming the field; every model is in the OpenAPI description.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from alerts.engine import AlertEngine, AlertEvent
from alerts.model import (
    Alert,
    AlertAction,
    AlertNotFound,
    AlertState,
    EscalationLevel,
    TransitionRefused,
)
from alerts.silences import Silence, SilenceError, SilenceScope
from alerts.store import AlertFilter, AlertStore, Incident
from alerts.stream import Broadcaster, Lost
from jiayuan.api_auth import Caller, current_caller, street_of
from jiayuan.catalogue import Kind, Severity

STREAM_PING_S = 15
# A caller who reaches part of the registry gets the newest of this many, filtered.
REACH_SCAN_LIMIT = 100_000

CallerDep = Annotated[Caller, Depends(current_caller)]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    district: str
    street: str
    estate: str
    building: str
    device: str
    kind: str
    code: str = Field(description="event code, e.g. lift.trapped")
    severity: str
    title: str = Field(description="中文在前，英文在后 Chinese first, English beside it")
    title_zh: str
    title_en: str
    state: AlertState
    value: float = Field(description="measured value when first raised")
    threshold: float
    detail: str = Field(description="which part of the device, e.g. charger port p03")
    explanation: str = Field(
        description="statistical alerts: the value and what is usual for it, Chinese first "
        "(' / ' before the English); empty for the rules' alerts"
    )
    first_seen_ms: int = Field(description="device time of the first anomaly, epoch ms")
    last_seen_ms: int
    repeat_count: int = Field(description="anomalies merged into this alert")
    condition_active: bool
    incident_id: str
    escalation: EscalationLevel
    ack_deadline_ms: int = Field(description="0 = no deadline")
    resolve_deadline_ms: int
    acknowledged_ms: int = Field(description="wall-clock time of each step; 0 = not yet")
    dispatched_ms: int
    resolved_ms: int
    closed_ms: int
    work_order_id: str
    silenced: bool = Field(description="raised inside a maintenance silence: not routed")
    flapping: bool = Field(description="opened and cleared too often: notifications held back")
    created_ms: int
    updated_ms: int
    parent_id: str = Field(
        "",
        description="the group alert (estate uplink down, building down) this one is held "
        "under: recorded, not dispatched, ended with it; empty when it stands alone",
    )
    held_until_ms: int = Field(
        0, description="waiting until then to see whether a storm forms; 0 = not waiting"
    )


class HistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at_ms: int
    action: AlertAction
    actor: str
    from_state: AlertState | None
    to_state: AlertState | None
    note: str


class AlertDetailOut(BaseModel):
    alert: AlertOut
    history: list[HistoryOut] = Field(description="every step, oldest first")
    children: list[AlertOut] = Field(
        default_factory=list, description="a group alert's held alerts (all, ended too)"
    )


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str = Field(min_length=1, max_length=200, description="who takes the step")
    note: str = Field("", max_length=4000)


class DispatchIn(StepIn):
    work_order_id: str = Field(
        min_length=1, max_length=200, description="the operations centre's work order id"
    )


class RefusedOut(BaseModel):
    reason: str
    state: AlertState
    wanted: AlertState


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: SilenceScope
    estate: str = Field(min_length=1)
    building: str = Field("", description="for scope building")
    device: str = Field("", description="for scope device")
    until_ms: int = Field(gt=0, description="wall-clock end, epoch ms")
    starts_ms: int | None = Field(None, description="default: now")
    actor: str = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=4000)


class SilenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    scope: SilenceScope
    estate: str
    building: str
    device: str
    starts_ms: int
    until_ms: int
    actor: str
    note: str
    created_ms: int


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    district: str
    street: str
    estate: str
    building: str
    start_ms: int = Field(description="device time of the lead alert's first anomaly")
    lead_alert_id: str
    created_ms: int
    alert_ids: list[str]


class AlertEventOut(BaseModel):
    """One message of the live stream (SSE event ``alert``)."""

    action: AlertAction
    at_ms: int
    actor: str
    note: str
    routed: bool
    work_order: bool
    notify_manager: bool
    alert: AlertOut


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut.model_validate(alert)


def event_out(event: AlertEvent) -> AlertEventOut:
    return AlertEventOut(
        action=event.action,
        at_ms=event.at_ms,
        actor=event.actor,
        note=event.note,
        routed=event.routed,
        work_order=event.work_order,
        notify_manager=event.notify_manager,
        alert=alert_out(event.alert),
    )


_STEP_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such alert"},
    409: {"description": "the lifecycle does not allow this step", "model": RefusedOut},
}


def create_alerts_router(
    engine: AlertEngine, store: AlertStore, broadcaster: Broadcaster[AlertEvent]
) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    def reach_filters(caller: Caller, where: AlertFilter) -> list[AlertFilter]:
        """One query per street and estate the caller reaches, each as deep as the page."""
        deep = replace(where, limit=where.offset + where.limit, offset=0)
        parts = [replace(deep, street=s) for s in sorted(caller.streets)]
        parts += [replace(deep, estate=e) for e in sorted(caller.estates)]
        # A part that contradicts the caller's own estate or street filter finds nothing.
        return [
            p
            for p in parts
            if (not where.street or p.street == where.street)
            and (not where.estate or p.estate == where.estate)
        ]

    def estate_street(request: Request, estate: str) -> str:
        """The registry's street of an estate, else the street its newest alert names."""
        known = street_of(request, estate)
        if known is not None:
            return known
        latest = store.list_alerts(AlertFilter(estate=estate, limit=1))
        return latest[0].street if latest else ""

    def reachable(caller: Caller, alert_id: str) -> Alert:
        alert = _found(store.get, alert_id)
        caller.require_reach(alert.street, alert.estate, f"alert {alert_id}")
        return alert

    @router.get("/alerts", response_model=list[AlertOut], summary="List and filter alerts")
    def list_alerts(
        caller: CallerDep,
        state: Annotated[list[AlertState] | None, Query(description="repeatable")] = None,
        severity: Severity | None = None,
        kind: Kind | None = None,
        estate: str = "",
        street: str = "",
        district: str = "",
        since: Annotated[int, Query(ge=0, description="created at or after, epoch ms")] = 0,
        until: Annotated[int, Query(ge=0, description="created before, epoch ms; 0 = now")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[AlertOut]:
        where = AlertFilter(
            states=tuple(state or ()),
            severity=severity.value if severity else "",
            kind=kind.value if kind else "",
            estate=estate,
            street=street,
            district=district,
            since_ms=since,
            until_ms=until,
            limit=limit,
            offset=offset,
        )
        if caller.everywhere:
            return [alert_out(a) for a in store.list_alerts(where)]
        merged = {a.id: a for part in reach_filters(caller, where) for a in store.list_alerts(part)}
        newest = sorted(merged.values(), key=lambda a: (-a.created_ms, a.id))
        return [alert_out(a) for a in newest[offset : offset + limit]]

    # Declared before /alerts/{alert_id}, which would otherwise take "stream" for an id.
    @router.get(
        "/alerts/stream",
        summary="Live stream of alert events (Server-Sent Events)",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "`ready` once, then `alert` events (AlertEventOut "
                'as JSON); `lost` {"lost": n} when this client fell behind'
            }
        },
    )
    async def stream(caller: CallerDep) -> EventSourceResponse:
        subscription = broadcaster.subscribe()

        async def events() -> AsyncIterator[ServerSentEvent]:
            with subscription:
                yield ServerSentEvent(data="{}", event="ready")
                while True:
                    item = await subscription.get()
                    if isinstance(item, Lost):
                        yield ServerSentEvent(data=f'{{"lost": {item.count}}}', event="lost")
                    elif caller.reaches(item.alert.street, item.alert.estate):
                        yield ServerSentEvent(
                            data=event_out(item).model_dump_json(),
                            event="alert",
                            id=f"{item.alert.id}:{item.at_ms}",
                        )

        return EventSourceResponse(events(), ping=STREAM_PING_S)

    @router.get(
        "/alerts/{alert_id}",
        response_model=AlertDetailOut,
        summary="One alert with its full history",
        responses={404: {"description": "no such alert"}},
    )
    def get_alert(alert_id: str, caller: CallerDep) -> AlertDetailOut:
        alert = reachable(caller, alert_id)
        return AlertDetailOut(
            alert=alert_out(alert),
            history=[HistoryOut.model_validate(h) for h in store.history(alert_id)],
            children=[alert_out(a) for a in store.children(alert_id, live_only=False)],
        )

    def _step_route(name: str, step: Callable[[str, str, str], Alert], summary: str) -> None:
        @router.post(
            f"/alerts/{{alert_id}}/{name}",
            response_model=AlertOut,
            summary=summary,
            responses=_STEP_RESPONSES,
            name=f"{name}_alert",
        )
        def take_step(alert_id: str, body: StepIn, caller: CallerDep) -> AlertOut:
            caller.require_step(name)
            reachable(caller, alert_id)
            return alert_out(_found(step, alert_id, caller.actor(body.actor), body.note))

    _step_route("acknowledge", engine.acknowledge, "Acknowledge: a person owns the alert")
    _step_route("resolve", engine.resolve, "Resolve: someone says it is fixed")
    _step_route("close", engine.close, "Close: the fix was verified")
    _step_route("cancel", engine.cancel, "Cancel: not real work (false alarm, test)")
    _step_route("reopen", engine.reopen, "Reopen a resolved alert: the fix did not hold")

    @router.post(
        "/alerts/{alert_id}/dispatch",
        response_model=AlertOut,
        summary="Dispatch: the operations centre accepted the work order",
        responses=_STEP_RESPONSES,
    )
    def dispatch(alert_id: str, body: DispatchIn, caller: CallerDep) -> AlertOut:
        caller.require_step("dispatch")
        reachable(caller, alert_id)

        def step(alert_id: str, actor: str, note: str) -> Alert:
            return engine.dispatch(alert_id, actor, note, work_order_id=body.work_order_id)

        return alert_out(_found(step, alert_id, caller.actor(body.actor), body.note))

    @router.get("/silences", response_model=list[SilenceOut], summary="Maintenance silences")
    def list_silences(
        request: Request,
        caller: CallerDep,
        active: Annotated[bool, Query(description="only those in force now")] = True,
        estate: str = "",
    ) -> list[SilenceOut]:
        return [
            SilenceOut.model_validate(s)
            for s in engine.silences(active, estate)
            if caller.everywhere or caller.reaches(estate_street(request, s.estate), s.estate)
        ]

    @router.post(
        "/silences",
        response_model=SilenceOut,
        status_code=201,
        summary="Set a maintenance silence on an estate, building or device",
    )
    def add_silence(body: SilenceIn, request: Request, caller: CallerDep) -> SilenceOut:
        caller.require_step("silence")
        if not caller.everywhere:
            caller.require_reach(estate_street(request, body.estate), body.estate, "the silence")
        try:
            silence: Silence = engine.silence(
                body.scope.value,
                body.estate,
                body.until_ms,
                caller.actor(body.actor),
                body.note,
                building=body.building,
                device=body.device,
                starts_ms=body.starts_ms,
            )
        except SilenceError as error:
            raise HTTPException(422, str(error)) from None
        return SilenceOut.model_validate(silence)

    @router.delete(
        "/silences/{silence_id}",
        status_code=204,
        summary="End a silence now",
        responses={404: {"description": "no such silence"}},
    )
    def delete_silence(silence_id: str, request: Request, caller: CallerDep) -> Response:
        caller.require_step("silence")
        found = [s for s in engine.silences(False) if s.id == silence_id]
        if found and not caller.everywhere:
            estate = found[0].estate
            caller.require_reach(estate_street(request, estate), estate, f"silence {silence_id}")
        if not found or not engine.delete_silence(silence_id):
            raise HTTPException(404, f"silence {silence_id} not found")
        return Response(status_code=204)

    @router.get("/incidents", response_model=list[IncidentOut], summary="Grouped alerts")
    def list_incidents(
        caller: CallerDep,
        estate: str = "",
        since: Annotated[int, Query(ge=0, description="started at or after, epoch ms")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[IncidentOut]:
        scan = limit if caller.everywhere else REACH_SCAN_LIMIT
        found: list[Incident] = engine.list_incidents(estate, since, scan)
        mine = [i for i in found if caller.reaches(i.street, i.estate)]
        return [IncidentOut.model_validate(i) for i in mine[:limit]]

    return router


def _found(call: Callable[..., Alert], alert_id: str, *args: str) -> Alert:
    """Run a store read or engine step, mapping its refusals to HTTP answers."""
    try:
        return call(alert_id, *args)
    except AlertNotFound:
        raise HTTPException(404, f"alert {alert_id} not found") from None
    except TransitionRefused as refused:
        detail = RefusedOut(reason=refused.reason, state=refused.state, wanted=refused.wanted)
        raise HTTPException(409, detail.model_dump(mode="json")) from None
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
