"""The optional dependency groups, and a clear error when one is missing.

A production gateway installs ``jiayuan`` alone; the packages that only the demo or the
dashboard tooling use come in the groups of pyproject.toml's
``[project.optional-dependencies]``: ``demo`` (the mail catcher, and what ``dashboards``
has, for the previews) and ``dashboards`` (Grafana's SDK and client, matplotlib for the
PNG previews).  ``dev`` has them all.  Code that needs one of these packages imports it
where it is used, and a missing one is reported with the group that provides it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Top-level module of each optional package: the group that installs it.  A test checks
# it against the package metadata built from pyproject.toml.
PROVIDED_BY = {
    "aiosmtpd": "demo",
    "matplotlib": "dashboards",
    "grafana_client": "dashboards",
    "grafana_foundation_sdk": "dashboards",
}


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names the group to install."""


def explain(error: ModuleNotFoundError, what: str = "this command") -> str | None:
    """The message for a missing optional package, or None when ``error`` is another one."""
    module = (error.name or "").partition(".")[0]
    extra = PROVIDED_BY.get(module)
    if extra is None:
        return None
    return (
        f"{what} needs {module}, which comes with the optional dependency group "
        f"'{extra}': pip install 'jiayuan[{extra}]' (a development set-up installs "
        f"'.[dev]', which has every group)"
    )


def require(module: str, what: str) -> ModuleType:
    """Import an optional package's module, or raise MissingExtra naming its group."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        message = explain(error, what)
        if message is None:
            raise
        raise MissingExtra(message, name=error.name) from error
