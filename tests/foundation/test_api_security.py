"""API security: tokens with roles and reach on every route of the gateway's app, request
body limits (413), per-token rate limits (429 + Retry-After), the [api] configuration, and
secrets that never reach the logs."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import create_alerts_router
from alerts.callback import create_callback_router
from alerts.engine import AlertEngine, AlertEvent
from alerts.store import AlertStore
from alerts.stream import Broadcaster
from gateway.api import ApiServer, create_app
from gateway.metrics import GatewayMetrics, GatewayStats
from gateway.storage.deadletters import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterStore,
    Reason,
    StoredDeadLetter,
)
from jiayuan import config as config_module
from jiayuan.anomaly import Anomaly
from jiayuan.api_auth import (
    CALLBACK_PATH,
    ApiAuth,
    AuthFileError,
    TokenBuckets,
    load_tokens,
    token_hash,
)
from jiayuan.config import ApiConfig
from jiayuan.registry.api import create_registry_router
from jiayuan.registry.store import RegistryStore
from score.api import create_score_router
from simulators.registry import build_registry
from tests.support.alerts_lifecycle_support import T0, FakeClock, anomaly, make_engine
from tools.registry_generate import generate_registry

# The six generated estates: two on zhangjiang, one each on four other streets.
MINE = "shuxiang-xiaoqu"  # zhangjiang, pudong: the property manager's estate
NEIGHBOUR = "chunshen-yuan"  # zhangjiang too: the ops centre's, not the manager's
FAR = "binjiang-gongyu"  # yongfeng, songjiang: nobody's but the city viewer's

TOKENS = {
    "ops": "ops-zhangjiang-9f2c81e0d4b7",
    "pm": "pm-shuxiang-0c4e9a77b1d3",
    "viewer": "viewer-zhangjiang-5d1e22aa90f6",
    "city": "viewer-city-7b3f0e4c2a11",
}
TOKENS_YAML = f"""
tokens:
  - name: 张江运营中心 zhangjiang ops
    sha256: {token_hash(TOKENS["ops"])}
    role: ops_centre
    streets: [zhangjiang]
  - name: 书香物业 shuxiang pm
    sha256: {token_hash(TOKENS["pm"])}
    role: property_manager
    estates: [{MINE}]
  - name: zhangjiang viewer
    sha256: {token_hash(TOKENS["viewer"])}
    role: viewer
    streets: [zhangjiang]
  - name: city viewer
    sha256: {token_hash(TOKENS["city"])}
    role: viewer
    streets: ["*"]
