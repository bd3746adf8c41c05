"""Group robots (WeCom, DingTalk, Feishu): signing, error codes, the durable rate limits,
and real delivery through the outbox to stand-ins of the three platforms (HTTP on
127.0.0.1, simulators/robot_platforms.py), including a storm of 200 alerts across a restart."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import multiprocessing
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from alerts.contacts import ContactBook, ContactsError
from alerts.delivery import Deliverer, DeliverySettings, Dispatcher
from alerts.links import LinkSigner
from alerts.model import AlertAction
from alerts.outbox import MessageState, Outbox
from alerts.outbox_api import message_out
from alerts.robot_delivery import RobotSettings, digest_text
from alerts.robot_ledger import RobotLedger
from alerts.robots import (
    LIMITS,
    WECOM_MARKDOWN_BYTES,
    WECOM_TEXT_BYTES,
    Verdict,
    classify,
    dingtalk_sign,
    feishu_sign,
    fit_bytes,
    robot_id,
)
from simulators.robot_platforms import RobotPlatforms
from tests.support.alerts_dispatch_support import FakeClock, make_alert

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "ding0123456789abcdef"
DING_SECRET = "SECtest0123456789abcdef"
FEISHU_TOKEN = "feishu-hook-0f1e2d3c"
FEISHU_SECRET = "feishu-secret-abc"
LINK_SECRET = "link-secret-不要外传"

CONTACTS = f"""
sj-fs-001:
  - name: 芳松物业群
    wecom_key: {WECOM_KEY}
    phone: "13800000000"
  - name: 芳松钉钉群
    dingtalk_token: {DING_TOKEN}
    dingtalk_secret: {DING_SECRET}
    phone: "13900000000"
  - name: 芳松飞书群
    feishu_token: {FEISHU_TOKEN}
    feishu_secret: {FEISHU_SECRET}
