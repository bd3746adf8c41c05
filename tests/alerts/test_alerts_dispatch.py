"""Work orders: signatures, the JSON contract, and delivery to a real receiver over HTTP
across outages, lost responses and a restart of the sending side."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from alerts import signing
from alerts.delivery import Deliverer, DeliverySettings, Dispatcher
from alerts.model import AlertAction, AlertState, EscalationLevel
from alerts.outbox import MessageState, Outbox
from alerts.workorder import WORKORDER_SCHEMA, WorkOrderType, build_workorder, workorder_message
from gateway.api import ApiServer
from jiayuan.config import AlertsConfig
from tests.support.alerts_dispatch_support import SECRET, FakeClock, make_alert
from tools.opscentre import ReferenceOpsCentre
from tools.servers import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
CALLBACK = "http://127.0.0.1:9/opscentre/callback"
VALIDATOR = jsonschema.Draft202012Validator(
    WORKORDER_SCHEMA, format_checker=jsonschema.FormatChecker()
)

# --- signatures ---------------------------------------------------------------------------


def test_signature_round_trip_and_refusals() -> None:
    body = '{"alert_id":"al-1","title":"困人"}'.encode()
    header = signing.sign(SECRET, body, now_s=1_700_000_000)
    signing.verify(SECRET, body, header, now_s=1_700_000_100)

    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, body.replace(b"al-1", b"al-2"), header, now_s=1_700_000_000)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify("another secret", body, header, now_s=1_700_000_000)
    with pytest.raises(signing.SignatureError, match="stale"):
        signing.verify(SECRET, body, header, now_s=1_700_000_000 + 301)
    with pytest.raises(signing.SignatureError, match="missing"):
        signing.verify(SECRET, body, None)
    with pytest.raises(signing.SignatureError, match="t=<unix seconds>"):
        signing.verify(SECRET, body, "v1=abc")
    with pytest.raises(signing.SignatureError, match="not k=v"):
        signing.verify(SECRET, body, "garbage")
    # The timestamp is signed too: moving it forward breaks the signature.
    moved = header.replace("t=1700000000", "t=1700000200")
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, body, moved, now_s=1_700_000_200)


def test_signature_worked_example_matches_the_docs() -> None:
    # The value openssl gives for the example in docs/integration.md:
    #   printf '%s' '1700000000.{"hello":"world"}' | openssl dgst -sha256 -hmac s3cret
    expected = "6f4351a15224248663bdabf854a428c6942e6be080ed368c1833e5d8a1d5e9a8"
    header = signing.sign("s3cret", b'{"hello":"world"}', now_s=1700000000)
    assert header == f"t=1700000000,v1={expected}"
    docs = DOCS.parent.joinpath("integration.md").read_text(encoding="utf-8")
    assert header in docs


def test_rotation_accepts_either_secret() -> None:
    body = b"{}"
    old = signing.sign("old", body, now_s=100)
    new = signing.sign("new", body, now_s=100)
    both = f"{new},v1={old.split('v1=')[1]}"
    signing.verify("old", body, both, now_s=100)
    signing.verify("new", body, both, now_s=100)


# --- the work-order contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind", "key"),
    [
        (AlertAction.RAISED, WorkOrderType.CREATE, "wo:al-0001"),
        (AlertAction.ESCALATED, WorkOrderType.ESCALATE, "wo:al-0001:esc:street"),
        (AlertAction.CANCELLED, WorkOrderType.CANCEL, "wo:al-0001:cancel"),
        (AlertAction.AUTO_RESOLVED, WorkOrderType.CANCEL, "wo:al-0001:cancel"),
    ],
)
def test_every_work_order_matches_the_schema(
    action: AlertAction, kind: WorkOrderType, key: str
) -> None:
    alert = make_alert(escalation=EscalationLevel.STREET, detail="car 1")
    message = workorder_message(
        alert, action, at_ms=alert.created_ms, url="http://127.0.0.1:9/w", callback_url=CALLBACK
    )
    assert message is not None
    body = json.loads(message.body)
    VALIDATOR.validate(body)
    assert (body["type"], body["idempotency_key"], message.key) == (kind.value, key, key)
    assert message.headers[signing.IDEMPOTENCY_HEADER] == key
    assert body["title"] == {
        "zh": "困人",
        "en": "Passenger trapped",
        "text": "困人 Passenger trapped",
    }
    assert body["place"]["building"] == "b3"
    assert body["first_seen"].endswith("+08:00")
    assert body["deadlines"]["acknowledge_ms"] == alert.ack_deadline_ms


def test_steps_without_a_work_order_send_none() -> None:
    alert = make_alert(state=AlertState.ACKNOWLEDGED)
    for action in (AlertAction.ACKNOWLEDGED, AlertAction.REPEATED, AlertAction.RESOLVED):
        assert workorder_message(alert, action, at_ms=1, url="u", callback_url="") is None


def test_schema_refuses_a_broken_work_order() -> None:
    body = build_workorder(make_alert(), WorkOrderType.CREATE, at_ms=1, callback_url=CALLBACK)
    body["severity"] = "apocalyptic"
    del body["place"]["device"]
    messages = sorted(error.message for error in VALIDATOR.iter_errors(body))
    assert any("apocalyptic" in m for m in messages)
    assert any("'device' is a required property" in m for m in messages)


def test_no_deadlines_is_null_not_1970() -> None:
    alert = make_alert(ack_deadline_ms=0, resolve_deadline_ms=0)
    body = build_workorder(alert, WorkOrderType.CREATE, at_ms=1, callback_url="")
    VALIDATOR.validate(body)
    assert body["deadlines"] == {
        "acknowledge": None,
        "acknowledge_ms": None,
        "resolve": None,
        "resolve_ms": None,
    }


def test_published_schemas_are_the_ones_in_code() -> None:
    from alerts.callback import CALLBACK_SCHEMA

    for name, schema in (("workorder", WORKORDER_SCHEMA), ("callback", CALLBACK_SCHEMA)):
        published = json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))
        assert published == schema, (
            f"docs/schemas/{name}.schema.json is stale; regenerate it (see docs/integration.md)"
        )


# --- delivery over real HTTP -------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReferenceOpsCentre]:
    centre = ReferenceOpsCentre(tmp_path / "opscentre.sqlite", SECRET, port=free_port())
    yield centre
    centre.close()


def settings(**changes: Any) -> DeliverySettings:
    values: dict[str, Any] = {"webhook_secret": SECRET, "retry_initial_s": 1.0}
    values |= {"retry_max_s": 300.0, "timeout_s": 5.0}
    return DeliverySettings(**(values | changes))


def queue_orders(outbox: Outbox, url: str, numbers: range, at_ms: int) -> list[str]:
    keys = []
    for number in numbers:
        message = workorder_message(
            make_alert(number), AlertAction.RAISED, at_ms=at_ms, url=url, callback_url=CALLBACK
        )
        assert message is not None
        outbox.put(message, now_ms=at_ms)
        keys.append(message.key)
    return keys


def received(centre: ReferenceOpsCentre) -> dict[str, int]:
    """Key → how many times the receiver was handed it."""
    response = httpx.get(centre.workorders_url)
    response.raise_for_status()
    return {order["key"]: order["deliveries"] for order in response.json()}


def test_an_hour_long_outage_delivers_every_order_exactly_once(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings(), clock=clock, jitter=lambda: 0.0)
    keys = queue_orders(outbox, receiver.workorders_url, range(1, 6), deliverer.now_ms())

    # The receiver is not running: every attempt fails and is scheduled again, with the
    # delay doubling (jitter 0 → half of 1, 2, 4 … s) up to the cap.
    assert deliverer.run_once() == 5
    waits = []
    while sum(waits) < 3600:
        next_due = outbox.next_due_ms()
        assert next_due is not None
        waits.append(next_due / 1000 - clock())
        clock.now = next_due / 1000
        assert deliverer.run_once() == 5
    assert waits[:5] == pytest.approx([0.5, 1, 2, 4, 8], abs=0.002)
    assert max(waits) == pytest.approx(150, abs=0.002)  # retry_max_s 300 × (0.5 + 0/2)
    assert outbox.counts() == {"pending": 5, "delivered": 0, "parked": 0}
    stuck = outbox.get(keys[0])
    assert stuck is not None
    assert stuck.attempts == len(waits) + 1
    assert "ConnectError" in stuck.last_error
    assert "ConnectError" in deliverer.stats.last_error

    # An hour later the receiver is back; by the next due time everything arrives.
    receiver.start()
    next_due = outbox.next_due_ms()
    assert next_due is not None
    clock.now = next_due / 1000
    assert deliverer.run_once() == 5
    assert outbox.counts() == {"pending": 0, "delivered": 5, "parked": 0}
    assert received(receiver) == dict.fromkeys(keys, 1)

    # The same alerts raised again (a replay) queue nothing; nothing more is sent.
    queue_orders(outbox, receiver.workorders_url, range(1, 6), deliverer.now_ms())
    assert outbox.counts() == {"pending": 0, "delivered": 5, "parked": 0}
    assert deliverer.run_once() == 0
    assert received(receiver) == dict.fromkeys(keys, 1)
    deliverer.stop()
    outbox.close()


def test_receiver_stopped_mid_run_then_back(tmp_path: Path, receiver: ReferenceOpsCentre) -> None:
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings(), clock=clock, jitter=lambda: 0.5)
    receiver.start()
    first = queue_orders(outbox, receiver.workorders_url, range(1, 4), deliverer.now_ms())
    deliverer.run_once()
    receiver.stop()  # goes down between two batches
    second = queue_orders(outbox, receiver.workorders_url, range(4, 8), deliverer.now_ms())
    deliverer.run_once()
    assert outbox.counts() == {"pending": 4, "delivered": 3, "parked": 0}
    clock.advance(600)
    deliverer.run_once()  # still down
    receiver.start()  # same port, same database
    clock.advance(600)
    deliverer.run_once()
    assert received(receiver) == dict.fromkeys(first + second, 1)
    deliverer.stop()
    outbox.close()


def test_restarted_deliverer_sends_nothing_twice_and_loses_nothing(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    path = tmp_path / "outbox.sqlite"
    receiver.start()
    outbox = Outbox(path)
    deliverer = Deliverer(outbox, settings())
    keys = queue_orders(outbox, receiver.workorders_url, range(1, 11), deliverer.now_ms())
    # Deliver only some of them, then "crash": the rest is still only on disk.
    for message in outbox.due(limit=4):
        deliverer.attempt(message)
    deliverer.stop()
    outbox.close()

    outbox = Outbox(path)
    deliverer = Deliverer(outbox, settings())
    # The restarted gateway replays the same alert events: all refused as already queued.
    replayed = [
        workorder_message(
            make_alert(n), AlertAction.RAISED, at_ms=1, url=receiver.workorders_url, callback_url=""
        )
        for n in range(1, 11)
    ]
    assert [outbox.put(message) for message in replayed if message] == [False] * 10
    assert deliverer.run_once() == 6
    assert received(receiver) == dict.fromkeys(keys, 1)
    assert outbox.counts() == {"pending": 0, "delivered": 10, "parked": 0}
    deliverer.stop()
    outbox.close()


class ResponseDropper:
    """A TCP proxy in front of the receiver that, when told to, forwards a request and
    its answer is lost: it closes the client's connection instead of replying."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop_next = 0
        self.forwarded = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    @staticmethod
    def _read_message(stream: Any) -> bytes | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = stream.readline()
            if not line:
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + stream.read(length)

    def _handle(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as incoming:
            while (request := self._read_message(incoming)) is not None:
                with (
                    socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream,
                    upstream.makefile("rb") as answers,
                ):
                    upstream.sendall(request)
                    response = self._read_message(answers)
                self.forwarded += 1
                if self.drop_next:
                    self.drop_next -= 1
                    return  # the receiver has stored it; its answer never arrives
                assert response is not None
                client.sendall(response)

    def close(self) -> None:
        self._listener.close()


def test_a_lost_response_is_retried_and_answered_as_duplicate(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    receiver.start()
    proxy = ResponseDropper(receiver.port)
    proxy.drop_next = 1
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings(), clock=clock)
    url = f"http://127.0.0.1:{proxy.port}/workorders"
    [key] = queue_orders(outbox, url, range(1, 2), deliverer.now_ms())

    deliverer.run_once()
    message = outbox.get(key)
    assert message is not None
    assert message.state is MessageState.PENDING
    assert "RemoteProtocolError" in message.last_error
    assert received(receiver) == {key: 1}  # stored although the sender did not hear so

    clock.advance(10)
    deliverer.run_once()
    message = outbox.get(key)
    assert message is not None
    assert (message.state, message.attempts) == (MessageState.DELIVERED, 2)
    assert proxy.forwarded == 2
    assert received(receiver) == {key: 2}  # handed over twice, held once
    orders = httpx.get(receiver.workorders_url).json()
    assert len(orders) == 1
    proxy.close()
    deliverer.stop()
    outbox.close()


def test_a_refusal_is_parked_with_the_reason_and_retried_by_command(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    receiver.start()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    wrong = Deliverer(outbox, settings(webhook_secret="not the shared secret"))
    [key] = queue_orders(outbox, receiver.workorders_url, range(1, 2), wrong.now_ms())
    wrong.run_once()
    parked = outbox.get(key)
    assert parked is not None
    assert parked.state is MessageState.PARKED
    assert parked.last_error.startswith("HTTP 401:")
    assert "wrong secret" in parked.last_error
    assert wrong.stats.parked == 1
    assert wrong.run_once() == 0  # parked stays parked, visible
    wrong.stop()

    fixed = Deliverer(outbox, settings())
    assert outbox.retry_parked(key) == 1
    fixed.run_once()
    assert received(receiver) == {key: 1}
    fixed.stop()
    outbox.close()


def test_status_codes_decide_retry_or_park(tmp_path: Path) -> None:
    answers = {"/busy": [503, 429, 408, 200], "/gone": [410]}
    seen: list[tuple[str, str | None]] = []
    app = FastAPI()

    @app.post("/{name}")
    async def answer(name: str, request: Request) -> JSONResponse:
        body = await request.body()
        signing.verify(SECRET, body, request.headers.get(signing.SIGNATURE_HEADER))
        seen.append((name, request.headers.get("X-Jiayuan-Attempt")))
        return JSONResponse({"n": len(seen)}, status_code=answers[f"/{name}"].pop(0))

    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings(), clock=clock)
    outbox.enqueue("manager_webhook", "a", f"{server.url}/busy", b"{}", now_ms=deliverer.now_ms())
    outbox.enqueue("manager_webhook", "b", f"{server.url}/gone", b"{}", now_ms=deliverer.now_ms())
    for _ in range(4):
        deliverer.run_once()
        clock.advance(3600)
    a, b = outbox.get("a"), outbox.get("b")
    assert a is not None and b is not None
    assert (a.state, a.attempts) == (MessageState.DELIVERED, 4)
    assert (b.state, b.last_error) == (MessageState.PARKED, 'HTTP 410: {"n":2}')
    assert [attempt for name, attempt in seen if name == "busy"] == ["1", "2", "3", "4"]
    server.stop()
    deliverer.stop()
    outbox.close()


def test_the_thread_delivers_once_the_receiver_comes_up(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings(retry_initial_s=0.05, retry_max_s=0.2), poll_s=0.05)
    keys = queue_orders(outbox, receiver.workorders_url, range(1, 4), deliverer.now_ms())
    deliverer.start()
    deadline = time.monotonic() + 20
    while deliverer.stats.retries < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert deliverer.stats.retries >= 6  # it keeps trying while the receiver is down
    receiver.start()
    deliverer.wake()
    while outbox.counts()["delivered"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    deliverer.stop()
    assert received(receiver) == dict.fromkeys(keys, 1)
    outbox.close()


# --- from lifecycle step to outbox -------------------------------------------------------


def test_dispatcher_queues_each_step_once_and_the_receiver_gets_it(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    receiver.start()
    contacts = tmp_path / "contacts.yaml"
    contacts.write_text("sj-fs-001:\n  - {name: 王经理, email: wang@example.com}\n", "utf-8")
    alerts = AlertsConfig(
        opscentre_url=receiver.workorders_url,
        webhook_secret=SECRET,
        contacts_file=str(contacts),
        smtp_url=f"smtp://127.0.0.1:{free_port()}",  # nothing listens: mail waits
    )
    dispatcher = Dispatcher.from_config(alerts, tmp_path / "state", "http://127.0.0.1:1/cb")
    alert = make_alert()
    assert dispatcher.dispatch(alert, AlertAction.RAISED, at_ms=10) == [
        "wo:al-0001",
        "pm:al-0001:raised:email:wang@example.com",
    ]
    assert dispatcher.dispatch(alert, AlertAction.RAISED, at_ms=11) == []  # replayed
    # Acknowledging sends no work order even when the engine asks for one.
    assert dispatcher.dispatch(alert, AlertAction.ACKNOWLEDGED, 12, notify_manager=False) == []
    assert dispatcher.dispatch(alert, AlertAction.ESCALATED, at_ms=13, notify_manager=False) == [
        "wo:al-0001:esc:estate"
    ]
    reopened = make_alert(state=AlertState.OPEN)
    assert dispatcher.dispatch(reopened, AlertAction.REOPENED, at_ms=14, work_order=True) == [
        "wo:al-0001:reopen:14",
        "pm:al-0001:reopened-14:email:wang@example.com",
    ]
    dispatcher.deliverer.run_once()
    orders = httpx.get(receiver.workorders_url).json()
    assert [(o["key"], o["body"]["callback_url"]) for o in orders] == [
        ("wo:al-0001", "http://127.0.0.1:1/cb"),
        ("wo:al-0001:esc:estate", "http://127.0.0.1:1/cb"),
        ("wo:al-0001:reopen:14", "http://127.0.0.1:1/cb"),
    ]
    # The reopened alert is a new ticket at the operations centre.
    [ticket] = httpx.get(receiver.url + "/tickets").json()
    assert ticket["work_order_id"] == "WO-000002"
    counts = dispatcher.outbox.counts()
    assert counts == {"pending": 2, "delivered": 3, "parked": 0}
    dispatcher.stop()


def test_work_orders_queued_without_a_url_wait_parked_until_one_is_set(
    tmp_path: Path, receiver: ReferenceOpsCentre
) -> None:
    receiver.start()
    without = Dispatcher.from_config(
        AlertsConfig(webhook_secret=SECRET), tmp_path / "state", "http://127.0.0.1:1/cb"
    )
    assert without.dispatch(make_alert(), AlertAction.RAISED, at_ms=1) == ["wo:al-0001"]
    without.deliverer.run_once()
    [parked] = without.outbox.messages(MessageState.PARKED)
    assert "opscentre_url" in parked.last_error
    without.stop()

    configured = Dispatcher.from_config(
        AlertsConfig(webhook_secret=SECRET, opscentre_url=receiver.workorders_url),
        tmp_path / "state",
        "http://127.0.0.1:1/cb",
    )
    assert configured.outbox.retry_parked() == 1
    configured.deliverer.run_once()
    assert received(receiver) == {"wo:al-0001": 1}
    configured.stop()


def test_an_unsendable_message_is_parked_with_the_reason_not_retried_forever(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings())
    outbox.enqueue("manager_webhook", "k", "http://127.0.0.1:9/x", b"{}", {"X-Note": "不可编码"})
    outbox.enqueue("pager", "p", "12345", b"{}")
    deliverer.run_once()
    parked = {m.key: m.last_error for m in outbox.messages(MessageState.PARKED)}
    assert parked["k"].startswith("internal: UnicodeEncodeError")
    assert parked["p"] == "unknown channel 'pager'"
    deliverer.stop()
    outbox.close()


@pytest.mark.slow
def test_an_outage_of_messages_logs_the_first_and_a_count_not_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, settings())
    for number in range(250):  # more than one round of due messages
        outbox.enqueue("workorder", f"wo:{number}", "", b"{}")  # no URL configured
    outbox.enqueue("pager", "p", "12345", b"{}")
    with caplog.at_level(logging.ERROR, logger="alerts.delivery"):
        assert deliverer.run_once() == 251
    assert outbox.counts()["parked"] == 251  # every one recorded, whatever is logged
    assert [r.getMessage() for r in caplog.records] == [
        "wo:0 暂存未发 parked: no destination URL for workorder (is [alerts] opscentre_url set?)",
        "p 暂存未发 parked: unknown channel 'pager'",
        "249 more messages 暂存未发 parked: no destination URL for workorder "
        "(is [alerts] opscentre_url set?)",
    ]
    deliverer.stop()
    outbox.close()
