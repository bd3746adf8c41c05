"""The registry in SQLite: one table per registry table, replaced as a whole on import.

An import is all or nothing (one transaction), so the gateway and the score never see half
a registry.  Reading goes back through ``tables.from_rows``, the same validation as the
files, so a database edited by hand cannot smuggle in a broken reference (the sites' devices,
read alone for the gateway, have their kind and estate checked).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.registry.model import Registry, SiteDevice, SiteMembers
from jiayuan.registry.tables import (
    COLUMNS,
    OPTIONAL,
    Problem,
    RawTable,
    RegistryInvalid,
    from_rows,
    to_rows,
)

# Kept in the gateway's state directory (``gateway.state_dir``) under this name by default.
from jiayuan.state import REGISTRY_FILE as REGISTRY_FILE

_KINDS = frozenset(k.value for k in Kind)


def registry_path(config: Config) -> Path:
    """Where the configuration keeps the registry (``[alerts] registry_db``)."""
    if config.alerts.registry_db:
        return Path(config.alerts.registry_db)
    return Path(config.gateway.state_dir) / REGISTRY_FILE


_TYPES: Mapping[str, str] = {
    "lat": "REAL",
    "lon": "REAL",
    "floors": "INTEGER",
    "households": "INTEGER",
    "ports": "INTEGER",
}


def _schema() -> str:
    statements = []
    for name, columns in COLUMNS.items():
        defs = ", ".join(
            f"{column} {_TYPES.get(column, 'TEXT')}"
            + ("" if (name, column) in OPTIONAL else " NOT NULL")
            for column in columns
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS {name} ({defs});")
    # An estate's devices read without a scan of every device (``estate_upkeep``).
    statements.append("CREATE INDEX IF NOT EXISTS devices_by_estate ON devices (estate);")
    return "\n".join(statements)


# Instances sharing one registry ([alerts] registry_db, --workers) open it together at start.
# Switching a new file to WAL or creating its tables then meets another connection doing
# the same, and SQLite answers "database is locked" at once instead of waiting (the lock
# upgrade could deadlock), so the preparation is tried again for this long.
PREPARE_FOR_S = 10.0
# SQLite's page cache of ``estate_upkeep``'s connection, in KiB (SQLite's default: 2,000).
UPKEEP_CACHE_KIB = 256


def _prepare(db: sqlite3.Connection) -> None:
    """WAL and the tables, tried again while another connection holds the lock."""
    deadline = time.monotonic() + PREPARE_FOR_S
    wait_s = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_schema())
            _add_new_columns(db)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + wait_s > deadline:
                raise
        time.sleep(wait_s)
        wait_s = min(wait_s * 2, 0.5)


def _add_new_columns(db: sqlite3.Connection) -> None:
    """Give a store written before an optional column existed (``devices.connect``) that
    column, empty; its rows stay as they are."""
    for name, columns in COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({name})")}
        for column in columns:
            if column not in present and (name, column) in OPTIONAL:
                try:
                    db.execute(
                        f"ALTER TABLE {name} ADD COLUMN {column} {_TYPES.get(column, 'TEXT')}"
                    )
                except sqlite3.OperationalError as error:
                    # Another instance opening the same old store added it first.
                    if "duplicate column" not in str(error):
                        raise


@dataclass(frozen=True, slots=True)
class EstateHeading:
    """An estate's names and place, as its score card shows them."""

    id: str
    name_zh: str
    district: str
    street: str
    company: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class DeviceUpkeep:
    """What an estate's score reads of one device: its family, inspection and assessment
    dates and charging ports."""

    id: str
    kind: Kind
    installed: date
    last_inspection: date | None
    last_assessment: date | None
    ports: int


@dataclass(frozen=True, slots=True)
class EstateUpkeep:
    """One estate as its score reads it (``score.estate``): the rest of the registry
    (buildings one by one, models, connections, sites) is left in the database."""

    estate: EstateHeading
    households: int
    devices: tuple[DeviceUpkeep, ...]  # in registry order


