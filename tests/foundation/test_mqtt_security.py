"""MQTT security against the real Mosquitto: accounts, per-estate ACL, TLS.

One secured broker for the module (``start_servers(secure=...)``), with the gateway's real
ingest (:class:`gateway.transport.ingest.MqttIngest`) and the real edge agent as clients.  The TLS
certificates come from the openssl CLI (the ``cryptography`` package is not installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import DriverSample
from gateway.transport.inbox import Inbox
from gateway.transport.ingest import MqttIngest
from jiayuan import config as config_module
from jiayuan.broker_auth import (
    ACL_FILE,
    ADMIN_USERNAME,
    GATEWAY_USERNAME,
    Account,
    BrokerAuth,
    BrokerAuthError,
    EstatePlace,
    acl_text,
    client_tls_context,
    places_of,
    provision,
)
from jiayuan.catalogue import Kind
from jiayuan.config import EdgeConfig, MqttConfig
from jiayuan.contract import batch_topic, decode_envelope
from jiayuan.state import ENV_STATE_DIR, SERVICES_FILE
from simulators.registry import build_registry
from tools import cli
from tools.servers import RunningServers, SecureBroker, ServicesError, start_servers

ESTATE_A = EstatePlace("songjiang", "S01", "E-A")
ESTATE_B = EstatePlace("songjiang", "S02", "E-B")
NOT_AUTHORIZED = 135  # MQTT 5 reason code of a refused PUBLISH
OPENSSL = shutil.which("openssl")
WAIT_S = 10.0


# --- TLS material --------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (openssl CLI),
    as docs/security.md describes; returns (ca.crt, server.crt, server.key)."""
    assert OPENSSL is not None
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    san = directory / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")
    ca = ["-subj", "/CN=Jiayuan test CA", "-keyout", ca_key, "-out", ca_crt]
    server = ["-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr]
    sign = ["-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-extfile", san]
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", *ca],
        ["req", "-newkey", "rsa:2048", "-nodes", *server],
        ["x509", "-req", "-days", "30", *sign, "-out", crt],
    ):
        subprocess.run([OPENSSL, *map(str, argv)], check=True, capture_output=True)
    return ca_crt, crt, key


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if OPENSSL is None:
        return None
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory)
    return directory


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, tls_dir: Path | None
) -> Iterator[RunningServers]:
    """A broker that takes only the accounts of estates A and B, with a TLS listener when
    openssl is there to make the certificates."""
    security = SecureBroker(
        (ESTATE_A, ESTATE_B),
        tls_dir / "server.crt" if tls_dir else None,
        tls_dir / "server.key" if tls_dir else None,
    )
    running = start_servers(tmp_path_factory.mktemp("secure"), secure=security)
    try:
        yield running
    finally:
        running.stop()


def auth_of(servers: RunningServers) -> BrokerAuth:
    assert servers.auth is not None
    return servers.auth


# --- clients -------------------------------------------------------------------------------


class Gateway:
    """The gateway's real MQTT ingest under the gateway account; collects what arrives."""

    def __init__(self, config: MqttConfig) -> None:
        self.inbox: Inbox = Inbox()
        self.ingest = MqttIngest(config, self.inbox)
        self.topics: list[str] = []
        self.payloads: list[bytes] = []

    def wait_for(self, topic: str) -> None:
        """Collect messages until one on topic arrives (acknowledging each)."""
        deadline = time.monotonic() + WAIT_S
        while topic not in self.topics:
            message = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            self.topics.append(message.topic)
            self.payloads.append(message.payload)
            self.ingest.ack([message])


def gateway_config(servers: RunningServers, **settings: Any) -> MqttConfig:
    account = auth_of(servers).gateway
    options: dict[str, Any] = {
        "url": servers.mqtt_url,
        "username": account.username,
        "password": account.password,
        "gateway_client_id": f"gw-{uuid.uuid4().hex[:8]}",
    } | settings
    return MqttConfig(**options)


