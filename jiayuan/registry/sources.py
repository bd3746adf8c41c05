"""The registry in any form a command wrote it, told apart by its content.

``registry generate`` and ``registry import`` store SQLite, ``registry export`` writes a
directory of CSV files or a YAML file, ``jiayuan simulate`` writes the simulators'
registry.json.  Commands that take a registry take any of them, so nobody has to know
which command wrote which.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from contextlib import closing
from pathlib import Path
from typing import Literal

from jiayuan.registry.model import Registry, SiteMembers
from jiayuan.registry.tables import COLUMNS

Form = Literal["sqlite", "csv", "yaml", "json"]
_SQLITE_MAGIC = b"SQLite format 3\x00"


class NotARegistry(ValueError):
    """The path is none of the registry's forms; the message says what it is instead."""


def form_of(path: Path) -> Form:
    """Which form ``path`` holds: a SQLite store, a CSV directory, YAML, or registry.json."""
    if path.is_dir():
        return "csv"
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise NotARegistry(f"{path}: no such file or directory") from None
    except OSError as error:
        raise NotARegistry(f"{path}: cannot read: {error.strerror}") from None
    if head == _SQLITE_MAGIC:
        return "sqlite"
    if path.suffix in (".yaml", ".yml"):
        return "yaml"
    if path.suffix == ".json" or head.lstrip().startswith(b"{"):
        return "json"
    raise NotARegistry(
        f"{path}: not a registry (expected the SQLite registry of 'jiayuan registry "
        "generate|import', a directory of CSV files or a .yaml file of 'registry export', "
        "or the registry.json of 'jiayuan simulate')"
    )


def read_registry(path: Path) -> Registry:
    """The product registry stored or exported at ``path`` (SQLite, CSV or YAML).

    Raises NotARegistry for other files, RegistryInvalid for a registry with errors.
    """
    from jiayuan.registry.files import import_csv, import_yaml
    from jiayuan.registry.store import RegistryStore

    form = form_of(path)
    if form == "csv":
        return import_csv(path)
    if form == "yaml":
        return import_yaml(path)
    if form == "sqlite":
        if not _has_registry_tables(path):
            raise NotARegistry(f"{path}: a SQLite database without the registry's tables")
        with RegistryStore(path) as store:
            return store.load()
    raise NotARegistry(
        f"{path}: the simulators' registry.json; store it first with "
        f"'jiayuan registry generate --from {path}'"
    )


def read_site_members(path: Path, streets: Collection[str] | None = None) -> list[SiteMembers]:
    """The sites of the registry at ``path`` (any form) on ``streets`` (None: every
    street), as ``Registry.site_members``; a SQLite store gives them without building the
    whole registry.  Raises as ``read_registry``."""
    from jiayuan.registry.store import RegistryStore

    if form_of(path) == "sqlite" and _has_registry_tables(path):
        with RegistryStore(path) as store:
            return store.site_members(streets)
    registry = read_registry(path)
    return (registry if streets is None else registry.on_streets(streets)).site_members()


def _has_registry_tables(path: Path) -> bool:
    # Read-only: opening it as a RegistryStore would add the tables to someone else's file.
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return set(COLUMNS) <= names
