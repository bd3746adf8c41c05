"""Start and stop real Mosquitto and InfluxDB servers on free loopback ports.

The demo, ``jiayuan services`` and the test fixtures all run the real Debian servers
(``mosquitto`` 2.0, ``influxdb`` 1.6) as plain child processes with every file in one data
directory, so nothing depends on, or disturbs, system daemons or well-known ports.  Only
addresses in 127.0.0.0/8 are ever used.

By default the broker lets anyone connect (tests and the demo).  ``start_servers(secure=
SecureBroker(...))`` turns on the project's broker security instead: a password file and an
ACL written by :mod:`jiayuan.broker_auth` (no anonymous clients), and optionally a TLS
listener on a second port (docs/security.md).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jiayuan.broker_auth import BrokerAuth, EstatePlace, provision
from jiayuan.pids import pid_alive as _pid_alive
from jiayuan.pids import pid_runs as _pid_runs

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# InfluxDB's [data] cache-snapshot-memory-size, sized for a district's 100,000 series
# (docs/scaling.md, "Where one InfluxDB stops"); cache-max-memory-size stays 1 GB, room for
# the writes that arrive while a snapshot of this size is written.
INFLUX_CACHE_SNAPSHOT = "256m"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

# Debian installs mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
_BINARY_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


# Popen objects of servers started with detached=True (see start_servers).
_DETACHED_PROCESSES: list[subprocess.Popen[bytes]] = []


# Servers started for this process only (tests, the demo) run under this small watcher:
# it starts the server in its own process group and ends it when our end of its stdin pipe
# closes, that is when this process exits in any way, even killed, so no server outlives a
# killed test run.  (PR_SET_PDEATHSIG would fire when the starting *thread* ends, and tests
# restart servers from worker threads.)  SIGTERM to the watcher is passed on to the server.
_WATCHER = """
import os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def stop(*_):
    child.terminate()
signal.signal(signal.SIGTERM, stop)
def watch():
    while os.read(0, 4096):
        pass
    stop()
threading.Thread(target=watch, daemon=True).start()
os._exit(child.wait() & 0xFF)
"""


class ServicesError(RuntimeError):
    """A server could not be installed, started or stopped; the message says why."""


def find_binary(name: str) -> str | None:
    """The path of a server binary, looking in the sbin directories too."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _BINARY_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# Binary -> the Debian package that has it.  The servers are needed to start anything; the
# clients are what people publish and watch with by hand (docs/protocol.md, "By hand").
PACKAGES = {
    "mosquitto": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "mosquitto_sub": "mosquitto-clients",
    "influxd": "influxdb",
}
SERVERS = ("mosquitto", "influxd")


def _missing() -> list[str]:
    return [name for name in PACKAGES if find_binary(name) is None]


def _packages(binaries: list[str]) -> list[str]:
    return list(dict.fromkeys(PACKAGES[name] for name in binaries))


