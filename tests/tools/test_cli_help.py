"""What ``--help`` shows: plain text an operator reads in a terminal, every argument
explained."""

from __future__ import annotations

import argparse

import pytest

from tools.cli import main


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_detect_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "detect")
    assert "``" not in text and ":func:" not in text and ":class:" not in text, text
    assert "jiayuan detect" in text and "anomaly_score" in text


def registry_actions() -> dict[str, argparse.ArgumentParser]:
    from tools.registry_cli import add_parser

    top = argparse.ArgumentParser(prog="jiayuan")
    add_parser(top.add_subparsers())
    registry = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "registry"
    ]
    actions = next(a for a in registry._actions if isinstance(a, argparse._SubParsersAction))
    return dict(actions.choices)


@pytest.mark.parametrize("action", ["import", "export", "generate", "show"])
def test_every_registry_action_and_argument_has_help(action: str) -> None:
    parser = registry_actions()[action]
    assert parser.description, f"registry {action}: no description"
    for argument in parser._actions:
        name = argument.dest if not argument.option_strings else argument.option_strings[0]
        assert argument.help, f"registry {action} {name}: no help"


def test_registry_show_help_names_its_estate_argument(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "registry", "show")
    assert "ESTATE" in text and "registry show" in text
    assert "json" in text
