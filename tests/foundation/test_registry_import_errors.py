"""``registry import`` reports every problem at once: column, file and row problems
together, without the noise that is only their consequence (jiayuan/registry/*)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
import yaml

from jiayuan.registry.files import export_csv, export_yaml, import_csv, import_yaml
from jiayuan.registry.model import Registry
from jiayuan.registry.tables import Problem, RegistryInvalid
from simulators.registry import build_registry
from tools.cli import main
from tools.registry_generate import generate_registry


@pytest.fixture(scope="module")
def small() -> Registry:
    return generate_registry(build_registry(6, seed=3), seed=3, as_of=date(2026, 6, 1))


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[row][column] = value
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def rename_column(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8-sig")
    header, rest = text.split("\n", 1)
    columns = [new if c == old else c for c in header.strip().split(",")]
    path.write_text(",".join(columns) + "\n" + rest, encoding="utf-8-sig")


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(RegistryInvalid) as caught:
        import_csv(folder)
    return list(caught.value.problems)


def where(problems: list[Problem]) -> set[tuple[str, int, str]]:
    return {(Path(p.file).name, p.row, p.field) for p in problems}


def test_column_problems_and_row_problems_are_reported_together(
    small: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    rename_column(folder / "buildings.csv", "floors", "floor")  # a typo in a header
    set_cell(folder / "estates.csv", 0, "lat", "north")
    set_cell(folder / "devices.csv", 1, "installed", "2020-13-01")
    problems = problems_of(folder)
    assert where(problems) == {
        ("buildings.csv", 1, "floor"),  # unknown column
        ("buildings.csv", 1, "floors"),  # column is missing
        ("estates.csv", 2, "lat"),
        ("devices.csv", 3, "installed"),
    }, [str(p) for p in problems]


def test_an_unreadable_file_does_not_hide_the_rows_of_the_others(
    small: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    (folder / "streets.csv").unlink()
    (folder / "companies.csv").write_bytes(b"id,name_zh\n\xff\xfe,x\n")
    set_cell(folder / "devices.csv", 0, "kind", "toaster")
    problems = problems_of(folder)
    # Estates name streets and companies that could not be read: not reported again.
    assert where(problems) == {
        ("streets.csv", 0, "-"),
        ("companies.csv", 2, "-"),
        ("devices.csv", 2, "kind"),
    }, [str(p) for p in problems]
    assert any(p.message == "file not found" for p in problems)


def test_a_row_with_the_wrong_number_of_values_and_other_rows_problems(
    small: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    path = folder / "buildings.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    lines[1] += ",surplus"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    set_cell(folder / "districts.csv", 0, "name_zh", "")
    problems = problems_of(folder)
    found = where(problems)
    assert ("buildings.csv", 2, "-") in found
    assert ("districts.csv", 2, "name_zh") in found
    # Devices in the building of the broken row are not reported as in no building.
    assert not [p for p in problems if "no building" in p.message], [str(p) for p in problems]


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n"])
def test_an_empty_csv_file_is_called_empty(small: Registry, tmp_path: Path, content: bytes) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    (folder / "companies.csv").write_bytes(content)
    set_cell(folder / "devices.csv", 0, "kind", "toaster")
    problems = problems_of(folder)
    mine = [p for p in problems if Path(p.file).name == "companies.csv"]
    assert [p.message for p in mine] == ["empty file (no header line)"], [str(p) for p in mine]
    assert ("devices.csv", 2, "kind") in where(problems)


def test_yaml_missing_table_and_bad_rows_are_reported_together(
    small: Registry, tmp_path: Path
) -> None:
    path = export_yaml(small, tmp_path / "r.yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    del document["companies"]
    document["buildings"][0]["floors"] = -1
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryInvalid) as caught:
        import_yaml(path)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2, messages
    assert any("companies" in m and "missing" in m for m in messages)
    assert any("[buildings]: row 1" in m and "floors" in m for m in messages)


def test_the_command_prints_every_problem(
    small: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    rename_column(folder / "companies.csv", "name_zh", "name")
    set_cell(folder / "devices.csv", 0, "installed", "yesterday")
    code = main(["registry", "import", str(folder), "--db", str(tmp_path / "r.sqlite")])
    err = capsys.readouterr().err
    assert code == 1
    assert "name: unknown column" in err
    assert "name_zh: column is missing" in err
    assert "'yesterday' is not a date" in err
    assert not (tmp_path / "r.sqlite").exists()