class RegistryStore:
    """Thread-safe: the API (uvicorn's threads) and the score runner share one store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        _prepare(self._db)

    def replace(self, registry: Registry) -> None:
        """Store ``registry`` in place of whatever was there, in one transaction."""
        rows = to_rows(registry)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for name, columns in COLUMNS.items():
                    self._db.execute(f"DELETE FROM {name}")
                    marks = ", ".join("?" for _ in columns)
                    self._db.executemany(
                        f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})",
                        [[_sql_value(row[column]) for column in columns] for row in rows[name]],
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> Registry:
        """The stored registry (empty tables give an empty registry)."""
        tables: dict[str, RawTable] = {}
        with self._lock:
            for name, columns in COLUMNS.items():
                cursor = self._db.execute(
                    f"SELECT rowid, {', '.join(columns)} FROM {name} ORDER BY rowid"
                )
                rows = [(int(r[0]), dict(zip(columns, r[1:], strict=True))) for r in cursor]
                tables[name] = RawTable(f"{self.path} [{name}]", rows)
        return from_rows(tables)

    def estate_upkeep(
        self, streets: Collection[str] | None = None, estate: str | None = None
    ) -> Iterator[EstateUpkeep]:
        """Each estate on ``streets`` (street ids, as topics carry them; None: every one),
        or only ``estate`` if named, in registry order, read one at a time from one
        snapshot of the database: what the estate score needs, without the whole registry
        as objects (what a whole ``load`` costs a district's gateway: docs/scaling.md,
        "Memory").

        Read on a connection of its own, so an import meanwhile is seen whole or not at
        all and the store's other callers do not wait for the scoring in between."""
        with closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            # Read once in index order: a page cache would only hold what was read.
            db.execute(f"PRAGMA cache_size = -{UPKEEP_CACHE_KIB}")
            db.execute("BEGIN")  # one read snapshot (WAL) for every query below
            try:
                columns = "SELECT id, name_zh, district, street, company, lat, lon FROM estates"
                # A cursor, not a list: a district's estates are not held at once.
                estates = (
                    db.execute(f"{columns} ORDER BY rowid")
                    if estate is None
                    else db.execute(f"{columns} WHERE id = ?", (estate,))
                )
                totals = "SELECT estate, sum(households) FROM buildings"
                households = dict(
                    db.execute(f"{totals} GROUP BY estate")
                    if estate is None
                    else db.execute(f"{totals} WHERE estate = ? GROUP BY estate", (estate,))
                )
                for estate_id, name, district, street, company, lat, lon in estates:
                    if streets is not None and street not in streets:
                        continue
                    devices = db.execute(
                        "SELECT id, kind, installed, last_inspection, last_assessment, ports "
                        "FROM devices WHERE estate = ? ORDER BY rowid",
                        (estate_id,),
                    )
                    yield EstateUpkeep(
                        EstateHeading(
                            estate_id, name, district, street, company, float(lat), float(lon)
                        ),
                        int(households.get(estate_id) or 0),
                        tuple(_device_upkeep(*row) for row in devices),
                    )
            finally:
                db.execute("ROLLBACK")

    def site_members(self, streets: Collection[str] | None = None) -> list[SiteMembers]:
        """As ``Registry.site_members`` for the estates on ``streets`` (street ids; None:
        every one), read from the devices that name a site and not from a whole ``load``
        (a district's registry as objects was the peak of a gateway's memory: docs/scaling.md,
        "Memory").  What it reads is checked as a load would: a device of an unknown kind or
        estate raises RegistryInvalid."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.rowid, e.district, e.street, d.estate, d.site, d.id, d.building, "
                "d.kind FROM devices AS d LEFT JOIN estates AS e ON e.id = d.estate "
                "WHERE d.site IS NOT NULL ORDER BY e.rowid, d.rowid"
            ).fetchall()
        where = f"{self.path} [devices]"
        problems: list[Problem] = []
        # By (estate, site): where it is, and its devices.
        heads: dict[tuple[str, str], tuple[str, str]] = {}
        devices: dict[tuple[str, str], list[SiteDevice]] = {}
        for rowid, district, street, estate, site, device, building, kind in rows:
            if district is None:
                problems.append(Problem(where, rowid, "estate", f"no estate {estate!r}"))
                continue
            if kind not in _KINDS:
                problems.append(Problem(where, rowid, "kind", f"unknown kind {kind!r}"))
                continue
            if streets is not None and street not in streets:
                continue
            heads.setdefault((estate, site), (district, street))
            devices.setdefault((estate, site), []).append(SiteDevice(device, building, Kind(kind)))
        if problems:
            raise RegistryInvalid(problems)
        return [SiteMembers(*heads[key], *key, tuple(members)) for key, members in devices.items()]

    def street_of(self, estate: str) -> str | None:
        """The street of one estate (one query, not a whole load); None if unknown."""
        with self._lock:
            row = self._db.execute("SELECT street FROM estates WHERE id = ?", (estate,)).fetchone()
        return None if row is None else str(row[0])

    def companies(self) -> dict[str, str]:
        """Each estate's property company (one query: a whole load of a district's
        registry holds some 760 bytes a device for a moment)."""
        with self._lock:
            rows = self._db.execute("SELECT id, company FROM estates").fetchall()
        return {str(estate): str(company or "") for estate, company in rows}

    def company_names(self) -> dict[str, str]:
        """Each property company's name by its id."""
        with self._lock:
            rows = self._db.execute("SELECT id, name_zh FROM companies").fetchall()
        return {str(company): str(name) for company, name in rows}

    def estate_count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM estates").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _device_upkeep(
    device: str,
    kind: str,
    installed: str,
    inspected: str | None,
    assessed: str | None,
    ports: int | None,
) -> DeviceUpkeep:
    """One device's row as ``tables.from_rows`` reads it (empty dates None, no ports 0)."""
    return DeviceUpkeep(
        device,
        Kind(kind),
        date.fromisoformat(installed),
        date.fromisoformat(inspected) if inspected else None,
        date.fromisoformat(assessed) if assessed else None,
        ports or 0,
    )


def _sql_value(value: Any) -> Any:
    if isinstance(value, dict):  # a connect entry, kept as its JSON text
        return json.dumps(value, ensure_ascii=False)
    return value.isoformat() if isinstance(value, date) else value
