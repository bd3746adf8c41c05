"""``jiayuan api token create|list|revoke``: a token made by the command authenticates
against the real API with its role and reach, and nothing else; only its hash is stored."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from jiayuan.api_auth import load_tokens, token_hash
from jiayuan.config import ApiConfig
from tests.foundation.test_api_security import FAR, MINE, NEIGHBOUR, build
from tools.cli import main


def create(tokens: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["api", "token", "create", "--tokens-file", str(tokens), *args]) == 0
    captured = capsys.readouterr()
    [token] = captured.out.split()  # stdout holds the token and nothing else
    assert str(tokens) in captured.err  # where its hash went
    return token


def test_a_created_token_works_within_its_role_and_reach_and_can_be_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "api-tokens.yaml"
    pm = create(
        tokens,
        capsys,
        "--name",
        "书香物业 shuxiang pm",
        "--role",
        "property_manager",
        "--estates",
        MINE,
    )
    ops = create(
        tokens, capsys, "--name", "张江运营中心", "--role", "ops_centre", "--streets", "zhangjiang"
    )
    text = tokens.read_text(encoding="utf-8")
    assert pm not in text and ops not in text  # only hashes are kept
    assert token_hash(pm) in text and token_hash(ops) in text
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert len(load_tokens(tokens)) == 2  # the gateway's own reader accepts the file

    world = build(tmp_path / "world", ApiConfig(auth="on", tokens_file=str(tokens)))
    with world.client as http:
        as_pm = {"Authorization": f"Bearer {pm}"}
        as_ops = {"Authorization": f"Bearer {ops}"}
        assert http.get(f"/alerts/{world.alert_ids[MINE]}", headers=as_pm).status_code == 200
        assert http.get(f"/alerts/{world.alert_ids[NEIGHBOUR]}", headers=as_pm).status_code == 403
        step = {"actor": "李经理"}
        mine = world.alert_ids[MINE]
        assert http.post(f"/alerts/{mine}/acknowledge", json=step, headers=as_pm).status_code == 200
        assert http.get("/dead-letters", headers=as_pm).status_code == 403  # not its role
        assert http.get(f"/alerts/{world.alert_ids[NEIGHBOUR]}", headers=as_ops).status_code == 200
        assert http.get(f"/alerts/{world.alert_ids[FAR]}", headers=as_ops).status_code == 403

    assert main(["api", "token", "list", "--tokens-file", str(tokens)]) == 0
    listed = capsys.readouterr().out
    assert "书香物业 shuxiang pm" in listed and "property_manager" in listed and MINE in listed
    assert token_hash(pm) not in listed

    assert (
        main(["api", "token", "revoke", "--tokens-file", str(tokens), "书香物业 shuxiang pm"]) == 0
    )
    capsys.readouterr()
    world = build(tmp_path / "again", ApiConfig(auth="on", tokens_file=str(tokens)))
    with world.client as http:
        answer = http.get(
            f"/alerts/{world.alert_ids[MINE]}", headers={"Authorization": f"Bearer {pm}"}
        )
        assert answer.status_code == 401
        assert http.get("/alerts", headers={"Authorization": f"Bearer {ops}"}).status_code == 200


def test_bad_requests_are_refused_with_the_reason_and_the_file_is_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "api-tokens.yaml"
    create(tokens, capsys, "--name", "city", "--role", "viewer", "--streets", "*")
    before = tokens.read_text(encoding="utf-8")
    base = ["api", "token", "create", "--tokens-file", str(tokens)]
    cases = [
        (["--name", "x", "--role", "ops_centre"], "streets"),  # an ops centre needs streets
        (["--name", "x", "--role", "property_manager", "--streets", "s"], "estates"),
        (["--name", "city", "--role", "viewer", "--estates", "e"], "twice"),  # name taken
    ]
    for args, reason in cases:
        assert main([*base, *args]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and reason in captured.err
    assert tokens.read_text(encoding="utf-8") == before
    assert main(["api", "token", "revoke", "--tokens-file", str(tokens), "nobody"]) == 1
    assert "nobody" in capsys.readouterr().err


def test_without_a_tokens_file_the_command_says_where_to_set_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JIAYUAN_API_TOKENS_FILE", raising=False)
    monkeypatch.delenv("JIAYUAN_CONFIG", raising=False)
    assert (
        main(["api", "token", "create", "--name", "x", "--role", "viewer", "--streets", "*"]) == 1
    )
    assert "tokens_file" in capsys.readouterr().err
    # The gateway's setting is where the command writes.
    monkeypatch.setenv("JIAYUAN_API_TOKENS_FILE", str(tmp_path / "from-env.yaml"))
    assert (
        main(["api", "token", "create", "--name", "x", "--role", "viewer", "--streets", "*"]) == 0
    )
    assert len(load_tokens(tmp_path / "from-env.yaml")) == 1
