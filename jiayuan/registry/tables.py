"""The registry as six tables, and the one place that validates them.

CSV (one file per table), YAML (one document, one list per table) and the SQLite store all
go through ``from_rows``: every problem is collected with the file, row and field it was
found in, and all of them are reported together in one ``RegistryInvalid``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jiayuan.catalogue import Kind
from jiayuan.registry.connect import Connect, ConnectInvalid, parse_connect
from jiayuan.registry.model import (
    Building,
    Company,
    Device,
    District,
    Estate,
    FeeBand,
    HousingCategory,
    Registry,
    Street,
)

_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Table name → its columns, in file order.  The order of tables is the order they are
# read in: a table may refer only to tables before it.
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "districts": ("id", "name_zh"),
    "streets": ("id", "district", "name_zh"),
    "companies": ("id", "name_zh"),
    "estates": (
        "id",
        "name_zh",
        "district",
        "street",
        "company",
        "category",
        "fee_band",
        "lat",
        "lon",
    ),
    "buildings": ("estate", "id", "floors", "households"),
    "devices": (
        "id",
        "estate",
        "building",
        "kind",
        "model",
        "installed",
        "last_inspection",
        "last_assessment",
        "ports",
        "connect",
        "site",
    ),
}
# Columns that may be left empty.
OPTIONAL: frozenset[tuple[str, str]] = frozenset(
    {
        ("devices", "last_inspection"),
        ("devices", "last_assessment"),
        ("devices", "ports"),
        ("devices", "connect"),
        ("devices", "site"),
    }
)

# ``connect`` is a JSON object: a mapping in YAML, JSON text in CSV and SQLite.
Value = str | int | float | date | dict[str, Any] | None
Row = dict[str, Value]


@dataclass(frozen=True)
class Problem:
    file: str
    row: int  # CSV: line number (the header is line 1); YAML: item number from 1
    field: str
    message: str
    line: int = 0  # YAML: the line in the file where the item (or the error) is; 0 = unknown

    def __str__(self) -> str:
        where = f"row {self.row} (line {self.line})" if self.line else f"row {self.row}"
        return f"{self.file}: {where}: {self.field}: {self.message}"


class RegistryInvalid(ValueError):
    """Every problem found in an import, each naming its file, row and field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"the registry has {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class RawTable:
    """One table as read: where it came from and its rows with their row numbers."""

    file: str
    rows: Sequence[tuple[int, Mapping[str, Any]]]
    header: Sequence[str] | None = None  # the CSV header, checked for unknown columns
    # Row number → line in the file, where it differs from the row number (YAML).
    lines: Mapping[int, int] = field(default_factory=dict)
    # False when the file or some rows could not be read (their problems already found):
    # references into the table are then not checked, as a missing row may be the one.
    whole: bool = True


def to_rows(registry: Registry) -> dict[str, list[Row]]:
    """The registry as plain rows (dates as ``date``, empty values as None)."""
    return {
        "districts": [{"id": d.id, "name_zh": d.name_zh} for d in registry.districts],
        "streets": [
            {"id": s.id, "district": s.district, "name_zh": s.name_zh} for s in registry.streets
        ],
        "companies": [{"id": c.id, "name_zh": c.name_zh} for c in registry.companies],
        "estates": [
            {
                "id": e.id,
                "name_zh": e.name_zh,
                "district": e.district,
                "street": e.street,
                "company": e.company,
                "category": e.category.value,
                "fee_band": e.fee_band.value,
                "lat": e.lat,
                "lon": e.lon,
            }
            for e in registry.estates
        ],
        "buildings": [
            {"estate": b.estate, "id": b.id, "floors": b.floors, "households": b.households}
            for b in registry.buildings
        ],
        "devices": [
            {
                "id": d.id,
                "estate": d.estate,
                "building": d.building,
                "kind": d.kind.value,
                "model": d.model,
                "installed": d.installed,
                "last_inspection": d.last_inspection,
                "last_assessment": d.last_assessment,
                "ports": d.ports if d.kind is Kind.EBIKE_CHARGER else None,
                "connect": None if d.connect is None else d.connect.as_json(),
                "site": d.site,
            }
            for d in registry.devices
        ],
    }