"""


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class Source:
    """The gateway state the API reads: real dead-letter store and metrics, given anomalies."""

    letters: DeadLetterStore
    found: list[Anomaly]
    metrics: GatewayMetrics

    @property
    def stats(self) -> GatewayStats:
        return self.metrics.snapshot()

    @property
    def mqtt_connected(self) -> bool:
        return True

    @property
    def mqtt_unstable(self) -> bool:
        return False

    @property
    def uptime_s(self) -> float:
        return 1.0

    def influx_reachable(self) -> bool:
        return True

    def delivery_health(self) -> dict[str, Any] | None:
        return None

    def anomalies(
        self,
        active: bool | None = None,
        kind: str | None = None,
        estate: str | None = None,
        limit: int = 100,
    ) -> list[Anomaly]:
        return [a for a in self.found if not estate or a.estate == estate][:limit]

    def dead_letters(
        self, limit: int = 100, where: DeadLetterFilter | None = None
    ) -> list[StoredDeadLetter]:
        return self.letters.recent(limit, where)

    def metrics_exposition(self) -> bytes:
        return self.metrics.exposition()


@dataclass
class World:
    app: FastAPI
    client: TestClient
    engine: AlertEngine
    store: AlertStore
    alert_ids: dict[str, str]  # estate -> its alert


def place(estate: str, street: str, district: str, **kwargs: str) -> Anomaly:
    return replace(anomaly(estate=estate, **kwargs), street=street, district=district)


def build(tmp_path: Path, api: ApiConfig, clock: FakeClock | None = None) -> World:
    registry = RegistryStore(tmp_path / "registry.sqlite")
    registry.replace(generate_registry(build_registry(6, seed=7), seed=7, as_of=date(2026, 6, 1)))
    records = {r.estate.id: r.estate for r in registry.load().records()}
    broadcaster: Broadcaster[AlertEvent] = Broadcaster(queue_size=8)
    engine, store = make_engine(tmp_path / "alerts.db", clock or FakeClock(), sinks=[broadcaster])
    found = [
        place(e, records[e].street, records[e].district, device=f"L-{e}")
        for e in (MINE, NEIGHBOUR, FAR)
    ]
    alert_ids = {c.alert.estate: c.alert.id for c in engine.on_anomalies(found)}
    letters = DeadLetterStore(tmp_path / "dead.sqlite")
    letters.add_many(
        [
            DeadLetter(
                T0,
                f"jiayuan/v1/pudong/zhangjiang/{MINE}/lift/L1/telemetry",
                Reason.BAD_PAYLOAD,
                "not JSON",
                b"{",
            ),
            DeadLetter(
                T0,
                f"jiayuan/v1/songjiang/yongfeng/{FAR}/lift/L1/telemetry",
                Reason.BAD_PAYLOAD,
                "not JSON",
                b"[",
            ),
            DeadLetter(T0, "nonsense/topic", Reason.BAD_TOPIC, "no place", b"x"),
        ]
    )
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(TOKENS_YAML, encoding="utf-8")
    settings = replace(api, tokens_file=str(tokens_file)) if api.tokens_file == "x" else api

    auth = ApiAuth.from_config(
        settings,
        "0.0.0.0",
        street_of=registry.street_of,
        clock=lambda: (clock or FakeClock()).now_ms / 1000,
    )
    routers = [
        create_alerts_router(engine, store, broadcaster),
        create_registry_router(registry),
        create_score_router(registry, store, clock=lambda: T0),
        create_callback_router(lambda report: None, "callback-token", "callback-secret"),
    ]
    app = create_app(Source(letters, found, GatewayMetrics()), routers, auth)
    return World(app, TestClient(app), engine, store, alert_ids)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = build(tmp_path, ApiConfig(auth="on", tokens_file="x"))
    with made.client:
        yield made


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_but_health_and_the_description_needs_a_token(world: World) -> None:
    checked = 0
    for path, operations in world.app.openapi()["paths"].items():
        for method in operations:
            answer = world.client.request(method, concrete(path))
            if path == "/health":
                assert answer.status_code == 200
                continue
            if path == CALLBACK_PATH:  # its own bearer token and HMAC, not ours
                assert answer.json()["detail"] == "missing or wrong bearer token"
                continue
            assert answer.status_code == 401, (method, path)
            assert "missing bearer token" in answer.json()["detail"]
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            checked += 1
    assert checked >= 20
    assert world.client.get("/openapi.json").status_code == 200
    wrong = world.client.get("/alerts", headers={"Authorization": "Bearer guessed"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown or revoked token"


def test_auth_on_without_tokens_refuses_all_but_health(tmp_path: Path) -> None:
    world = build(tmp_path, ApiConfig(auth="on"))
    assert world.client.get("/health").status_code == 200
    for path in ("/alerts", "/metrics", "/registry/estates", "/score/estates", "/dead-letters"):
        answer = world.client.get(path, headers=bearer("ops"))
        assert answer.status_code == 401
        assert "no API tokens are configured" in answer.json()["detail"]


def estates_of(answer: list[dict[str, str]], key: str = "estate") -> set[str]:
    return {item[key] for item in answer}


def test_alert_reads_are_confined_to_each_role_s_reach(world: World) -> None:
    c = world.client
    assert estates_of(c.get("/alerts", headers=bearer("ops")).json()) == {MINE, NEIGHBOUR}
    assert estates_of(c.get("/alerts", headers=bearer("pm")).json()) == {MINE}
    assert estates_of(c.get("/alerts", headers=bearer("viewer")).json()) == {MINE, NEIGHBOUR}
    assert estates_of(c.get("/alerts", headers=bearer("city")).json()) == {MINE, NEIGHBOUR, FAR}
    # Filters narrow within the reach, never widen it; paging works on the filtered list.
    assert c.get(f"/alerts?estate={FAR}", headers=bearer("ops")).json() == []
    assert c.get("/alerts?street=yongfeng", headers=bearer("pm")).json() == []
    page = c.get("/alerts?limit=1&offset=1", headers=bearer("ops")).json()
    assert len(page) == 1
    far_id = world.alert_ids[FAR]
    assert c.get(f"/alerts/{far_id}", headers=bearer("city")).status_code == 200
    refused = c.get(f"/alerts/{far_id}", headers=bearer("ops"))
    assert refused.status_code == 403 and "outside the reach" in refused.json()["detail"]
    assert c.get(f"/alerts/{world.alert_ids[NEIGHBOUR]}", headers=bearer("pm")).status_code == 403
    incidents = c.get("/incidents", headers=bearer("pm")).json()
    assert estates_of(incidents) == {MINE}


def test_steps_by_role_and_reach(world: World) -> None:
    c = world.client
    step = {"actor": "李经理", "note": "on site"}
    mine, neighbour = world.alert_ids[MINE], world.alert_ids[NEIGHBOUR]
    viewer = c.post(f"/alerts/{mine}/acknowledge", json=step, headers=bearer("viewer"))
    assert viewer.status_code == 403 and "may not acknowledge" in viewer.json()["detail"]
    assert (
        c.post(f"/alerts/{neighbour}/acknowledge", json=step, headers=bearer("pm")).status_code
        == 403
    )
    done = c.post(f"/alerts/{mine}/acknowledge", json=step, headers=bearer("pm"))
    assert done.status_code == 200 and done.json()["state"] == "acknowledged"
    # The recorded actor is tied to the token's name, never to the token.
    history = c.get(f"/alerts/{mine}", headers=bearer("pm")).json()["history"]
    assert history[-1]["actor"] == "李经理 [书香物业 shuxiang pm]"
    dispatch = {**step, "work_order_id": "WO-1"}
    assert (
        c.post(f"/alerts/{mine}/dispatch", json=dispatch, headers=bearer("pm")).status_code == 403
    )
    assert (
        c.post(f"/alerts/{mine}/dispatch", json=dispatch, headers=bearer("ops")).status_code == 200
    )
    assert c.post(f"/alerts/{mine}/resolve", json=step, headers=bearer("pm")).status_code == 200
    assert c.post(f"/alerts/{mine}/close", json=step, headers=bearer("ops")).status_code == 200
    assert world.store.get(mine).state.value == "closed"
    far = c.post(f"/alerts/{world.alert_ids[FAR]}/acknowledge", json=step, headers=bearer("ops"))
    assert far.status_code == 403
    assert world.store.get(world.alert_ids[FAR]).state.value == "open"


def test_silences_by_role_and_reach(world: World) -> None:
    c = world.client

    def silence(estate: str, role: str) -> int:
        body = {"scope": "estate", "estate": estate, "until_ms": T0 + 3_600_000, "actor": "x"}
        return c.post("/silences", json=body, headers=bearer(role)).status_code

    assert silence(MINE, "pm") == 201
    assert silence(NEIGHBOUR, "pm") == 403
    assert silence(NEIGHBOUR, "ops") == 201  # on its street, found through the registry
    assert silence(FAR, "ops") == 403
    assert silence(MINE, "viewer") == 403
    assert silence(FAR, "city") == 403  # a viewer, however wide, changes nothing
    assert estates_of(c.get("/silences", headers=bearer("pm")).json()) == {MINE}
    assert estates_of(c.get("/silences", headers=bearer("ops")).json()) == {MINE, NEIGHBOUR}
    theirs = next(
        s["id"] for s in c.get("/silences", headers=bearer("ops")).json() if s["estate"] != MINE
    )
    assert c.delete(f"/silences/{theirs}", headers=bearer("pm")).status_code == 403
    assert c.delete(f"/silences/{theirs}", headers=bearer("ops")).status_code == 204


def test_registry_and_score_reads(world: World) -> None:
    c = world.client
    assert estates_of(c.get("/registry/estates", headers=bearer("pm")).json(), "id") == {MINE}
    assert estates_of(c.get("/registry/estates", headers=bearer("ops")).json(), "id") == {
        MINE,
        NEIGHBOUR,
    }
    assert len(c.get("/registry/estates", headers=bearer("city")).json()) == 6
    assert c.get(f"/registry/estates/{MINE}", headers=bearer("pm")).status_code == 200
    assert c.get(f"/registry/estates/{FAR}", headers=bearer("pm")).status_code == 403
    assert c.get(f"/registry/estates/{FAR}/devices", headers=bearer("ops")).status_code == 403
    assert estates_of(c.get("/score/estates", headers=bearer("pm")).json()) == {MINE}
    assert c.get(f"/score/estates/{NEIGHBOUR}", headers=bearer("pm")).status_code == 403
    assert c.get(f"/score/estates/{NEIGHBOUR}", headers=bearer("viewer")).status_code == 200
    for path in ("/score/districts", "/score/districts/pudong", "/score/companies"):
        assert c.get(path, headers=bearer("pm")).status_code == 403
        assert c.get(path, headers=bearer("viewer")).status_code == 200


def test_gateway_reads(world: World) -> None:
    c = world.client
    assert estates_of(c.get("/anomalies", headers=bearer("pm")).json()) == {MINE}
    assert estates_of(c.get("/anomalies", headers=bearer("city")).json()) == {MINE, NEIGHBOUR, FAR}
    assert c.get("/dead-letters", headers=bearer("pm")).status_code == 403
    assert c.get("/dead-letters", headers=bearer("viewer")).status_code == 403
    letters = c.get("/dead-letters", headers=bearer("ops")).json()
    assert [d["topic"].split("/")[4] for d in letters] == [MINE]  # not FAR, not the bad topic
    assert c.get("/metrics", headers=bearer("pm")).status_code == 403
    scraped = c.get("/metrics", headers=bearer("viewer"))
    assert scraped.status_code == 200 and b"jiayuan_gateway_messages" in scraped.content


def test_bodies_over_the_limit_are_413_whether_sized_or_streamed(world: World) -> None:
    c = world.client
    url = f"/alerts/{world.alert_ids[MINE]}/acknowledge"
    big = b'{"actor": "x", "note": "' + b"a" * 70_000 + b'"}'
    sized = c.post(url, content=big, headers={**bearer("pm"), "Content-Type": "application/json"})
    assert sized.status_code == 413 and "max_body_bytes" in sized.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield big[:40_000]
        yield big[40_000:]

    streamed = c.post(
        url, content=chunks(), headers={**bearer("pm"), "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert world.store.get(world.alert_ids[MINE]).state.value == "open"
    small = c.post(url, json={"actor": "x"}, headers=bearer("pm"))
    assert small.status_code == 200


def test_rate_limit_per_token_with_retry_after(tmp_path: Path) -> None:
    clock = FakeClock()
    world = build(
        tmp_path, ApiConfig(auth="on", tokens_file="x", rate_per_s=0.5, rate_burst=3), clock
    )
    c = world.client
    assert [c.get("/alerts", headers=bearer("pm")).status_code for _ in range(3)] == [200] * 3
    limited = c.get("/alerts", headers=bearer("pm"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert "rate limit" in limited.json()["detail"]
    assert c.get("/alerts", headers=bearer("ops")).status_code == 200  # its own bucket
    assert c.get("/health").status_code == 200
    clock.advance(2_000)
    assert c.get("/alerts", headers=bearer("pm")).status_code == 200


def test_token_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(2.0, 2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 100.0
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_tokens_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = build(tmp_path, ApiConfig(auth="on", tokens_file="x", rate_burst=2))
    c = world.client
    for role in TOKENS:
        for _ in range(3):
            c.get("/alerts", headers=bearer(role))
    answers = [
        c.get("/alerts", headers={"Authorization": "Bearer not-a-real-token-123"}),
        c.post("/silences", json={"bad": 1}, headers=bearer("pm")),
    ]
    assert "tokens loaded: 4" in caplog.text
    for secret in [*TOKENS.values(), "not-a-real-token-123"]:
        assert secret not in caplog.text
        assert all(secret not in a.text for a in answers)


def test_auto_is_off_only_on_loopback_without_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    off = ApiAuth.from_config(ApiConfig(), "127.0.0.1")
    assert not off.enabled and "authentication is OFF" in caplog.text
    on = ApiAuth.from_config(ApiConfig(), "0.0.0.0")
    assert on.enabled and not on.callers
    with pytest.raises(AuthFileError, match="only allowed on a loopback"):
        ApiAuth.from_config(ApiConfig(auth="off"), "192.0.2.1")
    # An app without tokens refuses to listen beyond loopback (raised before binding).
    open_app = create_app(
        Source(DeadLetterStore(tmp_path / "d.sqlite"), [], GatewayMetrics()), (), off
    )
    with pytest.raises(RuntimeError, match="no authentication"):
        ApiServer(open_app, "0.0.0.0", 0).start()


def test_api_section_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "jiayuan.toml"
    toml.write_text('[api]\nauth = "on"\nmax_body_bytes = 1024\n', encoding="utf-8")
    loaded = config_module.load(toml, environ={"JIAYUAN_API_TOKENS_FILE": "/etc/t.yaml"})
    assert loaded.api == ApiConfig(auth="on", tokens_file="/etc/t.yaml", max_body_bytes=1024)
    toml.write_text('[api]\nauth = "maybe"\n', encoding="utf-8")
    with pytest.raises(config_module.ConfigError, match=r"\[api\] auth"):
        config_module.load(toml, environ={})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tokens: [{name: a, sha256: abc, role: viewer, streets: [s]}]", "tokens.0.sha256"),
        (f"tokens: [{{name: a, sha256: {'a' * 64}, role: ops_centre}}]", "ops_centre token needs"),
        (f"tokens: [{{name: a, sha256: {'a' * 64}, role: boss, streets: [s]}}]", "tokens.0.role"),
        (
            f"tokens: [{{name: a, sha256: {'a' * 64}, role: property_manager, streets: [s]}}]",
            "lists its estates",
        ),
        (
            f"tokens: [{{name: a, sha256: {'a' * 64}, role: viewer, streets: [s]}},"
            f" {{name: b, sha256: {'A' * 64}, role: viewer, streets: [s]}}]",
            "appears twice",
        ),
        ("tokens: [", "not valid YAML"),
        ("tokens: [{name: a, token: secret}]", "tokens.0"),
    ],
)
def test_bad_tokens_files_name_the_file_and_field(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AuthFileError) as raised:
        load_tokens(path)
    assert str(path) in str(raised.value) and problem in str(raised.value)
    assert "secret" not in str(raised.value)


def test_the_live_stream_carries_only_alerts_in_reach(tmp_path: Path) -> None:
    world = build(tmp_path, ApiConfig(auth="on", tokens_file="x"))
    server = ApiServer(world.app, "127.0.0.1", 0)
    server.start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10.0, trust_env=False) as http,
            http.stream("GET", "/alerts/stream", headers=bearer("pm")) as response,
        ):
            assert response.status_code == 200
            data = (line for line in response.iter_lines() if line.startswith("data:"))
            assert next(data) == "data: {}"  # ready
            records = {
                r.estate.id: r.estate
                for r in RegistryStore(tmp_path / "registry.sqlite").load().records()
            }
            for estate in (NEIGHBOUR, FAR, MINE):  # raised from another thread, in this order
                raised = place(
                    estate, records[estate].street, records[estate].district, device="F9"
                )
                raiser = threading.Thread(target=world.engine.on_anomalies, args=([raised],))
                raiser.start()
                raiser.join()
            first = json.loads(next(data).removeprefix("data:"))
            assert (first["alert"]["estate"], first["alert"]["device"]) == (MINE, "F9")
        anonymous = httpx.get(f"{server.url}/alerts/stream", timeout=10.0, trust_env=False)
        assert anonymous.status_code == 401
    finally:
        server.stop()
