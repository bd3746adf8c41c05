"""Work orders parked because their destination was not configured: they are seen
(log, /health, metric, API, command), and they reach the operations centre once the
configuration that parked them changes, each exactly once, however the receiver learns of
the order first."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.delivery import Dispatcher
from alerts.model import AlertAction, EscalationLevel
from alerts.outbox import MessageState, Outbox
from alerts.workorder import SCHEMA_VERSION
from gateway.service import Gateway
from jiayuan.config import AlertsConfig, Config
from jiayuan.state import OUTBOX_FILE
from tests.support.alerts_dispatch_support import SECRET, make_alert
from tests.support.alerts_lifecycle_support import anomaly
from tools.opscentre import ReferenceOpsCentre
from tools.servers import free_port

# Nine work orders of one estate; the first is the critical one the issue lost.
CODES = (
    ("lift.trapped", "L1"),
    ("lift.power_loss", "L2"),
    ("lift.fault_code", "L3"),
    ("fire.alarm", "F1"),
    ("fire.fault", "F2"),
    ("fire.supervisory", "F3"),
    ("water_tank.level_low", "W1"),
    ("water_tank.lid_open", "W2"),
    ("water_tank.chlorine_low", "W3"),
)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[ReferenceOpsCentre]:
    ops = ReferenceOpsCentre(tmp_path / "opscentre.sqlite", SECRET, port=free_port())
    yield ops
    ops.close()


def fast(alerts: AlertsConfig, **changes: Any) -> AlertsConfig:
    return replace(alerts, retry_initial_s=0.05, retry_max_s=0.2, **changes)


def wait_until(condition: Any, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def deliveries(centre: ReferenceOpsCentre) -> dict[str, int]:
    return {o["key"]: o["deliveries"] for o in centre.store.workorders()}


def test_orders_parked_without_a_url_reach_the_centre_once_after_a_restart_with_one(
    config: Config, centre: ReferenceOpsCentre, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The trapped passenger's acknowledgement deadline passes while nothing can be sent:
    # its escalations are queued behind a create the centre never received.
    policy = tmp_path / "policy.yaml"
    policy.write_text("codes:\n  lift.trapped: {ack_deadline_s: 1}\n", encoding="utf-8")
    unset = replace(config, alerts=fast(config.alerts, policy_file=str(policy)))
    caplog.set_level(logging.INFO)
    first = Gateway(unset)
    first.start()
    try:
        assert first.alerts is not None
        # Said loudly at start: work orders have nowhere to go.
        assert any(
            r.levelno >= logging.ERROR and "opscentre_url" in r.getMessage() for r in caplog.records
        )
        first.alerts.on_anomalies([anomaly(code, device=device) for code, device in CODES])
        outbox = first.alerts.dispatcher.outbox
        # Nine creates and the trapped passenger's two escalations (street, district).
        assert wait_until(
            lambda: len(outbox.messages(MessageState.PARKED, channel="workorder")) == 11
        )
        health = httpx.get(f"{first.api_url}/health", timeout=5).json()
        delivery = health["delivery"]
        assert delivery["status"] == "degraded"
        assert delivery["outbox"]["parked"] == 11
        assert any("opscentre_url" in problem for problem in delivery["problems"])
        metrics = httpx.get(f"{first.api_url}/metrics", timeout=5).text
        assert 'jiayuan_alerts_outbox_messages{channel="workorder",state="parked"}' in metrics
    finally:
        first.stop()

    centre.start()
    configured = replace(
        unset,
        alerts=replace(unset.alerts, opscentre_url=centre.workorders_url, webhook_secret=SECRET),
    )
    second = Gateway(configured)
    second.start()
    try:
        assert second.alerts is not None
        outbox = second.alerts.dispatcher.outbox
        assert wait_until(
            lambda: outbox.counts()["pending"] == 0 and outbox.counts()["parked"] == 0
        ), outbox.counts()
        queued = {m.key for m in outbox.messages(channel="workorder")}
        got = deliveries(centre)
        assert got == dict.fromkeys(queued, 1)  # every order, each exactly once
        creates = {o["body"]["code"]: o for o in centre.store.workorders(kind="create")}
        assert set(creates) == {code for code, _ in CODES}
        assert creates["lift.trapped"]["body"]["severity"] == "critical"
        # The escalations were queued while the create was undelivered: they carry it.
        escalations = centre.store.workorders(kind="escalate")
        assert len(escalations) == 2
        for escalation in escalations:
            order = escalation["body"]["order"]
            assert order == creates["lift.trapped"]["body"]
        health = httpx.get(f"{second.api_url}/health", timeout=5).json()
        assert health["delivery"]["status"] == "ok"
        assert health["delivery"]["outbox"]["parked"] == 0
    finally:
        second.stop()


# --- the configuration that parked a message changes ---------------------------------------


def dispatcher(state: Path, **alerts: Any) -> Dispatcher:
    return Dispatcher.from_config(AlertsConfig(**alerts), state, "http://127.0.0.1:9/cb")


def test_a_parked_message_is_requeued_when_its_configuration_changes_and_only_then(
    tmp_path: Path, centre: ReferenceOpsCentre
) -> None:
    centre.start()
    state = tmp_path / "state"
    wrong_url = {"opscentre_url": centre.url + "/nowhere", "webhook_secret": SECRET}
    first = dispatcher(state, **wrong_url)
    first.dispatch(make_alert(), AlertAction.RAISED, at_ms=1)
    first.deliverer.run_once()
    [parked] = first.outbox.messages(MessageState.PARKED)
    assert parked.last_error.startswith("HTTP 404")
    first.stop()

    unchanged = dispatcher(state, **wrong_url)
    assert unchanged.requeue_reconfigured() == 0  # the same cause would park it again
    assert unchanged.outbox.counts()["parked"] == 1
    unchanged.stop()

    wrong_secret = dispatcher(
        state, opscentre_url=centre.workorders_url, webhook_secret="not the shared one"
    )
    assert wrong_secret.requeue_reconfigured() == 1  # the URL changed
    wrong_secret.deliverer.run_once()
    [parked] = wrong_secret.outbox.messages(MessageState.PARKED)
    assert parked.last_error.startswith("HTTP 401")
    wrong_secret.stop()

    fixed = dispatcher(state, opscentre_url=centre.workorders_url, webhook_secret=SECRET)
    assert fixed.requeue_reconfigured() == 1  # the secret changed
    fixed.deliverer.run_once()
    assert deliveries(centre) == {"wo:al-0001": 1}
    assert fixed.outbox.counts() == {"pending": 0, "delivered": 1, "parked": 0}
    fixed.stop()


def test_messages_parked_before_causes_were_recorded_are_requeued_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = dispatcher(state)
    old.dispatch(make_alert(), AlertAction.RAISED, at_ms=1)
    [message] = old.outbox.due()
    old.outbox.park(message.id, "no destination URL for workorder")  # no configuration noted
    old.stop()
    again = dispatcher(state)
    assert again.requeue_reconfigured() == 1
    again.deliverer.run_once()  # still no URL: parked again, now with its configuration
    assert again.requeue_reconfigured() == 0
    again.stop()


# --- an update for an order the receiver never acknowledged ---------------------------------


def test_an_escalation_for_an_undelivered_order_carries_the_order(
    tmp_path: Path, centre: ReferenceOpsCentre
) -> None:
    centre.start()
    sender = dispatcher(
        tmp_path / "state", opscentre_url=centre.workorders_url, webhook_secret=SECRET
    )
    alert = make_alert()
    sender.dispatch(alert, AlertAction.RAISED, at_ms=10)
    [create] = sender.outbox.due()
    sender.outbox.park(create.id, "HTTP 400: refused for now")
    escalated = replace(alert, escalation=EscalationLevel.STREET)
    assert sender.dispatch(escalated, AlertAction.ESCALATED, at_ms=20) == ["wo:al-0001:esc:street"]
    sender.deliverer.run_once()  # only the escalation goes

    [escalation] = centre.store.workorders(kind="escalate")
    assert escalation["body"]["order"] == json.loads(create.body)
    assert escalation["body"]["schema_version"] == SCHEMA_VERSION
    # The receiver holds the order from the escalation alone: one ticket, the create known.
    assert deliveries(centre) == {"wo:al-0001": 0, "wo:al-0001:esc:street": 1}
    assert [t.alert_id for t in centre.store.tickets()] == ["al-0001"]

    assert sender.outbox.retry_parked() == 1
    sender.deliverer.run_once()
    assert deliveries(centre) == {"wo:al-0001": 1, "wo:al-0001:esc:street": 1}
    assert len(centre.store.tickets()) == 1
    # Acknowledged now: a later update does not carry it again.
    district = replace(alert, escalation=EscalationLevel.DISTRICT)
    sender.dispatch(district, AlertAction.ESCALATED, at_ms=30)
    sender.deliverer.run_once()
    latest = centre.store.workorders(kind="escalate")[-1]["body"]
    assert latest["idempotency_key"] == "wo:al-0001:esc:district" and "order" not in latest
    sender.stop()


# --- seen and retried by people -------------------------------------------------------------


def parked_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    without = dispatcher(state, webhook_secret=SECRET)
    for number in (1, 2, 3):
        without.dispatch(make_alert(number), AlertAction.RAISED, at_ms=number)
    without.deliverer.run_once()
    assert without.outbox.counts()["parked"] == 3
    without.stop()
    return state


def test_parked_messages_are_listed_and_retried_through_the_api(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from alerts.outbox_api import create_outbox_router

    state = parked_state(tmp_path)
    service = dispatcher(state, webhook_secret=SECRET)
    app = FastAPI()
    app.include_router(create_outbox_router(service))
    with TestClient(app) as http:
        listed = http.get("/outbox", params={"state": "parked"}).json()
        assert [m["key"] for m in listed] == ["wo:al-0003", "wo:al-0002", "wo:al-0001"]
        assert "opscentre_url" in listed[0]["last_error"]
        assert http.get("/outbox/counts").json()["workorder"]["parked"] == 3
        one = http.post("/outbox/retry", json={"ids": [listed[0]["id"]]})
        assert one.json() == {"retried": 1}
        assert http.post("/outbox/retry", json={"keys": ["wo:al-0002"]}).json() == {"retried": 1}
        assert http.post("/outbox/retry", json={"all": True}).json() == {"retried": 1}
        assert http.post("/outbox/retry", json={}).status_code == 422  # say which
        unknown = http.post("/outbox/retry", json={"ids": [999]})
        assert unknown.status_code == 404 and "999" in unknown.text
    assert service.outbox.counts()["pending"] == 3
    service.stop()


def test_parked_messages_are_listed_and_retried_by_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.cli import main

    state = parked_state(tmp_path)
    config = tmp_path / "jiayuan.toml"
    config.write_text(f'[gateway]\nstate_dir = "{state}"\n', encoding="utf-8")
    base = ["--config", str(config), "alerts", "outbox"]

    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "wo:al-0001" in out and "parked" in out and "opscentre_url" in out
    assert "3" in out.splitlines()[-1]  # the counts close the list

    assert main([*base, "retry", "wo:al-0001"]) == 0
    assert "1" in capsys.readouterr().out
    assert main([*base, "retry", "404"]) == 1
    assert "404" in capsys.readouterr().err
    assert main([*base, "retry"]) == 2  # neither ids, keys nor --all
    assert "--all" in capsys.readouterr().err
    assert main([*base, "retry", "--all"]) == 0
    assert "2" in capsys.readouterr().out
    with Outbox(state / OUTBOX_FILE) as outbox:
        assert outbox.counts()["pending"] == 3


def test_the_outbox_api_is_for_city_wide_operations_centres_only(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from alerts.outbox_api import create_outbox_router
    from jiayuan.api_auth import ApiAuth, Caller, Role, token_hash

    state = parked_state(tmp_path)
    service = dispatcher(state, webhook_secret=SECRET)
    callers = {
        token_hash("city"): Caller("city ops", Role.OPS_CENTRE, frozenset({"*"})),
        token_hash("street"): Caller("street ops", Role.OPS_CENTRE, frozenset({"yongfeng"})),
        token_hash("viewer"): Caller("city viewer", Role.VIEWER, frozenset({"*"})),
    }
    app = FastAPI()
    app.state.api_auth = ApiAuth(enabled=True, callers=callers)
    app.include_router(create_outbox_router(service))
    with TestClient(app) as http:
        for token, status in (("city", 200), ("street", 403), ("viewer", 403), ("nobody", 401)):
            answer = http.get("/outbox", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == status, (token, answer.text)
        refused = http.post(
            "/outbox/retry", json={"all": True}, headers={"Authorization": "Bearer street"}
        )
        assert refused.status_code == 403 and "'*'" in refused.text
    assert service.outbox.counts()["parked"] == 3  # nothing retried by a refused caller
    service.stop()


def test_every_channel_the_contacts_use_is_checked(tmp_path: Path) -> None:
    from alerts.contacts import ContactBook
    from alerts.destinations import check_destinations

    contacts = tmp_path / "contacts.yaml"
    contacts.write_text(
        "e1:\n  - {name: 王经理, email: wang@example.com, webhook_url: 'http://127.0.0.1:9/h'}\n",
        encoding="utf-8",
    )
    book = ContactBook.load(contacts)
    nothing = check_destinations(opscentre_url="", webhook_secret="", smtp_url="", contacts=book)
    problems = {check.channel: check.problem for check in nothing}
    assert set(problems) == {"workorder", "email", "manager_webhook"}
    assert "opscentre_url" in problems["workorder"]
    assert "smtp_url" in problems["email"]
    assert "webhook_secret" in problems["manager_webhook"]
    assert all(problem[0] > "\u2e80" for problem in problems.values())  # Chinese first
    wrong = check_destinations(
        opscentre_url="ftp://user:pw@host/x", webhook_secret="s", smtp_url="", contacts=None
    )
    assert "http(s)" in wrong[0].problem and "pw" not in wrong[0].destination
    fine = check_destinations(
        opscentre_url="https://grid.example/wo?sig=1",
        webhook_secret="s",
        smtp_url="smtp://127.0.0.1:25",
        contacts=book,
    )
    assert [c.problem for c in fine] == ["", "", ""]
    assert fine[0].destination == "https://grid.example/wo"
