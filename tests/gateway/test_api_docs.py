"""The API's own documentation pages work on an intranet without Internet access: /docs
(Swagger UI) and /redoc reference no other host, and every script, style sheet and icon
they reference is served by the app itself, without a token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.metrics import GatewayMetrics, GatewayStats
from gateway.storage.deadletters import StoredDeadLetter
from jiayuan.anomaly import Anomaly
from jiayuan.api_auth import ApiAuth
from jiayuan.config import ApiConfig
from tools.opscentre import OpsCentreStore, create_opscentre_app

DOC_PAGES = ("/docs", "/redoc")
# src="…", href="…" and the URLs the Swagger UI / ReDoc set-up scripts load.
_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")
_SPEC_URL = re.compile(r"""Redoc\.init\(\s*['"]([^'"]+)['"]|spec-url=["']([^"']+)["']""")


class Source:
    """Nothing to report: the docs pages need none of the gateway's state."""

    metrics = GatewayMetrics()
    mqtt_connected = True
    mqtt_unstable = False
    uptime_s = 1.0

    @property
    def stats(self) -> GatewayStats:
        return self.metrics.snapshot()

    def influx_reachable(self) -> bool:
        return True

    def anomalies(
        self, active: bool | None, kind: str | None, estate: str | None, limit: int
    ) -> list[Anomaly]:
        return []

    def dead_letters(self, limit: int = 100) -> list[StoredDeadLetter]:
        return []

    def metrics_exposition(self) -> bytes:
        return b""


def _gateway(tmp_path: Path) -> FastAPI:
    # Tokens required, none issued: the docs must still open in an operator's browser.
    auth = ApiAuth.from_config(ApiConfig(), "0.0.0.0")
    assert auth.enabled
    return create_app(Source(), (), auth)


def _opscentre(tmp_path: Path) -> FastAPI:
    return create_opscentre_app(OpsCentreStore(tmp_path / "ops.sqlite"), "secret")


@pytest.fixture(params=[_gateway, _opscentre], ids=["gateway", "opscentre"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(request.param(tmp_path)) as made:
        yield made


def _references(page: str) -> list[str]:
    found = [a or b for a, b in _REFERENCE.findall(page)]
    found += [a or b for a, b in _SPEC_URL.findall(page)]
    return found


@pytest.mark.parametrize("path", DOC_PAGES)
def test_doc_pages_reference_no_other_host(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200, page.text
    assert re.search(r"(?:https?:)?//[\w.-]+\.\w", page.text) is None, page.text
    references = _references(page.text)
    assert references, page.text
    assert not [url for url in references if urlsplit(url).netloc], references


@pytest.mark.parametrize("path", DOC_PAGES)
def test_every_asset_a_doc_page_references_is_served_by_the_app(
    client: TestClient, path: str
) -> None:
    page = client.get(path).text
    assets = {urljoin(path, url) for url in _references(page)}
    scripts = [url for url in assets if url.endswith(".js")]
    assert scripts, assets  # Swagger UI or ReDoc itself, not only the spec
    for url in sorted(assets):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
    for url in scripts:
        assert "javascript" in client.get(url).headers["content-type"], url
