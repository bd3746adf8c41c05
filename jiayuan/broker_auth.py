"""Who may connect to Mosquitto and what each account may touch.

One account per estate for its edge agent, which may publish only under its own estate's
topics (``jiayuan/v1/{district}/{street}/{estate}/{kind}/{device}/{channel}``) and read only
its own command topics (``jiayuan/cmd/v1/{district}/{street}/{estate}/#``); one account for
the gateway, which reads every data topic and writes commands; one maintenance account with
full access for the project's own tools (clearing retained messages, readiness checks),
never given to a device.  :func:`provision` writes Mosquitto's password file (hashed by
Debian's ``mosquitto_passwd``), its ACL file and one password file per account, so each
agent's configuration can name its secret with ``password_file``.  See docs/security.md.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from jiayuan.config import MqttConfig
from jiayuan.contract import TOPIC_PREFIX, Channel

# Commands to edge agents sit outside TOPIC_PREFIX on purpose: the gateway subscribes to
# everything under TOPIC_PREFIX, and a command is not a reading.
COMMAND_PREFIX = "jiayuan/cmd/v1"
GATEWAY_USERNAME = "jiayuan-gateway"
ADMIN_USERNAME = "jiayuan-admin"
EDGE_USERNAME_PREFIX = "edge"
PASSWORD_FILE = "mosquitto.passwd"
ACL_FILE = "mosquitto.acl"
SECRETS_DIR = "accounts"

# The contract's topic segment: a place id never holds '/', '+', '#' or spaces, so it can
# neither widen an ACL line nor split a username.
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class BrokerAuthError(ValueError):
    """An estate, account or tool that cannot be used; the message says which and why."""


class HasPlace(Protocol):
    """An estate of either registry (``jiayuan.registry`` or ``simulators.registry``)."""

    @property
    def id(self) -> str: ...
    @property
    def district(self) -> str: ...
    @property
    def street(self) -> str: ...


@dataclass(frozen=True, slots=True)
class EstatePlace:
    district: str
    street: str
    estate: str

    def __post_init__(self) -> None:
        for name in ("district", "street", "estate"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
                raise BrokerAuthError(
                    f"estate place: {name} {value!r} is not a topic segment "
                    f"(1-64 of A-Z a-z 0-9 _ . -)"
                )

    @property
    def topic_root(self) -> str:
        return f"{TOPIC_PREFIX}/{self.district}/{self.street}/{self.estate}"

    @property
    def command_root(self) -> str:
        return f"{COMMAND_PREFIX}/{self.district}/{self.street}/{self.estate}"

    @property
    def username(self) -> str:
        # '/' cannot occur inside a segment, so the name maps back to exactly one estate.
        return f"{EDGE_USERNAME_PREFIX}/{self.district}/{self.street}/{self.estate}"


def places_of(estates: Iterable[HasPlace]) -> tuple[EstatePlace, ...]:
    """The places of a registry's estates, each once, in the order given."""
    seen: dict[EstatePlace, None] = {}
    for estate in estates:
        seen.setdefault(EstatePlace(estate.district, estate.street, estate.id), None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password: str
    # Where this account's password is written (mode 0600), for ``password_file``.
    secret_file: Path


@dataclass(frozen=True, slots=True)
class BrokerAuth:
    """The files :func:`provision` wrote and the accounts they hold."""

    directory: Path
    gateway: Account
    admin: Account
    edges: dict[EstatePlace, Account]

    @property
    def password_file(self) -> Path:
        return self.directory / PASSWORD_FILE

    @property
    def acl_file(self) -> Path:
        return self.directory / ACL_FILE

    def edge(self, place: EstatePlace) -> Account:
        try:
            return self.edges[place]
        except KeyError:
            raise BrokerAuthError(f"no broker account for estate {place.topic_root}") from None

    @classmethod
    def load(cls, directory: Path) -> BrokerAuth:
        """The accounts of a directory written earlier by :func:`provision`."""
        acl = directory / ACL_FILE
        try:
            text = acl.read_text(encoding="utf-8")
        except OSError as error:
            raise BrokerAuthError(f"{acl}: cannot read the ACL file: {error.strerror}") from None
        edges: dict[EstatePlace, Account] = {}
        for line in text.splitlines():
            if line.startswith(f"user {EDGE_USERNAME_PREFIX}/"):
                _, district, street, estate = line.removeprefix("user ").split("/")
                place = EstatePlace(district, street, estate)
                edges[place] = _read_account(directory, place.username)
        return cls(
            directory,
            _read_account(directory, GATEWAY_USERNAME),
            _read_account(directory, ADMIN_USERNAME),
            edges,
        )


def acl_text(places: Iterable[EstatePlace]) -> str:
    """Mosquitto ACL: each estate's agent writes its own data topics and reads its own
    commands; the gateway reads all data and writes commands; the admin account does all."""
    channels = ", ".join(channel.value for channel in Channel)
    lines = [
        "# Written by jiayuan.broker_auth: regenerate it, do not edit it.",
        f"# An edge account publishes only {TOPIC_PREFIX}/<its estate>/<kind>/<device>/",
        f"# ({channels}) and reads only {COMMAND_PREFIX}/<its estate>/#.",
        "",
        f"user {ADMIN_USERNAME}",
        "topic readwrite #",
        "",
        f"user {GATEWAY_USERNAME}",
        f"topic read {TOPIC_PREFIX}/#",
        f"topic write {COMMAND_PREFIX}/#",
        "",
    ]
    for place in places:
        lines.append(f"user {place.username}")
        lines.extend(f"topic write {place.topic_root}/+/+/{channel.value}" for channel in Channel)
        lines.append(f"topic read {place.command_root}/#")
        lines.append("")
    return "\n".join(lines)


def provision(directory: Path, places: Iterable[EstatePlace]) -> BrokerAuth:
    """Write the password file, ACL and per-account secrets for these estates.

    An account that already has a secret file keeps its password, so re-provisioning after
    a registry change does not lock out agents that are already configured.
    """
    binary = mosquitto_passwd_binary()
    places = tuple(dict.fromkeys(places))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SECRETS_DIR).mkdir(mode=0o700, exist_ok=True)
    gateway = _account(directory, GATEWAY_USERNAME)
    admin = _account(directory, ADMIN_USERNAME)
    edges = {place: _account(directory, place.username) for place in places}
    accounts = [gateway, admin, *edges.values()]
    password_file = directory / PASSWORD_FILE
    staging = password_file.with_name(password_file.name + ".tmp")
    # Plain "user:password" lines, readable by us only, hashed in place by mosquitto_passwd -U
    # (one process for every account) and then moved over the live file.
    _write_private(staging, "".join(f"{a.username}:{a.password}\n" for a in accounts))
    result = subprocess.run(
        [binary, "-U", str(staging)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        staging.unlink(missing_ok=True)
        raise BrokerAuthError(
            f"{binary} -U failed (exit {result.returncode}): {result.stderr.strip()}"
        )
    os.replace(staging, password_file)
    _write_private(directory / ACL_FILE, acl_text(places))
    return BrokerAuth(directory, gateway, admin, edges)


def mosquitto_passwd_binary() -> str:
    found = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").is_file() else None
    )
    if found is None:
        raise BrokerAuthError(
            "mosquitto_passwd not found: install the Debian package mosquitto "
            "(it hashes the broker's passwords)"
        )
    return found


def _account(directory: Path, username: str) -> Account:
    secret_file = _secret_path(directory, username)
    if secret_file.is_file():
        return _read_account(directory, username)
    password = secrets.token_urlsafe(24)
    _write_private(secret_file, password + "\n")
    return Account(username, password, secret_file)


def _read_account(directory: Path, username: str) -> Account:
    secret_file = _secret_path(directory, username)
    try:
        password = secret_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise BrokerAuthError(
            f"{secret_file}: cannot read the password of {username}: {error.strerror}"
        ) from None
    if not password:
        raise BrokerAuthError(f"{secret_file}: the password of {username} is empty")
    return Account(username, password, secret_file)


def _secret_path(directory: Path, username: str) -> Path:
    return directory / SECRETS_DIR / (username.replace("/", "__") + ".password")


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: a secret is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def client_tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for a client of this configuration, None for plain MQTT.

    TLS is on when the URL scheme is ``mqtts`` or a CA file is given; without a CA file the
    system's trusted CAs verify the broker.  The broker's name (or IP) is always checked.
    """
    scheme = urlsplit(config.url).scheme
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl", ""):
        raise BrokerAuthError(f"[mqtt] url {config.url!r}: scheme must be mqtt or mqtts")
    if scheme not in ("mqtts", "ssl") and not config.tls_ca_file:
        if config.tls_cert_file or config.tls_key_file:
            raise BrokerAuthError(
                "[mqtt] tls_cert_file/tls_key_file need TLS: use an mqtts:// url or tls_ca_file"
            )
        return None
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise BrokerAuthError("[mqtt] tls_cert_file and tls_key_file go together: give both")
    try:
        context = ssl.create_default_context(cafile=config.tls_ca_file or None)
        if config.tls_cert_file:
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as error:
        raise BrokerAuthError(f"[mqtt] TLS files: {error}") from None
    return context
