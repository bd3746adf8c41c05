"""The gateway's periodic score reads each estate from the registry's SQLite in turn, not
the whole registry as Python objects, and writes what scoring the loaded registry would."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from itertools import islice
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from alerts.model import Alert
from alerts.service import AlertService
from jiayuan import influx
from jiayuan.config import Config
from jiayuan.registry.model import Registry
from jiayuan.registry.store import RegistryStore
from score.api import breakdown_out, company_out, create_score_router, distribution_out, estate_out
from score.config import ScoreConfig
from score.estate import day_ms, score_estate, score_report, window_start_ms
from score.grades import ALL
from score.points import score_lines, scored_points
from score.service import ScoreService
from simulators.registry import build_registry
from tools.registry_generate import generate_registry

AS_OF = date(2026, 6, 1)
NOW = day_ms(AS_OF) + 9 * 3_600_000


@pytest.fixture(scope="module")
def city() -> Registry:
    return generate_registry(build_registry(60, seed=11), seed=11, as_of=AS_OF)


class NoAlerts:
    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        return []


class SomeAlerts:
    """An open critical alert and an offline device in every third estate."""

    def __init__(self, registry: Registry) -> None:
        self.alerts: dict[str, list[Alert]] = {}
        for n, record in enumerate(registry.records()):
            if n % 3 or not record.devices:
                continue
            device = record.devices[0]
            self.alerts[record.estate.id] = [
                _alert(record.estate.id, device.id, f"{device.kind.value}.offline", "high"),
                _alert(record.estate.id, device.id, f"{device.kind.value}.fault", "critical"),
            ]

    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        return self.alerts.get(estate, [])


def _alert(estate: str, device: str, code: str, severity: str) -> Alert:
    raised = NOW - 3_600_000
    return Alert(
        id=f"{device}:{code}",
        district="d",
        street="s",
        estate=estate,
        building="b",
        device=device,
        kind=code.split(".")[0],
        code=code,
        severity=severity,
        title_zh="告警",
        title_en="alert",
        value=1.0,
        threshold=0.0,
        detail="",
        first_seen_ms=raised,
        last_seen_ms=raised,
        ack_deadline_ms=NOW - 1_800_000,
        resolve_deadline_ms=NOW + 3_600_000,
        created_ms=raised,
        updated_ms=raised,
    )


def test_the_registry_exercises_every_fact_the_score_reads(city: Registry) -> None:
    """So the next tests would see a fact the store's view dropped."""
    cards = score_report(city, SomeAlerts(city), NOW, ScoreConfig()).cards
    penalties = {(ln.family, ln.indicator) for c in cards for ln in c.lines if ln.penalty}
    assert {
        ("fire", "inspection"),
        ("lift", "inspection"),
        ("lift", "assessment"),
        ("ebike_charger", "charging"),
        ("lift", "offline"),
    } <= penalties
    assert len({e.street for e in city.estates}) >= 3
    assert any(d.last_assessment for d in city.devices)
    assert any(d.last_inspection is None for d in city.devices)
    named = [ln.value.split(": ", 1)[-1] for c in cards for ln in c.lines if ": " in ln.value]
    assert any(", " in names for names in named)  # several devices named in one line


@pytest.mark.parametrize("owned", ["every street", "some streets"])
def test_scores_read_from_the_store_equal_those_of_the_loaded_registry(
    city: Registry, tmp_path: Path, owned: str
) -> None:
    streets = None if owned == "every street" else sorted({e.street for e in city.estates})[::2]
    alerts = SomeAlerts(city)
    config = ScoreConfig()
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        store.replace(city)
        loaded = city if streets is None else city.on_streets(streets)
        report = score_report(loaded, alerts, NOW, config)
        distributions = [d for d in report.distributions if streets is None or d.street != ALL]
        expected = score_lines(report.cards, distributions, NOW)
        assert 0 < len(report.cards) <= len(city.estates)
        from_store = scored_points(
            store.estate_upkeep(streets), alerts, NOW, config, city_rows=streets is None
        )
        assert from_store.lines == expected
        assert from_store.estates == len(report.cards)
        # Card by card, line by line (the overdue devices named in registry order).
        since = window_start_ms(NOW, config)
        cards = [
            score_estate(e, alerts.list_for_estate(e.estate.id, since), NOW, config)
            for e in store.estate_upkeep(streets)
        ]
        assert cards == list(report.cards)


def test_the_score_service_scores_without_loading_the_whole_registry(
    city: Registry, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "registry.sqlite"
    with RegistryStore(db) as store:
        store.replace(city)
    loads: list[Path] = []
    whole_load = RegistryStore.load

    def counted(self: RegistryStore) -> Registry:
        loads.append(self.path)
        return whole_load(self)

    monkeypatch.setattr(RegistryStore, "load", counted)
    configured = replace(config, alerts=replace(config.alerts, registry_db=str(db)))
    service = AlertService(configured, clock=lambda: NOW)
    scorer = ScoreService(configured, service.store, service.registry, service.clock)
    try:
        assert scorer.write_scores(NOW) == len(city.estates)
    finally:
        scorer.close()
        service.stop()
    assert loads == []


def test_scoring_every_estate_leaves_the_line_caches_as_they_were(
    city: Registry, tmp_path: Path
) -> None:
    """The line-protocol caches are for the tag sets of the readings, written again and
    again; an estate's score line, once a minute, would keep its tag set there for good
    (a district's 5,644 estates: some 4 MiB)."""
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        store.replace(city)
        first = islice(store.estate_upkeep(), 1)
        scored_points(first, NoAlerts(), NOW, ScoreConfig())  # the names every line shares
        entries = influx.cached_entries()
        every = scored_points(store.estate_upkeep(), NoAlerts(), NOW, ScoreConfig())
    assert every.estates == len(city.estates)
    assert influx.cached_entries() == entries


def test_the_score_api_answers_as_from_the_loaded_registry_without_loading_it(
    city: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert board asks for every estate's grade when it opens: a whole load of a
    district's registry each time would hold its devices as objects for seconds."""
    alerts = SomeAlerts(city)
    report = score_report(city, alerts, NOW, ScoreConfig())
    store = RegistryStore(tmp_path / "registry.sqlite")
    store.replace(city)
    loads: list[Path] = []
    monkeypatch.setattr(RegistryStore, "load", lambda self: loads.append(self.path))
    app = FastAPI()
    app.include_router(create_score_router(store, alerts, clock=lambda: NOW))
    client = TestClient(app)

    def as_json(model: BaseModel) -> object:
        return json.loads(model.model_dump_json())

    assert client.get("/score/estates").json() == [as_json(estate_out(c)) for c in report.cards]
    for card in report.cards[:5]:
        got = client.get(f"/score/estates/{card.estate}").json()
        assert got == as_json(breakdown_out(card))
    assert client.get("/score/estates/nowhere").status_code == 404
    assert client.get("/score/companies").json() == [
        as_json(company_out(c)) for c in report.companies
    ]
    cities = [d for d in report.distributions if d.street == ALL]
    assert client.get("/score/districts").json() == [
        as_json(distribution_out(d, report.targets)) for d in cities
    ]
    store.close()
    assert loads == []
