"""The modules Cython compiles at install time, and whether this process runs them compiled.

They are the gateway's per-reading path: decoding and checking readings, line protocol,
the rules, the statistical detectors and the offline check.  They stay plain Python (no
Cython syntax; annotations are not used as C types), so the same files run interpreted
where no C compiler is found or ``JIAYUAN_NO_EXTENSIONS=1`` was set at install: compiled,
its per-reading pipeline takes markedly less CPU (the ratio is in bench/README.md,
``bench/compiled.py``).  A few
have a ``.pxd`` beside them that gives Cython the C types of some module-level functions'
locals and globals (dicts, lists, indices): the loops that run for every value of every
reading.

An in-place build (``make``, ``pip install -e .``) puts each extension module beside its
source, and Python imports the extension first: a source edited after the build does not
run until it is rebuilt.  ``stale()`` names such modules; the test session refuses to start
with any, and the gateway logs them.

Stdlib only: ``setup.py`` loads this file before anything is installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

HOT_MODULES = (
    "jiayuan.anomaly",
    "jiayuan.contract",
    "jiayuan.influx",
    "jiayuan.places",
    "gateway.detection.anomalies",
    "gateway.transport.dedup",
    "gateway.detection.detector",
    "gateway.pipeline",
    "gateway.storage.points",
    "gateway.detection.statistics.seasonal",
    "gateway.detection.statistics.series",
    "gateway.detection.statistics.detectors",
    "gateway.detection.rules.base",
    "gateway.detection.rules.ebike_charger",
    "gateway.detection.rules.fire",
    "gateway.detection.rules.lift",
    "gateway.detection.rules.offline",
    "gateway.detection.rules.table",
    "gateway.detection.rules.thresholds",
    "gateway.detection.rules.water_tank",
    "gateway.detection.rules.waterlogging",
)


def import_sources_first() -> None:
    """From now on, import modules from their ``.py`` files even where an extension module
    sits beside them: the interpreted hot path, for comparing it with the compiled one.
    Call before any hot module is imported."""
    sys.path_hooks.insert(
        0,
        importlib.machinery.FileFinder.path_hook(
            (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
            (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        ),
    )
    sys.path_importer_cache.clear()


def source_path(module: str) -> str:
    """The module's source file, relative to the project root."""
    return module.replace(".", "/") + ".py"


def build_inputs(module: str, root: Path) -> list[Path]:
    """What its build reads under ``root``: the source, and its ``.pxd`` if it has one."""
    source = root / source_path(module)
    declarations = source.with_suffix(".pxd")
    return [source, declarations] if declarations.exists() else [source]


def is_extension(path: str) -> bool:
    """Whether a module's ``__file__`` is an extension module (compiled), not source."""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _extension_of(module: str) -> Path | None:
    """The extension module this process runs (or would import) for ``module``, or None
    (interpreted)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
    else:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
    if origin is None or not is_extension(origin):
        return None
    return Path(origin)


def compiled(modules: Sequence[str] = HOT_MODULES) -> list[str]:
    """Those of the modules this process runs (or would import) as extension modules."""
    return [module for module in modules if _extension_of(module) is not None]


def stale(modules: Sequence[str] = HOT_MODULES) -> list[str]:
    """Those of the modules built in place whose source was changed after the build (the
    extension, not the source, is what runs).

    Only in a source tree (``setup.py`` beside the top package): an installed wheel's
    files carry the times they were unpacked, in no particular order."""
    out = []
    for module in modules:
        extension = _extension_of(module)
        if extension is None:
            continue
        root = extension.parents[module.count(".")]
        if not (root / "setup.py").exists():
            continue
        built = extension.stat().st_mtime
        inputs = build_inputs(module, root)
        if any(path.exists() and path.stat().st_mtime > built for path in inputs):
            out.append(module)
    return out


def log_state(log: logging.Logger, modules: Sequence[str] = HOT_MODULES) -> None:
    """Say at start whether the hot path runs compiled, and warn when it does not."""
    old = stale(modules)
    built = compiled(modules)
    interpreted = [module for module in modules if module not in built]
    if old:
        log.warning(
            "compiled modules older than their sources run instead of them: %s "
            "(rebuild: make build)",
            ", ".join(old),
        )
    if interpreted:
        log.warning(
            "hot path interpreted, its pipeline taking more CPU a reading (bench/README.md): "
            "%s (not compiled at install: no C compiler, or JIAYUAN_NO_EXTENSIONS)",
            ", ".join(interpreted),
        )
    elif not old:
        log.info("hot path compiled: all %d modules", len(modules))


def build_needed() -> bool:
    """Whether an in-place build would change anything: a stale module, or one not
    compiled while extensions are wanted."""
    if stale():
        return True
    wanted = not os.environ.get("JIAYUAN_NO_EXTENSIONS")
    return wanted and len(compiled()) < len(HOT_MODULES)


if __name__ == "__main__":  # for the Makefile
    if sys.argv[1:] == ["--build-needed"]:  # exit status 0: build
        sys.exit(0 if build_needed() else 1)
    root = Path(__file__).resolve().parent.parent
    inputs = [path for module in HOT_MODULES for path in build_inputs(module, root)]
    print(" ".join(str(path.relative_to(root)) for path in inputs))  # what a build reads
