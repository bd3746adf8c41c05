"""Connections the broker keeps closing soon after making them (gateway/transport/mqtt_flaps.py).

The counter on a clock the test moves; then two real gateways given one client id on the
real Mosquitto, which closes the older connection without a reason under MQTT 5 and 3.1.1
alike: each sees the other take its session, says so, and ``/health`` is degraded.  A
gateway alone through a broker restart is not (tests/gateway/test_gateway.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from gateway.service import Gateway
from gateway.transport.mqtt_flaps import ShortConnections
from jiayuan.config import Config
from tests.gateway.test_scale_out import wait_for
from tools.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connection(flaps: ShortConnections, clock: Clock, lasting_s: float) -> bool:
    """One connection made, then lost after ``lasting_s``; what ``lost`` said."""
    flaps.connected()
    clock.now += lasting_s
    return flaps.lost()


def test_three_short_connections_in_the_window_are_reported_once() -> None:
    clock = Clock()
    flaps = ShortConnections(short_s=30, losses=3, window_s=120, clock=clock)
    assert [connection(flaps, clock, 2) for _ in range(2)] == [False, False]
    assert not flaps.unstable
    assert connection(flaps, clock, 2)  # the third: report it
    assert flaps.unstable and flaps.recent == 3
    assert [connection(flaps, clock, 2) for _ in range(5)] == [False] * 5  # once, not each
    assert flaps.recent == 8


def test_long_connections_and_losses_without_a_connection_do_not_count() -> None:
    clock = Clock()
    flaps = ShortConnections(short_s=30, losses=3, window_s=120, clock=clock)
    for _ in range(5):
        assert not connection(flaps, clock, 31)
    assert not flaps.lost()  # a second call for the same connection
    assert flaps.recent == 0 and not flaps.unstable


def test_it_clears_when_the_window_passes_quietly_and_reports_a_new_episode() -> None:
    clock = Clock()
    flaps = ShortConnections(short_s=30, losses=3, window_s=120, clock=clock)
    assert [connection(flaps, clock, 1) for _ in range(3)] == [False, False, True]
    clock.now += 117  # the first of the three lost 119 s ago
    assert flaps.unstable
    clock.now += 2  # now 121 s ago: out of the window, two are left
    assert not flaps.unstable and flaps.recent == 2
    clock.now += 120
    assert flaps.recent == 0
    assert [connection(flaps, clock, 1) for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize(("short_s", "losses", "window_s"), [(0, 3, 120), (30, 0, 120), (30, 3, 0)])
def test_settings_that_could_never_or_always_trip_are_refused(
    short_s: float, losses: int, window_s: float
) -> None:
    with pytest.raises(ValueError, match="positive"):
        ShortConnections(short_s=short_s, losses=losses, window_s=window_s)


def health(gateway: Gateway) -> dict[str, object]:
    assert gateway.api_url is not None
    answer = httpx.get(f"{gateway.api_url}/health", timeout=5)
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_gateways_sharing_a_client_id_each_report_it(
    config: Config, tmp_path: Path, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    def one_of_two(name: str, api_port: int) -> Gateway:
        own = replace(
            config,
            mqtt=replace(config.mqtt, gateway_protocol=protocol),  # type: ignore[arg-type]
            gateway=replace(config.gateway, state_dir=str(tmp_path / name), api_port=api_port),
        )
        gateway = Gateway(own)
        gateway.start()
        return gateway

    caplog.set_level(logging.WARNING, logger="gateway.transport.ingest")
    first = one_of_two("a", config.gateway.api_port)
    try:
        assert first.wait_ready(10)
        assert not first.mqtt_unstable and health(first)["status"] == "ok"
        # A port found free now (the next one up may be any client's ephemeral port).
        second = one_of_two("b", free_port())
        try:
            # Each reconnects a second after losing the session and takes it back.
            wait_for(lambda: first.mqtt_unstable and second.mqtt_unstable, timeout_s=40)
            for gateway in (first, second):
                answer = health(gateway)
                assert answer["status"] == "degraded" and answer["mqtt_unstable"] is True
            reports = [
                r.getMessage()
                for r in caplog.records
                if "probably using the client id" in r.getMessage()
            ]
            assert len(reports) == 2  # one each, not one per loss
            assert all(repr(config.mqtt.gateway_client_id) in report for report in reports)
            assert b"jiayuan_gateway_mqtt_unstable 1.0" in first.metrics_exposition()
        finally:
            second.stop()
    finally:
        first.stop()
