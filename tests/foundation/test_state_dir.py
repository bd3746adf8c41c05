"""One state directory per user (or per service), whatever directory a command runs in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jiayuan.config import Config, load
from jiayuan.state import ENV_STATE_DIR, default_state_dir
from tools import cli


@pytest.fixture
def per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No state directory named anywhere: the per-user default, under a fake XDG home."""
    monkeypatch.delenv(ENV_STATE_DIR)
    monkeypatch.delenv("JIAYUAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "jiayuan"


def test_the_default_state_dir_is_per_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_state_dir({"HOME": str(home)}) == home / ".local/state/jiayuan"
    xdg = {"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert default_state_dir(xdg) == tmp_path / "xdg/jiayuan"
    # The XDG spec says a relative value is to be ignored.
    relative = {"HOME": str(home), "XDG_STATE_HOME": "state"}
    assert default_state_dir(relative) == home / ".local/state/jiayuan"


def test_gateway_state_and_edge_spools_live_in_the_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    config = load(environ={"HOME": str(home)})
    assert config.state.path == home / ".local/state/jiayuan"
    assert config.gateway.state_dir == str(home / ".local/state/jiayuan/gateway")
    assert config.edge.spool_dir == str(home / ".local/state/jiayuan/edge")

    named = load(environ={"HOME": str(home), ENV_STATE_DIR: "/var/lib/jiayuan"})
    assert named.gateway.state_dir == "/var/lib/jiayuan/gateway"
    assert named.edge.spool_dir == "/var/lib/jiayuan/edge"


def test_the_state_dir_from_the_file_and_an_explicit_gateway_dir_wins(tmp_path: Path) -> None:
    toml = tmp_path / "jiayuan.toml"
    toml.write_text('[state]\ndir = "/srv/jiayuan"\n[gateway]\nstate_dir = "/data/gw"\n')
    config = load(toml, environ={"HOME": str(tmp_path)})
    assert config.state.path == Path("/srv/jiayuan")
    assert config.gateway.state_dir == "/data/gw"
    assert config.edge.spool_dir == "/srv/jiayuan/edge"
    # The environment wins over the file, as for every key.
    again = load(toml, environ={"HOME": str(tmp_path), ENV_STATE_DIR: "/elsewhere"})
    assert again.edge.spool_dir == "/elsewhere/edge"


def test_commands_in_different_directories_share_one_registry(
    per_user: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    assert cli.main(["registry", "generate", "--estates", "2", "--seed", "3"]) == 0
    assert str(per_user / "gateway" / "registry.sqlite") in capsys.readouterr().out
    monkeypatch.chdir(second)
    assert cli.main(["score", "--format", "json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report  # scored the two estates registered from the other directory
    assert cli.main(["registry", "show"]) == 0
    assert "2 estates" in capsys.readouterr().out
    assert not (first / ".jiayuan").exists() and not (second / ".jiayuan").exists()


def test_the_state_dir_option_names_it_for_one_command(
    per_user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = tmp_path / "chosen"
    argv = ["--state-dir", str(chosen), "registry", "generate", "--estates", "1"]
    assert cli.main(argv) == 0
    assert (chosen / "gateway" / "registry.sqlite").is_file()
    assert not per_user.exists()
    # Only for that command: the next one without it is back on the per-user directory.
    assert ENV_STATE_DIR not in os.environ
    assert cli.main(["registry", "show"]) == 1
    assert str(per_user) in capsys.readouterr().err


def test_tests_never_touch_the_real_state_dir() -> None:
    private = os.environ[ENV_STATE_DIR]
    assert Path(private).resolve() != default_state_dir({"HOME": str(Path.home())})
    assert Config().gateway.state_dir.startswith(private)
    assert load(environ=dict(os.environ)).edge.spool_dir.startswith(private)
