"""The alert page for phones: signed links (this alert only, until expiry, unaltered,
revocable), the buttons as engine steps in the history, the refusal page, and that the
page works behind the API's token check without a token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from alerts.engine import AlertEngine
from alerts.links import LinkLedger, LinkRefusal, LinkRefused, LinkSigner
from alerts.mobile import create_mobile_router
from alerts.model import Alert, AlertAction, AlertState
from alerts.store import AlertStore
from jiayuan.api_auth import ApiAuth, Caller, Role, current_caller, token_hash
from tests.support.alerts_lifecycle_support import FakeClock, anomaly, make_engine

SECRET = "link-secret-不要外传"
NOW_S = 1_700_000_100.0


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(SECRET, "https://jiayuan.example", 3600)


def test_a_link_is_for_one_alert_one_contact_and_a_time(signer: LinkSigner) -> None:
    link = signer.link("al-1", "芳松物业群", NOW_S)
    assert link.startswith("https://jiayuan.example/m/alerts/al-1?t=")
    assert len(link) < 140  # short enough for a robot's digest line
    token = link.split("t=")[1]
    grant = signer.verify("al-1", token, NOW_S + 10)
    assert (grant.alert_id, grant.contact) == ("al-1", "芳松物业群")
    for alert_id, token_used, now, refusal in [
        ("al-2", token, NOW_S, LinkRefusal.TAMPERED),  # another alert
        ("al-1", token, NOW_S + 3601, LinkRefusal.EXPIRED),
        (
            "al-1",
            token.replace(token.split(".")[0], str(int(NOW_S) + 99999)),
            NOW_S,
            LinkRefusal.TAMPERED,
        ),  # a later expiry written in
        (
            "al-1",
            token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
            NOW_S,
            LinkRefusal.TAMPERED,
        ),
        ("al-1", "garbage", NOW_S, LinkRefusal.MALFORMED),
    ]:
        with pytest.raises(LinkRefused) as refused:
            signer.verify(alert_id, token_used, now)
        assert refused.value.refusal is refusal
    other = LinkSigner("another-secret", "https://jiayuan.example", 3600)
    with pytest.raises(LinkRefused):
        other.verify("al-1", token, NOW_S)


class Parts:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(int(NOW_S * 1000))
        self.engine, self.store = make_engine(tmp_path / "alerts.sqlite", self.clock)
        self.ledger = LinkLedger(tmp_path / "links.sqlite")
        self.signer = LinkSigner(SECRET, "http://testserver", 3600)
        self.asked: list[tuple[str, str]] = []
        (event,) = [
            e for e in self.engine.on_anomalies([anomaly()]) if e.action is AlertAction.RAISED
        ]
        self.alert: Alert = event.alert

    def ask_street(self, alert: Alert, at_ms: int, note: str) -> list[str]:
        self.asked.append((alert.id, note))
        return []

    def path(self, contact: str = "芳松物业群") -> str:
        link = self.signer.link(self.alert.id, contact, self.clock() / 1000)
        return link.removeprefix("http://testserver")


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return Parts(tmp_path)


def app_for(parts: Parts, auth: ApiAuth | None = None) -> FastAPI:
    app = FastAPI(dependencies=[Depends(current_caller)])
    if auth is not None:
        app.state.api_auth = auth
    app.include_router(
        create_mobile_router(
            parts.engine,
            parts.store,
            parts.signer,
            parts.ledger,
            parts.ask_street,
            clock=lambda: parts.clock() / 1000,
        )
    )
    return app


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    # The API's token check is on: the page must open without a token.
    ops = Caller("centre", Role.OPS_CENTRE, frozenset({"*"}))
    auth = ApiAuth(enabled=True, callers={"x": ops})
    with TestClient(app_for(parts, auth)) as test_client:
        yield test_client


def form(action: str, **fields: str) -> dict[str, Any]:
    return {"action": action, **fields}


def test_the_page_shows_the_alert_and_opening_is_logged(
    client: TestClient, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    response = client.get(parts.path())
    assert response.status_code == 200
    page = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert len(page.encode()) < 16 * 1024  # small for a 4G phone
    assert "<script src" not in page and "<link" not in page  # nothing fetched
    words = ("songjiang-e01", "b01", "L1", "确认期限", "处理期限", "处置建议", "确认收到", "开始")
    for part in (parts.alert.title_zh, *words, "已处理", "请求街道协助", "经过"):
        assert part in page
    assert page.index(parts.alert.title_zh) < page.index(parts.alert.title_en)
    (use,) = parts.ledger.uses(parts.alert.id)
    assert (use.contact, use.what) == ("芳松物业群", "opened")
    assert "芳松物业群" in caplog.text


def test_acknowledge_then_mark_handled_lands_in_the_history(
    client: TestClient, parts: Parts
) -> None:
    path = parts.path()
    act = path.replace("?t=", "/act?t=")
    response = client.post(act, data=form("acknowledge", name="王师傅"), follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "已确认收到" in page
    assert parts.store.get(parts.alert.id).state is AlertState.ACKNOWLEDGED
    # Handled needs a note: without one, nothing changes and the page says why.
    refused = client.post(act, data=form("resolve", name="王师傅"))
    assert refused.status_code == 200 and "请填写备注" in refused.text
    assert parts.store.get(parts.alert.id).state is AlertState.ACKNOWLEDGED
    parts.clock.advance(60_000)
    done = client.post(act, data=form("resolve", name="王师傅", note="已放出被困人员"))
    assert done.status_code == 200 and "已标记为处理完毕" in done.text
    history = parts.store.history(parts.alert.id)
    steps = [(h.action, h.actor, h.note) for h in history[-2:]]
    assert steps == [
        (AlertAction.ACKNOWLEDGED, "王师傅 [链接 link: 芳松物业群]", ""),
        (AlertAction.RESOLVED, "王师傅 [链接 link: 芳松物业群]", "已放出被困人员"),
    ]
    assert [u.what for u in parts.ledger.uses(parts.alert.id)].count("resolve") == 2
    # A second acknowledge is refused by the lifecycle, shown on the page, not a crash.
    again = client.post(act, data=form("acknowledge"))
    assert again.status_code == 200 and "此操作未执行" in again.text


def test_ask_the_street_notes_it_and_queues_the_street(client: TestClient, parts: Parts) -> None:
    act = parts.path().replace("?t=", "/act?t=")
    client.post(act, data=form("help", note="需要消防支援"))
    assert parts.asked == [(parts.alert.id, "请求街道协助 asks the street for help: 需要消防支援")]
    last = parts.store.history(parts.alert.id)[-1]
    assert last.action is AlertAction.NOTED and "需要消防支援" in last.note


@pytest.mark.parametrize("kind", ["tampered", "expired", "other_alert", "revoked", "missing"])
def test_bad_links_get_a_clear_refusal_page(client: TestClient, parts: Parts, kind: str) -> None:
    path = parts.path()
    token = path.split("t=")[1]
    expected = {"expired": 410}.get(kind, 403)
    if kind == "tampered":
        path = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    elif kind == "expired":
        parts.clock.advance(3601 * 1000)
    elif kind == "other_alert":
        path = path.replace(parts.alert.id, "al-someone-else")
    elif kind == "revoked":
        parts.ledger.revoke(token.split(".")[2], "centre", 0)
    else:
        path = path.split("?")[0]
    response = client.get(path)
    assert response.status_code == expected
    assert "无法打开告警页面" in response.text
    assert response.text.index("无法打开") < response.text.index("cannot be opened")
    page, _, query = path.partition("?")
    act = client.post(f"{page}/act?{query}", data=form("acknowledge"))
    assert act.status_code in (403, 410)
    assert parts.store.get(parts.alert.id).state is AlertState.OPEN


def test_revoking_needs_the_operations_centre(parts: Parts) -> None:
    ops = Caller("centre", Role.OPS_CENTRE, frozenset({"*"}))
    pm = Caller("pm", Role.PROPERTY_MANAGER, estates=frozenset({"songjiang-e01"}))
    auth = ApiAuth(enabled=True, callers={token_hash("ops-token"): ops, token_hash("pm-token"): pm})
    with TestClient(app_for(parts, auth)) as client:
        path = parts.path()
        token = path.split("t=")[1]
        assert client.post("/links/revoke", json={"token": token}).status_code == 401
        denied = client.post(
            "/links/revoke", json={"token": token}, headers={"Authorization": "Bearer pm-token"}
        )
        assert denied.status_code == 403
        done = client.post(
            "/links/revoke", json={"token": token}, headers={"Authorization": "Bearer ops-token"}
        )
        assert done.json() == {"nonce": token.split(".")[2], "revoked": True}
        assert client.get(path).status_code == 403
        assert "已被收回" in client.get(path).text


def test_links_in_robot_messages_open_the_page(parts: Parts) -> None:
    """The link a robot carries is one the page accepts (same signer, same alert)."""
    engine: AlertEngine = parts.engine
    store: AlertStore = parts.store
    assert engine.store is store
    link = parts.signer.link(parts.alert.id, "芳松物业群", parts.clock() / 1000)
    assert re.fullmatch(r"http://testserver/m/alerts/al-[0-9a-f]+\?t=[\w.-]+", link)
