"""HTTP API of the outbox: list messages (parked ones with the reason), count them, and
retry parked ones by id, by key or all.  City-wide operations centre tokens only: the
outbox holds every estate's work orders and notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.delivery import Dispatcher
from alerts.destinations import without_credentials
from alerts.outbox import MessageState, NotParked, StoredMessage, UnknownMessage
from alerts.robots import ROBOT_CHANNELS, robot_id
from jiayuan.api_auth import Caller, Role, current_caller


class OutboxMessageOut(BaseModel):
    id: int
    key: str = Field(description="idempotency key, e.g. wo:{alert_id}")
    channel: str = Field(description="workorder, email or manager_webhook")
    destination: str = Field(description="as queued, without credentials; '' = the configured")
    state: MessageState
    attempts: int
    last_error: str = Field(description="why the last attempt failed or the message is parked")
    created_ms: int
    next_attempt_ms: int
    delivered_ms: int


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(default_factory=list, max_length=1000)
    keys: list[str] = Field(default_factory=list, max_length=1000)
    all: bool = Field(False, description="every parked message")

    @model_validator(mode="after")
    def names_something(self) -> RetryIn:
        if not (self.ids or self.keys or self.all):
            raise ValueError("name ids or keys of parked messages, or give all: true")
        return self


class RetryOut(BaseModel):
    retried: int = Field(description="parked messages made due now")


def message_out(message: StoredMessage) -> OutboxMessageOut:
    return OutboxMessageOut(
        id=message.id,
        key=message.key,
        channel=message.channel,
        # A robot's destination is its credential: shown as the robot's hash.
        destination=robot_id(message.channel, message.destination)
        if message.channel in ROBOT_CHANNELS
        else without_credentials(message.destination),
        state=message.state,
        attempts=message.attempts,
        last_error=message.last_error,
        created_ms=message.created_ms,
        next_attempt_ms=message.next_attempt_ms,
        delivered_ms=message.delivered_ms,
    )


def city_ops_centre(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    caller.require_role([Role.OPS_CENTRE], "the outbox")
    if not caller.everywhere:
        raise HTTPException(
            403, f"the outbox holds every estate's messages: token {caller.name!r} needs '*'"
        )
    return caller


def create_outbox_router(dispatcher: Dispatcher) -> APIRouter:
    router = APIRouter(tags=["outbox"], dependencies=[Depends(city_ops_centre)])
    outbox = dispatcher.outbox

    @router.get(
        "/outbox", response_model=list[OutboxMessageOut], summary="发件箱 Outbox, newest first"
    )
    def list_messages(
        state: MessageState | None = None,
        channel: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[OutboxMessageOut]:
        return [message_out(m) for m in outbox.messages(state, channel, limit)]

    @router.get(
        "/outbox/counts",
        response_model=dict[str, dict[str, int]],
        summary="Messages per channel and state",
    )
    def counts() -> dict[str, dict[str, int]]:
        return outbox.counts_by_channel()

    @router.post(
        "/outbox/retry",
        response_model=RetryOut,
        summary="Retry parked messages now (by id, by key, or all)",
        responses={
            404: {"description": "a named message does not exist"},
            409: {"description": "a named message is not parked; nothing was retried"},
        },
    )
    def retry(body: RetryIn) -> RetryOut:
        try:
            everything = body.all
            retried = (
                outbox.retry_parked() if everything else outbox.retry_named(body.ids, body.keys)
            )
        except UnknownMessage as error:
            raise HTTPException(404, str(error)) from None
        except NotParked as error:
            raise HTTPException(409, str(error)) from None
        if retried:
            dispatcher.deliverer.wake()
        return RetryOut(retried=retried)

    return router
