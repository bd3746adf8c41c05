"""The product registry: CSV/YAML/SQLite round trips, validation that names file, row and
field of every problem, and the generated registry for the simulators' estates."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from jiayuan.catalogue import Kind
from jiayuan.registry.files import export_csv, export_yaml, import_csv, import_yaml
from jiayuan.registry.model import FeeBand, HousingCategory, Registry, years_after
from jiayuan.registry.store import RegistryStore
from jiayuan.registry.tables import RegistryInvalid
from simulators.registry import build_registry
from tools.registry_generate import generate_registry

AS_OF = date(2026, 6, 1)


@pytest.fixture(scope="module")
def small() -> Registry:
    return generate_registry(build_registry(12, seed=5), seed=5, as_of=AS_OF)


def _rewrite(path: Path, edit: dict[tuple[int, str], str]) -> None:
    """Change cells of a CSV file: (data row index from 0, column) → new text."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
        columns = list(rows[0])
    for (index, column), value in edit.items():
        rows[index][column] = value
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_csv_round_trip_is_exact(small: Registry, tmp_path: Path) -> None:
    written = export_csv(small, tmp_path / "csv")
    assert sorted(p.name for p in written) == [
        "buildings.csv",
        "companies.csv",
        "devices.csv",
        "districts.csv",
        "estates.csv",
        "streets.csv",
    ]
    # Excel needs the byte-order mark to show the Chinese names.
    assert (tmp_path / "csv" / "estates.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert import_csv(tmp_path / "csv") == small


def test_yaml_round_trip_is_exact(small: Registry, tmp_path: Path) -> None:
    path = export_yaml(small, tmp_path / "registry.yaml")
    assert small.estates[0].name_zh in path.read_text(encoding="utf-8")  # readable, not \u escapes
    assert import_yaml(path) == small


def test_sqlite_store_round_trip_and_replace(small: Registry, tmp_path: Path) -> None:
    db = tmp_path / "registry.sqlite"
    with RegistryStore(db) as store:
        store.replace(small)
    with RegistryStore(db) as store:  # reopened: it is on disk
        assert store.load() == small
        assert store.estate_count() == len(small.estates)
        other = generate_registry(build_registry(3, seed=9), seed=9, as_of=AS_OF)
        store.replace(other)
        assert store.load() == other


def open_together(path: Path, count: int) -> list[Exception]:
    """What opening ``count`` stores on ``path`` at the same moment raised."""
    together = threading.Barrier(count)
    errors: list[Exception] = []

    def open_store() -> None:
        together.wait()
        try:
            RegistryStore(path).close()
        except Exception as error:
            errors.append(error)

    openers = [threading.Thread(target=open_store) for _ in range(count)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join()
    return errors


@pytest.mark.slow
def test_the_stores_companies_are_those_of_its_estates(small: Registry, tmp_path: Path) -> None:
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        store.replace(small)
        companies = store.companies()
        assert companies == {estate.id: estate.company for estate in store.load().estates}
    assert len(companies) == len(small.estates) and all(companies.values())


def test_stores_opened_together_on_a_new_file_all_open(small: Registry, tmp_path: Path) -> None:
    # Gateway instances sharing one registry ([alerts] registry_db, --workers) open it at
    # the same moment; SQLite refused one of them at once ("database is locked") while
    # another switched the new file to WAL: seen in CI, and here in about one trial in 17.
    for trial in range(60):
        assert open_together(tmp_path / f"registry{trial}.sqlite", 4) == [], f"trial {trial}"
    store = RegistryStore(tmp_path / "registry0.sqlite")
    store.replace(small)
    assert store.load() == small


def test_every_csv_problem_is_reported_with_file_row_and_field(
    small: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    export_csv(small, folder)
    _rewrite(
        folder / "estates.csv",
        {(0, "lat"): "north", (1, "district"): "atlantis", (2, "category"): "castle"},
    )
    _rewrite(
        folder / "devices.csv",
        {
            (0, "installed"): "2020-13-01",
            (1, "id"): small.devices[0].id,  # a duplicate
            (2, "ports"): "7",  # not a charger
        },
    )
    with pytest.raises(RegistryInvalid) as caught:
        import_csv(folder)
    found = {(Path(p.file).name, p.row, p.field) for p in caught.value.problems}
    # CSV rows are line numbers: the header is line 1, the first data row line 2.
    assert ("estates.csv", 2, "lat") in found
    assert ("estates.csv", 3, "district") in found
    assert ("estates.csv", 4, "category") in found
    assert ("devices.csv", 2, "installed") in found
    assert ("devices.csv", 3, "id") in found
    kinds = {d.id: d.kind for d in small.devices}
    if kinds[small.devices[2].id] is not Kind.EBIKE_CHARGER:
        assert ("devices.csv", 4, "ports") in found
    text = str(caught.value)
    assert "'north' is not a number" in text
    assert "no district 'atlantis' in districts" in text
    assert "'castle' is not one of" in text
    assert "'2020-13-01' is not a date" in text
    assert "appears twice" in text


def test_unknown_and_missing_columns_and_files(small: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "cols"
    export_csv(small, folder)
    text = (folder / "companies.csv").read_text(encoding="utf-8-sig")
    (folder / "companies.csv").write_text(text.replace("id,name_zh", "id,name", 1), "utf-8")
    with pytest.raises(RegistryInvalid) as caught:
        import_csv(folder)
    messages = {str(p) for p in caught.value.problems}
    assert any("companies.csv: row 1: name: unknown column" in m for m in messages)
    assert any("companies.csv: row 1: name_zh: column is missing" in m for m in messages)
    (folder / "streets.csv").unlink()
    with pytest.raises(RegistryInvalid) as caught:
        import_csv(folder)
    assert any(
        p.message == "file not found" and "streets.csv" in p.file for p in caught.value.problems
    )


def test_yaml_problems_name_table_item_and_field(small: Registry, tmp_path: Path) -> None:
    path = export_yaml(small, tmp_path / "r.yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["buildings"][1]["households"] = -3
    document["buildings"][2]["colour"] = "red"
    document["devices"][0]["last_inspection"] = "1990-01-01"  # before it was installed
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryInvalid) as caught:
        import_yaml(path)
    found = {(p.file.rsplit(" ", 1)[-1], p.row, p.field) for p in caught.value.problems}
    assert ("[buildings]", 2, "households") in found
    assert ("[buildings]", 3, "colour") in found
    assert ("[devices]", 1, "last_inspection") in found
    assert len(caught.value.problems) == 3


def test_bad_enumerations_accept_chinese_labels(small: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "zh"
    export_csv(small, folder)
    _rewrite(
        folder / "estates.csv", {(0, "category"): "动迁", (0, "fee_band"): "2.5元以下零星小区"}
    )
    registry = import_csv(folder)
    assert registry.estates[0].category is HousingCategory.RELOCATION
    assert registry.estates[0].fee_band is FeeBand.SCATTERED_BELOW_2_5


def test_generated_registry_matches_the_simulators_and_is_realistic() -> None:
    simulated = build_registry(200, seed=3)
    registry = generate_registry(simulated, seed=3, as_of=AS_OF)
    assert registry == generate_registry(simulated, seed=3, as_of=AS_OF)  # deterministic
    assert [d.id for d in registry.devices] == [d.id for d in simulated.devices()]
    per_company = Counter(e.company for e in registry.estates)
    assert len(per_company) < 60 and max(per_company.values()) >= 5
    assert sum(1 for n in per_company.values() if n >= 2) > len(per_company) * 0.7
    assert {e.category for e in registry.estates} == set(HousingCategory)
    assert {e.fee_band for e in registry.estates} == set(FeeBand)
    lifts = [d for d in registry.devices if d.kind is Kind.LIFT]
    old = [d for d in lifts if years_after(d.installed, 15) < AS_OF]
    assert 0.1 < len(old) / len(lifts) < 0.9
    assert any(d.last_assessment is None for d in old)
    assert any(d.last_assessment is not None for d in old)
    overdue = [
        d
        for d in registry.devices
        if d.last_inspection and AS_OF - d.last_inspection > timedelta(days=365)
    ]
    assert 0.03 < len(overdue) / len(registry.devices) < 0.5
    assert all(d.ports >= 8 for d in registry.devices if d.kind is Kind.EBIKE_CHARGER)
    assert all(30.5 < e.lat < 31.6 and 120.8 < e.lon < 122.0 for e in registry.estates)
    households = [registry.record(e.id).households for e in registry.estates]
    assert min(households) > 0


def test_each_estates_water_tanks_form_its_pump_room_site(small: Registry) -> None:
    for record in small.records():
        tanks = record.of_kind(Kind.WATER_TANK)
        assert record.sites() == {"pumproom": tanks}
        assert all(d.site is None for d in record.devices if d.kind is not Kind.WATER_TANK)


def test_a_site_is_optional_and_must_be_an_id(small: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    export_csv(small, folder)
    devices = folder / "devices.csv"
    with devices.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tank = next(i for i, row in enumerate(rows) if row["kind"] == "water_tank")
    lift = next(i for i, row in enumerate(rows) if row["kind"] == "lift")
    _rewrite(devices, {(tank, "site"): "", (lift, "site"): "机房 1"})
    with pytest.raises(RegistryInvalid) as raised:
        import_csv(folder)
    assert [(p.row, p.field) for p in raised.value.problems] == [(lift + 2, "site")]
    assert "'机房 1' is not an id" in str(raised.value)
    _rewrite(devices, {(lift, "site"): "machine-room"})
    registry = import_csv(folder)
    assert registry.devices[tank].site is None
    assert registry.devices[lift].site == "machine-room"
    # A CSV written before sites existed (no site column) reads as devices without one.
    with devices.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with devices.open("w", encoding="utf-8-sig", newline="") as handle:
        columns = [c for c in rows[0] if c != "site"]
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert all(d.site is None for d in import_csv(folder).devices)