class _Checker:
    """Reads one row's fields, noting each problem instead of stopping at the first."""

    def __init__(
        self,
        file: str,
        row: int,
        values: Mapping[str, Any],
        out: list[Problem],
        line: int = 0,
        absent: frozenset[str] = frozenset(),
    ):
        self.file = file
        self.row = row
        self.line = line
        self.values = values
        self.out = out
        self.ok = True
        self.absent = absent  # missing columns, reported once for the file, not each row

    def problem(self, field: str, message: str) -> None:
        if field not in self.absent:
            self.out.append(Problem(self.file, self.row, field, message, self.line))
        self.ok = False

    def raw(self, field: str) -> Any:
        value = self.values.get(field)
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def text(self, field: str) -> str:
        value = self.raw(field)
        if value is None:
            self.problem(field, "is empty")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.problem(field, f"{value!r} is not text")
            return ""
        return str(value)

    def ident(self, field: str) -> str:
        value = self.text(field)
        if value and not _ID.fullmatch(value):
            self.problem(field, f"{value!r} is not an id (letters, digits, _ . -; up to 64)")
        return value

    def number(self, field: str, low: float, high: float) -> float:
        value = self.raw(field)
        if value is None:
            self.problem(field, "is empty")
            return 0.0
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError
            number = float(value)
        except ValueError:
            self.problem(field, f"{value!r} is not a number")
            return 0.0
        if not low <= number <= high:  # also refuses NaN
            self.problem(field, f"{value} is outside {low:g}..{high:g}")
        return number

    def integer(self, field: str, low: int, high: int) -> int:
        value = self.raw(field)
        if value is None:
            self.problem(field, "is empty")
            return 0
        try:
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ValueError
            number = int(value)
        except ValueError:
            self.problem(field, f"{value!r} is not a whole number")
            return 0
        if not low <= number <= high:
            self.problem(field, f"{number} is outside {low}..{high}")
        return number

    def day(self, field: str, optional: bool = False) -> date | None:
        value = self.raw(field)
        if value is None:
            if not optional:
                self.problem(field, "is empty")
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.problem(field, f"{value!r} is not a date (YYYY-MM-DD)")
            return None

    def connect(self, field: str, kind: Kind | None) -> Connect | None:
        value = self.raw(field)
        if value is None:
            return None
        try:
            return parse_connect(value, kind)
        except ConnectInvalid as error:
            self.problem(error.field, error.message)
            return None

    def choice(self, field: str, parse: Callable[[str], Any], allowed: Iterable[str]) -> Any:
        value = self.text(field)
        if not value:
            return None
        try:
            return parse(value)
        except ValueError:
            self.problem(field, f"{value!r} is not one of: {', '.join(allowed)}")
            return None


def _category(text: str) -> HousingCategory:
    for category in HousingCategory:
        if text in (category.value, category.zh):
            return category
    raise ValueError(text)


def _fee_band(text: str) -> FeeBand:
    for band in FeeBand:
        if text in (band.value, band.zh):
            return band
    raise ValueError(text)


def from_rows(tables: Mapping[str, RawTable], found: Sequence[Problem] = ()) -> Registry:
    """Validate every row of every table and build the registry, or raise RegistryInvalid
    listing all problems (bad values, duplicate ids, references to nothing) together with
    ``found``, those found while reading the files.

    Every row is checked even when a table or a column has a problem, so one run lists
    everything to fix; what is only a consequence (a missing column's empty fields, a
    reference into a table that could not be read whole) is not reported again.
    """
    problems = list(found)
    unchecked: set[str] = set()  # tables whose references cannot be checked
    absent: dict[str, frozenset[str]] = {}
    for name in COLUMNS:
        if name not in tables:
            problems.append(Problem(f"{name} table", 0, "-", "is missing"))
            unchecked.add(name)
    for name, table in tables.items():
        if name not in COLUMNS:
            problems.append(
                Problem(table.file, 0, "-", f"unknown table {name!r}; known: {', '.join(COLUMNS)}")
            )
            continue
        if not table.whole:
            unchecked.add(name)
        if table.header is not None:
            known = set(COLUMNS[name])
            for column in table.header:
                if column not in known:
                    problems.append(Problem(table.file, 1, column, "unknown column"))
            missing = {
                column
                for column in COLUMNS[name]
                if column not in table.header and (name, column) not in OPTIONAL
            }
            for column in COLUMNS[name]:
                if column in missing:
                    problems.append(Problem(table.file, 1, column, "column is missing"))
            absent[name] = frozenset(missing)
    builder = _Builder(problems, unchecked)
    for name in COLUMNS:
        if name not in tables:
            continue
        read = tables[name]
        for row_number, values in read.rows:
            check = _Checker(
                read.file,
                row_number,
                values,
                problems,
                read.lines.get(row_number, 0),
                absent.get(name, frozenset()),
            )
            if read.header is None:
                for column in values:
                    if column not in COLUMNS[name]:
                        check.problem(str(column), "unknown field")
            getattr(builder, name)(check)
    if problems:
        raise RegistryInvalid(problems)
    return Registry(
        districts=tuple(builder.districts_seen.values()),
        streets=tuple(builder.streets_seen.values()),
        companies=tuple(builder.companies_seen.values()),
        estates=tuple(builder.estates_seen.values()),
        buildings=tuple(builder.buildings_seen.values()),
        devices=tuple(builder.devices_seen.values()),
    )


