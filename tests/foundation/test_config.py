"""Configuration: defaults, the TOML file, environment overrides, secret files, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from jiayuan import config as cfg
from jiayuan.config import ConfigError, load


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No stray ./jiayuan.toml and no $JIAYUAN_* of the developer's shell may leak in.
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    config = load(environ={})
    assert config.source == "defaults"
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert (config.mqtt.host, config.mqtt.port) == ("127.0.0.1", 1883)
    assert config.influx.api == "v1"
    assert config.gateway.api_port == 8080


def test_toml_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "site.toml",
        """
[mqtt]
url = "mqtt://127.0.0.1:2883"
street_filter = "s01"
[influx]
api = "v2"
bucket = "松江"
timeout_s = 3
[gateway]
api_port = 9090
flush_interval_s = 0.5
""",
    )
    config = load(path, environ={})
    assert config.source == str(path)
    assert config.mqtt.port == 2883
    assert config.mqtt.street_filter == "s01"
    assert config.influx.api == "v2"
    assert config.influx.bucket == "松江"
    assert config.influx.timeout_s == 3.0 and isinstance(config.influx.timeout_s, float)
    assert config.gateway.api_port == 9090
    assert config.gateway.flush_interval_s == 0.5
    assert config.edge.batch_max_readings == 500  # untouched default


def test_file_chosen_by_env_then_by_cwd(tmp_path: Path) -> None:
    named = write(tmp_path / "named.toml", '[influx]\ndatabase = "from_env"\n')
    write(tmp_path / "jiayuan.toml", '[influx]\ndatabase = "from_cwd"\n')
    assert load(environ={"JIAYUAN_CONFIG": str(named)}).influx.database == "from_env"
    assert load(environ={}).influx.database == "from_cwd"
    # An empty $JIAYUAN_CONFIG counts as unset.
    assert load(environ={"JIAYUAN_CONFIG": ""}).influx.database == "from_cwd"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[influx]\nurl = "http://127.0.0.1:1"\n[gateway]\n')
    config = load(
        path,
        environ={
            "JIAYUAN_INFLUX_URL": "http://127.0.0.1:8087",
            "JIAYUAN_GATEWAY_API_PORT": "8181",
            "JIAYUAN_GATEWAY_FLUSH_INTERVAL_S": "0.05",
            "JIAYUAN_INFLUX_API": "v2",
        },
    )
    assert config.influx.url == "http://127.0.0.1:8087"
    assert config.gateway.api_port == 8181
    assert config.gateway.flush_interval_s == 0.05
    assert config.influx.api == "v2"


def test_secret_files_from_toml_relative_to_it_and_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write(site / "influx.pw", "s3cr3t 密码\n")
    write(tmp_path / "token", "tok-123\n")
    path = write(site / "c.toml", '[influx]\nusername = "u"\npassword_file = "influx.pw"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative secret path is relative to the config file
    config = load(path, environ={"JIAYUAN_INFLUX_TOKEN_FILE": str(tmp_path / "token")})
    assert config.influx.password == "s3cr3t 密码"  # stripped of the newline
    assert config.influx.token == "tok-123"


def test_with_servers_repoints_only_urls() -> None:
    config = cfg.with_servers(load(environ={}), "mqtt://127.0.0.1:1", "http://127.0.0.1:2")
    assert config.mqtt.url == "mqtt://127.0.0.1:1"
    assert config.influx.url == "http://127.0.0.1:2"
    assert config.influx.database == "jiayuan"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[nope]\n", "unknown section(s) ['nope']"),
        ("mqtt = 1\n", "[mqtt] must be a table"),
        ("[mqtt]\nport = 1883\n", "[mqtt] unknown key 'port'"),
        ('[gateway]\napi_port = "eighty"\n', "[gateway] api_port: 'eighty' is not an integer"),
        ("[gateway]\napi_port = 80.5\n", "[gateway] api_port: 80.5 is not an integer"),
        ("[gateway]\napi_port = true\n", "[gateway] api_port: True is not an integer"),
        ("[influx]\ntimeout_s = false\n", "[influx] timeout_s: False is not a number"),
        ("[influx]\nurl = 8086\n", "[influx] url: 8086 is not a string"),
        ('[influx]\napi = "v3"\n', "[influx] api: 'v3' is not one of 'v1', 'v2'"),
        ('[influx]\npassword_file = "missing.pw"\n', "[influx] password_file: cannot read"),
        (
            '[influx]\npassword = "a"\npassword_file = "b"\n',
            "[influx] password_file: give either password or password_file",
        ),
        ("[influx\n", "Expected ']'"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = write(tmp_path / "bad.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"JIAYUAN_GATEWAY_API_PORT": "x"}, "$JIAYUAN_GATEWAY_API_PORT: 'x' is not an integer"),
        ({"JIAYUAN_INFLUX_API": "v9"}, "$JIAYUAN_INFLUX_API: 'v9' is not one of"),
        ({"JIAYUAN_INFLUX_TOKEN_FILE": "/nonexistent/t"}, "$JIAYUAN_INFLUX_TOKEN_FILE: cannot"),
    ],
)
def test_environment_errors_name_the_variable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load(environ=environ)
    assert expected in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path, environ={})  # a directory
    binary = tmp_path / "latin1.toml"
    binary.write_bytes(b'[mqtt]\nurl = "\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(binary, environ={})


def test_alerts_section_reads_booleans_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "jiayuan.toml"
    path.write_text('[alerts]\nenabled = false\nopscentre_url = "http://127.0.0.1:9/wo"\n')
    assert load(path, environ={}).alerts.enabled is False
    assert load(path, environ={"JIAYUAN_ALERTS_ENABLED": "yes"}).alerts.enabled is True
    with pytest.raises(ConfigError, match=r"JIAYUAN_ALERTS_ENABLED.*not true or false"):
        load(path, environ={"JIAYUAN_ALERTS_ENABLED": "maybe"})