@pytest.fixture
def gateway(secure: RunningServers) -> Iterator[Gateway]:
    gw = Gateway(gateway_config(secure))
    gw.ingest.start()
    assert gw.ingest.wait_subscribed(WAIT_S), "the gateway account could not subscribe"
    try:
        yield gw
    finally:
        gw.ingest.stop()


class Client:
    """A synchronous MQTT 5 client that records PUBACK reason codes and messages."""

    def __init__(self, servers: RunningServers, account: Account | None, password: str = ""):
        self.acks: dict[int, int] = {}
        self.received: list[str] = []
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if account is not None:
            client.username_pw_set(account.username, password or account.password)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client = client
        self.port = servers.mqtt_port

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, *_: Any
    ) -> None:
        self.connack = rc
        self._connected.set()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        self.acks[mid] = rc.value

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1; the PUBACK's reason code (0 = accepted)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT_S)
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def data_topic(place: EstatePlace, device: str = "L1") -> str:
    return f"{place.topic_root}/lift/{device}/telemetry"


# --- accounts and ACL, no broker -----------------------------------------------------------


def test_acl_confines_each_estate_to_its_own_topics() -> None:
    lines = acl_text([ESTATE_A, ESTATE_B]).splitlines()
    a = lines.index(f"user {ESTATE_A.username}")
    b = lines.index(f"user {ESTATE_B.username}")
    assert lines[a + 1 : b - 1] == [
        "topic write jiayuan/v1/songjiang/S01/E-A/+/+/telemetry",
        "topic write jiayuan/v1/songjiang/S01/E-A/+/+/event",
        "topic write jiayuan/v1/songjiang/S01/E-A/+/+/status",
        "topic read jiayuan/cmd/v1/songjiang/S01/E-A/#",
    ]
    gateway = lines.index(f"user {GATEWAY_USERNAME}")
    assert lines[gateway + 1 : gateway + 3] == [
        "topic read jiayuan/v1/#",
        "topic write jiayuan/cmd/v1/#",
    ]


@pytest.mark.parametrize(
    ("district", "street", "estate", "named"),
    [
        ("songjiang", "S01", "E/1", "estate"),
        ("#", "S01", "E1", "district"),
        ("a", "", "E", "street"),
    ],
)
def test_an_estate_id_that_could_widen_the_acl_is_refused(
    district: str, street: str, estate: str, named: str
) -> None:
    with pytest.raises(BrokerAuthError, match=f"{named} .* is not a topic segment"):
        EstatePlace(district, street, estate)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_password_file_holds_only_hashes_and_reprovisioning_keeps_passwords(
    tmp_path: Path,
) -> None:
    first = provision(tmp_path, [ESTATE_A])
    text = first.password_file.read_text(encoding="utf-8")
    users = dict(line.split(":", 1) for line in text.splitlines())
    assert set(users) == {GATEWAY_USERNAME, ADMIN_USERNAME, ESTATE_A.username}
    assert all(hashed.startswith("$7$") for hashed in users.values())  # PBKDF2-SHA512
    assert first.gateway.password not in text
    assert (first.edge(ESTATE_A).secret_file.stat().st_mode & 0o777) == 0o600
    # A second estate joins: existing agents keep their passwords.
    second = provision(tmp_path, [ESTATE_A, ESTATE_B])
    assert second.edge(ESTATE_A).password == first.edge(ESTATE_A).password
    assert second.gateway.password == first.gateway.password
    assert BrokerAuth.load(tmp_path) == second
    with pytest.raises(BrokerAuthError, match="no broker account for estate"):
        first.edge(ESTATE_B)


def test_places_come_from_registry_estates_once_each() -> None:
    class Estate:
        def __init__(self, id: str, district: str, street: str) -> None:
            self.id, self.district, self.street = id, district, street

    estates = [Estate("E-A", "songjiang", "S01"), Estate("E-A", "songjiang", "S01")]
    assert places_of(estates) == (ESTATE_A,)