class _Builder:
    """One method per table, in reading order; each checks one row against what came before.

    A row with a bad field is still remembered under its id, so rows referring to it are
    not reported as well: only the first cause is named.  For the same reason references
    into an ``unchecked`` table (missing, or not read whole) are not checked.  No registry
    is built from rows with problems (``from_rows`` raises first).
    """

    def __init__(self, problems: list[Problem], unchecked: set[str] | None = None) -> None:
        self.problems = problems
        self.unchecked = unchecked or set()
        self.districts_seen: dict[str, District] = {}
        self.streets_seen: dict[tuple[str, str], Street] = {}
        self.companies_seen: dict[str, Company] = {}
        self.estates_seen: dict[str, Estate] = {}
        self.buildings_seen: dict[tuple[str, str], Building] = {}
        self.devices_seen: dict[str, Device] = {}

    def _unknown(self, table: str, key: object, seen: Mapping[Any, object]) -> bool:
        """Whether ``key`` is known to be missing from ``table``."""
        return table not in self.unchecked and key not in seen

    def districts(self, c: _Checker) -> None:
        district = District(c.ident("id"), c.text("name_zh"))
        if district.id in self.districts_seen:
            c.problem("id", f"district {district.id!r} appears twice")
        else:
            self.districts_seen[district.id] = district

    def streets(self, c: _Checker) -> None:
        street = Street(c.ident("id"), c.ident("district"), c.text("name_zh"))
        if street.district and self._unknown("districts", street.district, self.districts_seen):
            c.problem("district", f"no district {street.district!r} in districts")
        if (street.district, street.id) in self.streets_seen:
            c.problem("id", f"street {street.id!r} appears twice in {street.district!r}")
        else:
            self.streets_seen[(street.district, street.id)] = street

    def companies(self, c: _Checker) -> None:
        company = Company(c.ident("id"), c.text("name_zh"))
        if company.id in self.companies_seen:
            c.problem("id", f"company {company.id!r} appears twice")
        else:
            self.companies_seen[company.id] = company

    def estates(self, c: _Checker) -> None:
        estate_id = c.ident("id")
        name = c.text("name_zh")
        district = c.ident("district")
        street = c.ident("street")
        company = c.ident("company")
        category = c.choice("category", _category, [f"{x.value}/{x.zh}" for x in HousingCategory])
        fee_band = c.choice("fee_band", _fee_band, [f"{x.value}/{x.zh}" for x in FeeBand])
        lat = c.number("lat", -90, 90)
        lon = c.number("lon", -180, 180)
        duplicate = estate_id in self.estates_seen
        if duplicate:
            c.problem("id", f"estate {estate_id!r} appears twice")
        if district and self._unknown("districts", district, self.districts_seen):
            c.problem("district", f"no district {district!r} in districts")
        elif street and self._unknown("streets", (district, street), self.streets_seen):
            c.problem("street", f"no street {street!r} in district {district!r}")
        if company and self._unknown("companies", company, self.companies_seen):
            c.problem("company", f"no company {company!r} in companies")
        if not duplicate:
            self.estates_seen[estate_id] = Estate(
                estate_id, name, district, street, company, category, fee_band, lat, lon
            )

    def buildings(self, c: _Checker) -> None:
        estate = c.ident("estate")
        building = Building(
            estate, c.ident("id"), c.integer("floors", 0, 200), c.integer("households", 0, 10_000)
        )
        if estate and self._unknown("estates", estate, self.estates_seen):
            c.problem("estate", f"no estate {estate!r} in estates")
        if (estate, building.id) in self.buildings_seen:
            c.problem("id", f"building {building.id!r} appears twice in estate {estate!r}")
        else:
            self.buildings_seen[(estate, building.id)] = building

    def devices(self, c: _Checker) -> None:
        device_id = c.ident("id")
        estate = c.ident("estate")
        building = c.ident("building")
        kind = c.choice("kind", Kind, [k.value for k in Kind])
        model = c.text("model")
        installed = c.day("installed")
        inspected = c.day("last_inspection", optional=True)
        assessed = c.day("last_assessment", optional=True)
        ports = c.integer("ports", 0, 1000) if c.raw("ports") is not None else 0
        connect = c.connect("connect", kind)
        site = c.ident("site") if c.raw("site") is not None else None
        duplicate = device_id in self.devices_seen
        if duplicate:
            c.problem("id", f"device {device_id!r} appears twice")
        if estate and self._unknown("estates", estate, self.estates_seen):
            c.problem("estate", f"no estate {estate!r} in estates")
        elif building and self._unknown("buildings", (estate, building), self.buildings_seen):
            c.problem("building", f"no building {building!r} in estate {estate!r}")
        if installed and inspected and inspected < installed:
            c.problem("last_inspection", f"{inspected} is before the install date {installed}")
        if installed and assessed and assessed < installed:
            c.problem("last_assessment", f"{assessed} is before the install date {installed}")
        if assessed and kind is not None and kind is not Kind.LIFT:
            c.problem("last_assessment", "only lifts have a 15-year safety assessment")
        if kind is Kind.EBIKE_CHARGER and ports < 1:
            c.problem("ports", "a charger needs at least one charging port")
        if ports and kind is not None and kind is not Kind.EBIKE_CHARGER:
            c.problem("ports", "only e-bike chargers have charging ports")
        if not duplicate:
            self.devices_seen[device_id] = Device(
                device_id,
                estate,
                building,
                kind,
                model,
                installed or date.min,
                inspected,
                assessed,
                ports,
                connect,
                site,
            )
