"""Registry import and export: CSV (one file per table) and YAML (one document).

CSV files are written as UTF-8 with a byte-order mark so that Excel, which staff use to
edit them, shows the Chinese names; reading accepts them with or without it.  Both formats
are validated by ``tables.from_rows``; problems name the file, the row (CSV: the line, the
header being line 1; YAML: the item number in its table's list, with its line in the file)
and the field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from jiayuan.registry.model import Registry
from jiayuan.registry.tables import COLUMNS, Problem, RawTable, RegistryInvalid, from_rows, to_rows

YAML_VERSION = 1


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):  # a connect entry: its JSON, as an installer types it
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def export_csv(registry: Registry, directory: str | Path) -> list[Path]:
    """Write ``<table>.csv`` for every table into ``directory``; return the paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in to_rows(registry).items():
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS[name])
            for row in rows:
                writer.writerow([_csv_text(row[column]) for column in COLUMNS[name]])
        written.append(path)
    return written


def import_csv(directory: str | Path) -> Registry:
    """Read and validate ``<table>.csv`` for every table in ``directory``."""
    folder = Path(directory)
    tables: dict[str, RawTable] = {}
    problems: list[Problem] = []
    for name in COLUMNS:
        path = folder / f"{name}.csv"
        table = _read_csv(path, problems)
        # A file that could not be read is an empty table that is not whole: its rows'
        # problems are known, and what refers to it is not reported as well.
        tables[name] = table if table is not None else RawTable(str(path), [], whole=False)
    return from_rows(tables, problems)


def _read_csv(path: Path, problems: list[Problem]) -> RawTable | None:
    """One table's file, or None after adding why it cannot be read to ``problems``."""
    reader = None
    try:
        raw = path.read_bytes()
        # Decoded whole first, so a bad byte is reported with its line.
        text = raw.decode("utf-8-sig")
        with io.StringIO(text, newline="") as handle:
            reader = csv.reader(handle)
            header = next((r for r in reader if any(cell.strip() for cell in r)), None)
            if header is None:
                problems.append(Problem(str(path), 0, "-", "empty file (no header line)"))
                return None
            header = [column.strip() for column in header]
            rows: list[tuple[int, Mapping[str, Any]]] = []
            whole = True
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # blank lines
                line = reader.line_num
                if len(record) != len(header):
                    problems.append(
                        Problem(
                            str(path), line, "-", f"{len(record)} values for {len(header)} columns"
                        )
                    )
                    whole = False
                    continue
                rows.append((line, dict(zip(header, record, strict=True))))
    except FileNotFoundError:
        problems.append(Problem(str(path), 0, "-", "file not found"))
        return None
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        problems.append(Problem(str(path), line, "-", f"not UTF-8 text: {error.reason}"))
        return None
    except csv.Error as error:
        line = reader.line_num if reader is not None else 0
        problems.append(Problem(str(path), line, "-", f"not CSV: {error}"))
        return None
    return RawTable(str(path), rows, header, whole=whole)


def export_yaml(registry: Registry, path: str | Path) -> Path:
    """Write the registry as one YAML document: a list of mappings per table."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"version": YAML_VERSION, **to_rows(registry)}
    target.write_text(
        yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return target


def import_yaml(path: str | Path) -> Registry:
    """Read and validate a registry YAML document."""
    source = Path(path)
    where = str(source)
    try:
        raw = source.read_bytes()
        text = raw.decode("utf-8")
        document = yaml.safe_load(text)
        item_lines = _item_lines(text)
    except FileNotFoundError:
        raise RegistryInvalid([Problem(where, 0, "-", "file not found")]) from None
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise RegistryInvalid(
            [Problem(where, 0, "-", f"not UTF-8: {error.reason}", line)]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise RegistryInvalid([Problem(where, 0, "-", f"not YAML: {error}", line)]) from None
    if not isinstance(document, dict):
        raise RegistryInvalid([Problem(where, 0, "-", "is not a mapping of tables")])
    problems: list[Problem] = []
    if document.get("version") != YAML_VERSION:
        problems.append(
            Problem(where, 0, "version", f"{document.get('version')!r} is not {YAML_VERSION}")
        )
    tables: dict[str, RawTable] = {}
    for name, items in document.items():
        if name == "version":
            continue
        label = f"{where} [{name}]"
        if not isinstance(items, list):
            problems.append(Problem(label, 0, "-", "is not a list of rows"))
            tables[str(name)] = RawTable(label, [], whole=False)
            continue
        rows: list[tuple[int, Mapping[str, Any]]] = []
        lines = item_lines.get(str(name), {})
        for number, item in enumerate(items, start=1):
            if isinstance(item, dict):
                rows.append((number, {str(key): value for key, value in item.items()}))
            else:
                problems.append(
                    Problem(label, number, "-", "is not a mapping of fields", lines.get(number, 0))
                )
        tables[str(name)] = RawTable(label, rows, lines=lines, whole=len(rows) == len(items))
    for name in COLUMNS:
        if name not in document:
            problems.append(Problem(where, 0, name, "table is missing"))
            tables[name] = RawTable(where, [], whole=False)
    return from_rows(tables, problems)


def _item_lines(text: str) -> dict[str, dict[int, int]]:
    """Per table, the line (from 1) where each of its items starts: the YAML node tree
    keeps positions, the loaded document does not."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    found: dict[str, dict[int, int]] = {}
    if not isinstance(root, yaml.MappingNode):
        return found
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.SequenceNode):
            found[str(key.value)] = {
                number: item.start_mark.line + 1 for number, item in enumerate(value.value, 1)
            }
    return found