def test_tls_settings_are_checked_before_any_connection(tmp_path: Path) -> None:
    assert client_tls_context(MqttConfig(url="mqtt://127.0.0.1:1883")) is None
    with pytest.raises(BrokerAuthError, match="tls_cert_file and tls_key_file go together"):
        client_tls_context(MqttConfig(url="mqtts://127.0.0.1:8883", tls_cert_file="c.pem"))
    with pytest.raises(BrokerAuthError, match="need TLS"):
        client_tls_context(MqttConfig(tls_cert_file="c.pem", tls_key_file="k.pem"))
    with pytest.raises(BrokerAuthError, match="TLS files"):
        client_tls_context(MqttConfig(tls_ca_file=str(tmp_path / "missing-ca.crt")))
    with pytest.raises(BrokerAuthError, match="scheme must be mqtt or mqtts"):
        client_tls_context(MqttConfig(url="http://127.0.0.1:1883"))


def test_a_tls_listener_needs_both_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ServicesError, match="both a certificate and its key"):
        SecureBroker((ESTATE_A,), tls_cert_file=tmp_path / "server.crt")


# --- against the secured broker ------------------------------------------------------------


def test_estate_a_cannot_publish_as_estate_b(secure: RunningServers, gateway: Gateway) -> None:
    auth = auth_of(secure)
    a = Client(secure, auth.edge(ESTATE_A))
    assert a.connect() == 0
    try:
        assert a.publish(data_topic(ESTATE_B), b"forged") == NOT_AUTHORIZED
        assert a.publish(f"{ESTATE_A.topic_root}/lift/L1/command") == NOT_AUTHORIZED
        assert a.publish(f"{ESTATE_A.command_root}/edge-A/restart") == NOT_AUTHORIZED
        assert a.publish(data_topic(ESTATE_A), b"genuine") == 0
    finally:
        a.close()
    # The broker handles one client's messages in order: once A's genuine message is in,
    # the forged one would have been too.
    gateway.wait_for(data_topic(ESTATE_A))
    assert gateway.topics == [data_topic(ESTATE_A)]
    assert gateway.payloads == [b"genuine"]


def test_the_gateway_account_receives_every_estate(
    secure: RunningServers, gateway: Gateway
) -> None:
    auth = auth_of(secure)
    sent = []
    for place in (ESTATE_A, ESTATE_B):
        client = Client(secure, auth.edge(place))
        assert client.connect() == 0
        try:
            for channel in ("telemetry", "event", "status"):
                topic = f"{place.topic_root}/fire/F1/{channel}"
                assert client.publish(topic) == 0
                sent.append(topic)
        finally:
            client.close()
    gateway.wait_for(sent[-1])
    assert sorted(gateway.topics) == sorted(sent)


@pytest.mark.parametrize("who", ["wrong password", "unknown user", "anonymous"])
def test_a_client_without_valid_credentials_is_refused(secure: RunningServers, who: str) -> None:
    auth = auth_of(secure)
    account = {
        "wrong password": auth.edge(ESTATE_A),
        "unknown user": Account("edge/songjiang/S01/E-X", "guess", Path("/nonexistent")),
        "anonymous": None,
    }[who]
    client = Client(secure, account, password="not-the-password" if who == "wrong password" else "")
    try:
        code = client.connect()
    finally:
        client.close()
    assert code.is_failure
    assert code.getName() in ("Bad user name or password", "Not authorized")


def test_an_edge_reads_only_its_own_commands(secure: RunningServers, gateway: Gateway) -> None:
    auth = auth_of(secure)
    edge_a = Client(secure, auth.edge(ESTATE_A))
    assert edge_a.connect() == 0
    sender = Client(secure, auth.gateway)
    assert sender.connect() == 0
    edge_b = Client(secure, auth.edge(ESTATE_B))
    assert edge_b.connect() == 0
    try:
        subscribed = threading.Event()
        edge_a.client.on_subscribe = lambda *args: subscribed.set()
        # A wildcard over everything: the broker delivers only what A may read.
        edge_a.client.subscribe("#", qos=1)
        assert subscribed.wait(WAIT_S)
        assert edge_b.publish(data_topic(ESTATE_B)) == 0
        assert sender.publish(f"{ESTATE_B.command_root}/edge-B/restart") == 0
        mine = f"{ESTATE_A.command_root}/edge-A/restart"
        assert sender.publish(mine) == 0
        deadline = time.monotonic() + WAIT_S
        while not edge_a.received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for client in (edge_a, edge_b, sender):
            client.close()
    assert edge_a.received == [mine]


