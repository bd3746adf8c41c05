"""Shared fixtures: real Mosquitto and InfluxDB, started by the test session itself.

``servers`` (session) runs both servers on free loopback ports in a temporary directory;
``influx_config`` gives each test its own fresh database; ``config`` is a complete
configuration pointed at them with per-test directories, API port and MQTT client id.
Every test that uses ``servers`` (directly or through the other two) is marked
``servers`` automatically, so ``pytest -m 'not servers'`` runs the rest.
``_private_state_dir`` (every test) points the state directory (``$JIAYUAN_STATE_DIR``,
``$XDG_STATE_HOME``) at a temporary one: no test reads or writes the user's real state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jiayuan import compiled
from jiayuan.config import Config, EdgeConfig, GatewayConfig, InfluxConfig, MqttConfig
from jiayuan.influx import InfluxClient
from tests.support.mqtt_publisher import Publisher
from tools.servers import RunningServers, clear_retained, free_port, start_servers


def pytest_sessionstart(session: pytest.Session) -> None:
    """Never test a compiled module built from an older version of its source."""
    stale = compiled.stale()
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their sources: {', '.join(stale)}; "
            "run `make build` (or `make test`, which builds first)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServers]:
    """Mosquitto and InfluxDB for the whole session (never one left from an earlier run)."""
    # Under pytest's temp dir, so the servers' logs are still there after a failed run.
    running = start_servers(tmp_path_factory.mktemp("servers"), install=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _private_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A state directory of this test's own (subprocesses inherit it)."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("JIAYUAN_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_STATE_HOME", str(state / "xdg"))
    return state


@pytest.fixture(autouse=True)
def _clean_broker(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the servers: both running again, no retained messages."""
    yield
    if "servers" not in request.fixturenames:
        return
    running: RunningServers = request.getfixturevalue("servers")
    _heal(running)
    clear_retained(running.mqtt_port)


def _heal(running: RunningServers) -> None:
    # A test may stop a server to simulate an outage and fail before starting it again:
    # bring it back rather than fail every test after it.
    if not running.mosquitto_running():
        running.start_mosquitto()
    if not running.influxd_running():
        running.start_influx()


@pytest.fixture
def influx_config(servers: RunningServers) -> Iterator[InfluxConfig]:
    """InfluxDB settings with a fresh database of this test's own, dropped afterwards."""
    _heal(servers)
    influx = InfluxConfig(url=servers.influx_url, api="v1", database=f"test_{uuid.uuid4().hex[:8]}")
    with InfluxClient(influx) as client:
        client.ensure_database()
    yield influx
    # The test may have left InfluxDB stopped (outage tests): skip the clean-up then.
    with InfluxClient(influx) as client:
        if client.ping():
            client.drop_database()


@pytest.fixture
def config(servers: RunningServers, influx_config: InfluxConfig, tmp_path: Path) -> Config:
    """A complete configuration for one test: the session's servers, its own database,
    state and spool directories under tmp_path, a free API port, a unique MQTT client id."""
    return Config(
        mqtt=MqttConfig(
            url=servers.mqtt_url, gateway_client_id=f"jiayuan-test-{uuid.uuid4().hex[:8]}"
        ),
        influx=influx_config,
        gateway=GatewayConfig(state_dir=str(tmp_path / "gateway"), api_port=free_port()),
        edge=EdgeConfig(spool_dir=str(tmp_path / "edge")),
        source="tests",
    )


@pytest.fixture
def publisher(servers: RunningServers) -> Iterator[Publisher]:
    """A QoS 1 publisher on the session's Mosquitto, waiting for each PUBACK."""
    pub = Publisher(servers.mqtt_port)
    yield pub
    pub.close()
