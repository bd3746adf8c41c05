"""The hot path runs as Cython extension modules (jiayuan/compiled.py, setup.py): built
from the same sources, they must write exactly what the interpreted modules write, a
build older than its source is named, and the gateway says which it runs."""

from __future__ import annotations

import importlib.machinery
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jiayuan import compiled

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def digest(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "compiled_digest.py"), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(
    bool(os.environ.get("JIAYUAN_NO_EXTENSIONS")), reason="installed without extensions"
)
@pytest.mark.slow
def test_the_hot_path_runs_compiled_and_writes_what_the_interpreted_one_writes() -> None:
    built, interpreted = digest("compiled"), digest("source")
    # What CI installs from a clean clone: every hot module compiled, none stale.
    assert built["compiled"] == list(compiled.HOT_MODULES)
    assert compiled.stale() == [] and not compiled.build_needed()
    assert interpreted["compiled"] == []
    assert built["anomalies"] >= 50  # the simulated faults: every family's rules at work
    assert built == {**interpreted, "compiled": built["compiled"]}


def fake_package(
    root: Path,
    source_mtime: float,
    extension_mtime: float,
    checkout: bool = True,
    declarations_mtime: float | None = None,
) -> None:
    """A package ``hotpkg`` with one module as source (and its ``.pxd`` if given a time)
    and as an (unloadable) extension, in a source checkout (``setup.py`` at its root) or
    as installed."""
    package = root / "hotpkg"
    package.mkdir()
    if checkout:
        (root / "setup.py").write_text("")
    (package / "__init__.py").write_text("")
    source, extension = package / "hot.py", package / f"hot{EXTENSION}"
    source.write_text("X = 1\n")
    extension.write_bytes(b"")
    os.utime(source, (source_mtime, source_mtime))
    os.utime(extension, (extension_mtime, extension_mtime))
    if declarations_mtime is not None:
        declarations = package / "hot.pxd"
        declarations.write_text("cpdef f(x)\n")
        os.utime(declarations, (declarations_mtime, declarations_mtime))


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("hotpkg", None)


@pytest.mark.parametrize("source_newer", [True, False])
def test_a_source_changed_after_its_build_is_named_stale(
    on_path: Path, source_newer: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fake_package(on_path, 2_000_000 if source_newer else 1_000_000, 1_500_000)
    assert compiled.compiled(["hotpkg.hot"]) == ["hotpkg.hot"]
    assert compiled.stale(["hotpkg.hot"]) == (["hotpkg.hot"] if source_newer else [])
    with caplog.at_level(logging.INFO):
        compiled.log_state(logging.getLogger("test"), ["hotpkg.hot"])
    (record,) = caplog.records
    if source_newer:
        assert record.levelno == logging.WARNING and "hotpkg.hot" in record.getMessage()
        assert "make build" in record.getMessage()
    else:
        assert record.levelno == logging.INFO and "compiled: all 1 modules" in record.getMessage()


@pytest.mark.parametrize("declarations_newer", [True, False])
def test_declarations_changed_after_the_build_make_it_stale(
    on_path: Path, declarations_newer: bool
) -> None:
    # The .pxd types the compiled module's locals: a build without the edit runs otherwise.
    fake_package(
        on_path,
        1_000_000,
        1_500_000,
        declarations_mtime=2_000_000 if declarations_newer else 1_200_000,
    )
    assert compiled.stale(["hotpkg.hot"]) == (["hotpkg.hot"] if declarations_newer else [])
    assert compiled.build_inputs("hotpkg.hot", on_path) == [
        on_path / "hotpkg" / "hot.py",
        on_path / "hotpkg" / "hot.pxd",
    ]


def test_an_installed_package_is_never_stale(on_path: Path) -> None:
    # A wheel unpacks its files in no particular order: the times say nothing of builds.
    fake_package(on_path, 2_000_000, 1_500_000, checkout=False)
    assert compiled.compiled(["hotpkg.hot"]) == ["hotpkg.hot"]
    assert compiled.stale(["hotpkg.hot"]) == []


def test_an_interpreted_hot_path_is_a_warning(
    on_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (on_path / "plainhot.py").write_text("X = 1\n")
    assert compiled.compiled(["plainhot"]) == []
    with caplog.at_level(logging.INFO):
        compiled.log_state(logging.getLogger("test"), ["plainhot"])
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "interpreted" in record.getMessage() and "plainhot" in record.getMessage()