class OneLift:
    """A driver with one lift that yields count readings."""

    def __init__(self, count: int) -> None:
        self.left = count

    def poll(self, now_ms: int) -> list[DriverSample]:
        samples = [
            DriverSample("L1", Kind.LIFT, "B1", now_ms - i, {"car_position": i, "speed": 1.0})
            for i in range(self.left)
        ]
        self.left = 0
        return samples


@pytest.mark.skipif(OPENSSL is None, reason="no openssl CLI to make TLS certificates")
def test_edge_agent_and_gateway_over_tls(
    secure: RunningServers, tls_dir: Path | None, tmp_path: Path
) -> None:
    assert tls_dir is not None and secure.mqtt_tls_url
    ca = str(tls_dir / "ca.crt")
    gw = Gateway(gateway_config(secure, url=secure.mqtt_tls_url, tls_ca_file=ca))
    gw.ingest.start()
    assert gw.ingest.wait_subscribed(WAIT_S), "the gateway could not subscribe over TLS"
    account = auth_of(secure).edge(ESTATE_A)
    place = EdgePlace(ESTATE_A.district, ESTATE_A.street, ESTATE_A.estate, "edge-A")
    agent = EdgeAgent(
        MqttConfig(
            url=secure.mqtt_tls_url,
            username=account.username,
            password=account.password,
            tls_ca_file=ca,
        ),
        EdgeConfig(),
        place,
        OneLift(5),
        tmp_path / "spool.db",
        poll_interval_s=0.02,
    )

    async def run_agent() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        assert await agent.wait_until_empty(WAIT_S)
        stop.set()
        await asyncio.wait_for(task, WAIT_S)

    try:
        asyncio.run(run_agent())
        topic = batch_topic(place.district, place.street, place.estate, place.edge_id)
        gw.wait_for(topic)
    finally:
        gw.ingest.stop()
    readings = [
        reading
        for payload, arrived_on in zip(gw.payloads, gw.topics, strict=True)
        if arrived_on == topic
        for reading in decode_envelope(payload).readings
    ]
    assert [r.values["car_position"] for r in readings] == [0, 1, 2, 3, 4]
    assert agent.stats.readings_acked == 5


@pytest.mark.skipif(OPENSSL is None, reason="no openssl CLI to make TLS certificates")
def test_a_tls_client_that_does_not_trust_the_ca_is_refused(
    secure: RunningServers, tmp_path: Path
) -> None:
    # Another CA of the same name: the broker's certificate does not chain to it.
    other_ca, _, _ = make_certificates(tmp_path / "other")
    context = client_tls_context(MqttConfig(url=secure.mqtt_tls_url, tls_ca_file=str(other_ca)))
    assert context is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set_context(context)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        client.connect("127.0.0.1", secure.mqtt_tls_port)


@pytest.mark.slow
def test_the_secured_broker_restarts_with_its_accounts(secure: RunningServers) -> None:
    auth = auth_of(secure)
    retained = Client(secure, auth.edge(ESTATE_A))
    assert retained.connect() == 0
    try:
        info = retained.client.publish(f"{ESTATE_A.topic_root}/edge/edge-A/status", b"1", 1, True)
        info.wait_for_publish(WAIT_S)
    finally:
        retained.close()
    # The state file of `jiayuan services up --secure` finds the same accounts again.
    restored = RunningServers.from_dict(secure.to_dict())
    assert restored.auth == auth and restored.mqtt_tls_port == secure.mqtt_tls_port
    secure.restart_mosquitto()
    assert restored.mqtt_answers()
    assert (secure.data_dir / "mqtt-auth" / ACL_FILE).is_file()
    # Anonymous clients stay out after the restart; the maintenance account still works.
    anonymous = Client(secure, None)
    try:
        assert anonymous.connect().is_failure
    finally:
        anonymous.close()
    assert secure.clear_retained() == 1


# --- jiayuan services up --secure ----------------------------------------------------------