def ensure_installed() -> None:
    """Install Mosquitto, its command-line clients and InfluxDB from Debian when a binary
    is missing (root only; without root, missing clients are only reported on stderr)."""
    missing = _missing()
    if not missing:
        return
    packages = " ".join(_packages(missing))
    if os.geteuid() != 0:
        if set(missing) & set(SERVERS):
            raise ServicesError(
                f"{', '.join(missing)} not found; install them with "
                f"'sudo apt-get install {packages}' (Debian/Ubuntu packages)"
            )
        print(
            f"jiayuan: {', '.join(missing)} not found (docs/protocol.md uses them); install with "
            f"'sudo apt-get install {packages}'",
            file=sys.stderr,
        )
        return
    # policy-rc.d exiting 101 tells the packages' install scripts not to start their system
    # daemons: we run our own on free ports, and a daemon on 1883/8086 would only be in the way.
    created_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n", encoding="ascii")
        POLICY_RC_D.chmod(0o755)
        created_policy = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", *_packages(missing)],
        ):
            result = subprocess.run(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
            )
            if result.returncode != 0:
                tail = result.stdout.decode("utf-8", "replace")[-2000:]
                raise ServicesError(
                    f"'{' '.join(command)}' failed (exit {result.returncode}):\n{tail}"
                )
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still_missing = _missing()
    if still_missing:
        raise ServicesError(f"{', '.join(still_missing)} still missing after apt-get install")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """count distinct free ports: the sockets stay bound until all are chosen, so the
    kernel cannot hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _tail(path: Path, size: int = 3000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


# A minimal MQTT 3.1.1 CONNECT (clean session, empty client id, keep-alive 60 s): proves the
# broker speaks MQTT, not merely that something accepts TCP connections on the port.
_MQTT_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_MQTT_CONNACK_OK = bytes([0x20, 2, 0, 0])
_MQTT_DISCONNECT = bytes([0xE0, 0])


def _mqtt_connect_packet(username: str, password: str) -> bytes:
    """The same CONNECT with a username and password (a secured broker refuses anonymity)."""

    def text(value: str) -> bytes:
        data = value.encode("utf-8")
        return len(data).to_bytes(2, "big") + data

    # Flags: username, password, clean session.
    body = b"\x00\x04MQTT" + bytes([4, 0xC2, 0, 60]) + text("") + text(username) + text(password)
    length = len(body)
    encoded = bytearray()
    while True:  # the MQTT "remaining length" varint
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x10]) + bytes(encoded) + body


def mqtt_answers(port: int, timeout: float = 1.0, username: str = "", password: str = "") -> bool:
    """Whether a broker on 127.0.0.1:port accepts an MQTT connection (with these
    credentials, when given)."""
    packet = _mqtt_connect_packet(username, password) if username else _MQTT_CONNECT
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            with contextlib.suppress(OSError):
                sock.sendall(_MQTT_DISCONNECT)
            return reply[:2] == _MQTT_CONNACK_OK[:2] and reply[3] == 0
    except OSError:
        return False


def influx_answers(port: int, timeout: float = 1.0) -> bool:
    """Whether InfluxDB on 127.0.0.1:port answers ``GET /ping`` with 204."""
    try:
        # trust_env=False: a proxy from the environment must never see loopback traffic.
        response = httpx.get(f"http://{HOST}:{port}/ping", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 204


def clear_retained(port: int, timeout: float = 5.0, username: str = "", password: str = "") -> int:
    """Delete every retained message on the broker at 127.0.0.1:port; return how many.

    Tests share one broker: a retained status left by one test would otherwise reach the
    next test's subscribers as if it were new.  A secured broker needs an account that may
    read and write everything (``broker_auth.ADMIN_USERNAME``).
    """
    import paho.mqtt.client as mqtt  # imported here: only tests and tools need it
    from paho.mqtt.enums import CallbackAPIVersion

    marker = f"jiayuan-clear/{os.getpid()}/{time.monotonic_ns()}"
    retained: list[str] = []
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == marker:
            done.set()
        elif message.retain and message.payload:
            retained.append(message.topic)

    def on_subscribe(client: mqtt.Client, *args: Any) -> None:
        # The broker queues the retained messages while handling SUBSCRIBE, so they all
        # arrive before this marker published afterwards.
        client.publish(marker, b"x", qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if username:
        client.username_pw_set(username, password)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *args: c.subscribe([("#", 1), (marker, 1)])
    client.connect(HOST, port)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise ServicesError(f"broker on port {port} did not list its retained messages")
        for topic in retained:
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(retained)


def _stop_pid(pid: int, conf: Path, timeout: float) -> None:
    if not _pid_runs(pid, conf):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # a session leader: its group is its own
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


@dataclass(frozen=True)
class SecureBroker:
    """Broker security for :func:`start_servers`: accounts and ACL for these estates, and a
    TLS listener on a second port when a server certificate and key are given."""

    places: tuple[EstatePlace, ...]
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ServicesError("a TLS listener needs both a certificate and its key file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ServicesError(f"TLS file {path} does not exist")


@dataclass
class RunningServers:
    """Mosquitto and InfluxDB started by :func:`start_servers`, and how to reach them."""

    data_dir: Path
    mqtt_port: int
    influx_port: int
    influx_rpc_port: int
    mosquitto_pid: int = 0
    influxd_pid: int = 0
    # Remove data_dir on stop(): true when start_servers made a temporary one.
    owns_data_dir: bool = False
    # Detached servers outlive this process (`jiayuan services up`); the others end with it.
    detached: bool = field(default=False, compare=False)
    # Secured mode (SecureBroker): the accounts and ACL, and the TLS listener if any.
    auth: BrokerAuth | None = field(default=None, compare=False)
    mqtt_tls_port: int = 0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    _processes: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{HOST}:{self.mqtt_port}"

    @property
    def mqtt_tls_url(self) -> str:
        """The TLS listener's URL, empty when there is none."""
        return f"mqtts://{HOST}:{self.mqtt_tls_port}" if self.mqtt_tls_port else ""

    @property
    def influx_url(self) -> str:
        return f"http://{HOST}:{self.influx_port}"

    @property
    def mosquitto_conf(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def influxdb_conf(self) -> Path:
        return self.data_dir / "influxdb.conf"

    # --- state file ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "mqtt_port": self.mqtt_port,
            "influx_port": self.influx_port,
            "influx_rpc_port": self.influx_rpc_port,
            "mosquitto_pid": self.mosquitto_pid,
            "influxd_pid": self.influxd_pid,
            "owns_data_dir": self.owns_data_dir,
            "mqtt_url": self.mqtt_url,
            "influx_url": self.influx_url,
            "auth_dir": str(self.auth.directory) if self.auth is not None else "",
            # For the other commands (jiayuan.state.recorded_servers), which read this file
            # without this module: what to check and which account the gateway uses.
            "mosquitto_conf": str(self.mosquitto_conf),
            "influxdb_conf": str(self.influxdb_conf),
            "gateway_username": self.auth.gateway.username if self.auth is not None else "",
            "gateway_password_file": (
                str(self.auth.gateway.secret_file) if self.auth is not None else ""
            ),
            "mqtt_tls_port": self.mqtt_tls_port,
            "tls_cert_file": str(self.tls_cert_file or ""),
            "tls_key_file": str(self.tls_key_file or ""),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunningServers:
        try:
            auth_dir = str(data.get("auth_dir") or "")
            cert = str(data.get("tls_cert_file") or "")
            key = str(data.get("tls_key_file") or "")
            return cls(
                auth=BrokerAuth.load(Path(auth_dir)) if auth_dir else None,
                mqtt_tls_port=int(data.get("mqtt_tls_port", 0)),
                tls_cert_file=Path(cert) if cert else None,
                tls_key_file=Path(key) if key else None,
                data_dir=Path(str(data["data_dir"])),
                mqtt_port=int(data["mqtt_port"]),
                influx_port=int(data["influx_port"]),
                influx_rpc_port=int(data["influx_rpc_port"]),
                mosquitto_pid=int(data.get("mosquitto_pid", 0)),
                influxd_pid=int(data.get("influxd_pid", 0)),
                owns_data_dir=bool(data.get("owns_data_dir", False)),
                detached=True,  # recorded in a state file: not tied to any process
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ServicesError(f"invalid services state: {error!r}") from None

    # --- liveness --------------------------------------------------------------------------

    def mosquitto_running(self) -> bool:
        return _pid_runs(self.mosquitto_pid, self.mosquitto_conf)

    def influxd_running(self) -> bool:
        return _pid_runs(self.influxd_pid, self.influxdb_conf)

    def mqtt_answers(self) -> bool:
        if self.auth is None:
            return mqtt_answers(self.mqtt_port)
        admin = self.auth.admin
        return mqtt_answers(self.mqtt_port, username=admin.username, password=admin.password)

    def clear_retained(self) -> int:
        """Delete every retained message (with the maintenance account when secured)."""
        if self.auth is None:
            return clear_retained(self.mqtt_port)
        admin = self.auth.admin
        return clear_retained(self.mqtt_port, username=admin.username, password=admin.password)

    def influx_answers(self) -> bool:
        return influx_answers(self.influx_port)

    # --- start / stop ----------------------------------------------------------------------

    def start_mosquitto(self) -> None:
        """Start the broker on its port with its persistence dir, and wait until it answers
        (nothing to do if it runs already)."""
        if self.mosquitto_running():
            return
        binary = find_binary("mosquitto")
        if binary is None:
            raise ServicesError("mosquitto not found: run 'jiayuan services install'")
        process = self._spawn(
            "mosquitto", [binary, "-c", str(self.mosquitto_conf)], self.data_dir / "mosquitto.out"
        )
        self.mosquitto_pid = process.pid
        self._wait_ready(
            "mosquitto",
            process,
            self.mosquitto_conf,
            self.mqtt_answers,
            [self.data_dir / "mosquitto.log", self.data_dir / "mosquitto.out"],
        )

    def start_influx(self) -> None:
        """Start InfluxDB on its port with its data dir, and wait until it answers (nothing
        to do if it runs already)."""
        if self.influxd_running():
            return
        binary = find_binary("influxd")
        if binary is None:
            raise ServicesError("influxd not found: run 'jiayuan services install'")
        process = self._spawn(
            "influxd", [binary, "-config", str(self.influxdb_conf)], self.data_dir / "influxd.log"
        )
        self.influxd_pid = process.pid
        self._wait_ready(
            "influxd",
            process,
            self.influxdb_conf,
            lambda: influx_answers(self.influx_port),
            [self.data_dir / "influxd.log"],
        )

    def stop_mosquitto(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self._stop("mosquitto", self.mosquitto_pid, self.mosquitto_conf, timeout)
        self.mosquitto_pid = 0

    def stop_influx(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self._stop("influxd", self.influxd_pid, self.influxdb_conf, timeout)
        self.influxd_pid = 0

    def restart_mosquitto(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file) and start it again on the
        same port with the same persistence dir."""
        self.stop_mosquitto()
        self.start_mosquitto()

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after a timeout) and remove a temp dir."""
        try:
            self.stop_mosquitto()
            self.stop_influx()
        finally:
            with contextlib.suppress(ValueError):
                atexit.unregister(self.stop)
            if self.owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        if not self.detached:
            argv = [sys.executable, "-c", _WATCHER, *argv]
        with log_path.open("ab") as log:
            # A session (and process group) of its own: a Ctrl-C in the terminal does not
            # reach the servers, and detached ones outlive the command.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if self.detached else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._processes[name] = process
        return process

    def _wait_ready(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        conf: Path,
        answers: Callable[[], bool],
        logs: list[Path],
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if answers():
                return
            time.sleep(0.05)
        exited = process.poll()
        if exited is None:
            self._stop(name, process.pid, conf, STOP_TIMEOUT_S)
            reason = f"did not answer within {START_TIMEOUT_S:.0f} s"
        else:
            self._processes.pop(name, None)
            if process.stdin is not None:
                process.stdin.close()
            reason = f"exited with code {exited}"
        tails = "\n".join(f"--- {path}:\n{_tail(path)}" for path in logs if path.exists())
        raise ServicesError(f"{name} {reason}\n{tails}")

    def _stop(self, name: str, pid: int, conf: Path, timeout: float) -> None:
        process = self._processes.pop(name, None)
        if process is None:
            process = next((p for p in _DETACHED_PROCESSES if p.pid == pid), None)
            if process is not None:
                _DETACHED_PROCESSES.remove(process)
        if process is None:
            # Started by another process (the state file of `jiayuan services up`).
            _stop_pid(pid, conf, timeout)
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                # The whole group: the watcher and the server under it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
        if process.stdin is not None:
            process.stdin.close()


def _write_mosquitto_conf(servers: RunningServers) -> None:
    persistence = servers.data_dir / "mosquitto"
    persistence.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by tools.servers: a private broker for one data directory.",
        f"listener {servers.mqtt_port} {HOST}",
        # Secured mode: only the accounts in the password file may connect.
        f"allow_anonymous {'false' if servers.auth is not None else 'true'}",
        # Run as whoever started us: as root, mosquitto would otherwise switch to the
        # 'mosquitto' user, which cannot write into our (private) data directory.
        f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        "persistence true",
        f"persistence_location {persistence}/",
        # A gateway's persistent session keeps every QoS 1 message while the gateway is
        # down, however many: the broker must never drop them to save memory.
        "max_inflight_messages 1000",
        "max_queued_messages 1000000",
        "max_queued_bytes 0",
        # MQTT 3.1.1 sessions carry no expiry of their own ([mqtt] gateway_protocol):
        # the week a v5 gateway asks for.
        "persistent_client_expiration 7d",
        f"log_dest file {servers.data_dir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages false",
        "",
    ]
    if servers.auth is not None:
        lines += [
            "# Secured (jiayuan.broker_auth): accounts, and what each may publish and read.",
            f"password_file {servers.auth.password_file}",
            f"acl_file {servers.auth.acl_file}",
            "",
        ]
    if servers.mqtt_tls_port:
        lines += [
            f"listener {servers.mqtt_tls_port} {HOST}",
            f"certfile {servers.tls_cert_file}",
            f"keyfile {servers.tls_key_file}",
            "tls_version tlsv1.2",
            "",
        ]
    servers.mosquitto_conf.write_text("\n".join(lines), encoding="utf-8")


def _write_influxdb_conf(servers: RunningServers) -> None:
    root = servers.data_dir / "influxdb"
    for sub in ("meta", "data", "wal"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    servers.influxdb_conf.write_text(
        f"""# Written by tools.servers: a private InfluxDB for one data directory.
reporting-disabled = true
# The RPC service (backup/restore) binds its own port: keep it on loopback too.
bind-address = "{HOST}:{servers.influx_rpc_port}"

[meta]
  dir = "{root / "meta"}"
  logging-enabled = false

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false
  # A district writes one point per device every few seconds: a 25 MB cache (the default)
  # is written out as a TSM file holding about one value per series, and InfluxDB then
  # spends most of its CPU writing and compacting those files (docs/scaling.md).
  cache-snapshot-memory-size = "{INFLUX_CACHE_SNAPSHOT}"

[monitor]
  # No _internal database: it would write every 10 s and show up in SHOW DATABASES.
  store-enabled = false

[subscriber]
  enabled = false

[http]
  bind-address = "{HOST}:{servers.influx_port}"
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
""",
        encoding="utf-8",
    )


def start_servers(
    data_dir: Path | None = None,
    install: bool = True,
    detached: bool = False,
    secure: SecureBroker | None = None,
) -> RunningServers:
    """Start Mosquitto and InfluxDB on free loopback ports with all files in data_dir.

    With no data_dir a fresh temporary one is made and removed by ``stop()``.  Unless
    ``detached``, the servers end with this Python process however it ends: ``stop()`` runs
    at a normal exit, and their watchers end them if it is killed.  Detached servers run
    until stopped (``jiayuan services down``).  With ``secure`` the broker takes only the
    accounts written to ``data_dir/mqtt-auth`` (see :class:`SecureBroker`).
    """
    if install:
        ensure_installed()
    owns = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="jiayuan-")) if data_dir is None else data_dir
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    mqtt_port, influx_port, rpc_port, tls_port = free_ports(4)
    servers = RunningServers(
        data_dir=directory,
        mqtt_port=mqtt_port,
        influx_port=influx_port,
        influx_rpc_port=rpc_port,
        owns_data_dir=owns,
        detached=detached,
    )
    try:
        if secure is not None:
            servers.auth = provision(directory / "mqtt-auth", secure.places)
            if secure.tls_cert_file is not None and secure.tls_key_file is not None:
                servers.mqtt_tls_port = tls_port
                servers.tls_cert_file = secure.tls_cert_file.resolve()
                servers.tls_key_file = secure.tls_key_file.resolve()
        _write_mosquitto_conf(servers)
        _write_influxdb_conf(servers)
        servers.start_mosquitto()
        servers.start_influx()
    except BaseException:
        servers.stop()
        raise
    if detached:
        # Forget them (they are found by pid from now on), but keep the Popen objects
        # referenced: a collected Popen of a running process warns "still running".
        _DETACHED_PROCESSES.extend(servers._processes.values())
        servers._processes.clear()
    else:
        atexit.register(servers.stop)
    return servers


@contextlib.contextmanager
def servers(data_dir: Path | None = None, install: bool = True) -> Iterator[RunningServers]:
    """``with servers() as s:`` — Mosquitto and InfluxDB for the duration of the block."""
    running = start_servers(data_dir, install=install)
    try:
        yield running
    finally:
        running.stop()
