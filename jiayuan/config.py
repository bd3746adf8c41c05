"""One configuration for every component: a TOML file, then environment overrides.

Resolution order, later wins: built-in defaults, the TOML file (``--config PATH``, else
``$JIAYUAN_CONFIG``, else ``./jiayuan.toml`` when it exists), then environment variables
named ``JIAYUAN_<SECTION>_<KEY>`` (for example ``JIAYUAN_INFLUX_URL``).  Secrets can be
given as ``<key>_file`` (``password_file``, ``token_file``) so they never sit in the file.

Two defaults come from the state directory (``jiayuan.state``): the gateway's state and the
edge spools live under it, and servers that ``jiayuan services up`` recorded there are used
when neither the file nor the environment names an MQTT or InfluxDB URL.  ``Config.origins``
says where each server URL came from.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from jiayuan import state

DEFAULT_CONFIG_FILE = "jiayuan.toml"
ENV_CONFIG_FILE = "JIAYUAN_CONFIG"
ENV_PREFIX = "JIAYUAN_"
# JIAYUAN_* variables read elsewhere than the config sections; the rest must name a key.
OTHER_ENV_VARIABLES = frozenset(
    {
        ENV_CONFIG_FILE,
        "JIAYUAN_NO_EXTENSIONS",  # setup.py, jiayuan/compiled.py
        "JIAYUAN_GRAFANA_TOKEN",  # dashboards/cli.py
        "JIAYUAN_SCREENSHOTS",  # tests/alerts/test_alerts_browser.py: where its screenshots go
    }
)

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker the gateway reads from and the edge agents publish to."""

    # mqtt:// or mqtts:// (TLS); unset: the broker `jiayuan services up` recorded, if any.
    url: str = "mqtt://127.0.0.1:1883"
    # The broker account (docs/security.md); empty: connect without one.
    username: str = ""
    # That account's password; better given as password_file.
    password: str = ""
    # The gateway's persistent-session client id: the broker keeps its QoS 1 messages while
    # it is down and hands them over when it returns.  Every gateway instance needs its own
    # (docs/scaling.md): a second one with the same id takes the session over (the first
    # stops with an error where the broker reports the takeover; Mosquitto 2.0 does not).
    gateway_client_id: str = "jiayuan-gateway"
    # Which streets this gateway owns: "+" for all, or street ids separated by commas
    # ("s01,s02"), one subscription each.  Instances of one district own disjoint streets.
    street_filter: str = "+"
    # The MQTT version of the gateway's ingest.  "5": the client bounds its own in-flight
    # messages (receive maximum) and session lifetime (a week), and learns of a session
    # takeover where the broker reports it.  "3.1.1": the same CPU per message, with the
    # in-flight limit and session expiry left to the broker's settings (docs/scaling.md).
    gateway_protocol: Literal["5", "3.1.1"] = "5"
    # TLS to the broker (docs/security.md): on when the URL is mqtts:// or a CA file is
    # given.  tls_ca_file verifies the broker; cert and key are for client certificates.
    tls_ca_file: str = ""
    # Client certificate (PEM) for brokers that ask for one.
    tls_cert_file: str = ""
    # The client certificate's private key (PEM).
    tls_key_file: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 1883


