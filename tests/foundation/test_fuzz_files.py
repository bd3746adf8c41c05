"""Configuration and registry files with errors: each message names the file, the line
and the field, so the person who wrote the file can go straight to it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from jiayuan.config import ConfigError, load
from jiayuan.registry.files import export_csv, export_yaml, import_csv, import_yaml
from jiayuan.registry.model import Registry
from jiayuan.registry.tables import RegistryInvalid
from simulators.registry import build_registry
from tools.registry_generate import generate_registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return generate_registry(build_registry(4, seed=5), seed=5, as_of=date(2026, 6, 1))


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[mqtt]\nurl = "mqtt://127.0.0.1"\n\n[gateway]\napi_port = "x"\n', "line 5: [gateway]"),
        ("[gateway]\n# a comment\n  colour = 1\n", "line 3: [gateway] unknown key 'colour'"),
        ('[influx]\nurl = "http://127.0.0.1:8086"\n[extra]\nx = 1\n', "line 3: unknown section"),
        ("gateway = 3\n", "line 1: [gateway] must be a table"),
        ("[influx]\napi = 'v3'\n", "line 2: [influx] api: 'v3' is not one of"),
        ("[gateway]\nmax_reading_age_s = 'soon'\n", "line 2: [gateway] max_reading_age_s"),
        ("[gateway]\napi_port = 8080\napi_port = 8081\n", "line 3"),  # tomllib's own
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert str(caught.value).startswith(f"{path}:")
    assert expected in str(caught.value)


def test_config_timestamp_window_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text("[gateway]\nmax_reading_age_s = 3600\nmax_reading_future_s = 30\n")
    gateway = load(path, environ={}).gateway
    assert (gateway.max_reading_age_s, gateway.max_reading_future_s) == (3600.0, 30.0)


def test_yaml_problems_give_the_line_of_the_item(registry: Registry, tmp_path: Path) -> None:
    path = export_yaml(registry, tmp_path / "r.yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["buildings"][1]["households"] = -3
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    # The line where the second building's item starts, found independently.
    starts = [n for n, text in enumerate(lines, 1) if text.startswith("- ")]
    buildings_at = lines.index("buildings:") + 1
    second = [n for n in starts if n > buildings_at][1]
    with pytest.raises(RegistryInvalid) as caught:
        import_yaml(path)
    [problem] = caught.value.problems
    assert (problem.row, problem.line, problem.field) == (2, second, "households")
    assert f"row 2 (line {second}): households" in str(caught.value)


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\ndistricts:\n  - id: a\n    name_zh: [unclosed\n", "utf-8")
    with pytest.raises(RegistryInvalid) as caught:
        import_yaml(path)
    [problem] = caught.value.problems
    assert problem.line >= 4 and "not YAML" in problem.message
    assert f"(line {problem.line})" in str(caught.value)


def test_csv_bad_bytes_give_their_line(registry: Registry, tmp_path: Path) -> None:
    export_csv(registry, tmp_path)
    path = tmp_path / "estates.csv"
    raw = path.read_bytes().splitlines(keepends=True)
    raw[2] = raw[2].replace(b",", b"\xff,", 1)
    path.write_bytes(b"".join(raw))
    with pytest.raises(RegistryInvalid) as caught:
        import_csv(tmp_path)
    [problem] = caught.value.problems
    assert (problem.file, problem.row) == (str(path), 3)
    assert "not UTF-8" in problem.message
