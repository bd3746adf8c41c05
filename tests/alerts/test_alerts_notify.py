"""Property-manager notifications: contacts file, bilingual text, and real delivery to an
SMTP server (aiosmtpd on loopback) and to a webhook over HTTP."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request

from alerts import signing
from alerts.contacts import Contact, ContactBook, ContactsError
from alerts.delivery import Deliverer, DeliverySettings
from alerts.model import AlertAction, EscalationLevel
from alerts.notify import compose, message_id, notification_messages
from alerts.outbox import MessageState, Outbox
from gateway.api import ApiServer
from tests.support.alerts_dispatch_support import SECRET, FakeClock, make_alert
from tools.servers import free_port

WANG = Contact(name="王经理", email="wang@example.com")
LI = Contact(name="李主任", email="li@example.com", webhook_url="http://127.0.0.1:9/hook")
# printf '%s' http://127.0.0.1:9/hook | sha256sum | cut -c1-16
HOOK_HASH = "a94bb7e849462697"

# --- contacts --------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contacts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_contacts_load_per_estate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
sj-fs-001:
  - name: 王经理
    email: wang@example.com
    phone: "13800000000"
  - name: 物业值班室
    webhook_url: https://pm.example.com/hooks/jiayuan
sj-fs-002: []
""",
    )
    book = ContactBook.load(path)
    assert book.for_estate("sj-fs-001") == [
        Contact("王经理", "wang@example.com", "", "13800000000"),
        Contact("物业值班室", "", "https://pm.example.com/hooks/jiayuan", ""),
    ]
    assert book.for_estate("sj-fs-002") == []
    assert book.for_estate("unknown") == []
    assert book.estates == ["sj-fs-001", "sj-fs-002"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("e1:\n  - email: a@b.c\n", r"estate 'e1' contact #1: name is missing"),
        ("e1:\n  - name: 王\n    phone: 13800000000\n", r"#1: phone 13800000000 .*quote phone"),
        ("e1:\n  - name: 王\n", r"#1 \(王\): give an email or a webhook_url"),
        ("e1:\n  - name: 王\n    email: nobody\n", r"email 'nobody' is not an address"),
        ("e1:\n  - name: 王\n    webhook_url: ftp://x\n", r"webhook_url 'ftp://x' is not http"),
        ("e1:\n  - name: 王\n    mail: a@b.c\n", r"unknown key\(s\) \['mail'\]"),
        ("e1:\n  name: 王\n", r"estate 'e1': expected a list of contacts"),
        ("- e1\n", r"expected a mapping of estate id"),
        ("e1: [\n", r"not valid YAML"),
        (
            "e1:\n  - {name: A, email: a@b.c}\n  - {name: B, email: A@b.c}\n",
            r"a@b.c is listed twice",
        ),
    ],
)
def test_bad_contacts_name_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ContactsError, match=message) as raised:
        ContactBook.load(path)
    assert str(raised.value).startswith(str(path))


def test_missing_contacts_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match=r"nope.yaml: contacts file not found"):
        ContactBook.load(tmp_path / "nope.yaml")


# --- text ------------------------------------------------------------------------------------


def test_text_is_chinese_first_with_english_beside_it() -> None:
    alert = make_alert(value=1.0, threshold=0.0, first_seen_ms=1_763_900_000_000)
    note = compose(alert, AlertAction.RAISED, at_ms=alert.created_ms)
    assert note.subject == (
        "【紧急 Critical】新告警 New alert：困人 Passenger trapped — sj-fs-001 b3 lift-01"
    )
    zh, en = note.text.split("\n\n")
    for expected in ("小区：sj-fs-001", "楼栋：b3", "设备：lift-01", "测量值 1，阈值 0"):
        assert expected in zh
    # 1_763_900_000_000 ms is 2025-11-23 12:13:20 UTC, 20:13:20 in Shanghai.
    assert "开始时间：2025-11-23 20:13:20（上海时间）" in zh
    assert "处置建议：立即通知维保单位到场救援" in zh
    assert "Since: 2025-11-23 20:13:20 (Shanghai time)" in en
    assert "What to do: Dispatch the lift maintenance crew now" in en
    assert "measured 1 against threshold 0" in en


def test_escalation_and_unknown_codes_still_say_what_to_do() -> None:
    alert = make_alert(
        escalation=EscalationLevel.DISTRICT, code="water_tank.drift", kind="water_tank"
    )
    note = compose(alert, AlertAction.ESCALATED, at_ms=5)
    assert "告警已升级至区 Alert escalated to the district" in note.subject
    assert "处置建议：通知二次供水管理单位检查" in note.text
    offline = compose(make_alert(code="lift.offline"), AlertAction.RAISED, at_ms=5)
    assert "检查设备电源和网络" in offline.text