@dataclass(frozen=True)
class InfluxConfig:
    """The InfluxDB the gateway writes telemetry, anomalies, alerts and scores to."""

    # Unset: the InfluxDB `jiayuan services up` recorded, if any.
    url: str = "http://127.0.0.1:8086"
    # "v1": /write and /query with database (+ username/password) — InfluxDB 1.x, and the
    # v1-compatible API of 2.x and 3.x.  "v2": /api/v2/write with token, org and bucket.
    api: Literal["v1", "v2"] = "v1"
    # v1: the database written to and queried.
    database: str = "jiayuan"
    # v1: the retention policy written to; empty: the database's default.
    retention_policy: str = ""
    # v1: the InfluxDB account; empty: none.
    username: str = ""
    # v1: that account's password; better given as password_file.
    password: str = ""
    # v2: the API token; better given as token_file.
    token: str = ""
    # v2: the organisation.
    org: str = ""
    # v2: the bucket written to.
    bucket: str = ""
    # Per-request timeout of a write or query.
    timeout_s: float = 10.0


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway process: its HTTP API, state, batches and InfluxDB spool."""

    # Address the HTTP API binds to; off loopback the API requires tokens (docs/security_api.md).
    api_host: str = "127.0.0.1"
    # Port of the HTTP API.
    api_port: int = 8080
    # Default: <state directory>/gateway (jiayuan.state).
    state_dir: str = field(default_factory=lambda: _under_state_dir(state.GATEWAY_DIR))
    # A processor batch (one detection call, one InfluxDB write) holds at most this many.
    batch_max_readings: int = 5000
    # A batch is written at the latest this long after its first message.
    flush_interval_s: float = 0.2
    # A reading stamped further from the gateway's clock than this is dead-lettered: older
    # than an edge replay should ever be, or from a clock running ahead (docs/protocol.md).
    max_reading_age_s: float = 30 * 24 * 3600.0
    # The limit for readings stamped ahead of the gateway's clock.
    max_reading_future_s: float = 300.0
    # InfluxDB unreachable: a batch is retried this long, then goes to the disk spool in
    # state_dir (its messages are acknowledged) and is replayed in order when InfluxDB returns.
    spool_after_s: float = 5.0
    # Disk budget of that spool (bytes stored); a warning at spool_warn_fraction of it; when
    # full the gateway stops acknowledging and the broker keeps the rest (nothing dropped).
    spool_max_bytes: int = 2 * 1024**3
    # Share of spool_max_bytes at which a warning is logged and shown on /metrics.
    spool_warn_fraction: float = 0.8
    # Free C-heap pages are given back to the system this often (glibc malloc_trim; 0 =
    # never): without it the resident memory grows with the traffic's churn, not with the
    # devices (bench/README.md, memory at 100,000 devices).
    heap_trim_interval_s: float = 1.0
    # Blocks of this size and larger get memory maps of their own, given back when freed
    # (glibc mallopt M_MMAP_THRESHOLD, fixed; 0 = glibc's own, which rises after large
    # frees and lets large blocks fragment the heap; gateway/heap.py).
    malloc_mmap_threshold_bytes: int = 128 * 1024
    # The C heap's arenas at most (glibc mallopt M_ARENA_MAX; 0 = glibc's own, eight a
    # core): each keeps free memory of its own (gateway/heap.py).
    malloc_arena_max: int = 2


@dataclass(frozen=True)
class EdgeConfig:
    """The estate's edge agent: its spool and how it publishes."""

    # Default: <state directory>/edge (jiayuan.state).
    spool_dir: str = field(default_factory=lambda: _under_state_dir(state.EDGE_DIR))
    # Readings in one batch message.
    batch_max_readings: int = 500
    # Batch messages published and not yet acknowledged by the broker (QoS 1).
    max_inflight_messages: int = 20
    # Readings a second at most when sending what was spooled while the uplink was down
    # (live readings go first, unpaced): an estate of 20 devices drains an hour's backlog
    # in about three minutes.  Size it so that the edges replaying together stay within
    # the gateway's headroom (docs/scaling.md, "After an outage").  0 means no limit.
    replay_rate_limit: float = 50.0
    # Disk budget of the edge spool (bytes of readings stored), for an uplink outage of any
    # length; a warning at spool_warn_fraction of it; when full the oldest readings are
    # dropped (newest matter most), counted and logged.  0 means no budget.
    spool_max_bytes: int = 512 * 1024**2
    # Share of spool_max_bytes at which a warning is logged.
    spool_warn_fraction: float = 0.8


@dataclass(frozen=True)
class AlertsConfig:
    """Alert lifecycle and routing (state lives in SQLite under ``gateway.state_dir``)."""

    # The alert service runs in the gateway process; false: anomalies are stored only.
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
    # Sender address of that mail.
    smtp_from: str = "jiayuan@localhost"
    # Outbox delivery: first retry after retry_initial_s, doubling up to retry_max_s.
    retry_initial_s: float = 1.0
    # The longest wait between two delivery attempts.
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
    # Weights, bands and target year of the score (TOML); empty: the built-in ones.
    score_weights_file: str = ""
    # The estate registry (SQLite); empty = <gateway.state_dir>/registry.sqlite.  The
    # workers of `gateway run --workers` share their supervisor's.
    registry_db: str = ""
    # The group robots' rate ledger (SQLite, docs/robots.md); empty =
    # <gateway.state_dir>/robot_sends.sqlite.  Instances that send to the same robots share
    # one: the workers of `gateway run --workers` use their supervisor's.
    robot_ledger_db: str = ""
    # In a set of instances that split the streets, the one that also writes the district
    # and city grade rows from every instance's estate scores (--workers: worker 1).
    score_aggregate: bool = False
    # WeCom group robots' webhook base (docs/robots.md; a private deployment or a test
    # points it elsewhere); each robot's key comes from the contacts file.
    wecom_url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    # DingTalk custom robots' webhook base; access token and signing secret per robot.
    dingtalk_url: str = "https://oapi.dingtalk.com/robot/send"
    # Feishu/Lark custom bots' webhook base; hook id and signing secret per bot.
    feishu_url: str = "https://open.feishu.cn/open-apis/bot/v2/hook"
    # Signed links to an alert's phone page (/m/alerts/{id}) in every notification: the
    # gateway's address as people's phones reach it.  Empty page_url or link_secret: no links.
    page_url: str = ""
    # The links' HMAC key (give it as link_secret_file).
    link_secret: str = ""
    # How long a link works, in seconds.
    link_ttl_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ApiConfig:
    """Who may call the HTTP API and how much (docs/security_api.md)."""

    # "auto": off when the API binds to a loopback address and no tokens_file is given
    # (development; a warning is logged), on otherwise.  "off" is refused off loopback.
    auth: Literal["auto", "on", "off"] = "auto"
    # YAML: tokens as SHA-256 hashes with role and streets/estates; also
    # $JIAYUAN_API_TOKENS_FILE.  With auth on and no tokens, only /health answers.
    tokens_file: str = ""
    # A request body larger than this is refused (413).
    max_body_bytes: int = 64 * 1024
    # Per token: rate_per_s sustained, rate_burst at once; beyond that 429 + Retry-After.
    rate_per_s: float = 20.0
    # The burst a token may spend at once before rate_per_s applies.
    rate_burst: int = 100


