"""The ``jiayuan`` command starts without the heavy libraries: each subcommand imports
them when it runs, so ``jiayuan --help`` and every ``jiayuan X --help`` answer at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Libraries that take tens to hundreds of milliseconds each to import.
HEAVY = (
    "numpy",
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "httpx",
    "matplotlib",
    "paho",
    "aiomqtt",
    "yaml",
    "grafana_foundation_sdk",
)

_LOADED_AFTER = """
import json, sys
from tools import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after ``jiayuan *argv``."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_AFTER.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["gateway", "run", "--help"],
        ["edge", "run", "--help"],
        ["demo", "--help"],
        ["services", "up", "--help"],
        ["registry", "generate", "--help"],
        ["simulate", "--help"],
        ["score", "--help"],
    ],
)
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    loaded = modules_after(argv)
    assert "tools.cli" in loaded  # the probe did run the command
    assert heavy_in(loaded) == []
