"""The work-order JSON the gateway sends to the street operations centre (网格化平台).

Four kinds of message, each complete on its own (a receiver that missed the first still
has everything): ``create`` when an alert needs a crew, ``escalate`` when a deadline
passed and the alert moves up to the street or the district, ``reopen`` when a resolved
alert came back (a new order), ``cancel`` when the alert ended without work (false alarm,
the condition cleared).  An ``escalate`` or ``cancel`` queued while the receiver had not
acknowledged the order it updates (the ``create`` or latest ``reopen``) carries that order
whole in ``order``, so the receiver never depends on the earlier delivery.

Each message has an idempotency key that names the event, so the same event queued twice
is one message: ``wo:{alert_id}``, ``wo:{alert_id}:esc:{level}``,
``wo:{alert_id}:reopen:{event ms}``, ``wo:{alert_id}:cancel``.

``WORKORDER_SCHEMA`` is the contract; ``docs/schemas/workorder.schema.json`` is this
dict written out (a test keeps them equal).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from alerts.grouping import GROUP_KIND
from alerts.model import Alert, AlertAction
from alerts.outbox import OutboxMessage
from alerts.signing import IDEMPOTENCY_HEADER
from jiayuan.catalogue import Kind

# 2 added ``order``, 3 ``explanation``; a message of an earlier version is one of a later
# version without them.
SCHEMA_VERSION = 3
SCHEMA_VERSIONS = (1, 2, 3)
CHANNEL = "workorder"
SHANGHAI = ZoneInfo("Asia/Shanghai")


class WorkOrderType(StrEnum):
    CREATE = "create"
    ESCALATE = "escalate"
    REOPEN = "reopen"
    CANCEL = "cancel"


# Which lifecycle step sends which work-order message; other steps send none.
ACTION_TYPES: dict[AlertAction, WorkOrderType] = {
    AlertAction.RAISED: WorkOrderType.CREATE,
    AlertAction.RELEASED: WorkOrderType.CREATE,  # sent when its storm window passed
    AlertAction.ESCALATED: WorkOrderType.ESCALATE,
    AlertAction.REOPENED: WorkOrderType.REOPEN,
    AlertAction.CANCELLED: WorkOrderType.CANCEL,
    AlertAction.AUTO_RESOLVED: WorkOrderType.CANCEL,
}


def shanghai_iso(ms: int) -> str:
    """Epoch ms as ISO 8601 in Shanghai local time, e.g. 2026-11-23T19:22:45.120+08:00."""
    return datetime.fromtimestamp(ms / 1000, tz=SHANGHAI).isoformat(timespec="milliseconds")


def workorder_key(alert: Alert, kind: WorkOrderType, at_ms: int) -> str:
    if kind is WorkOrderType.CREATE:
        return f"wo:{alert.id}"
    if kind is WorkOrderType.ESCALATE:
        return f"wo:{alert.id}:esc:{alert.escalation.value}"
    if kind is WorkOrderType.REOPEN:
        return f"wo:{alert.id}:reopen:{at_ms}"  # an alert may come back more than once
    return f"wo:{alert.id}:cancel"


def opening_keys(alert_id: str) -> tuple[str, str]:
    """The key of an alert's ``create`` and the prefix of its ``reopen`` keys: the
    messages that open an order at the receiver."""
    return f"wo:{alert_id}", f"wo:{alert_id}:reopen:"


# The updates that refer to an order opened earlier, and may carry it.
UPDATES = frozenset({WorkOrderType.ESCALATE, WorkOrderType.CANCEL})


def build_workorder(
    alert: Alert,
    kind: WorkOrderType,
    *,
    at_ms: int,
    callback_url: str,
    note: str = "",
    order: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body (as a dict) for one work-order message about ``alert``; ``order``:
    the undelivered order an update carries (only for an ``escalate`` or ``cancel``)."""
    if order is not None and kind not in UPDATES:
        raise ValueError(f"a {kind.value} message opens an order; it carries none")
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "type": kind.value,
        "idempotency_key": workorder_key(alert, kind, at_ms),
        "event_time": shanghai_iso(at_ms),
        "event_time_ms": at_ms,
        "alert_id": alert.id,
        "incident_id": alert.incident_id,
        "place": {
            "district": alert.district,
            "street": alert.street,
            "estate": alert.estate,
            "building": alert.building,
            "device": alert.device,
        },
        "kind": alert.kind,
        "code": alert.code,
        "severity": alert.severity,
        "title": {"zh": alert.title_zh, "en": alert.title_en, "text": alert.title},
        "detail": alert.detail,
        "value": alert.value,
        "threshold": alert.threshold,
        "explanation": alert.explanation,
        "first_seen": shanghai_iso(alert.first_seen_ms),
        "first_seen_ms": alert.first_seen_ms,
        "repeat_count": alert.repeat_count,
        "state": alert.state.value,
        "deadlines": {
            "acknowledge": shanghai_iso(alert.ack_deadline_ms) if alert.ack_deadline_ms else None,
            "acknowledge_ms": alert.ack_deadline_ms or None,
            "resolve": (
                shanghai_iso(alert.resolve_deadline_ms) if alert.resolve_deadline_ms else None
            ),
            "resolve_ms": alert.resolve_deadline_ms or None,
        },
        "escalation": alert.escalation.value,
        "note": note,
        "callback_url": callback_url,
    }
    if order is not None:
        body["order"] = order
    return body


def encode(body: dict[str, Any]) -> bytes:
    # Compact UTF-8 (Chinese unescaped): the signature covers exactly these bytes.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def workorder_message(
    alert: Alert,
    action: AlertAction,
    *,
    at_ms: int,
    url: str,
    callback_url: str,
    note: str = "",
    order: dict[str, Any] | None = None,
) -> OutboxMessage | None:
    """The outbox message a lifecycle step sends to the operations centre, if any;
    ``order`` is carried by an update (escalate, cancel) and ignored otherwise."""
    kind = ACTION_TYPES.get(action)
    if kind is None:
        return None
    carried = order if kind in UPDATES else None
    body = build_workorder(
        alert, kind, at_ms=at_ms, callback_url=callback_url, note=note, order=carried
    )
    return OutboxMessage(
        channel=CHANNEL,
        key=body["idempotency_key"],
        destination=url,
        body=encode(body),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            IDEMPOTENCY_HEADER: body["idempotency_key"],
        },
    )


_PLACE_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_MS = {"type": "integer", "minimum": 0}
_ISO = {"type": "string", "format": "date-time"}

WORKORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://jiayuan.example/schemas/workorder.schema.json",
    "title": "家园工单 Jiayuan work order",
    "description": "Sent by the Jiayuan gateway to the operations centre: POST, signed with "
    "X-Jiayuan-Signature, Idempotency-Key header equal to idempotency_key.",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version",
        "type",
        "idempotency_key",
        "event_time",
        "event_time_ms",
        "alert_id",
        "incident_id",
        "place",
        "kind",
        "code",
        "severity",
        "title",
        "detail",
        "value",
        "threshold",
        "first_seen",
        "first_seen_ms",
        "repeat_count",
        "state",
        "deadlines",
        "escalation",
        "note",
        "callback_url",
    ],
    "properties": {
        "schema_version": {
            "enum": list(SCHEMA_VERSIONS),
            "description": "2 added order, 3 explanation; a message of an earlier version is "
            "valid without them",
        },
        "type": {
            "enum": [t.value for t in WorkOrderType],
            "description": "create: a new order; escalate: moved up to street/district; "
            "reopen: a resolved alert came back, a new order; cancel: ended without work",
        },
        "idempotency_key": {
            "type": "string",
            "pattern": "^wo:[^\\s]+$",
            "description": "wo:{alert_id} | wo:{alert_id}:esc:{level} | "
            "wo:{alert_id}:reopen:{event_time_ms} | wo:{alert_id}:cancel",
        },
        "event_time": {**_ISO, "description": "when the step happened, Asia/Shanghai"},
        "event_time_ms": _MS,
        "alert_id": {"type": "string", "minLength": 1},
        "incident_id": {
            "type": "string",
            "description": "alerts of one building and event share it (one fire, many sensors)",
        },
        "place": {
            "type": "object",
            "additionalProperties": False,
            "required": ["district", "street", "estate", "building", "device"],
            "properties": {
                "district": _PLACE_ID,
                "street": _PLACE_ID,
                "estate": _PLACE_ID,
                "building": {"type": "string", "maxLength": 128},
                "device": {
                    "type": "string",
                    "maxLength": 128,
                    "description": "the device; for a group alert (kind estate) its edge "
                    "agent, or empty when the devices' silence alone raised it",
                },
            },
        },
        "kind": {
            "enum": [*(kind.value for kind in Kind), GROUP_KIND],
            "description": "the device's family; estate: a group alert standing for an "
            "estate's or building's devices gone offline together (code "
            "estate.uplink_down or estate.building_down, the devices listed in the note)",
        },
        "code": {"type": "string", "pattern": "^[a-z_]+\\.[a-z0-9_]+$"},
        "severity": {"enum": ["critical", "high", "warning", "info"]},
        "title": {
            "type": "object",
            "additionalProperties": False,
            "required": ["zh", "en", "text"],
            "properties": {
                "zh": {"type": "string", "minLength": 1},
                "en": {"type": "string", "minLength": 1},
                "text": {"type": "string", "description": "Chinese first, English beside it"},
            },
        },
        "detail": {"type": "string", "description": "which part, e.g. port p03; may be empty"},
        "value": {"type": "number", "description": "measured value when first raised"},
        "threshold": {"type": "number"},
        "explanation": {
            "type": "string",
            "description": "statistical alerts: the value and what is usual for it (at that "
            "hour where the signal follows the clock), Chinese first, ' / ', then English; "
            "empty for the rules' alerts, whose threshold says it",
        },
        "first_seen": _ISO,
        "first_seen_ms": _MS,
        "repeat_count": {"type": "integer", "minimum": 1},
        "state": {
            "enum": [
                "open",
                "acknowledged",
                "dispatched",
                "resolved",
                "closed",
                "cancelled",
                "auto_resolved",
            ],
            "description": "the alert's state after this step",
        },
        "deadlines": {
            "type": "object",
            "additionalProperties": False,
            "required": ["acknowledge", "acknowledge_ms", "resolve", "resolve_ms"],
            "properties": {
                "acknowledge": {"oneOf": [_ISO, {"type": "null"}]},
                "acknowledge_ms": {"oneOf": [_MS, {"type": "null"}]},
                "resolve": {"oneOf": [_ISO, {"type": "null"}]},
                "resolve_ms": {"oneOf": [_MS, {"type": "null"}]},
            },
        },
        "escalation": {"enum": ["estate", "street", "district"]},
        "note": {"type": "string"},
        "callback_url": {
            "type": "string",
            "description": "where to POST acceptance/completion (callback.schema.json); "
            "empty when the gateway takes no callbacks",
        },
        "order": {
            "description": "only in an escalate or cancel queued before the receiver "
            "acknowledged the order it updates: that create or reopen message, whole. A "
            "receiver without the order opens it from here (and answers its later "
            "delivery as a duplicate of idempotency_key)",
            "allOf": [
                {"$ref": "#"},
                {
                    "properties": {"type": {"enum": ["create", "reopen"]}},
                    "not": {"required": ["order"]},
                },
            ],
        },
    },
}
