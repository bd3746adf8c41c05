"""One configuration for every component: a TOML file, then environment overrides.

Resolution order, later wins: built-in defaults, the TOML file (``--config PATH``, else
``$JIAYUAN_CONFIG``, else ``./jiayuan.toml`` when it exists), then environment variables
named ``JIAYUAN_<SECTION>_<KEY>`` (for example ``JIAYUAN_INFLUX_URL``).  Secrets can be
given as ``<key>_file`` (``password_file``, ``token_file``) so they never sit in the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
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
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    source: str = "defaults"


_SECTIONS = {"mqtt": MqttConfig, "influx": InfluxConfig, "gateway": GatewayConfig,
             "edge": EdgeConfig}


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the TOML file and the environment."""
    env = dict(os.environ) if environ is None else environ
    chosen = path or env.get(ENV_CONFIG_FILE)
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    source = "defaults"
    if chosen is not None:
        config_path = Path(chosen)
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path}: {error}") from None
        source = str(config_path)
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; "
                          f"known: {sorted(_SECTIONS)}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build_section(name, cls, section, env, source)
    return Config(**sections, source=source)


def _build_section(
    name: str, cls: type[Any], values: dict[str, Any], env: dict[str, str], source: str
) -> Any:
    known = {f.name: f for f in fields(cls)}
    settings: dict[str, Any] = {}
    for key, value in values.items():
        base_key = key.removesuffix("_file")
        if key.endswith("_file") and base_key in known:
            settings[base_key] = _read_secret(Path(str(value)), f"{source}: [{name}] {key}")
            continue
        if key not in known:
            raise ConfigError(f"{source}: [{name}] unknown key {key!r}; known: {sorted(known)}")
        settings[key] = _coerce(value, known[key].type, f"{source}: [{name}] {key}")
    for key in known:
        env_name = f"JIAYUAN_{name.upper()}_{key.upper()}"
        if env_name in env:
            settings[key] = _coerce(env[env_name], known[key].type, f"${env_name}")
        if env_name + "_FILE" in env:
            settings[key] = _read_secret(Path(env[env_name + "_FILE"]), f"${env_name}_FILE")
    section = cls(**settings)
    if isinstance(section, InfluxConfig) and section.api not in ("v1", "v2"):
        raise ConfigError(f"{source}: [influx] api must be 'v1' or 'v2', not {section.api!r}")
    return section


def _read_secret(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read secret file {path}: {error.strerror}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if type_name == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a {type_name}") from None
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
