"""A misspelt ``JIAYUAN_*`` environment variable is warned about, with the closest valid
name (jiayuan/config.py), instead of being silently ignored."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jiayuan.config import load

ROOT = Path(__file__).resolve().parents[2]


def warnings_of(caplog: pytest.LogCaptureFixture, environ: dict[str, str]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jiayuan.config"):
        load(environ=environ)
    return [r.getMessage() for r in caplog.records if r.name == "jiayuan.config"]


def test_a_misspelt_variable_is_warned_about_with_the_closest_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    (message,) = warnings_of(caplog, {"JIAYUAN_INFLUX_URLL": "http://127.0.0.1:9"})
    assert "$JIAYUAN_INFLUX_URLL" in message
    assert "$JIAYUAN_INFLUX_URL?" in message


def test_a_variable_with_nothing_close_is_still_named(caplog: pytest.LogCaptureFixture) -> None:
    (message,) = warnings_of(caplog, {"JIAYUAN_ZZZZ_QQQQ": "1"})
    assert "$JIAYUAN_ZZZZ_QQQQ" in message and "did you mean" not in message


def test_each_unknown_variable_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"JIAYUAN_GATEWAY_STATEDIR": "/tmp/x"}
    assert len(warnings_of(caplog, environ)) == 1
    assert warnings_of(caplog, environ) == []


def test_valid_variables_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "JIAYUAN_INFLUX_URL": "http://127.0.0.1:9",
        "JIAYUAN_INFLUX_PASSWORD_FILE": "/dev/null",
        "JIAYUAN_MQTT_GATEWAY_PROTOCOL": "5",
        "JIAYUAN_CONFIG": "",
        "JIAYUAN_NO_EXTENSIONS": "1",
        "JIAYUAN_GRAFANA_TOKEN": "t",
        "OTHER_INFLUX_URLL": "x",
    }
    assert warnings_of(caplog, environ) == []


def test_every_variable_the_code_and_docs_name_is_known() -> None:
    """A new JIAYUAN_* variable must be added to the list the warning checks against."""
    from jiayuan.config import known_environment_variables

    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.service", "*.sh", "Makefile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    named: set[str] = set()
    for path in tracked:
        if path.startswith("tests/"):
            continue  # tests name wrong variables on purpose
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        named |= set(re.findall(r"\bJIAYUAN_[A-Z0-9_]*[A-Z0-9]\b", text))
    unknown = {name for name in named if name not in known_environment_variables()}
    assert not unknown, f"not in jiayuan.config's known variables: {sorted(unknown)}"


def test_a_command_prints_the_warning(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "registry", "show"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "JIAYUAN_ALERTS_REGISTRY_BD": "/tmp/r.sqlite"},
        cwd=tmp_path,
        timeout=60,
    )
    assert "$JIAYUAN_ALERTS_REGISTRY_BD" in done.stderr, done.stderr
    assert "$JIAYUAN_ALERTS_REGISTRY_DB" in done.stderr, done.stderr
