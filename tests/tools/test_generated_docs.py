"""Facts the documents repeat are generated from the code, and a drift fails here."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# The checkout: the folder above this file that holds pyproject.toml (tests may sit in
# sub-folders).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_docs", ROOT / "scripts" / "generate_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_docs", module)
    spec.loader.exec_module(module)
    return module


generate_docs = _generator()


def test_no_generated_document_is_stale() -> None:
    assert generate_docs.stale() == [], "run python scripts/generate_docs.py (make docs)"


def test_the_command_table_follows_the_parsers() -> None:
    parser = argparse.ArgumentParser(prog="jiayuan")
    commands = parser.add_subparsers(dest="command")
    gate = commands.add_parser("gateway", help="网关 the gateway")
    gate.add_subparsers().add_parser("run", help="run it")
    alerts = commands.add_parser("alerts", help="告警 alerts")
    outbox = alerts.add_subparsers().add_parser("outbox")
    actions = outbox.add_subparsers()
    actions.add_parser("list")
    actions.add_parser("retry")
    commands.add_parser("demo", help="the whole pipeline")
    table = generate_docs.render_commands(parser).splitlines()
    assert table[2:5] == [
        "| `jiayuan gateway run` | 网关 the gateway |",
        "| `jiayuan alerts outbox list\\|retry` | 告警 alerts |",
        "| `jiayuan demo` | the whole pipeline |",
    ]


def test_the_readme_states_the_number_of_compiled_modules_from_their_list() -> None:
    from jiayuan.compiled import HOT_MODULES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"the {len(HOT_MODULES)} modules listed in" in readme
    wrong = readme.replace(f"the {len(HOT_MODULES)} modules", "the 3 modules", 1)
    assert generate_docs.readme(wrong) == readme
