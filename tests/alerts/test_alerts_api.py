"""The alerts HTTP API: listing, detail with history, steps (404/409/422), silences,
incidents, OpenAPI, and the live SSE stream against a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import create_alerts_router
from alerts.engine import AlertEngine, AlertEvent
from alerts.store import AlertStore
from alerts.stream import Broadcaster, Lost
from gateway.api import ApiServer
from tests.support.alerts_lifecycle_support import MINUTE, T0, FakeClock, anomaly, make_engine


@pytest.fixture
def parts(tmp_path: Path) -> tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock]:
    clock = FakeClock()
    broadcaster: Broadcaster[AlertEvent] = Broadcaster(queue_size=8)
    engine, store = make_engine(tmp_path / "alerts.db", clock, sinks=[broadcaster])
    return engine, store, broadcaster, clock


@pytest.fixture
def client(
    parts: tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock],
) -> Iterator[TestClient]:
    engine, store, broadcaster, _ = parts
    app = FastAPI()
    app.include_router(create_alerts_router(engine, store, broadcaster))
    with TestClient(app) as test_client:
        yield test_client


def test_list_filter_and_detail_with_history(
    client: TestClient, parts: tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock]
) -> None:
    engine, _, _, clock = parts
    (trapped,) = engine.on_anomalies([anomaly("lift.trapped")])
    clock.advance(MINUTE)
    engine.on_anomalies([anomaly("water_tank.ph_out_of_range", device="W1", estate="e02")])
    engine.acknowledge(trapped.alert.id, "王工", "on my way")

    everything = client.get("/alerts").json()
    assert [a["code"] for a in everything] == ["water_tank.ph_out_of_range", "lift.trapped"]
    assert everything[1]["title"] == "困人 Passenger trapped"
    assert [a["code"] for a in client.get("/alerts?severity=critical").json()] == ["lift.trapped"]
    assert [a["estate"] for a in client.get("/alerts?estate=e02").json()] == ["e02"]
    both = client.get("/alerts?state=open&state=acknowledged").json()
    assert len(both) == 2
    assert client.get("/alerts?state=acknowledged&kind=water_tank").json() == []
    assert len(client.get(f"/alerts?since={T0 + MINUTE}").json()) == 1
    assert len(client.get(f"/alerts?until={T0 + MINUTE}&street=yongfeng").json()) == 1
    assert len(client.get("/alerts?limit=1&offset=1").json()) == 1

    detail = client.get(f"/alerts/{trapped.alert.id}").json()
    assert detail["alert"]["state"] == "acknowledged"
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("raised", "system"),
        ("acknowledged", "王工"),
    ]
    assert detail["history"][1]["note"] == "on my way"
    assert client.get("/alerts/al-unknown").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=sleeping", "state"),
        ("severity=urgent", "severity"),
        ("kind=toaster", "kind"),
        ("limit=0", "limit"),
        ("since=-5", "since"),
    ],
)
def test_bad_filters_get_422_naming_the_field(client: TestClient, query: str, field: str) -> None:
    response = client.get(f"/alerts?{query}")
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]


def test_steps_over_http_with_404_409_and_422(
    client: TestClient, parts: tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock]
) -> None:
    engine, store, _, _ = parts
    (raised,) = engine.on_anomalies([anomaly()])
    url = f"/alerts/{raised.alert.id}"
    dispatched = client.post(
        f"{url}/dispatch", json={"actor": "opscentre", "work_order_id": "WO-9"}
    )
    assert dispatched.status_code == 200
    assert dispatched.json()["state"] == "dispatched"
    assert dispatched.json()["work_order_id"] == "WO-9"

    refused = client.post(f"{url}/acknowledge", json={"actor": "王工"})
    assert refused.status_code == 409
    body = refused.json()["detail"]
    assert body["state"] == "dispatched" and body["wanted"] == "acknowledged"
    assert "from there it can go to: cancelled, resolved" in body["reason"]

    assert client.post(f"{url}/resolve", json={"actor": "王工", "note": "ok"}).status_code == 200
    assert client.post(f"{url}/reopen", json={"actor": "李主任"}).json()["state"] == "open"
    assert client.post(f"{url}/resolve", json={"actor": "王工"}).status_code == 200
    assert client.post(f"{url}/close", json={"actor": "李主任"}).json()["state"] == "closed"
    final = client.post(f"{url}/cancel", json={"actor": "李主任"})
    assert final.status_code == 409 and "final" in final.json()["detail"]["reason"]

    missing = client.post("/alerts/al-nope/acknowledge", json={"actor": "王工"})
    assert missing.status_code == 404 and "al-nope" in missing.json()["detail"]
    for bad, field in [
        ({}, "actor"),
        ({"actor": ""}, "actor"),
        ({"actor": "王工", "mood": "tired"}, "mood"),
    ]:
        response = client.post(f"{url}/acknowledge", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][-1] == field
    no_order = client.post(f"{url}/dispatch", json={"actor": "opscentre"})
    assert no_order.status_code == 422
    assert no_order.json()["detail"][0]["loc"][-1] == "work_order_id"
    assert [h.action.value for h in store.history(raised.alert.id)] == [
        "raised",
        "dispatched",
        "resolved",
        "reopened",
        "resolved",
        "closed",
    ]


def test_silences_and_incidents_over_http(
    client: TestClient, parts: tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock]
) -> None:
    engine, _, _, _ = parts
    made = client.post(
        "/silences",
        json={
            "scope": "building",
            "estate": "songjiang-e01",
            "building": "b01",
            "until_ms": T0 + 60 * MINUTE,
            "actor": "维保 Chen",
            "note": "annual lift inspection",
        },
    )
    assert made.status_code == 201
    silence = made.json()
    assert silence["scope"] == "building" and silence["starts_ms"] == T0
    assert [s["id"] for s in client.get("/silences").json()] == [silence["id"]]
    (raised,) = [e for e in engine.on_anomalies([anomaly()]) if e.action.value == "raised"]
    assert raised.alert.silenced and not raised.routed

    missing_building = client.post(
        "/silences",
        json={"scope": "building", "estate": "e01", "until_ms": T0 + 1, "actor": "Chen"},
    )
    assert missing_building.status_code == 422
    assert "building id" in missing_building.json()["detail"]
    bad_scope = client.post(
        "/silences", json={"scope": "city", "estate": "e01", "until_ms": 5, "actor": "Chen"}
    )
    assert bad_scope.status_code == 422 and bad_scope.json()["detail"][0]["loc"][-1] == "scope"

    assert client.delete(f"/silences/{silence['id']}").status_code == 204
    assert client.delete(f"/silences/{silence['id']}").status_code == 404
    assert client.get("/silences").json() == []

    incidents = client.get("/incidents").json()
    assert len(incidents) == 1
    assert incidents[0]["lead_alert_id"] == raised.alert.id
    assert incidents[0]["alert_ids"] == [raised.alert.id]
    assert client.get("/incidents?estate=elsewhere").json() == []


def test_openapi_documents_the_routes_and_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/alerts",
        "/alerts/stream",
        "/alerts/{alert_id}",
        "/alerts/{alert_id}/acknowledge",
        "/alerts/{alert_id}/dispatch",
        "/alerts/{alert_id}/resolve",
        "/alerts/{alert_id}/close",
        "/alerts/{alert_id}/cancel",
        "/alerts/{alert_id}/reopen",
        "/silences",
        "/silences/{silence_id}",
        "/incidents",
    ):
        assert path in spec["paths"], path
    assert "409" in spec["paths"]["/alerts/{alert_id}/acknowledge"]["post"]["responses"]
    assert {"AlertOut", "HistoryOut", "StepIn", "DispatchIn", "SilenceIn", "RefusedOut"} <= set(
        spec["components"]["schemas"]
    )


def test_sse_stream_delivers_a_raised_alert(
    parts: tuple[AlertEngine, AlertStore, Broadcaster[AlertEvent], FakeClock],
) -> None:
    engine, store, broadcaster, _ = parts
    app = FastAPI()
    app.include_router(create_alerts_router(engine, store, broadcaster))
    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10.0, trust_env=False) as http,
            http.stream("GET", "/alerts/stream") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _sse_events(response.iter_lines())
            assert next(events)[0] == "ready"
            # Raised from another thread, as the gateway's processing thread does.
            raiser = threading.Thread(target=engine.on_anomalies, args=([anomaly()],))
            raiser.start()
            raiser.join()
            name, data = next(events)
            assert name == "alert"
            message = json.loads(data)
            assert message["action"] == "raised" and message["routed"] is True
            assert message["alert"]["code"] == "lift.trapped"
            assert message["alert"]["title"] == "困人 Passenger trapped"
    finally:
        server.stop()
    assert broadcaster.subscribers == 0


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    name, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif line == "" and data:
            yield name, data
            name, data = "message", ""


def test_a_slow_subscriber_loses_its_oldest_events_and_is_told() -> None:
    async def run() -> None:
        broadcaster: Broadcaster[int] = Broadcaster(queue_size=3)
        with broadcaster.subscribe() as slow:
            for n in range(5):
                broadcaster.publish(n)  # never blocks, however far behind the reader is
            assert await slow.get() == Lost(2)
            assert [await slow.get() for _ in range(3)] == [2, 3, 4]
            assert slow.get_nowait() is None
            # A reader waiting on an empty queue wakes when another thread publishes.
            waiting = asyncio.ensure_future(slow.get())
            await asyncio.sleep(0)
            publisher = threading.Thread(target=broadcaster.publish, args=(7,))
            publisher.start()
            assert await asyncio.wait_for(waiting, 10) == 7
            publisher.join()
        assert broadcaster.subscribers == 0

    asyncio.run(run())
