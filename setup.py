"""Builds the hot modules (jiayuan/compiled.py) as Cython extension modules.

Everything else about the package is in pyproject.toml.  Without a working C compiler, or
with ``JIAYUAN_NO_EXTENSIONS=1``, the package installs interpreted and says so.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_compiled", ROOT / "jiayuan" / "compiled.py")
assert _spec is not None and _spec.loader is not None
_compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_compiled)


def _warn(message: str) -> None:
    print(f"jiayuan: {message}; the hot path runs interpreted (slower)", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """A failed compile leaves that module interpreted rather than failing the install."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.parallel = os.cpu_count() or 1  # the modules compile one per core at a time

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler at all (DistutilsPlatformError and kin)
            _warn(f"C extensions not built ({error})")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:  # CompileError, LinkError: this module stays .py
            _warn(f"{ext.name} not compiled ({error})")


def extensions() -> list[Any]:
    if os.environ.get("JIAYUAN_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    return cythonize(  # type: ignore[no-any-return]
        [_compiled.source_path(module) for module in _compiled.HOT_MODULES],
        build_dir="build/cython",  # the generated C stays out of the source tree
        compiler_directives={
            "language_level": "3",
            # Plain Python semantics: a str annotation must still accept a StrEnum.
            "annotation_typing": False,
        },
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
