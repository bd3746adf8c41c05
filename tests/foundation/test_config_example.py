"""jiayuan.example.toml is generated from jiayuan/config.py and loads to the defaults."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from jiayuan import config, config_example

# The checkout: the folder above this file that holds pyproject.toml (tests may sit in
# sub-folders).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
KEY_LINE = re.compile(r"^# (\w+ = .*)$", re.MULTILINE)


def test_the_committed_example_is_the_generated_one() -> None:
    committed = (ROOT / config_example.EXAMPLE_FILE).read_text(encoding="utf-8")
    assert committed == config_example.render(), (
        "jiayuan.example.toml is stale: run "
        "python -m jiayuan.config_example --write jiayuan.example.toml"
    )


def test_every_key_of_every_section_is_in_the_example() -> None:
    text = config_example.render()
    for name, section in config._SECTIONS.items():
        assert f"\n[{name}]\n" in text
        for item in dataclasses.fields(section):
            assert re.search(rf"^# {item.name} = ", text, re.MULTILINE), f"{name}.{item.name}"


def test_the_example_with_every_key_uncommented_loads_to_the_defaults_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uncommented = KEY_LINE.sub(r"\1", config_example.render())
    path = tmp_path / "jiayuan.toml"
    path.write_text(uncommented, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        loaded = config.load(path, environ={})
    assert [record.getMessage() for record in caplog.records] == []
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    defaults = config.load(empty, environ={})
    for name, section in config._SECTIONS.items():
        for item in dataclasses.fields(section):
            if item.default is dataclasses.MISSING:  # under the state directory: below
                continue
            key = (name, item.name)
            assert getattr(getattr(loaded, name), item.name) == getattr(
                getattr(defaults, name), item.name
            ), key
    assert loaded.gateway.state_dir == "/var/lib/jiayuan/gateway"


def test_the_example_as_committed_loads_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jiayuan.toml"
    path.write_text(config_example.render(), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        config.load(path, environ={})
    assert [record.getMessage() for record in caplog.records] == []


@dataclasses.dataclass(frozen=True)
class _Undocumented:
    """A section whose second key has no comment."""

    # Documented.
    first: int = 1
    second: str = ""


def test_a_key_without_a_comment_stops_the_generator() -> None:
    with pytest.raises(ValueError, match=r"demo\.second has no comment"):
        config_example.render_section("demo", _Undocumented)