@dataclass(frozen=True)
class StateConfig:
    """The state directory of this machine's commands (jiayuan.state); also
    ``$JIAYUAN_STATE_DIR`` and ``jiayuan --state-dir``.  Empty: per user,
    $XDG_STATE_HOME/jiayuan or ~/.local/state/jiayuan."""

    # Holds services.json, gateway/ and edge/; empty: the per-user directory.
    dir: str = ""

    @property
    def path(self) -> Path:
        return Path(self.dir).expanduser() if self.dir else state.default_state_dir()


def _under_state_dir(name: str) -> str:
    """A default path in the state directory the environment names (or the per-user one),
    for configurations built in code rather than by load()."""
    return str(StateConfig(os.environ.get(state.ENV_STATE_DIR, "")).path / name)


BUILT_IN = "built-in default"


@dataclass(frozen=True)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    state: StateConfig = field(default_factory=StateConfig)
    source: str = "defaults"
    # Where each setting ("mqtt.url") came from: the file, a $JIAYUAN_… variable, or for
    # the server URLs `jiayuan services up`'s state file or BUILT_IN; absent = set in code.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origin_of(self, key: str) -> str:
        """Where a setting ("mqtt.url") came from, for the lines that name the servers."""
        return self.origins.get(key, "set in code")

    def servers_text(self) -> str:
        """The servers in use and where each came from, for a command's first line."""
        return (
            f"MQTT {self.mqtt.url} ({self.origin_of('mqtt.url')}), "
            f"InfluxDB {self.influx.url} ({self.origin_of('influx.url')})"
        )


