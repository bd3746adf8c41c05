"""The reference operations centre: a stand-in for the street 网格化 platform.

It does what a real receiver must: checks each work order's signature and schema, stores
it once per idempotency key (a repeat is answered 200 with ``duplicate: true``), lists
what it received, and, when asked to, plays the crew: after ``accept_after_s`` it calls the
order's callback URL with ``accepted``, after ``complete_after_s`` more with ``completed``
(signed, with the bearer token), retrying while the gateway is down.

One ticket per alert: the ``create`` (or, if that never came, the order an ``escalate``
carries, else the first ``escalate``) opens it; a ``reopen`` replaces it with a new ticket
(a new work-order id); a ``cancel`` closes it without work.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import jsonschema
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from alerts.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SignatureError, sign, verify
from alerts.workorder import WORKORDER_SCHEMA, WorkOrderType

log = logging.getLogger(__name__)

WORKORDERS_PATH = "/workorders"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workorder (
    key TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    type TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ticket (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    callback_url TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL DEFAULT 0,
    completed_ms INTEGER NOT NULL DEFAULT 0,
    cancelled_ms INTEGER NOT NULL DEFAULT 0,
    next_try_ms INTEGER NOT NULL DEFAULT 0,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    gave_up TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT ''
);
"""

_VALIDATOR = jsonschema.Draft202012Validator(
    WORKORDER_SCHEMA, format_checker=jsonschema.FormatChecker()
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    alert_id: str
    callback_url: str
    opened_ms: int
    accepted_ms: int
    completed_ms: int
    cancelled_ms: int
    next_try_ms: int
    callback_attempts: int
    gave_up: str
    last_error: str

    @property
    def work_order_id(self) -> str:
        return f"WO-{self.id:06d}"


class OpsCentreStore:
    """The receiver's own SQLite: work orders once per key, one ticket per alert."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def receive(self, key: str, order: dict[str, Any], now_ms: int) -> tuple[bool, str]:
        """Store a work order; (False, ticket id) when ``key`` was received before.

        An update (escalate, cancel) that carries the order it updates (``order``) first
        stores that order under its own key, unless held already, as if it had arrived:
        its later delivery is then a duplicate (``deliveries`` counts hand-overs, 0 for an
        order known only from an update)."""
        alert_id = order["alert_id"]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                carried = order.get("order")
                if isinstance(carried, dict):
                    self._store(carried["idempotency_key"], carried, now_ms, handed_over=False)
                inserted = self._store(key, order, now_ms, handed_over=True)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        ticket = self.ticket(alert_id)
        return inserted, ticket.work_order_id if ticket else ""

    def _store(self, key: str, order: dict[str, Any], now_ms: int, *, handed_over: bool) -> bool:
        """Inside a transaction: keep one work order and apply it to the alert's ticket;
        False when ``key`` was held already (a hand-over is then counted)."""
        alert_id, kind = order["alert_id"], order["type"]
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO workorder (key, alert_id, type, received_ms, deliveries, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key, alert_id, kind, now_ms, int(handed_over), json.dumps(order, ensure_ascii=False)),
        ).rowcount
        if not inserted:
            if handed_over:
                self._db.execute(
                    "UPDATE workorder SET deliveries = deliveries + 1 WHERE key = ?", (key,)
                )
        elif kind == WorkOrderType.REOPEN:
            self._db.execute("DELETE FROM ticket WHERE alert_id = ?", (alert_id,))
            self._db.execute(
                "INSERT INTO ticket (alert_id, callback_url, opened_ms) VALUES (?, ?, ?)",
                (alert_id, order["callback_url"], now_ms),
            )
        elif kind == WorkOrderType.CANCEL:
            # A cancel of an order never seen opens nothing (unless it carried the order).
            self._db.execute(
                "UPDATE ticket SET cancelled_ms = ? WHERE alert_id = ? AND cancelled_ms = 0",
                (now_ms, alert_id),
            )
        else:
            # Not INSERT OR IGNORE: a refused insert would still use up a ticket id.
            self._db.execute(
                "INSERT INTO ticket (alert_id, callback_url, opened_ms) SELECT ?, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM ticket WHERE alert_id = ?)",
                (alert_id, order["callback_url"], now_ms, alert_id),
            )
        return bool(inserted)

    def workorders(
        self, alert_id: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        clauses, args = [], []
        if alert_id is not None:
            clauses.append("alert_id = ?")
            args.append(alert_id)
        if kind is not None:
            clauses.append("type = ?")
            args.append(kind)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, alert_id, type, received_ms, deliveries, body FROM workorder"
                f" {where} ORDER BY received_ms, rowid",
                args,
            ).fetchall()
        return [
            {
                "key": key,
                "alert_id": alert,
                "type": kind_,
                "received_ms": received,
                "deliveries": deliveries,
                "body": json.loads(body),
            }
            for key, alert, kind_, received, deliveries, body in rows
        ]

    def tickets(self, where: str = "", args: tuple[object, ...] = ()) -> list[Ticket]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM ticket {where} ORDER BY id", args).fetchall()
        return [Ticket(*row) for row in rows]

    def ticket(self, alert_id: str) -> Ticket | None:
        found = self.tickets("WHERE alert_id = ?", (alert_id,))
        return found[0] if found else None

    def update_ticket(self, ticket_id: int, **values: object) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._lock:
            self._db.execute(
                f"UPDATE ticket SET {assignments} WHERE id = ?", (*values.values(), ticket_id)
            )


def create_opscentre_app(
    store: OpsCentreStore, secret: str, clock: Callable[[], float] = time.time
) -> FastAPI:
    app = FastAPIOffline(  # /docs without a CDN, as on the operations centre's intranet
        title="参考运营中心 Reference operations centre",
        description="接收家园工单的参考实现。Reference receiver for Jiayuan work orders.",
    )

    def accept(raw: bytes, key: str | None) -> JSONResponse:
        try:
            order = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HTTPException(400, f"body is not JSON: {error}") from None
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in _VALIDATOR.iter_errors(order)
        ]
        if problems:
            raise HTTPException(422, "work order does not match the schema: " + "; ".join(problems))
        if key is None or key != order["idempotency_key"]:
            raise HTTPException(
                422, f"{IDEMPOTENCY_HEADER} {key!r} differs from idempotency_key in the body"
            )
        stored, work_order_id = store.receive(key, order, int(clock() * 1000))
        return JSONResponse(
            {"duplicate": not stored, "key": key, "work_order_id": work_order_id},
            status_code=201 if stored else 200,
        )

    @app.post(WORKORDERS_PATH, summary="接收工单 Receive a work order")
    async def receive(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            verify(secret, raw, request.headers.get(SIGNATURE_HEADER), clock())
        except SignatureError as error:
            raise HTTPException(401, str(error)) from None
        return await run_in_threadpool(accept, raw, request.headers.get(IDEMPOTENCY_HEADER))

    @app.get(WORKORDERS_PATH, summary="已收工单 Work orders received, oldest first")
    def workorders(
        alert_id: Annotated[str | None, Query()] = None,
        type: Annotated[str | None, Query(description="create, escalate or cancel")] = None,
    ) -> list[dict[str, Any]]:
        return store.workorders(alert_id, type)

    @app.get("/tickets", summary="工单处理状态 Tickets (one per alert) and their callbacks")
    def tickets() -> list[dict[str, Any]]:
        return [_ticket_out(ticket) for ticket in store.tickets()]

    return app


def _ticket_out(ticket: Ticket) -> dict[str, Any]:
    return {
        "work_order_id": ticket.work_order_id,
        "alert_id": ticket.alert_id,
        "opened_ms": ticket.opened_ms,
        "accepted_ms": ticket.accepted_ms,
        "completed_ms": ticket.completed_ms,
        "cancelled_ms": ticket.cancelled_ms,
        "callback_attempts": ticket.callback_attempts,
        "gave_up": ticket.gave_up,
        "last_error": ticket.last_error,
    }


class AutoResponder:
    """Plays the crew: accepts, then completes each ticket through the gateway callback."""

    def __init__(
        self,
        store: OpsCentreStore,
        secret: str,
        token: str,
        accept_after_s: float,
        complete_after_s: float | None,
        *,
        retry_s: float = 1.0,
        poll_s: float = 0.2,
    ) -> None:
        self.store = store
        self.secret = secret
        self.token = token
        self.accept_after_ms = int(accept_after_s * 1000)
        self.complete_after_ms = None if complete_after_s is None else int(complete_after_s * 1000)
        self.retry_ms = int(retry_s * 1000)
        self.poll_s = poll_s
        self._http = httpx.Client(timeout=5.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now_ms: int | None = None) -> None:
        now = _now_ms() if now_ms is None else now_ms
        for ticket in self.store.tickets(
            "WHERE cancelled_ms = 0 AND completed_ms = 0 AND gave_up = '' AND next_try_ms <= ?",
            (now,),
        ):
            if not ticket.accepted_ms and now >= ticket.opened_ms + self.accept_after_ms:
                body = {"alert_id": ticket.alert_id, "status": "accepted"}
                body |= {"work_order_id": ticket.work_order_id, "note": "已受理 Accepted"}
                self._call(ticket, body, "accepted_ms", now)
            elif (
                ticket.accepted_ms
                and self.complete_after_ms is not None
                and now >= ticket.accepted_ms + self.complete_after_ms
            ):
                body = {"alert_id": ticket.alert_id, "status": "completed"}
                body |= {
                    "work_order_id": ticket.work_order_id,
                    "note": "现场已处置完毕 Work completed on site (reference receiver)",
                }
                self._call(ticket, body, "completed_ms", now)

    def _call(self, ticket: Ticket, report: dict[str, Any], done_column: str, now: int) -> None:
        report |= {"operator": "reference-opscentre", "reported_at_ms": now}
        raw = json.dumps(report, ensure_ascii=False).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.secret, raw),
        }
        attempts = ticket.callback_attempts + 1
        if not ticket.callback_url:
            self.store.update_ticket(ticket.id, gave_up="the work order has no callback_url")
            return
        try:
            response = self._http.post(ticket.callback_url, content=raw, headers=headers)
        except httpx.HTTPError as error:
            self._retry(ticket, attempts, now, f"{type(error).__name__}: {error}")
            return
        if response.is_success:
            self.store.update_ticket(
                ticket.id, **{done_column: now}, callback_attempts=attempts, last_error=""
            )
        elif response.status_code >= 500 or response.status_code in (408, 429):
            self._retry(ticket, attempts, now, f"HTTP {response.status_code}")
        else:
            # 409: the alert has moved on (resolved at the estate, say); nothing to redo.
            reason = f"{report['status']}: HTTP {response.status_code} {response.text[:300]}"
            self.store.update_ticket(ticket.id, gave_up=reason, callback_attempts=attempts)
            log.warning("callback for %s refused: %s", ticket.alert_id, reason)

    def _retry(self, ticket: Ticket, attempts: int, now: int, error: str) -> None:
        self.store.update_ticket(
            ticket.id, next_try_ms=now + self.retry_ms, callback_attempts=attempts, last_error=error
        )

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="opscentre-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def close(self) -> None:
        self._http.close()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception:
                log.exception("reference operations centre: callback round failed")


class ReferenceOpsCentre:
    """The receiver in this process on a loopback port: ``start()``, ``url``, ``stop()``.

    ``start`` after ``stop`` serves again on the same port and database (an outage).
    """

    def __init__(
        self,
        db_path: str | Path,
        secret: str,
        *,
        token: str = "",
        accept_after_s: float | None = None,
        complete_after_s: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not secret:
            raise ValueError("the reference operations centre needs the shared webhook secret")
        if accept_after_s is not None and not token:
            raise ValueError("calling back (accept_after_s) needs the gateway's callback token")
        self.store = OpsCentreStore(db_path)
        self.app = create_opscentre_app(self.store, secret)
        self.host = host
        self.port = port
        self.responder = (
            None
            if accept_after_s is None
            else AutoResponder(self.store, secret, token, accept_after_s, complete_after_s)
        )
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def workorders_url(self) -> str:
        return self.url + WORKORDERS_PATH

    def start(self) -> None:
        from gateway.api import ApiServer  # uvicorn in a thread, shared with the gateway

        self._server = ApiServer(self.app, self.host, self.port)
        self._server.start()
        self.port = self._server.port
        if self.responder is not None:
            self.responder.start()

    def stop(self) -> None:
        if self.responder is not None:
            self.responder.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def close(self) -> None:
        self.stop()
        if self.responder is not None:
            self.responder.close()
        self.store.close()
