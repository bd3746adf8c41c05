"""Real Mosquitto and InfluxDB: start, stop, restart, and the ``jiayuan services`` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jiayuan.config import Config, InfluxConfig, load
from jiayuan.influx import InfluxClient, format_line
from jiayuan.state import ENV_STATE_DIR, SERVICES_FILE
from tools import cli, servers
from tools.servers import (
    RunningServers,
    ServicesError,
    clear_retained,
    ensure_installed,
    free_port,
    free_ports,
    start_servers,
)

pytestmark = pytest.mark.servers


@pytest.fixture
def own_servers() -> Iterator[RunningServers]:
    """Servers of this test alone (it stops and restarts them), in a temporary dir."""
    running = start_servers()
    try:
        yield running
    finally:
        running.stop()


def publish_retained(url_port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="jiayuan-test-pub")
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def read_retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    received: list[bytes] = []
    done = threading.Event()

    def on_connect(client: mqtt.Client, *args: Any) -> None:
        client.subscribe(topic, qos=1)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            received.append(bytes(message.payload))
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="jiayuan-test-sub")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return received[0] if received else None


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in [*ports, free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_start_restart_and_stop(own_servers: RunningServers) -> None:
    s = own_servers
    assert s.mqtt_url == f"mqtt://127.0.0.1:{s.mqtt_port}"
    assert s.influx_url == f"http://127.0.0.1:{s.influx_port}"
    assert s.mqtt_answers() and s.influx_answers()
    assert s.mosquitto_running() and s.influxd_running()
    # Each server in a session of its own, listening on loopback only.
    assert os.getsid(s.mosquitto_pid) == s.mosquitto_pid
    assert f"listener {s.mqtt_port} 127.0.0.1" in s.mosquitto_conf.read_text()
    assert f'bind-address = "127.0.0.1:{s.influx_port}"' in s.influxdb_conf.read_text()

    # A retained message survives a broker restart (persistence), on the same port.
    publish_retained(s.mqtt_port, "jiayuan/test/retained", "在线".encode())
    old_pid, old_port = s.mosquitto_pid, s.mqtt_port
    s.restart_mosquitto()
    assert s.mosquitto_pid != old_pid and s.mqtt_port == old_port
    assert s.mqtt_answers()
    assert read_retained(s.mqtt_port, "jiayuan/test/retained") == "在线".encode()

    # Points survive an InfluxDB restart (same port, same data dir).
    influx = InfluxConfig(url=s.influx_url, database="restart_test")
    with InfluxClient(influx) as client:
        client.ensure_database()
        client.write([format_line("m", {"d": "x"}, {"v": 1.5}, 1000)])
        s.stop_influx()
        assert not client.ping() and not s.influxd_running()
        s.start_influx()
        assert client.count("m", "v") == 1

    pids, data_dir = (s.mosquitto_pid, s.influxd_pid), s.data_dir
    s.stop()
    assert not servers._pid_alive(pids[0]) and not servers._pid_alive(pids[1])
    assert not data_dir.exists()  # a temporary dir of its own is removed
    s.stop()  # idempotent


def test_state_round_trip(own_servers: RunningServers) -> None:
    restored = RunningServers.from_dict(json.loads(json.dumps(own_servers.to_dict())))
    assert restored == own_servers
    assert restored.mqtt_url == own_servers.mqtt_url
    assert restored.mosquitto_running() and restored.influxd_running()
    with pytest.raises(ServicesError, match="invalid services state"):
        RunningServers.from_dict({"data_dir": "/tmp"})


def test_a_dead_pid_or_another_program_is_never_taken_for_our_server(
    own_servers: RunningServers,
) -> None:
    stranger = RunningServers.from_dict(own_servers.to_dict())
    stranger.mosquitto_pid = os.getpid()  # alive, but not a mosquitto with that config
    assert not stranger.mosquitto_running()
    stranger.stop_mosquitto()  # must not signal this test process
    assert own_servers.mosquitto_running()


def test_failure_to_start_reports_the_server_log(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        broken = RunningServers(
            data_dir=tmp_path, mqtt_port=taken, influx_port=free_port(), influx_rpc_port=0
        )
        servers._write_mosquitto_conf(broken)
        with pytest.raises(ServicesError, match=r"mosquitto exited with code \d+") as caught:
            broken.start_mosquitto()
    assert "Address already in use" in str(caught.value)


def test_ensure_installed_without_root_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "find_binary", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(
        ServicesError, match="sudo apt-get install mosquitto mosquitto-clients influxdb"
    ):
        ensure_installed()


def test_ensure_installed_installs_the_clients_the_docs_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The servers are there, mosquitto_pub (docs/protocol.md, "By hand") is not.
    installed = {"done": False}
    calls: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(command)
        installed["done"] = True
        return subprocess.CompletedProcess(command, 0, b"", b"")

    def find(name: str) -> str | None:
        present = installed["done"] or name in ("mosquitto", "influxd")
        return f"/usr/bin/{name}" if present else None

    monkeypatch.setattr(servers, "POLICY_RC_D", tmp_path / "policy-rc.d")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(servers, "find_binary", find)
    ensure_installed()
    assert calls[-1] == ["apt-get", "install", "-y", "mosquitto-clients"]
    assert servers.find_binary("mosquitto_pub") is not None


def test_missing_clients_alone_do_not_stop_a_user_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        servers, "find_binary", lambda name: None if name == "mosquitto_pub" else "/usr/bin/x"
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ensure_installed()  # the servers are there: say what is missing, start them anyway
    assert "sudo apt-get install mosquitto-clients" in capsys.readouterr().err


@pytest.mark.parametrize("policy_existed", [False, True])
def test_ensure_installed_as_root_blocks_daemons_during_apt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy_existed: bool
) -> None:
    # apt itself is not run here (the packages are installed, and tests must not change
    # the machine): record the commands and what policy-rc.d said while they ran.
    policy = tmp_path / "policy-rc.d"
    if policy_existed:
        policy.write_text("#!/bin/sh\nexit 0\n")
    installed = {"done": False}
    calls: list[tuple[list[str], str, str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append((command, kwargs["env"]["DEBIAN_FRONTEND"], policy.read_text()))
        if command[:2] == ["apt-get", "install"]:
            installed["done"] = True
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(servers, "POLICY_RC_D", policy)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        servers, "find_binary", lambda name: "/usr/bin/x" if installed["done"] else None
    )
    ensure_installed()
    assert [call[0] for call in calls] == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "mosquitto", "mosquitto-clients", "influxdb"],
    ]
    assert all(call[1] == "noninteractive" for call in calls)
    if policy_existed:
        assert all("exit 0" in call[2] for call in calls)
        assert policy.read_text() == "#!/bin/sh\nexit 0\n"  # someone else's: left alone
    else:
        assert all("exit 101" in call[2] for call in calls)
        assert not policy.exists()  # ours: removed


# --- jiayuan services up | status | down -----------------------------------------------------


def services_file() -> Path:
    """Where `jiayuan services up` records its servers: the test's own state directory."""
    return Path(os.environ[ENV_STATE_DIR]) / SERVICES_FILE


