"""The operations board's page and the /whoami it reads: a public page without data, the
role's steps for its buttons, nothing fetched from elsewhere."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from alerts.board import create_board_router
from jiayuan.api_auth import ApiAuth, Caller, Role, current_caller, token_hash


def client() -> TestClient:
    ops = Caller("centre-fs", Role.OPS_CENTRE, frozenset({"fangsong"}))
    viewer = Caller("screen", Role.VIEWER, frozenset({"*"}))
    pm = Caller("pm-e1", Role.PROPERTY_MANAGER, estates=frozenset({"e1"}))
    callers = {token_hash("ops"): ops, token_hash("view"): viewer, token_hash("pm"): pm}
    app = FastAPI(dependencies=[Depends(current_caller)])
    app.state.api_auth = ApiAuth(enabled=True, callers=callers)
    app.include_router(create_board_router())
    return TestClient(app)


def test_the_board_page_is_public_self_contained_and_small() -> None:
    with client() as http:
        page = http.get("/board")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        text = page.text
        assert text.index("运营中心告警看板") < text.index("Operations board")
        assert "http://" not in text and "https://" not in text  # every asset inline
        assert len(text.encode()) < 24 * 1024
        assert "/alerts/stream" in text and "Authorization" in text


def test_whoami_tells_the_role_and_its_steps() -> None:
    with client() as http:
        assert http.get("/whoami").status_code == 401

        def who(token: str) -> dict[str, object]:
            answer: dict[str, object] = http.get(
                "/whoami", headers={"Authorization": f"Bearer {token}"}
            ).json()
            return answer

        assert who("view") == {"name": "screen", "role": "viewer", "steps": [], "everywhere": True}
        ops = who("ops")
        assert {"acknowledge", "dispatch", "resolve"} <= set(ops["steps"])  # type: ignore[arg-type]
        pm = who("pm")
        assert "dispatch" not in pm["steps"] and "resolve" in pm["steps"]  # type: ignore[operator]
