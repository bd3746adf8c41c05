"""Optional dependency groups: the product runs without them, and a command that needs
one says which group to install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from jiayuan import extras

# The checkout: the folder above this file that holds pyproject.toml (tests may sit in
# sub-folders).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

# Run first in a child interpreter: every optional package is missing from it.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def _child(code: str, blocked: set[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,  # not the checkout: its build leftovers must not shadow the install
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_groups_named_in_extras_are_those_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    groups = project["optional-dependencies"]
    found = {}
    for group in ("demo", "dashboards"):
        for requirement in groups[group]:
            name = re.match(r"[A-Za-z0-9._-]+", requirement)
            assert name is not None
            if name.group().lower() != "jiayuan":
                found[name.group().lower().replace("-", "_")] = group
    assert found == extras.PROVIDED_BY
    required = " ".join(project["dependencies"]).lower().replace("-", "_")
    for module in extras.PROVIDED_BY:
        assert module not in required, f"{module} is still a dependency of every install"
    assert {"jiayuan[demo,dashboards]"} <= set(groups["dev"])


def test_the_product_and_its_command_work_without_the_optional_packages(
    tmp_path: Path,
) -> None:
    result = _child(
        """
        import importlib, importlib.metadata, importlib.util, pkgutil

        packages = ["jiayuan", "edge", "gateway", "alerts", "score", "simulators"]
        imported = 0
        for package in packages:
            if importlib.util.find_spec(package) is None:
                continue  # a package of another layout
            root = importlib.import_module(package)
            for info in pkgutil.walk_packages(root.__path__, package + "."):
                if info.name.rpartition(".")[2] == "__main__":
                    continue
                importlib.import_module(info.name)
                imported += 1
        (entry,) = importlib.metadata.entry_points(group="console_scripts", name="jiayuan")
        main = entry.load()
        for argv in (["gateway", "run", "--help"], ["edge", "run", "--help"]):
            try:
                main(argv)
            except SystemExit as stop:
                assert stop.code == 0, (argv, stop.code)
        print("imported", imported)
        """,
        set(extras.PROVIDED_BY),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split("imported ")[1].split()[0]) > 50


def test_a_command_whose_group_is_missing_names_the_group(tmp_path: Path) -> None:
    result = _child(
        f"""
        import importlib.metadata, sys

        (entry,) = importlib.metadata.entry_points(group="console_scripts", name="jiayuan")
        sys.exit(entry.load()(["dashboards", "build", "--out", {str(tmp_path / "out")!r}]))
        """,
        {"grafana_foundation_sdk"},
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "jiayuan dashboards needs grafana_foundation_sdk" in result.stderr
    assert "pip install 'jiayuan[dashboards]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_mail_catcher_without_aiosmtpd_names_the_demo_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tools.demo_alerts import MailCatcher

    monkeypatch.setitem(sys.modules, "aiosmtpd.controller", None)
    with pytest.raises(extras.MissingExtra, match=r"pip install 'jiayuan\[demo\]'"):
        MailCatcher()


def test_a_missing_module_of_no_group_is_not_explained() -> None:
    assert extras.explain(ModuleNotFoundError("x", name="numpy")) is None
