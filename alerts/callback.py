"""POST /opscentre/callback: the operations centre reports what became of a work order.

``accepted`` (with its own work_order_id), ``completed`` (with a note) or ``rejected``
(with the reason).  A request needs the bearer token and a valid ``X-Jiayuan-Signature``
(401 otherwise) and a body that matches ``CALLBACK_SCHEMA`` (422 naming what is wrong).
The handler the gateway binds (dispatch, resolve …) may refuse a step with
``TransitionRefused`` → 409 with the reason, or not know the alert → 404.  The same
report twice is answered 200 with ``duplicate: true`` and changes nothing: reports are
remembered by ``{alert_id}:{status}:{work_order_id}`` in a small SQLite ledger.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jsonschema
from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from alerts.model import AlertNotFound, TransitionRefused
from alerts.signing import DEFAULT_TOLERANCE_S, SIGNATURE_HEADER, SignatureError, verify
from jiayuan.api_auth import CALLBACK_PATH


class CallbackStatus(StrEnum):
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class CallbackReport:
    alert_id: str
    status: CallbackStatus
    work_order_id: str
    note: str
    operator: str
    reported_ms: int  # the operations centre's clock; 0 when not given

    @property
    def key(self) -> str:
        return f"{self.alert_id}:{self.status.value}:{self.work_order_id}"


CallbackHandler = Callable[[CallbackReport], None]

CALLBACK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://jiayuan.example/schemas/callback.schema.json",
    "title": "工单回执 Operations-centre callback",
    "description": "POSTed by the operations centre to the callback_url of a work order, "
    "with Authorization: Bearer <token> and X-Jiayuan-Signature.",
    "type": "object",
    "additionalProperties": False,
    "required": ["alert_id", "status"],
    "properties": {
        "alert_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "status": {"enum": [s.value for s in CallbackStatus]},
        "work_order_id": {
            "type": "string",
            "maxLength": 200,
            "description": "the operations centre's own id for the order",
        },
        "note": {"type": "string", "maxLength": 4000},
        "operator": {"type": "string", "maxLength": 200, "description": "who reports"},
        "reported_at_ms": {"type": "integer", "minimum": 0},
    },
    "allOf": [
        {
            "if": {"properties": {"status": {"const": "accepted"}}},
            "then": {
                "required": ["work_order_id"],
                "properties": {"work_order_id": {"minLength": 1}},
            },
        },
        {
            "if": {"properties": {"status": {"enum": ["completed", "rejected"]}}},
            "then": {"required": ["note"], "properties": {"note": {"minLength": 1}}},
        },
    ],
}

_VALIDATOR = jsonschema.Draft202012Validator(CALLBACK_SCHEMA)


def parse_report(raw: bytes) -> CallbackReport:
    """The report in ``raw``; ``ValueError`` listing every problem otherwise."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"body is not JSON: {error}") from None
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise ValueError("; ".join(problems))
    return CallbackReport(
        alert_id=data["alert_id"],
        status=CallbackStatus(data["status"]),
        work_order_id=data.get("work_order_id", ""),
        note=data.get("note", ""),
        operator=data.get("operator", "opscentre") or "opscentre",
        reported_ms=data.get("reported_at_ms", 0),
    )


class CallbackLedger:
    """Reports already handled, so a repeated one changes nothing (``":memory:"`` works)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS report (key TEXT PRIMARY KEY, received_ms INTEGER,"
            " body BLOB)"
        )
        # Held across check, handler and record: two copies of one report arriving
        # together must not both reach the handler.
        self.lock = threading.Lock()

    def seen(self, key: str) -> bool:
        row = self._db.execute("SELECT 1 FROM report WHERE key = ?", (key,)).fetchone()
        return row is not None

    def record(self, key: str, raw: bytes) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO report VALUES (?, ?, ?)", (key, time.time_ns() // 10**6, raw)
        )

    def close(self) -> None:
        self._db.close()


def create_callback_router(
    handler: CallbackHandler,
    token: str,
    secret: str,
    ledger: CallbackLedger | None = None,
    *,
    clock: Callable[[], float] = time.time,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> APIRouter:
    """The callback endpoint; ``handler`` applies a report to the alert lifecycle."""
    if not token:
        raise ValueError("[alerts] callback_token is empty: callbacks would be unauthenticated")
    if not secret:
        raise ValueError("[alerts] webhook_secret is empty: callbacks could not be verified")
    reports = ledger if ledger is not None else CallbackLedger()
    expected = f"Bearer {token}".encode()
    router = APIRouter(tags=["opscentre"])

    def process(raw: bytes) -> dict[str, Any]:
        try:
            report = parse_report(raw)
        except ValueError as error:
            raise HTTPException(422, f"invalid callback body: {error}") from None
        with reports.lock:
            if reports.seen(report.key):
                return {"ok": True, "duplicate": True, "key": report.key}
            try:
                handler(report)
            except TransitionRefused as refused:
                raise HTTPException(409, refused.reason) from None
            except AlertNotFound:
                raise HTTPException(404, f"no alert {report.alert_id!r}") from None
            reports.record(report.key, raw)
        return {"ok": True, "duplicate": False, "key": report.key}

    @router.post(
        CALLBACK_PATH,
        summary="工单回执 Operations-centre callback (accepted / completed / rejected)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CALLBACK_SCHEMA}},
            }
        },
        responses={
            401: {"description": "bad or missing token or signature"},
            404: {"description": "unknown alert"},
            409: {"description": "the alert's state does not allow this step; detail says why"},
            422: {"description": "body does not match callback.schema.json"},
        },
    )
    async def callback(request: Request) -> dict[str, Any]:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        raw = await request.body()
        try:
            verify(secret, raw, request.headers.get(SIGNATURE_HEADER), clock(), tolerance_s)
        except SignatureError as error:
            raise HTTPException(401, str(error)) from None
        return await run_in_threadpool(process, raw)

    return router