def test_one_message_per_contact_and_channel_with_stable_keys() -> None:
    alert = make_alert()
    messages = notification_messages(
        alert, AlertAction.RAISED, [WANG, LI], at_ms=1, sender="jiayuan@localhost"
    )
    assert [(m.channel, m.key) for m in messages] == [
        ("email", "pm:al-0001:raised:email:wang@example.com"),
        ("email", "pm:al-0001:raised:email:li@example.com"),
        ("manager_webhook", f"pm:al-0001:raised:manager_webhook:{HOOK_HASH}"),
    ]
    again = notification_messages(
        alert, AlertAction.RAISED, [WANG, LI], at_ms=99, sender="jiayuan@localhost"
    )
    assert [m.key for m in again] == [m.key for m in messages]
    street = notification_messages(
        make_alert(escalation=EscalationLevel.STREET),
        AlertAction.ESCALATED,
        [WANG],
        at_ms=2,
        sender="x@y",
    )
    assert street[0].key == "pm:al-0001:escalated-street:email:wang@example.com"


# --- delivery ------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: keeps what it receives, refuses the addresses in ``refuse``."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def mailbox(smtp_port: int) -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield box
    controller.stop()


def mail_settings(port: int) -> DeliverySettings:
    return DeliverySettings(
        webhook_secret=SECRET,
        smtp_url=f"smtp://127.0.0.1:{port}",
        smtp_from="jiayuan@localhost",
        timeout_s=5.0,
    )


def test_email_arrives_bilingual_with_a_key_derived_message_id(
    tmp_path: Path, mailbox: Mailbox, smtp_port: int
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, mail_settings(smtp_port))
    alert = make_alert(detail="轿厢 car 1")
    for message in notification_messages(
        alert, AlertAction.RAISED, [WANG], at_ms=alert.created_ms, sender="jiayuan@localhost"
    ):
        outbox.put(message)
    assert deliverer.run_once() == 1
    assert outbox.counts()["delivered"] == 1

    [envelope] = mailbox.received
    assert envelope.rcpt_tos == ["wang@example.com"]
    assert envelope.mail_from == "jiayuan@localhost"
    assert isinstance(envelope.content, bytes)
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    expected = compose(alert, AlertAction.RAISED, at_ms=alert.created_ms)
    assert mail["Subject"] == expected.subject
    assert mail["Subject"].startswith("【紧急 Critical】新告警 New alert：困人 Passenger trapped")
    assert mail["To"] == "王经理 <wang@example.com>"
    assert mail["Message-ID"] == message_id("pm:al-0001:raised:email:wang@example.com")
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert text == expected.text
    assert text.index("处置建议") < text.index("What to do")
    assert "设备：lift-01 轿厢 car 1" in text
    deliverer.stop()
    outbox.close()


def test_mail_server_down_is_retried_and_a_refused_address_is_parked(
    tmp_path: Path, smtp_port: int
) -> None:
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, mail_settings(smtp_port), clock=clock)
    gone = Contact(name="离职", email="gone@example.com")
    for message in notification_messages(
        make_alert(), AlertAction.RAISED, [WANG, gone], at_ms=1, sender="jiayuan@localhost"
    ):
        outbox.put(message, now_ms=deliverer.now_ms())
    deliverer.run_once()  # nothing listens yet
    assert outbox.counts() == {"pending": 2, "delivered": 0, "parked": 0}
    assert "SMTP" in outbox.messages()[0].last_error

    box = Mailbox()
    box.refuse.add("gone@example.com")
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        clock.advance(3600)
        deliverer.run_once()
    finally:
        controller.stop()
    assert outbox.counts() == {"pending": 0, "delivered": 1, "parked": 1}
    [parked] = outbox.messages(MessageState.PARKED)
    assert parked.destination == "gone@example.com"
    assert parked.last_error.startswith("SMTP 550")
    assert [e.rcpt_tos for e in box.received] == [["wang@example.com"]]
    deliverer.stop()
    outbox.close()


def test_manager_webhook_is_signed_and_carries_the_text(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        raw = await request.body()
        signing.verify(SECRET, raw, request.headers.get(signing.SIGNATURE_HEADER))
        got.append({"key": request.headers.get(signing.IDEMPOTENCY_HEADER), **json.loads(raw)})
        return {"ok": True}

    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    deliverer = Deliverer(outbox, DeliverySettings(webhook_secret=SECRET))
    office = Contact(name="物业值班室", webhook_url=f"{server.url}/hook")
    for message in notification_messages(
        make_alert(), AlertAction.RAISED, [office], at_ms=7, sender="jiayuan@localhost"
    ):
        outbox.put(message)
    deliverer.run_once()
    server.stop()
    deliverer.stop()
    outbox.close()
    [body] = got
    assert body["key"] == body["idempotency_key"]
    assert body["key"].startswith("pm:al-0001:raised:manager_webhook:")
    assert body["guidance"]["zh"].startswith("立即通知维保单位到场救援")
    assert body["subject"].startswith("【紧急 Critical】")
    assert body["place"]["estate"] == "sj-fs-001"
