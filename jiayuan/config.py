"""One configuration for every component: a TOML file, then environment overrides.

Resolution order, later wins: built-in defaults, the TOML file (``--config PATH``, else
``$JIAYUAN_CONFIG``, else ``./jiayuan.toml`` when it exists), then environment variables
named ``JIAYUAN_<SECTION>_<KEY>`` (for example ``JIAYUAN_INFLUX_URL``).  Secrets can be
given as ``<key>_file`` (``password_file``, ``token_file``) so they never sit in the file.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILE = "jiayuan.toml"
ENV_CONFIG_FILE = "JIAYUAN_CONFIG"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    username: str = ""
    password: str = ""
    # The gateway's persistent-session client id: the broker keeps its QoS 1 messages while
    # it is down and hands them over when it returns.
    gateway_client_id: str = "jiayuan-gateway"
    # Which streets this gateway owns: "+" for all, or one street id.
    street_filter: str = "+"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 1883


@dataclass(frozen=True)
class InfluxConfig:
    url: str = "http://127.0.0.1:8086"
    # "v1": /write and /query with database (+ username/password) — InfluxDB 1.x, and the
    # v1-compatible API of 2.x and 3.x.  "v2": /api/v2/write with token, org and bucket.
    api: Literal["v1", "v2"] = "v1"
    database: str = "jiayuan"
    retention_policy: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    org: str = ""
    bucket: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True)
class GatewayConfig:
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    state_dir: str = ".jiayuan/gateway"
    batch_max_readings: int = 5000
    flush_interval_s: float = 0.2


@dataclass(frozen=True)
class EdgeConfig:
    spool_dir: str = ".jiayuan/edge"
    batch_max_readings: int = 500
    max_inflight_messages: int = 20


@dataclass(frozen=True)
class AlertsConfig:
    """Alert lifecycle and routing (state lives in SQLite under ``gateway.state_dir``)."""

    enabled: bool = True
    # The operations centre's work-order webhook; empty = work orders are kept in the
    # outbox, not delivered.
    opscentre_url: str = ""
    # HMAC-SHA256 key shared with the operations centre (give it as webhook_secret_file).
    webhook_secret: str = ""
    # Bearer token the operations centre presents when it calls back.
    callback_token: str = ""
    # Property-manager contacts per estate (YAML); empty = no notifications.
    contacts_file: str = ""
    # Outgoing mail for property-manager notifications, e.g. smtp://127.0.0.1:25.
    smtp_url: str = ""
    smtp_from: str = "jiayuan@localhost"
    # Outbox delivery: first retry after retry_initial_s, doubling up to retry_max_s.
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    # Per-attempt timeout of a webhook POST or an SMTP session.
    delivery_timeout_s: float = 10.0
    # The gateway's callback URL as the operations centre reaches it, written into every
    # work order; empty = http://{gateway.api_host}:{gateway.api_port}/opscentre/callback.
    callback_url: str = ""
    # Severity policy overrides per event code (YAML or TOML, see docs/alerts.md); empty =
    # the catalogue's severities with the default deadlines.
    policy_file: str = ""
    # Estate safety scores: recomputed and written to InfluxDB every score_interval_s;
    # weights, bands and the target year from score_weights_file (TOML, docs/score.md).
    score_interval_s: float = 60.0
    score_weights_file: str = ""


@dataclass(frozen=True)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    source: str = "defaults"


_SECTIONS = {
    "mqtt": MqttConfig,
    "influx": InfluxConfig,
    "gateway": GatewayConfig,
    "edge": EdgeConfig,
    "alerts": AlertsConfig,
}


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the TOML file and the environment."""
    env = dict(os.environ) if environ is None else environ
    # An empty $JIAYUAN_CONFIG means "not set", not "the current directory".
    chosen = path or env.get(ENV_CONFIG_FILE) or None
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    source = "defaults"
    base_dir = Path.cwd()
    if chosen is not None:
        config_path = Path(chosen)
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path}: {error}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{config_path}: not UTF-8 text: {error.reason}") from None
        except OSError as error:
            raise ConfigError(f"{config_path}: cannot read: {error.strerror}") from None
        source = str(config_path)
        # Secret files named in the config file are found relative to it, wherever the
        # command runs from.
        base_dir = config_path.resolve().parent
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {sorted(unknown)}; known: {sorted(_SECTIONS)}"
        )
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build_section(name, cls, section, env, source, base_dir)
    return Config(**sections, source=source)


def _build_section(
    name: str,
    cls: type[Any],
    values: dict[str, Any],
    env: dict[str, str],
    source: str,
    base_dir: Path,
) -> Any:
    # Resolved types, not the strings that `from __future__ import annotations` leaves.
    known = get_type_hints(cls)
    settings: dict[str, Any] = {}
    for key, value in values.items():
        base_key = key.removesuffix("_file")
        if key.endswith("_file") and base_key in known:
            where = f"{source}: [{name}] {key}"
            if base_key in values:
                raise ConfigError(f"{where}: give either {base_key} or {key}, not both")
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {value!r} is not a file name")
            secret = _read_secret(base_dir / Path(value).expanduser(), where)
            settings[base_key] = _coerce(secret, known[base_key], where)
            continue
        if key not in known:
            raise ConfigError(f"{source}: [{name}] unknown key {key!r}; known: {sorted(known)}")
        settings[key] = _coerce(value, known[key], f"{source}: [{name}] {key}")
    for key, annotation in known.items():
        env_name = f"JIAYUAN_{name.upper()}_{key.upper()}"
        if env_name in env:
            settings[key] = _coerce(env[env_name], annotation, f"${env_name}")
        if env_name + "_FILE" in env:
            where = f"${env_name}_FILE"
            secret = _read_secret(Path(env[env_name + "_FILE"]).expanduser(), where)
            settings[key] = _coerce(secret, annotation, where)
    return cls(**settings)


def _read_secret(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: secret file {path} is not UTF-8: {error.reason}") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read secret file {path}: {error.strerror}") from None


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise ConfigError(f"{where}: {value!r} is not true or false")
    # bool is an int in Python, but `port = true` is a mistake, not 1.
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int | str) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                return int(value)
        raise ConfigError(f"{where}: {value!r} is not an integer")
    if annotation is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                return float(value)
        raise ConfigError(f"{where}: {value!r} is not a number")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {value!r} is not a string")
    return value


def with_servers(config: Config, mqtt_url: str, influx_url: str) -> Config:
    """The same configuration pointed at other servers (used by the demo and tests)."""
    return replace(
        config,
        mqtt=replace(config.mqtt, url=mqtt_url),
        influx=replace(config.influx, url=influx_url),
    )
