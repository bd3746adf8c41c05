"""Facts that several texts state come from one place and stay true to the code.

What a gateway restart remembers is said by ``gateway run --help``, ``demo --help`` and
the README; all three take it from ``gateway.detection.restart_memory``, whose statement the
snapshot tests (tests/gateway/test_gateway_snapshot.py) check against the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.detection import restart_memory
from tools import cli

ROOT = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """Text with argparse's or Markdown's line breaks and indentation folded away."""
    return re.sub(r"\s+", " ", text)


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return flat(capsys.readouterr().out)


def test_gateway_and_demo_help_say_what_a_clean_restart_keeps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = flat(restart_memory.CLEAN_STOP_KEEPS)
    assert "rule holds" in kept
    assert kept in help_of(["gateway", "run"], capsys)
    demo = help_of(["demo"], capsys)
    assert kept in demo
    assert "not yet persisted" not in demo


def test_readme_says_what_a_restart_keeps_in_the_same_words() -> None:
    readme = flat((ROOT / "README.md").read_text(encoding="utf-8"))
    assert flat(restart_memory.CLEAN_STOP_KEEPS) in readme
    assert flat(restart_memory.CRASH_KEEPS) in readme