"""


# --- rules as data ----------------------------------------------------------------------


def test_dingtalk_sign_follows_the_published_recipe() -> None:
    # urlencode(base64(HMAC-SHA256(key=secret, msg="{timestamp}\n{secret}")))
    mac = hmac.new(b"this is secret", b"1700000000000\nthis is secret", hashlib.sha256)
    expected = quote_plus(base64.b64encode(mac.digest()).decode())
    assert dingtalk_sign("this is secret", 1_700_000_000_000) == expected
    assert "%" in expected or "+" not in expected  # url-encoded, no raw '+' or '/'


def test_feishu_sign_keys_the_hmac_with_timestamp_and_secret_over_nothing() -> None:
    mac = hmac.new(b"1700000000\nsecret", b"", hashlib.sha256)
    assert feishu_sign("secret", 1_700_000_000) == base64.b64encode(mac.digest()).decode()
    # Not the DingTalk way round (key and message swapped):
    assert (
        feishu_sign("secret", 1_700_000_000)
        != base64.b64encode(
            hmac.new(b"secret", b"1700000000\nsecret", hashlib.sha256).digest()
        ).decode()
    )


@pytest.mark.parametrize(
    ("channel", "answer", "verdict"),
    [
        ("wecom", {"errcode": 0, "errmsg": "ok"}, Verdict.DELIVERED),
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}, Verdict.THROTTLED),
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, Verdict.REFUSED),
        ("wecom", {"errcode": -1, "errmsg": "system busy"}, Verdict.FAILED),
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast"}, Verdict.THROTTLED),
        ("dingtalk", {"errcode": 310000, "errmsg": "sign not match"}, Verdict.REFUSED),
        ("dingtalk", {"errcode": 310000, "errmsg": "keywords not in content"}, Verdict.REFUSED),
        ("feishu", {"code": 0, "msg": "success", "data": {}}, Verdict.DELIVERED),
        ("feishu", {"StatusCode": 0, "StatusMessage": "success"}, Verdict.DELIVERED),
        ("feishu", {"code": 19021, "msg": "sign match fail"}, Verdict.REFUSED),
        ("feishu", {"code": 19024, "msg": "Key Words Not Found"}, Verdict.REFUSED),
        ("feishu", {"code": 11232, "msg": "frequency limited"}, Verdict.THROTTLED),
        ("feishu", {"code": 9499, "msg": "Bad Request"}, Verdict.FAILED),
    ],
)
def test_platform_codes_are_read_by_meaning(
    channel: str, answer: dict[str, object], verdict: Verdict
) -> None:
    assert classify(channel, 200, answer)[0] is verdict


def test_http_errors_without_json_are_retried_or_backed_off() -> None:
    assert classify("wecom", 502, None)[0] is Verdict.FAILED
    assert classify("feishu", 429, None)[0] is Verdict.THROTTLED


def test_the_real_limits() -> None:
    assert (LIMITS["wecom"].per_window, LIMITS["wecom"].window_s) == (20, 60.0)
    assert (LIMITS["dingtalk"].per_window, LIMITS["dingtalk"].block_s) == (20, 600.0)
    assert (LIMITS["feishu"].per_window, LIMITS["feishu"].per_second) == (100, 5)


def test_fit_bytes_never_cuts_a_character() -> None:
    text = "告警" * 1000
    cut = fit_bytes(text, 2048)
    assert len(cut.encode("utf-8")) <= 2048
    assert cut.endswith("…")
    assert fit_bytes("short", 2048) == "short"


# --- the ledger: real numbers, a clock moved by hand --------------------------------------


def test_wecom_limit_of_20_a_minute_holds_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "robot_sends.sqlite"
    ledger = RobotLedger(path)
    start = 1_700_000_000_000
    for second in range(20):
        send = ledger.begin("wecom:x", start + second * 1000)
        ledger.end(send, start + second * 1000 + 200)
    free, next_ms = ledger.free_slots("wecom:x", LIMITS["wecom"], start + 30_000)
    assert free == 0
    # The first send ended at +0.2 s: its slot frees a minute (and the margin) later.
    assert next_ms == start + 200 + 61_000 + 1
    ledger.close()
    again = RobotLedger(path)  # a restart forgets nothing
    assert again.free_slots("wecom:x", LIMITS["wecom"], start + 30_000)[0] == 0
    assert again.free_slots("wecom:x", LIMITS["wecom"], start + 61_300)[0] == 1
    assert again.free_slots("wecom:y", LIMITS["wecom"], start + 30_000)[0] == 20


def test_a_send_that_never_ended_counts_from_its_start(tmp_path: Path) -> None:
    ledger = RobotLedger(tmp_path / "l.sqlite")
    ledger.begin("dingtalk:x", 1_000_000)  # the process died while sending
    assert ledger.free_slots("dingtalk:x", LIMITS["dingtalk"], 1_030_000)[0] == 19


def test_feishu_five_a_second_and_a_hundred_a_minute(tmp_path: Path) -> None:
    ledger = RobotLedger(tmp_path / "l.sqlite")
    limits = LIMITS["feishu"]
    start = 5_000_000
    for i in range(5):
        ledger.end(ledger.begin("feishu:x", start + i * 10), start + i * 10 + 5)
    free, next_ms = ledger.free_slots("feishu:x", limits, start + 100)
    assert free == 0 and next_ms > start + 1000
    assert ledger.free_slots("feishu:x", limits, start + 1200)[0] == 5
    for i in range(95):
        at = start + 2000 + i * 300
        ledger.end(ledger.begin("feishu:x", at), at + 5)
    assert ledger.free_slots("feishu:x", limits, start + 2000 + 95 * 300)[0] == 0


def test_a_shared_ledger_grants_each_slot_once_to_concurrent_senders(tmp_path: Path) -> None:
    """Two ledgers on one file (two workers), 40 reservations each at the same moment
    from four threads: the robot's 20 slots are granted exactly 20 times."""
    path = tmp_path / "robot_sends.sqlite"
    ledgers = [RobotLedger(path), RobotLedger(path)]
    now = 1_700_000_000_000
    granted: list[int] = []

    def reserve(ledger: RobotLedger) -> None:
        for _ in range(20):
            send_id, _ = ledger.reserve("wecom:shared", LIMITS["wecom"], now)
            if send_id:
                granted.append(send_id)

    threads = [threading.Thread(target=reserve, args=(ledgers[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 20 and len(set(granted)) == 20
    send_id, next_ms = ledgers[0].reserve("wecom:shared", LIMITS["wecom"], now + 1000)
    assert send_id == 0 and next_ms == now + 61_000 + 1
    # A digest's pace: no slot within the gap after the last send, even with slots free.
    assert ledgers[1].reserve("wecom:other", LIMITS["wecom"], now)[0]
    assert ledgers[1].reserve("wecom:other", LIMITS["wecom"], now + 100, gap_ms=3000) == (
        0,
        now + 3000,
    )
    for ledger in ledgers:
        ledger.close()


def _reserve_in_a_process(path: Path, now: int, start: Any) -> None:
    ledger = RobotLedger(path)
    start.wait(10)
    for _ in range(20):
        ledger.reserve("dingtalk:shared", LIMITS["dingtalk"], now)
    ledger.close()


def test_a_shared_ledger_grants_each_slot_once_across_processes(tmp_path: Path) -> None:
    """Three processes (three workers) reserve on one new file at once: 20 slots in all."""
    path = tmp_path / "supervisor" / "robot_sends.sqlite"
    now = 1_700_000_000_000
    fork = multiprocessing.get_context("fork")
    start = fork.Event()
    workers = [
        fork.Process(target=_reserve_in_a_process, args=(path, now, start)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    ledger = RobotLedger(path)
    assert len(ledger.sends_since("dingtalk:shared", now - 1)) == 20
    ledger.close()


def test_a_dingtalk_block_is_kept(tmp_path: Path) -> None:
    ledger = RobotLedger(tmp_path / "l.sqlite")
    ledger.block("dingtalk:x", 9_000_000, "130101")
    assert ledger.free_slots("dingtalk:x", LIMITS["dingtalk"], 8_000_000) == (0, 9_000_000)
    assert ledger.free_slots("dingtalk:x", LIMITS["dingtalk"], 9_000_001)[0] == 20


# --- contacts ---------------------------------------------------------------------------


def test_contacts_with_robots_per_estate_street_and_company(tmp_path: Path) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(
        CONTACTS
        + "street:fangsong:\n  - {name: 街道群, dingtalk_token: st1}\n"
        + "company:wuye-01:\n  - {name: 公司群, feishu_token: co1}\n",
        encoding="utf-8",
    )
    book = ContactBook.load(path)
    robots = [r for c in book.for_estate("sj-fs-001") for r in c.robots()]
    assert robots == [
        ("wecom", WECOM_KEY, ""),
        ("dingtalk", DING_TOKEN, DING_SECRET),
        ("feishu", FEISHU_TOKEN, FEISHU_SECRET),
    ]
    assert book.robot_secrets() == {
        f"dingtalk:{DING_TOKEN}": DING_SECRET,
        f"feishu:{FEISHU_TOKEN}": FEISHU_SECRET,
    }
    outbox = Outbox(tmp_path / "o.sqlite")
    dispatcher = Dispatcher(
        outbox,
        Deliverer(outbox, DeliverySettings(webhook_secret="s")),
        book,
        opscentre_url="",
        callback_url="",
        company_of=lambda estate: "wuye-01" if estate == "sj-fs-001" else None,
    )
    names = [c.name for c in dispatcher.contacts_for(make_alert())]
    assert names == ["芳松物业群", "芳松钉钉群", "芳松飞书群", "街道群", "公司群"]
    assert [c.name for c in dispatcher.contacts_for(make_alert(), estate=False)] == ["街道群"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("e1:\n  - {name: 王, dingtalk_secret: s}\n", r"dingtalk_secret without dingtalk_token"),
        (
            "e1:\n  - {name: 王, wecom_key: 'https://x/send?key=1'}\n",
            r"wecom_key .* is the credential only",
        ),
        ("e1:\n  - {name: A, wecom_key: k}\n  - {name: B, wecom_key: k}\n", r"listed twice"),
    ],
)
def test_bad_robot_contacts_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ContactsError, match=message):
        ContactBook.load(path)


# --- delivery to the stand-ins ----------------------------------------------------------


def make_dispatcher(
    state: Path,
    standin: RobotPlatforms,
    contacts: str = CONTACTS,
    scale: float = 1.0,
    clock: FakeClock | None = None,
    links: bool = True,
    robot_ledger: Path | None = None,
) -> Dispatcher:
    state.mkdir(parents=True, exist_ok=True)
    path = state / "contacts.yaml"
    path.write_text(contacts, encoding="utf-8")
    book = ContactBook.load(path)
    robots = RobotSettings(
        base_urls=standin.urls(),
        secrets=book.robot_secrets(),
        limits={channel: limit.scaled(scale) for channel, limit in LIMITS.items()},
    )
    settings = DeliverySettings(
        webhook_secret="s",
        robots=robots,
        retry_initial_s=0.05,
        robot_ledger_db=str(robot_ledger or ""),
    )
    outbox = Outbox(state / "outbox.sqlite")
    deliverer = (
        Deliverer(outbox, settings, clock=clock, poll_s=0.05)
        if clock is not None
        else Deliverer(outbox, settings, poll_s=0.05)
    )
    signer = LinkSigner(LINK_SECRET, "http://127.0.0.1:8000", 3600) if links else None
    return Dispatcher(outbox, deliverer, book, opscentre_url="", callback_url="", links=signer)


def robots_only(dispatcher: Dispatcher, alert_number: int, **changes: object) -> list[str]:
    alert = make_alert(alert_number, **changes)
    return dispatcher.dispatch(alert, AlertAction.RAISED, alert.created_ms, work_order=False)


def test_one_alert_reaches_each_robot_chinese_first_with_link_and_mention(
    tmp_path: Path,
) -> None:
    with RobotPlatforms() as standin:
        for platform, token, secret in (
            ("wecom", WECOM_KEY, ""),
            ("dingtalk", DING_TOKEN, DING_SECRET),
            ("feishu", FEISHU_TOKEN, FEISHU_SECRET),
        ):
            standin.add(platform, token, secret)
        dispatcher = make_dispatcher(tmp_path, standin)
        keys = robots_only(dispatcher, 1)
        assert [k.split(":")[3] for k in keys] == ["wecom", "dingtalk", "feishu"]
        assert dispatcher.deliverer.run_once() == 3
        assert standin.refused == [] and standin.violations == []
        by_platform = {r.platform: r for r in standin.received}
        assert set(by_platform) == {"wecom", "dingtalk", "feishu"}
        for received in by_platform.values():
            text = received.text
            # Chinese first: the first line is the Chinese title; English follows.
            assert text.splitlines()[0].startswith("【紧急 Critical】新告警")
            assert text.index("小区：sj-fs-001") < text.index("Estate: sj-fs-001")
            for part in ("楼栋：b3", "设备：lift-01", "开始时间", "确认期限", "处置建议"):
                assert part in text
            link = re.search(r"http://127\.0\.0\.1:8000/m/alerts/al-0001\?t=\S+", text)
            assert link is not None
        assert by_platform["wecom"].body["msgtype"] == "text"
        checks = {c.channel: c for c in dispatcher.health().destinations}
        assert checks["dingtalk"].destination == standin.urls()["dingtalk"]
        assert all(checks[c].ok for c in ("wecom", "dingtalk", "feishu"))
        assert by_platform["wecom"].mobiles == ["13800000000"]
        assert by_platform["dingtalk"].mobiles == ["13900000000"]
        assert all(m.state is MessageState.DELIVERED for m in dispatcher.outbox.messages(limit=10))
        dispatcher.stop()


def test_wrong_secret_parks_with_the_platforms_reason_and_new_secret_requeues(
    tmp_path: Path,
) -> None:
    with RobotPlatforms() as standin:
        standin.add("dingtalk", DING_TOKEN, "SECthe-real-one")
        standin.add("feishu", FEISHU_TOKEN, "the-real-one")
        dispatcher = make_dispatcher(tmp_path, standin)  # wrong secrets in the contacts
        robots_only(dispatcher, 1)
        dispatcher.deliverer.run_once()
        parked = {m.channel: m for m in dispatcher.outbox.messages(MessageState.PARKED)}
        # Shown to people (API, CLI) without the credential.
        shown = {message_out(m).destination for m in parked.values()}
        assert not any(DING_TOKEN in d or WECOM_KEY in d or FEISHU_TOKEN in d for d in shown)
        assert shown == {robot_id(m.channel, m.destination) for m in parked.values()}
        assert "310000" in parked["dingtalk"].last_error
        assert "19021" in parked["feishu"].last_error
        assert "93000" in parked["wecom"].last_error  # an unknown key
        dispatcher.stop()
        fixed = CONTACTS.replace(DING_SECRET, "SECthe-real-one").replace(
            FEISHU_SECRET, "the-real-one"
        )
        standin.add("wecom", WECOM_KEY)
        again = make_dispatcher(tmp_path, standin, contacts=fixed)
        # The secrets changed: those parked messages are due again (the WeCom one too,
        # as it never recorded a configuration that differs… its key is now known).
        assert again.requeue_reconfigured() == 2
        again.deliverer.run_once()
        assert {r.platform for r in standin.received} == {"dingtalk", "feishu"}
        assert again.outbox.retry_parked() == 1
        again.deliverer.run_once()
        assert again.outbox.counts()["delivered"] == 3
        again.stop()


def test_throttled_robot_is_blocked_and_its_messages_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    with RobotPlatforms() as standin:
        standin.add("dingtalk", DING_TOKEN, DING_SECRET)
        # Someone else used this robot: the platform blocks it for 10 minutes.
        standin.robots["dingtalk", DING_TOKEN].blocked_until = time.monotonic() + 600
        contacts = "sj-fs-001:\n" + "\n".join(CONTACTS.splitlines()[5:9]) + "\n"
        dispatcher = make_dispatcher(tmp_path, standin, contacts=contacts, clock=clock)
        robots_only(dispatcher, 1)
        clock.advance(1)  # queued on the real clock, which has moved past the fake one
        dispatcher.deliverer.run_once()
        (message,) = dispatcher.outbox.messages()
        assert message.state is MessageState.PENDING
        assert "130101" in message.last_error and message.attempts == 0
        # Backed off for DingTalk's 10 minutes, not hammering the robot.
        assert message.next_attempt_ms >= int(clock.now * 1000) + 600_000 - 1
        clock.advance(300)
        assert dispatcher.deliverer.run_once() == 0
        standin.robots["dingtalk", DING_TOKEN].blocked_until = 0
        clock.advance(301)
        assert dispatcher.deliverer.run_once() == 1
        assert dispatcher.outbox.counts()["delivered"] == 1
        dispatcher.stop()


def test_digest_names_critical_first_and_fits_the_limit() -> None:
    from alerts.robot_delivery import RobotContent

    contents = [
        RobotContent(f"al-{i}", "warning" if i % 2 else "critical", "t", f"line {i} " + "字" * 40)
        for i in range(60)
    ]
    contents.sort(key=lambda c: c.severity != "critical")
    text, count = digest_text("wecom", contents, 60, WECOM_MARKDOWN_BYTES)
    assert len(text.encode("utf-8")) <= WECOM_MARKDOWN_BYTES
    assert 10 < count < 60
    assert text.startswith("**告警汇总**：60 条待通知（紧急 30 条）")
    assert f"另有 {60 - count} 条随后发送" in text
    assert text.index("line 0 ") < text.index("line 2 ")
    assert WECOM_TEXT_BYTES < WECOM_MARKDOWN_BYTES


# --- the storm --------------------------------------------------------------------------

SCALE = 10.0  # a "minute" of the stand-ins and of the limits lasts 6 s


@pytest.mark.slow
def test_storm_of_200_alerts_in_a_minute_with_a_restart(tmp_path: Path) -> None:
    """200 alerts in one (scaled) minute to one estate's three robots: no platform limit
    is broken, every alert is named in some message of every robot, nothing is lost
    although the delivery side restarts in the middle."""
    with RobotPlatforms(time_scale=SCALE) as standin:
        standin.add("wecom", WECOM_KEY)
        standin.add("dingtalk", DING_TOKEN, DING_SECRET)
        standin.add("feishu", FEISHU_TOKEN, FEISHU_SECRET)
        dispatcher = make_dispatcher(tmp_path, standin, scale=SCALE)
        dispatcher.start()
        minute = 60.0 / SCALE
        started = time.monotonic()
        severities = ("critical", "high", "warning")
        for number in range(1, 201):
            if number == 101:  # the gateway restarts: a new dispatcher on the same files
                dispatcher.stop()
                dispatcher = make_dispatcher(tmp_path, standin, scale=SCALE)
                dispatcher.start()
            robots_only(dispatcher, number, severity=severities[number % 3])
            time.sleep(max(0.0, started + number * minute / 200 - time.monotonic()))
        deadline = time.monotonic() + 12 * minute
        while time.monotonic() < deadline and dispatcher.outbox.counts()["pending"]:
            time.sleep(0.2)
        counts = dispatcher.outbox.counts()
        dispatcher.stop()
    assert standin.violations == []
    assert standin.refused == []
    assert counts == {"pending": 0, "delivered": 600, "parked": 0}
    for platform in ("wecom", "dingtalk", "feishu"):
        texts = "\n".join(standin.texts(platform))
        named = {int(n) for n in re.findall(r"al-(\d{4})", texts)}
        assert named == set(range(1, 201)), platform
        sent = len(standin.texts(platform))
        assert sent < 200, f"{platform}: digests, not one message per alert ({sent})"
    # Critical first: in every digest, no critical alert after a non-critical one.
    for text in standin.texts("wecom"):
        lines = [line for line in text.splitlines() if line.startswith("- 【")]
        ranks = [0 if line.startswith("- 【紧急】") else 1 for line in lines]
        assert ranks == sorted(ranks)


@pytest.mark.slow
def test_storm_at_the_real_limits_on_a_clock_moved_by_hand(tmp_path: Path) -> None:
    """The real numbers (20 a minute, 100 a minute and 5 a second, DingTalk's 10-minute
    block): 200 alerts over one minute, the deliverer and the platforms on one clock that
    the test moves in 0.1 s steps."""
    clock = FakeClock(time.time() + 10)  # ahead of the real clock the outbox queues on
    with RobotPlatforms(clock=clock) as standin:
        standin.add("wecom", WECOM_KEY)
        standin.add("dingtalk", DING_TOKEN, DING_SECRET)
        standin.add("feishu", FEISHU_TOKEN, FEISHU_SECRET)
        dispatcher = make_dispatcher(tmp_path, standin, clock=clock)
        start, queued, steps = clock.now, 0, 0
        while dispatcher.outbox.counts()["pending"] or queued < 200:
            while queued < 200 and clock.now >= start + queued * 0.3:
                queued += 1
                robots_only(dispatcher, queued, severity=("critical", "warning")[queued % 2])
            dispatcher.deliverer.run_once()
            clock.advance(0.1)
            steps += 1
            assert steps < 15 * 600, "not delivered within 15 minutes"
        took_s = clock.now - start
        dispatcher.stop()
    assert standin.violations == [] and standin.refused == []
    for platform in ("wecom", "dingtalk", "feishu"):
        texts = "\n".join(standin.texts(platform))
        assert {int(n) for n in re.findall(r"al-(\d{4})", texts)} == set(range(1, 201))
    # WeCom and DingTalk: at most 20 in any minute, so the 200 alerts went as digests.
    assert len(standin.texts("wecom")) <= 20 * (int(took_s / 60) + 1)
    assert took_s < 180


@pytest.mark.slow
def test_two_workers_sharing_the_ledger_keep_a_company_robots_limit(tmp_path: Path) -> None:
    """Two workers (`gateway run --workers 2`: each its own state directory and outbox)
    send to one company's robot at once, 100 alerts each in one (scaled) minute: with the
    supervisor's shared ledger the robot never carries more than its 20 a minute, and
    every alert is named."""
    shared = tmp_path / "supervisor" / "robot_sends.sqlite"
    contacts = "company:wuye-01:\n" + "\n".join(CONTACTS.splitlines()[2:5]) + "\n"
    with RobotPlatforms(time_scale=SCALE) as standin:
        standin.add("wecom", WECOM_KEY)
        workers = [
            make_dispatcher(
                tmp_path / f"w{k}", standin, contacts=contacts, scale=SCALE, robot_ledger=shared
            )
            for k in (1, 2)
        ]
        for worker in workers:
            worker.company_of = lambda estate: "wuye-01"
            worker.start()
        minute = 60.0 / SCALE
        started = time.monotonic()

        def storm(worker: Dispatcher, first: int) -> None:
            for index in range(100):
                robots_only(worker, first + index, severity=("critical", "warning")[index % 2])
                time.sleep(max(0.0, started + (index + 1) * minute / 100 - time.monotonic()))

        threads = [
            threading.Thread(target=storm, args=(worker, first))
            for worker, first in zip(workers, (1, 101), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 15 * minute
        while time.monotonic() < deadline and any(w.outbox.counts()["pending"] for w in workers):
            time.sleep(0.2)
        counts = [worker.outbox.counts() for worker in workers]
        for worker in workers:
            worker.stop()
    assert standin.violations == []
    assert standin.refused == []
    assert counts == [{"pending": 0, "delivered": 100, "parked": 0}] * 2
    texts = "\n".join(standin.texts("wecom"))
    assert {int(n) for n in re.findall(r"al-(\d{4})", texts)} == set(range(1, 201))


@pytest.mark.slow
def test_a_restart_remembers_what_the_robot_sent(tmp_path: Path) -> None:
    """After a restart the new deliverer knows what the old one sent (the ledger on
    disk): with half the minute's slots used, eight new alerts go as one digest, where a
    deliverer that forgot would send eight messages at once."""
    with RobotPlatforms(time_scale=SCALE) as standin:
        standin.add("wecom", WECOM_KEY)
        contacts = "sj-fs-001:\n" + "\n".join(CONTACTS.splitlines()[2:5]) + "\n"
        first = make_dispatcher(tmp_path, standin, contacts=contacts, scale=SCALE)
        for number in range(1, 11):
            robots_only(first, number)
        first.deliverer.run_once()  # quiet: one message each
        assert len(standin.received) == 10
        first.stop()
        second = make_dispatcher(tmp_path, standin, contacts=contacts, scale=SCALE)
        for number in range(11, 19):
            robots_only(second, number)
        second.deliverer.run_once()
        assert len(standin.received) == 10  # digests are paced: not right after a send
        time.sleep(60 / SCALE / 10 + 0.1)
        second.deliverer.run_once()
        assert len(standin.received) == 11
        digest = standin.received[-1]
        assert digest.body["msgtype"] == "markdown"
        assert {int(n) for n in re.findall(r"al-(\d{4})", digest.text)} == set(range(11, 19))
        assert second.outbox.counts()["delivered"] == 18
        second.stop()
    assert standin.violations == []


def test_asking_the_street_reaches_the_street_robot_and_email_carries_the_link(
    tmp_path: Path,
) -> None:
    contacts = (
        "sj-fs-001:\n  - {name: 王经理, email: wang@example.com}\n"
        f"street:fangsong:\n  - {{name: 街道群, dingtalk_token: {DING_TOKEN}}}\n"
    )
    with RobotPlatforms() as standin:
        standin.add("dingtalk", DING_TOKEN)
        dispatcher = make_dispatcher(tmp_path, standin, contacts=contacts)
        alert = make_alert(1)
        keys = dispatcher.dispatch(alert, AlertAction.RAISED, alert.created_ms, work_order=False)
        mail = dispatcher.outbox.get(next(k for k in keys if ":email:" in k))
        assert mail is not None
        parsed = email.message_from_bytes(mail.body, policy=email.policy.default)
        body = parsed.get_body(("plain",))
        assert body is not None
        link = "处理页面 Alert page: http://127.0.0.1:8000/m/alerts/al-0001?t="
        assert link in body.get_content()
        dispatcher.deliverer.run_once()
        asked = dispatcher.ask_street(alert, alert.created_ms + 60_000, "需要消防支援")
        assert [k.split(":")[3] for k in asked] == ["dingtalk"]  # the street's, not the estate's
        dispatcher.deliverer.run_once()
        (last, *_) = reversed(standin.texts("dingtalk"))
        assert "需要消防支援" in last and "/m/alerts/al-0001?t=" in last
        dispatcher.stop()
