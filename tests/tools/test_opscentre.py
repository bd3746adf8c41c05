"""The callback endpoint and the reference operations centre, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from alerts import signing
from alerts.callback import CallbackLedger, CallbackReport, CallbackStatus, create_callback_router
from alerts.delivery import Deliverer, DeliverySettings
from alerts.model import AlertAction, AlertNotFound, AlertState, check_step
from alerts.outbox import Outbox
from alerts.workorder import WorkOrderType, build_workorder, encode, workorder_message
from gateway.api import ApiServer
from jiayuan.api_auth import CALLBACK_PATH
from tests.support.alerts_dispatch_support import SECRET, TOKEN, make_alert
from tools.opscentre import AutoResponder, OpsCentreStore, ReferenceOpsCentre
from tools.servers import free_port


class FakeLifecycle:
    """Stands in for the engine behind the callback: a few alerts and their states."""

    def __init__(self) -> None:
        self.states = {"al-0001": AlertState.OPEN, "al-0002": AlertState.OPEN}
        self.reports: list[CallbackReport] = []

    def __call__(self, report: CallbackReport) -> None:
        if report.alert_id not in self.states:
            raise AlertNotFound(report.alert_id)
        state = self.states[report.alert_id]
        wanted = {
            CallbackStatus.ACCEPTED: AlertState.DISPATCHED,
            CallbackStatus.COMPLETED: AlertState.RESOLVED,
            CallbackStatus.REJECTED: state,
        }[report.status]
        if report.status is not CallbackStatus.REJECTED:
            check_step(report.alert_id, state, wanted)
        self.states[report.alert_id] = wanted
        self.reports.append(report)


@pytest.fixture
def lifecycle() -> FakeLifecycle:
    return FakeLifecycle()


@pytest.fixture
def gateway_factory(
    tmp_path: Path, lifecycle: FakeLifecycle
) -> Iterator[Callable[[int], ApiServer]]:
    servers: list[ApiServer] = []

    def start(port: int = 0) -> ApiServer:
        app = FastAPI()
        ledger = CallbackLedger(tmp_path / "callbacks.sqlite")
        app.include_router(create_callback_router(lifecycle, TOKEN, SECRET, ledger))
        server = ApiServer(app, "127.0.0.1", port)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(gateway_factory: Callable[[int], ApiServer]) -> ApiServer:
    return gateway_factory(0)


def call(
    server: ApiServer,
    body: dict[str, Any] | bytes,
    *,
    token: str = TOKEN,
    secret: str = SECRET,
    when: float | None = None,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {
        "Authorization": f"Bearer {token}",
        signing.SIGNATURE_HEADER: signing.sign(secret, raw, when),
        "Content-Type": "application/json",
    }
    return httpx.post(server.url + CALLBACK_PATH, content=raw, headers=headers)


ACCEPTED = {"alert_id": "al-0001", "status": "accepted", "work_order_id": "WO-7"}
COMPLETED = {"alert_id": "al-0001", "status": "completed", "work_order_id": "WO-7", "note": "修好"}


def test_accepted_then_completed_reach_the_handler(
    gateway: ApiServer, lifecycle: FakeLifecycle
) -> None:
    first = call(gateway, ACCEPTED)
    assert first.status_code == 200, first.text
    assert first.json() == {"ok": True, "duplicate": False, "key": "al-0001:accepted:WO-7"}
    assert call(gateway, COMPLETED | {"operator": "张师傅"}).status_code == 200
    assert [(r.status, r.work_order_id, r.operator) for r in lifecycle.reports] == [
        (CallbackStatus.ACCEPTED, "WO-7", "opscentre"),
        (CallbackStatus.COMPLETED, "WO-7", "张师傅"),
    ]
    assert lifecycle.reports[1].note == "修好"
    assert lifecycle.states["al-0001"] is AlertState.RESOLVED


def test_rejected_reaches_the_handler_with_the_reason(
    gateway: ApiServer, lifecycle: FakeLifecycle
) -> None:
    body = {"alert_id": "al-0002", "status": "rejected", "note": "非本街道辖区 not ours"}
    assert call(gateway, body).status_code == 200
    assert lifecycle.reports[0].note == "非本街道辖区 not ours"


def test_the_same_report_twice_changes_nothing(
    gateway_factory: Callable[[int], ApiServer], lifecycle: FakeLifecycle
) -> None:
    gateway = gateway_factory(0)
    assert call(gateway, ACCEPTED).json()["duplicate"] is False
    again = call(gateway, ACCEPTED)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    # Remembered across a gateway restart (the ledger is a file).
    gateway.stop()
    restarted = gateway_factory(0)
    assert call(restarted, ACCEPTED).json()["duplicate"] is True
    assert len(lifecycle.reports) == 1


def test_refused_step_is_409_with_the_reason(gateway: ApiServer, lifecycle: FakeLifecycle) -> None:
    lifecycle.states["al-0001"] = AlertState.CLOSED
    response = call(gateway, ACCEPTED)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "alert al-0001 is closed, which is final; nothing more can be done"
    )
    unknown = call(gateway, ACCEPTED | {"alert_id": "al-9999"})
    assert unknown.status_code == 404
    assert "al-9999" in unknown.json()["detail"]
    assert lifecycle.reports == []


def test_bad_token_or_signature_is_401(gateway: ApiServer, lifecycle: FakeLifecycle) -> None:
    wrong_token = call(gateway, ACCEPTED, token="guess")
    assert wrong_token.status_code == 401
    assert wrong_token.headers["www-authenticate"] == "Bearer"
    assert call(gateway, ACCEPTED, secret="other").status_code == 401
    stale = call(gateway, ACCEPTED, when=time.time() - 3600)
    assert stale.status_code == 401
    assert "stale" in stale.json()["detail"]
    raw = json.dumps(ACCEPTED).encode()
    tampered = httpx.post(
        gateway.url + CALLBACK_PATH,
        content=raw.replace(b"WO-7", b"WO-8"),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Jiayuan-Signature": signing.sign(SECRET, raw),
        },
    )
    assert tampered.status_code == 401
    assert lifecycle.reports == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"alert_id": "al-0001", "status": "accepted"}, "'work_order_id' is a required property"),
        ({"alert_id": "al-0001", "status": "done"}, "status: 'done' is not one of"),
        ({"alert_id": "al-0001", "status": "completed"}, "'note' is a required property"),
        (ACCEPTED | {"extra": 1}, "Additional properties are not allowed ('extra'"),
        (b"{not json", "body is not JSON"),
    ],
)
def test_bad_body_is_422_naming_the_problem(
    gateway: ApiServer, lifecycle: FakeLifecycle, body: dict[str, Any] | bytes, problem: str
) -> None:
    response = call(gateway, body)
    assert response.status_code == 422
    assert problem in response.json()["detail"]
    assert lifecycle.reports == []


def test_empty_token_or_secret_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="callback_token is empty"):
        create_callback_router(FakeLifecycle(), "", SECRET)
    with pytest.raises(ValueError, match="webhook_secret is empty"):
        create_callback_router(FakeLifecycle(), TOKEN, "")


# --- the reference receiver -------------------------------------------------------------


def post_order(
    centre: ReferenceOpsCentre, raw: bytes, key: str, secret: str = SECRET
) -> httpx.Response:
    headers = {signing.IDEMPOTENCY_HEADER: key, signing.SIGNATURE_HEADER: signing.sign(secret, raw)}
    return httpx.post(centre.workorders_url, content=raw, headers=headers)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[ReferenceOpsCentre]:
    running = ReferenceOpsCentre(tmp_path / "opscentre.sqlite", SECRET)
    running.start()
    yield running
    running.close()


def test_receiver_stores_once_and_refuses_what_is_wrong(centre: ReferenceOpsCentre) -> None:
    body = build_workorder(make_alert(), WorkOrderType.CREATE, at_ms=1, callback_url="")
    raw = encode(body)
    first = post_order(centre, raw, "wo:al-0001")
    assert (first.status_code, first.json()["duplicate"]) == (201, False)
    assert first.json()["work_order_id"] == "WO-000001"
    second = post_order(centre, raw, "wo:al-0001")
    assert (second.status_code, second.json()["duplicate"]) == (200, True)

    assert post_order(centre, raw, "wo:al-0001", secret="nope").status_code == 401
    mismatch = post_order(centre, raw, "wo:other")
    assert mismatch.status_code == 422
    assert "differs from idempotency_key" in mismatch.json()["detail"]
    broken = encode(body | {"severity": "meh"})
    invalid = post_order(centre, broken, "wo:al-0001")
    assert invalid.status_code == 422
    assert "severity: 'meh' is not one of" in invalid.json()["detail"]

    [stored] = httpx.get(centre.workorders_url).json()
    assert (stored["key"], stored["deliveries"], stored["body"]) == ("wo:al-0001", 2, body)


def test_auto_accept_and_complete_call_the_gateway_back(
    tmp_path: Path, gateway: ApiServer, lifecycle: FakeLifecycle
) -> None:
    centre = ReferenceOpsCentre(
        tmp_path / "opscentre.sqlite", SECRET, token=TOKEN, accept_after_s=0, complete_after_s=0
    )
    centre.start()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, DeliverySettings(webhook_secret=SECRET))
    message = workorder_message(
        make_alert(),
        AlertAction.RAISED,
        at_ms=1,
        url=centre.workorders_url,
        callback_url=gateway.url + CALLBACK_PATH,
    )
    assert message is not None
    outbox.put(message)
    deliverer.run_once()
    deadline = time.monotonic() + 20
    while len(lifecycle.reports) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    centre.close()
    deliverer.stop()
    outbox.close()
    assert [(r.alert_id, r.status, r.work_order_id) for r in lifecycle.reports] == [
        ("al-0001", CallbackStatus.ACCEPTED, "WO-000001"),
        ("al-0001", CallbackStatus.COMPLETED, "WO-000001"),
    ]
    assert lifecycle.reports[0].operator == "reference-opscentre"


def test_auto_accept_retries_while_the_gateway_is_down(
    tmp_path: Path, gateway_factory: Callable[[int], ApiServer], lifecycle: FakeLifecycle
) -> None:
    port = free_port()
    store = OpsCentreStore(tmp_path / "opscentre.sqlite")
    responder = AutoResponder(store, SECRET, TOKEN, accept_after_s=60, complete_after_s=None)
    body = build_workorder(
        make_alert(),
        WorkOrderType.CREATE,
        at_ms=1,
        callback_url=f"http://127.0.0.1:{port}{CALLBACK_PATH}",
    )
    store.receive("wo:al-0001", body, now_ms=1_000_000)

    responder.run_once(now_ms=1_000_000 + 59_999)  # not yet time
    ticket = store.ticket("al-0001")
    assert ticket is not None and ticket.callback_attempts == 0
    responder.run_once(now_ms=1_060_000)  # time, but the gateway is down
    ticket = store.ticket("al-0001")
    assert ticket is not None
    assert (ticket.callback_attempts, ticket.accepted_ms) == (1, 0)
    assert "ConnectError" in ticket.last_error

    gateway_factory(port)
    responder.run_once(now_ms=1_060_500)  # before the retry time: nothing
    assert lifecycle.reports == []
    responder.run_once(now_ms=1_061_000)
    ticket = store.ticket("al-0001")
    assert ticket is not None
    assert (ticket.callback_attempts, ticket.accepted_ms, ticket.last_error) == (2, 1_061_000, "")
    assert [r.status for r in lifecycle.reports] == [CallbackStatus.ACCEPTED]
    responder.run_once(now_ms=10**13)  # no completion was asked for
    assert len(lifecycle.reports) == 1

    # A cancelled order is never accepted; a refused callback is not retried.
    store.receive(
        "wo:al-0002",
        build_workorder(
            make_alert(2), WorkOrderType.CREATE, at_ms=1, callback_url=body["callback_url"]
        ),
        5,
    )
    lifecycle.states["al-0002"] = AlertState.CLOSED
    responder.run_once(now_ms=10**13)
    refused = store.ticket("al-0002")
    assert refused is not None
    assert refused.gave_up.startswith("accepted: HTTP 409")
    responder.close()
    store.close()


@pytest.mark.slow
def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "opscentre", "--port", str(port),
         "--secret-file", str(secret_file), "--db", str(tmp_path / "oc.sqlite")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/workorders" in banner, banner
        body = build_workorder(make_alert(), WorkOrderType.CREATE, at_ms=1, callback_url="")
        raw = encode(body)
        headers = {
            signing.IDEMPOTENCY_HEADER: body["idempotency_key"],
            signing.SIGNATURE_HEADER: signing.sign(SECRET, raw),
        }
        url = f"http://127.0.0.1:{port}/workorders"
        assert httpx.post(url, content=raw, headers=headers).status_code == 201
        assert [o["key"] for o in httpx.get(url).json()] == ["wo:al-0001"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "stopped" in output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--complete-after", "5"], "--complete-after needs --accept-after"),
        (["--accept-after", "5"], "--accept-after needs --token-file"),
    ],
)
def test_cli_explains_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from tools.cli import main

    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET, encoding="utf-8")
    args = ["opscentre", "--port", "0", "--secret-file", str(secret_file), "--db", "x.sqlite"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().out


def test_cli_names_an_unreadable_secret_file(tmp_path: Path) -> None:
    from tools.cli import main

    missing = tmp_path / "missing"
    with pytest.raises(SystemExit, match=f"--secret-file {missing}: cannot read"):
        main(["opscentre", "--port", "0", "--secret-file", str(missing), "--db", "x.sqlite"])
