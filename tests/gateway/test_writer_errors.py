"""How the gateway's writer reports a failed write (gateway/storage/writer.py, jiayuan/influx.py).

An operator reading the log must see that a *write* failed, with InfluxDB's status and
its own words, not a query the writer happened to send first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx
import pytest

from gateway.metrics import GatewayMetrics
from gateway.pipeline import Pending
from gateway.storage.writer import BatchWriter, Unreachable
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient

LINE = "probe,device=d1 value=1.5 1000"


def writer_over(handle: Callable[[httpx.Request], httpx.Response]) -> BatchWriter:
    config = InfluxConfig(url="http://127.0.0.1:9")
    client = InfluxClient(config, transport=httpx.MockTransport(handle))
    return BatchWriter(client, GatewayMetrics(), threading.Event(), max_backoff_s=0.05)


def pending(count: int = 1) -> list[Pending]:
    return [Pending(LINE, "t", LINE.encode(), 0, True) for _ in range(count)]


def test_a_write_influx_refuses_for_now_is_logged_as_a_write_with_status_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def overloaded(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "engine: cache maximum memory size exceeded"})

    writer = writer_over(overloaded)
    with (
        caplog.at_level(logging.WARNING, logger="gateway.storage.writer"),
        pytest.raises(Unreachable) as caught,
    ):
        writer.write(pending(3), retry_for_s=0.3)
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.storage.writer"]
    assert logged, "no retry was logged"
    for message in [*logged, str(caught.value)]:
        assert "query" not in message, message
        assert "write" in message, message
        assert "HTTP 503 Service Unavailable" in message, message
        assert "cache maximum memory size exceeded" in message, message
    assert "3 lines" in logged[0]


def test_an_unreachable_influx_is_logged_as_a_failed_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    writer = writer_over(refused)
    with (
        caplog.at_level(logging.WARNING, logger="gateway.storage.writer"),
        pytest.raises(Unreachable),
    ):
        writer.write(pending(), retry_for_s=0.2)
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.storage.writer"]
    assert logged and all("query" not in m and "unreachable (write" in m for m in logged), logged


def test_a_missing_database_is_created_and_the_write_repeated() -> None:
    seen: list[str] = []
    created = False

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal created
        seen.append(request.url.path)
        if request.url.path == "/query":
            created = True
            return httpx.Response(200, json={"results": [{"statement_id": 0}]})
        if not created:
            return httpx.Response(404, json={"error": 'database not found: "jiayuan"'})
        return httpx.Response(204)

    assert writer_over(handle).write(pending(), retry_for_s=5) == []
    assert seen == ["/write", "/query", "/write"]


def test_a_database_that_exists_gets_writes_only() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(204)

    writer = writer_over(handle)
    writer.write(pending(), retry_for_s=5)
    writer.write(pending(), retry_for_s=5)
    assert seen == ["/write", "/write"]


def test_the_real_influxdb_gets_a_missing_database_made_on_the_first_write(
    influx_config: InfluxConfig,
) -> None:
    config = InfluxConfig(url=influx_config.url, database=f"{influx_config.database}_made")
    with InfluxClient(config) as client:
        writer = BatchWriter(client, GatewayMetrics(), threading.Event())
        try:
            assert writer.write(pending(), retry_for_s=10) == []
            assert client.count("probe", "value") == 1
        finally:
            client.drop_database()
