"""Commands use the servers `jiayuan services up` recorded, say which servers they use, and
the gateway refuses to wait for servers nobody configured or started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jiayuan.config import BUILT_IN, load
from jiayuan.state import ENV_STATE_DIR, SERVICES_FILE
from tools.servers import RunningServers, free_port


def state_dir() -> Path:
    return Path(os.environ[ENV_STATE_DIR])


def record(servers: RunningServers) -> Path:
    """A services.json for these servers, as `jiayuan services up` writes it."""
    path = state_dir() / SERVICES_FILE
    path.write_text(json.dumps(servers.to_dict()), encoding="utf-8")
    return path


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def jiayuan_env(**extra: str) -> dict[str, str]:
    """The environment with no JIAYUAN_* setting but the test's state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env[ENV_STATE_DIR] = str(state_dir())
    return {**env, **extra}


def test_a_record_of_servers_that_are_gone_is_ignored(tmp_path: Path) -> None:
    gone = {
        "data_dir": str(tmp_path),
        "mqtt_url": "mqtt://127.0.0.1:1",
        "influx_url": "http://127.0.0.1:2",
        # This process is alive but is not a server started with these files.
        "mosquitto_pid": os.getpid(),
        "influxd_pid": os.getpid(),
        "mosquitto_conf": str(tmp_path / "mosquitto.conf"),
        "influxdb_conf": str(tmp_path / "influxdb.conf"),
    }
    (state_dir() / SERVICES_FILE).write_text(json.dumps(gone), encoding="utf-8")
    config = load(environ=jiayuan_env())
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.origins["mqtt.url"] == config.origins["influx.url"] == BUILT_IN


@pytest.mark.servers
def test_gateway_run_uses_the_recorded_servers_and_says_so(servers: RunningServers) -> None:
    state_file = record(servers)
    env = jiayuan_env(JIAYUAN_GATEWAY_API_PORT=str(free_port()))
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "gateway", "run", "--client-id", "rec-test"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "gateway running" in line or "waiting" in line:
                break
        ready = "".join(lines)
        assert "gateway running" in ready, ready
        origin = f"jiayuan services up, {state_file}"
        assert f"MQTT {servers.mqtt_url} ({origin})" in ready
        assert f"InfluxDB {servers.influx_url} ({origin})" in ready
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.skipif(
    listening(1883) or listening(8086), reason="a server listens on a default port here"
)
def test_gateway_run_with_no_servers_configured_or_running_stops_at_once() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "gateway", "run"],
        env=jiayuan_env(JIAYUAN_GATEWAY_API_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 30
    said = done.stdout + done.stderr
    assert "jiayuan services up" in said
    assert "mqtt://127.0.0.1:1883" in said
    assert "JIAYUAN_MQTT_URL" in said