_SECTIONS = {
    "mqtt": MqttConfig,
    "influx": InfluxConfig,
    "gateway": GatewayConfig,
    "edge": EdgeConfig,
    "alerts": AlertsConfig,
    "api": ApiConfig,
    "state": StateConfig,
}
# Server settings a `jiayuan services up` state file supplies when nothing else does.
SERVER_URLS = ("mqtt.url", "influx.url")


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the TOML file and the environment."""
    env = dict(os.environ) if environ is None else environ
    # First: a misspelt variable may be why the configuration below fails or surprises.
    _warn_unknown_environment(env)
    # An empty $JIAYUAN_CONFIG means "not set", not "the current directory".
    chosen = path or env.get(ENV_CONFIG_FILE) or None
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    source = "defaults"
    base_dir = Path.cwd()
    text = ""
    if chosen is not None:
        config_path = Path(chosen)
        try:
            text = config_path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
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
        first = sorted(unknown)[0]
        raise ConfigError(
            f"{source}:{_line_suffix(text, None, first)} unknown section(s) {sorted(unknown)}; "
            f"known: {sorted(_SECTIONS)}"
        )
    sections: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def build(name: str, defaults: Mapping[str, Any]) -> Any:
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}:{_line_suffix(text, None, name)} [{name}] must be a table")
        try:
            return _build_section(
                name, _SECTIONS[name], section, env, source, base_dir, defaults, origins
            )
        except ConfigError as error:
            raise ConfigError(_with_line(str(error), source, text, name)) from None

    # The state directory first: the other sections' defaults live in it.
    named = build("state", {}).dir
    state_dir = Path(named).expanduser() if named else state.default_state_dir(env)
    defaults: dict[str, dict[str, Any]] = {
        "gateway": {"state_dir": str(state_dir / state.GATEWAY_DIR)},
        "edge": {"spool_dir": str(state_dir / state.EDGE_DIR)},
    }
    sections["state"] = StateConfig(str(state_dir))
    for name in _SECTIONS:
        if name != "state":
            sections[name] = build(name, defaults.get(name, {}))
    for key in SERVER_URLS:
        origins.setdefault(key, BUILT_IN)
    config = Config(**sections, source=source, origins=origins)
    return _with_recorded_servers(config, state_dir / state.SERVICES_FILE)


def _with_recorded_servers(config: Config, state_file: Path) -> Config:
    """Servers that `jiayuan services up` started, for the URLs nothing else set."""
    unset = [key for key in SERVER_URLS if config.origins.get(key) == BUILT_IN]
    if not unset:
        return config
    recorded = state.recorded_servers(state_file)
    if recorded is None:
        return config
    origin = f"jiayuan services up, {state_file}"
    origins = dict(config.origins)
    mqtt, influx = config.mqtt, config.influx
    if "mqtt.url" in unset:
        mqtt = replace(mqtt, url=recorded.mqtt_url)
        origins["mqtt.url"] = origin
        # A secured broker (`up --secure`): its gateway account, unless one is configured.
        if recorded.mqtt_username and not mqtt.username:
            where = f"{state_file}: gateway password_file"
            password = _read_secret(Path(recorded.mqtt_password_file), where)
            mqtt = replace(mqtt, username=recorded.mqtt_username, password=password)
    if "influx.url" in unset:
        influx = replace(influx, url=recorded.influx_url)
        origins["influx.url"] = origin
    return replace(config, mqtt=mqtt, influx=influx, origins=origins)


def known_environment_variables() -> frozenset[str]:
    """Every JIAYUAN_* variable something reads: a key of a section (``_FILE`` too), or
    one of ``OTHER_ENV_VARIABLES``."""
    names = set(OTHER_ENV_VARIABLES)
    for section, cls in _SECTIONS.items():
        for key in get_type_hints(cls):
            names |= {_env_name(section, key), _env_name(section, key) + "_FILE"}
    return frozenset(names)


_warned_environment: set[str] = set()


def _warn_unknown_environment(env: Mapping[str, str]) -> None:
    """Say once per variable when a JIAYUAN_* name is no setting: a typo would otherwise
    leave the default in place without a word (as an unknown TOML key does not)."""
    unknown = [
        name
        for name in sorted(env)
        if name.startswith(ENV_PREFIX) and name not in _warned_environment
    ]
    if not unknown:
        return
    known = known_environment_variables()
    for name in unknown:
        if name in known:
            continue
        _warned_environment.add(name)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        log.warning(
            "未知环境变量 unknown environment variable $%s, ignored%s",
            name,
            f"; did you mean ${close[0]}?" if close else "",
        )


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


_UNKNOWN_KEY = re.compile(r"unknown key '([^']+)'")
_TABLE_HEADER = re.compile(r"\s*\[\s*([^\]\s]+)\s*\]")


def _with_line(message: str, source: str, text: str, section: str) -> str:
    """The error with the line of the offending key, when it came from the file.

    tomllib reports lines for syntax errors only; a value of the wrong type or an unknown
    key is found again in the text so people can go straight to it.
    """
    prefix = f"{source}: [{section}] "
    if not text or not message.startswith(prefix):
        return message
    rest = message[len(prefix) :]
    unknown = _UNKNOWN_KEY.match(rest)
    key = unknown.group(1) if unknown else rest.split(":", 1)[0]
    return f"{source}:{_line_suffix(text, section, key)} [{section}] {rest}"


def _line_suffix(text: str, section: str | None, key: str) -> str:
    """`` line N:`` for ``key`` in table ``section`` (None: the top level), or ``""``."""
    current: str | None = None
    assignment = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_HEADER.match(line)
        if header is not None:
            current = header.group(1).strip("\"'")
            if section is None and current == key:
                return f" line {number}:"
            continue
        if current == section and assignment.match(line):
            return f" line {number}:"
    return ""


def _build_section(
    name: str,
    cls: type[Any],
    values: dict[str, Any],
    env: dict[str, str],
    source: str,
    base_dir: Path,
    defaults: Mapping[str, Any],
    origins: dict[str, str],
) -> Any:
    # Resolved types, not the strings that `from __future__ import annotations` leaves.
    known = get_type_hints(cls)
    settings: dict[str, Any] = dict(defaults)
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
            origins[f"{name}.{base_key}"] = where
            continue
        if key not in known:
            raise ConfigError(f"{source}: [{name}] unknown key {key!r}; known: {sorted(known)}")
        settings[key] = _coerce(value, known[key], f"{source}: [{name}] {key}")
        origins[f"{name}.{key}"] = source
    for key, annotation in known.items():
        env_name = _env_name(name, key)
        if env_name in env:
            settings[key] = _coerce(env[env_name], annotation, f"${env_name}")
            origins[f"{name}.{key}"] = f"${env_name}"
        if env_name + "_FILE" in env:
            where = f"${env_name}_FILE"
            secret = _read_secret(Path(env[env_name + "_FILE"]).expanduser(), where)
            settings[key] = _coerce(secret, annotation, where)
            origins[f"{name}.{key}"] = where
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