def services_file() -> Path:
    """Where `jiayuan services up` records its servers: the test's own state directory."""
    return Path(os.environ[ENV_STATE_DIR]) / SERVICES_FILE


@pytest.fixture
def jiayuan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``tools.cli.main`` with only ``services`` registered, in an empty directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("tools.servers_cli",))
    yield cli.main
    state = services_file()
    if state.exists():  # never leave servers behind, whatever the test did
        RunningServers.from_dict(json.loads(state.read_text())).stop()


@pytest.mark.slow
def test_services_up_secure_gives_accounts_per_registry_estate(
    jiayuan: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = build_registry(estates=2, seed=7)
    registry_file = tmp_path / "registry.json"
    registry_file.write_text(registry.to_json(), encoding="utf-8")
    argv = ["services", "up", "--secure", "--registry", str(registry_file)]
    assert jiayuan([*argv, "--estate", "songjiang/S09/E-extra"]) == 0
    out = capsys.readouterr().out
    assert all(line.startswith(("#", "export ")) for line in out.splitlines())
    servers = RunningServers.from_dict(json.loads(services_file().read_text()))
    auth = auth_of(servers)
    expected = {EstatePlace(e.district, e.street, e.id) for e in registry.estates}
    assert set(auth.edges) == expected | {EstatePlace("songjiang", "S09", "E-extra")}
    assert f"export JIAYUAN_MQTT_USERNAME={GATEWAY_USERNAME}\n" in out
    assert f"export JIAYUAN_MQTT_PASSWORD_FILE={auth.gateway.secret_file}\n" in out
    # The printed secret file is what a shell's gateway would read; anonymity is refused.
    password = auth.gateway.secret_file.read_text(encoding="utf-8").strip()
    gateway = Client(servers, Account(GATEWAY_USERNAME, password, auth.gateway.secret_file))
    anonymous = Client(servers, None)
    try:
        assert gateway.connect() == 0
        assert anonymous.connect().is_failure
    finally:
        gateway.close()
        anonymous.close()
    # The other commands find the broker and the gateway's account without being told.
    config = config_module.load()
    assert (config.mqtt.url, config.mqtt.username) == (servers.mqtt_url, GATEWAY_USERNAME)
    assert config.mqtt.password == password
    assert jiayuan(["services", "status"]) == 0
    assert capsys.readouterr().out.count("running, answering") == 2
    assert jiayuan(["services", "down"]) == 0
    assert not servers.data_dir.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--estate", "songjiang/S01"], "expected DISTRICT/STREET/ESTATE"),
        (["--estate", "songjiang/S01/E+1"], "estate 'E\\+1' is not a topic segment"),
        (["--registry", "missing.yaml"], "missing.yaml"),
    ],
)
def test_services_up_secure_names_bad_input(
    jiayuan: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert jiayuan(["services", "up", "--secure", *argv]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not services_file().exists()


def test_services_up_security_options_need_secure(
    jiayuan: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert jiayuan(["services", "up", "--estate", "songjiang/S01/E1"]) == 1
    assert "need --secure" in capsys.readouterr().err


def test_tls_and_account_settings_load_from_file_and_environment(tmp_path: Path) -> None:
    secret = tmp_path / "edge.password"
    secret.write_text("s3cret\n", encoding="utf-8")
    toml = tmp_path / "jiayuan.toml"
    toml.write_text(
        '[mqtt]\nurl = "mqtts://127.0.0.1:8883"\nusername = "edge/songjiang/S01/E-A"\n'
        'password_file = "edge.password"\ntls_ca_file = "/etc/jiayuan/ca.crt"\n',
        encoding="utf-8",
    )
    loaded = config_module.load(toml, environ={"JIAYUAN_MQTT_TLS_CERT_FILE": "/etc/c.pem"})
    assert loaded.mqtt.password == "s3cret"
    assert loaded.mqtt.tls_ca_file == "/etc/jiayuan/ca.crt"
    assert loaded.mqtt.tls_cert_file == "/etc/c.pem" and loaded.mqtt.tls_key_file == ""