@pytest.fixture
def jiayuan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``tools.cli.main`` run in an empty working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # The real entry point with only this subcommand registered: these tests are about
    # `services`, and must not fail because another subcommand's module does not import.
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("tools.servers_cli",))
    yield cli.main
    # Never leave servers behind, whatever the test did.
    state = services_file()
    if state.exists():
        RunningServers.from_dict(json.loads(state.read_text())).stop()


def test_services_up_status_down(jiayuan: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert jiayuan(["services", "status"]) == 3
    assert "no servers recorded" in capsys.readouterr().out

    assert jiayuan(["services", "up"]) == 0
    out = capsys.readouterr().out
    state = json.loads(services_file().read_text())
    assert f"export JIAYUAN_MQTT_URL={state['mqtt_url']}\n" in out
    assert f"export JIAYUAN_INFLUX_URL={state['influx_url']}\n" in out
    # Every other line is a shell comment, so `eval "$(jiayuan services up)"` works.
    assert all(line.startswith(("#", "export ")) for line in out.splitlines())
    servers = RunningServers.from_dict(state)
    assert servers.mqtt_answers() and servers.influx_answers()
    # Detached: a session of their own, so they outlive the command and its terminal.
    assert os.getsid(servers.mosquitto_pid) == servers.mosquitto_pid
    assert os.getsid(servers.influxd_pid) == servers.influxd_pid

    # Every other command finds them there, and says where they came from.
    config = load()
    assert (config.mqtt.url, config.influx.url) == (servers.mqtt_url, servers.influx_url)
    assert config.origins["mqtt.url"] == f"jiayuan services up, {services_file()}"
    assert "jiayuan services up" in config.servers_text()
    # A server named by the environment (or the file) wins over the recorded one.
    explicit = load(environ={**os.environ, "JIAYUAN_MQTT_URL": "mqtt://127.0.0.1:1"})
    assert (explicit.mqtt.url, explicit.influx.url) == ("mqtt://127.0.0.1:1", servers.influx_url)
    assert explicit.origins["mqtt.url"] == "$JIAYUAN_MQTT_URL"

    assert jiayuan(["services", "up"]) == 0  # idempotent: the same servers again
    assert f"(pid {servers.mosquitto_pid})" in capsys.readouterr().out

    assert jiayuan(["services", "status"]) == 0
    out = capsys.readouterr().out
    assert out.count("running, answering") == 2

    assert jiayuan(["services", "down"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not servers.mosquitto_running() and not servers.influxd_running()
    assert not servers.data_dir.exists()
    assert not Path(".jiayuan").exists()  # nothing in the working directory
    assert jiayuan(["services", "status"]) == 3
    assert load().origins["mqtt.url"] == "built-in default"


def test_services_status_sees_a_dead_server_and_down_keeps_given_dir(
    jiayuan: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    state_file = tmp_path / "state.json"
    assert jiayuan(["services", "up", "--dir", str(data), "--state", str(state_file)]) == 0
    servers = RunningServers.from_dict(json.loads(state_file.read_text()))
    assert servers.data_dir == data.resolve()
    servers.stop_influx()
    capsys.readouterr()
    assert jiayuan(["services", "status", "--state", str(state_file)]) == 3
    out = capsys.readouterr().out
    assert "mosquitto  running, answering" in out
    assert "influxdb   not running" in out
    assert jiayuan(["services", "down", "--state", str(state_file)]) == 0
    assert not servers.mosquitto_running()
    assert (data / "mosquitto.conf").exists()  # a directory the user named is kept
    assert not state_file.exists()


@pytest.mark.parametrize("action", ["install", "up", "down", "status"])
def test_services_help(jiayuan: Any, capsys: pytest.CaptureFixture[str], action: str) -> None:
    with pytest.raises(SystemExit) as exited:
        jiayuan(["services", action, "--help"])
    assert exited.value.code == 0
    assert f"usage: jiayuan services {action}" in capsys.readouterr().out


# --- the shared fixtures ----------------------------------------------------------------------


def test_config_fixture_points_at_the_session_servers(
    config: Config, servers: RunningServers, tmp_path: Path
) -> None:
    assert config.mqtt.url == servers.mqtt_url
    assert config.influx.url == servers.influx_url
    assert config.mqtt.gateway_client_id.startswith("jiayuan-test-")
    assert Path(config.gateway.state_dir).parent == tmp_path
    assert Path(config.edge.spool_dir).parent == tmp_path
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", config.gateway.api_port))  # free
    with InfluxClient(config.influx) as client:
        (databases,) = client.query("SHOW DATABASES")
        assert [config.influx.database] in databases.values


def test_influx_config_heals_a_server_left_stopped(
    servers: RunningServers, request: pytest.FixtureRequest
) -> None:
    # As if an outage test had failed before starting InfluxDB again.
    servers.stop_influx()
    influx: InfluxConfig = request.getfixturevalue("influx_config")
    with InfluxClient(influx) as client:
        assert client.ping()
        client.write([format_line("m", {}, {"x": 1}, 1)])


def test_clear_retained_leaves_no_retained_message(servers: RunningServers) -> None:
    publish_retained(servers.mqtt_port, "jiayuan/test/a", b"1")
    publish_retained(servers.mqtt_port, "jiayuan/test/b/c", b"2")
    assert clear_retained(servers.mqtt_port) >= 2
    assert read_retained(servers.mqtt_port, "jiayuan/test/#", timeout=0.5) is None
    assert clear_retained(servers.mqtt_port) == 0


def test_servers_end_with_a_killed_owner(tmp_path: Path) -> None:
    # A test run killed with SIGKILL must not leave servers behind (no atexit runs then).
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys, time; from pathlib import Path; "
            "from tools.servers import start_servers; "
            "s = start_servers(Path(sys.argv[1]), install=False); "
            "print(json.dumps(s.to_dict()), flush=True); time.sleep(60)",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
    )
    assert owner.stdout is not None
    orphan = RunningServers.from_dict(json.loads(owner.stdout.readline()))
    assert orphan.mqtt_answers() and orphan.influx_answers()
    owner.kill()
    owner.wait()
    owner.stdout.close()
    deadline = time.monotonic() + 10
    while (orphan.mqtt_answers() or orphan.influx_answers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not orphan.mqtt_answers() and not orphan.influx_answers()
    orphan.stop()  # nothing left to stop; must not fail
