"""``jiayuan gateway run --workers N``: one command, N gateway processes, streets dealt out.

The plan (streets, client ids, state directories, API ports) and its refusals are checked
directly; the command itself runs as a real process tree against the real Mosquitto and
InfluxDB: every message reaches exactly one worker, each worker finds its own streets'
faults, SIGTERM stops everything cleanly, and a worker that dies takes the set down with a
non-zero exit (docs/scaling.md).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.workers import deal_streets, plan_workers, worker_environment
from jiayuan.config import AlertsConfig, Config, ConfigError, GatewayConfig, MqttConfig
from jiayuan.state import SNAPSHOT_FILE
from tests.gateway.test_scale_out import (
    Publisher,
    anomaly_rows,
    now_ms,
    stored_count,
    trapped,
    wait_for,
    water,
)
from tools.servers import RunningServers

READY = "网关已启动 gateway running"
STOPPED = re.compile(r"已停止 stopped: (\d+) messages")
DEVICES_OPEN = re.compile(r"devices (\d+), open anomalies (\d+)")
WORKER_PID = re.compile(r"worker (\d+): pid (\d+)")


def test_streets_are_dealt_out_in_turn() -> None:
    assert deal_streets(("a", "b", "c", "d", "e"), 2) == [("a", "c", "e"), ("b", "d")]
    assert deal_streets(("a", "b"), 2) == [("a",), ("b",)]


def test_each_worker_gets_its_own_id_state_and_port_and_they_share_the_registry() -> None:
    config = Config(
        mqtt=MqttConfig(street_filter="s1,s2,s3", gateway_client_id="gw-songjiang"),
        gateway=GatewayConfig(state_dir="/var/lib/jiayuan/gw", api_port=8090),
    )
    plan = plan_workers(config, 2)
    assert [(w.streets, w.client_id, w.state_dir, w.api_port) for w in plan] == [
        (("s1", "s3"), "gw-songjiang-w1", "/var/lib/jiayuan/gw/w1", 8090),
        (("s2",), "gw-songjiang-w2", "/var/lib/jiayuan/gw/w2", 8091),
    ]
    any_port = Config(mqtt=MqttConfig(street_filter="s1,s2"), gateway=GatewayConfig(api_port=0))
    assert [w.api_port for w in plan_workers(any_port, 2)] == [0, 0]
    # The registry `jiayuan registry import` fills with this configuration, for every worker.
    shared = "/var/lib/jiayuan/gw/registry.sqlite"
    assert [worker_environment(w)["JIAYUAN_ALERTS_REGISTRY_DB"] for w in plan] == [shared] * 2
    # One of them writes the district and city grade rows.
    assert [worker_environment(w)["JIAYUAN_ALERTS_SCORE_AGGREGATE"] for w in plan] == [
        "true",
        "false",
    ]
    # And the group robots' rate ledger: a company's robot hears from several workers.
    ledger = "/var/lib/jiayuan/gw/robot_sends.sqlite"
    assert [worker_environment(w)["JIAYUAN_ALERTS_ROBOT_LEDGER_DB"] for w in plan] == [ledger] * 2
    named = replace(config, alerts=AlertsConfig(registry_db="/srv/registry.sqlite"))
    assert {w.registry_db for w in plan_workers(named, 2)} == {"/srv/registry.sqlite"}


@pytest.mark.parametrize(
    ("street_filter", "workers", "named"),
    [
        ("+", 2, "'+' (every street) cannot be split"),
        ("s1,s2", 3, "only 2 street(s) named"),
        ("s1,s2", 0, "give 1 or more"),
    ],
)
def test_a_split_that_cannot_be_made_is_refused(
    street_filter: str, workers: int, named: str
) -> None:
    config = Config(mqtt=MqttConfig(street_filter=street_filter))
    with pytest.raises(ConfigError) as error:
        plan_workers(config, workers)
    assert named in str(error.value)


def _two_free_ports() -> int:
    """A port p with p + 1 free too (the workers' API ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports")


class Supervisor:
    """``jiayuan gateway run --workers 2`` as a child process, its output read line by line."""

    def __init__(
        self, servers: RunningServers, database: str, tmp_path: Path, client_id: str = ""
    ) -> None:
        self.client_id = client_id or f"gw-test-{uuid.uuid4().hex[:6]}"
        env = dict(os.environ)
        env.update(
            JIAYUAN_CONFIG="",
            JIAYUAN_MQTT_URL=servers.mqtt_url,
            JIAYUAN_INFLUX_URL=servers.influx_url,
            JIAYUAN_INFLUX_DATABASE=database,
            JIAYUAN_GATEWAY_STATE_DIR=str(tmp_path / "gateway"),
            JIAYUAN_GATEWAY_API_PORT=str(_two_free_ports()),
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "gateway", "run", "--workers", "2",
             "--streets", "s1,s2,s3", "--client-id", self.client_id],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.cwd = tmp_path
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_lines(self, text: str, count: int, timeout_s: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while sum(text in line for line in self.seen) < count:
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{count}× {text!r} not printed: {self.seen}") from None
        return [line for line in self.seen if text in line]

    def stop_cleanly(self) -> list[int]:
        """SIGTERM, exit 0, and the messages each worker says it received, sorted."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0
        return sorted(
            int(match.group(1))
            for line in self.wait_for_lines("已停止 stopped:", 2)
            if (match := STOPPED.search(line))
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def supervisor(servers: RunningServers, config: Config, tmp_path: Path) -> Iterator[Supervisor]:
    running = Supervisor(servers, config.influx.database, tmp_path)
    yield running
    running.stop()


def test_two_workers_share_the_streets_without_loss_or_double_delivery(
    supervisor: Supervisor, servers: RunningServers, config: Config
) -> None:
    supervisor.wait_for_lines(READY, 2)
    publisher = Publisher(servers.mqtt_port)
    try:
        start = now_ms() - 120_000
        # Worker 1 owns s1 and s3, worker 2 owns s2: a trapped passenger on each side.
        publisher.send("s1", trapped("L-s1", start))
        publisher.send("s2", trapped("L-s2", start))
        for seq in range(1, 4):
            publisher.send("s3", [water("W-s3", seq, start + seq * 1000)])
    finally:
        publisher.close()
    wait_for(lambda: stored_count(config) == 6 + 6 + 3)
    wait_for(lambda: anomaly_rows(config, "lift.trapped") == [("s1", "L-s1"), ("s2", "L-s2")])
    # Each message reached exactly one worker: 1 + 3 on s1 and s3, 1 on s2.
    assert supervisor.stop_cleanly() == [1, 4]

    # Sent while the set is down: the same list gives the same split, so each worker's
    # persistent session holds its streets' messages for it.
    publisher = Publisher(servers.mqtt_port)
    try:
        publisher.send("s2", [water("W-s2", 1, start + 60_000)])
        publisher.send("s3", [water("W-s3", 4, start + 60_000)])
    finally:
        publisher.close()
    again = Supervisor(servers, config.influx.database, supervisor.cwd, supervisor.client_id)
    try:
        again.wait_for_lines(READY, 2)
        # Each worker took back its own detection state (its trapped passenger still open).
        restored = again.wait_for_lines("detection state restored", 2)
        assert sorted(DEVICES_OPEN.findall("".join(restored))) == [("1", "1"), ("2", "1")]
        wait_for(lambda: stored_count(config) == 15 + 2)
        assert again.stop_cleanly() == [1, 1]
    finally:
        again.stop()


def test_a_worker_that_dies_stops_the_set_with_an_error(supervisor: Supervisor) -> None:
    supervisor.wait_for_lines(READY, 2)
    pids = {
        int(match.group(1)): int(match.group(2))
        for line in supervisor.seen
        if (match := WORKER_PID.search(line))
    }
    os.kill(pids[2], signal.SIGKILL)
    assert supervisor.process.wait(60) == 1
    supervisor.wait_for_lines("workers stopped", 1)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)  # the other worker was stopped, not left running


def test_the_workers_stop_cleanly_when_the_supervisor_is_killed(supervisor: Supervisor) -> None:
    supervisor.wait_for_lines(READY, 2)
    pids = [int(m.group(2)) for line in supervisor.seen if (m := WORKER_PID.search(line))]
    supervisor.process.kill()  # SIGKILL: the supervisor passes nothing on
    supervisor.process.wait()
    # Linux sent each worker SIGTERM: each flushes, saves its detection state and exits,
    # rather than holding its streets' sessions against the set the service manager starts.
    supervisor.wait_for_lines("已停止 stopped:", 2)
    for pid in pids:
        wait_for(lambda pid=pid: _ended(pid), timeout_s=30)
    for worker in ("w1", "w2"):
        with sqlite3.connect(supervisor.cwd / "gateway" / worker / SNAPSHOT_FILE) as db:
            assert db.execute("SELECT count(*) FROM snapshot").fetchone() == (1,)


def _ended(pid: int) -> bool:
    """Exited (a zombie no longer runs: its new parent may not have reaped it yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status
