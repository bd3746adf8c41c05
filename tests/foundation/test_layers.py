"""The product (edge, gateway, alerts, score, dashboards) and the foundation (jiayuan) never
import the tools or the simulators: a production install runs without them.

Two checks: the static import graph (grimp, the engine of ``lint-imports``), which sees
imports inside functions too; and importing every production module in a fresh
interpreter, which also sees imports made by name (``importlib``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("jiayuan", "edge", "gateway", "alerts", "score", "dashboards")
OUTSIDE = ("tools", "simulators")


def test_no_production_module_imports_tools_or_simulators_statically() -> None:
    graph = grimp.build_graph(*PRODUCT, *OUTSIDE)
    found = []
    for package in PRODUCT:
        for outside in OUTSIDE:
            for chain in graph.find_shortest_chains(importer=package, imported=outside):
                found.append(" -> ".join(chain))
    assert found == []


def production_modules() -> list[str]:
    modules = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


@pytest.mark.slow
def test_importing_every_production_module_loads_no_tool_or_simulator() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {production_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {OUTSIDE!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []
