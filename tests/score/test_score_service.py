"""The score's outputs: estate_score and grade_distribution points in the real InfluxDB,
the score and registry API routers, and the ``jiayuan score`` / ``jiayuan registry``
commands on a generated 200-estate registry."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.model import Alert
from alerts.service import AlertService
from jiayuan.config import Config, InfluxConfig
from jiayuan.influx import InfluxClient
from jiayuan.registry.api import create_registry_router
from jiayuan.registry.model import Registry
from jiayuan.registry.store import RegistryStore
from score.api import create_score_router
from score.config import ScoreConfig
from score.estate import ScoreReport, day_ms, score_report
from score.grades import Distribution, Grade
from score.points import write_score_points
from score.service import ScoreService
from simulators.registry import build_registry
from tools.cli import main
from tools.registry_generate import generate_registry

AS_OF = date(2026, 6, 1)
NOW = day_ms(AS_OF) + 9 * 3_600_000


class NoAlerts:
    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        return []


@pytest.fixture(scope="module")
def city() -> Registry:
    return generate_registry(build_registry(200, seed=7), seed=7, as_of=AS_OF)


@pytest.fixture(scope="module")
def report(city: Registry) -> ScoreReport:
    return score_report(city, NoAlerts(), NOW, ScoreConfig())


def scoring(config: Config, streets: Sequence[str]) -> tuple[AlertService, ScoreService]:
    """The alert service and the score service a gateway owning ``streets`` runs."""
    alerts = AlertService(config, clock=lambda: NOW, streets=streets)
    return alerts, ScoreService(
        config, alerts.store, alerts.registry, alerts.clock, streets, stopping=alerts.stopping
    )


def test_200_generated_estates_spread_over_the_grades_plausibly(report: ScoreReport) -> None:
    grades = Counter(card.grade for card in report.cards)
    assert set(grades) == set(Grade)
    city = report.distributions[0]
    # Around the scheme's targets: most compliant, about half well-run, a few exemplary.
    assert 85 <= city.pct_dabiao_or_better < 100
    assert 30 <= city.pct_guifan_or_better <= 75
    assert 5 <= city.pct_shifan <= 35
    assert grades[Grade.BUDABIAO] >= 2
    assert sum(1 for c in report.companies if c.top_ten) == 10
    assert any(not c.eligible for c in report.companies)


def test_points_are_written_to_influxdb_and_read_back(
    report: ScoreReport, influx_config: InfluxConfig
) -> None:
    with InfluxClient(influx_config) as client:
        written = write_score_points(client, report.cards, report.distributions, NOW)
        assert written == len(report.cards) + len(report.distributions)
        card = report.cards[0]
        (series,) = client.query(f"SELECT * FROM estate_score WHERE estate = '{card.estate}'")
        row = dict(zip(series.columns, series.values[0], strict=True))
        assert row["time"] == NOW
        assert row["score"] == card.score and row["grade"] == card.grade.zh
        assert row["grade_level"] == card.grade.level and row["capped"] is False
        assert (row["district"], row["street"], row["company"]) == (
            card.district,
            card.street,
            card.company,
        )
        assert row["name"] == card.name_zh and row["lat"] == card.lat
        assert row["lift"] == card.families["lift"]
        keys = client.query("SHOW TAG KEYS FROM estate_score")[0].values
        assert sorted(k[0] for k in keys) == ["company", "district", "estate", "street"]
        (dist,) = client.query(
            "SELECT * FROM grade_distribution WHERE district = 'all' AND street = 'all'"
        )
        city = dict(zip(dist.columns, dist.values[0], strict=True))
        assert city["estates"] == 200
        assert city["shifan"] + city["guifan"] + city["dabiao"] + city["budabiao"] == 200
        assert city["pct_dabiao_or_better"] == pytest.approx(
            report.distributions[0].pct_dabiao_or_better
        )
        assert (city["target_dabiao_or_better"], city["target_guifan"], city["target_shifan"]) == (
            95.0,
            50.0,
            8.0,
        )
        assert client.count("grade_distribution", "estates") == len(report.distributions)


@pytest.mark.slow
def test_score_and_registry_api(city: Registry, tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "registry.sqlite")
    store.replace(city)
    app = FastAPI()
    app.include_router(create_registry_router(store))
    app.include_router(create_score_router(store, NoAlerts(), clock=lambda: NOW))
    client = TestClient(app)
    estates = client.get("/registry/estates").json()
    assert len(estates) == 200
    first = city.estates[0]
    detail = client.get(f"/registry/estates/{first.id}").json()
    assert detail["name_zh"] == first.name_zh and detail["category_zh"]
    assert {d["id"] for d in detail["device_list"]} == {d.id for d in city.record(first.id).devices}
    lifts = client.get(f"/registry/estates/{first.id}/devices?kind=lift").json()
    assert lifts and all(d["kind"] == "lift" for d in lifts)
    assert client.get("/registry/estates/nowhere").status_code == 404
    scores = client.get("/score/estates").json()
    assert len(scores) == 200 and {s["grade"] for s in scores} == {g.zh for g in Grade}
    shifan = client.get("/score/estates?grade=示范").json()
    assert shifan and all(s["grade_level"] == 3 for s in shifan)
    one = client.get(f"/score/estates/{first.id}").json()
    assert one["open_alerts"] == []
    assert sum(x["impact"] for x in one["lines"]) == pytest.approx(100 - one["score"], abs=0.02)
    districts = client.get("/score/districts").json()
    assert districts[0]["district"] == "all" and districts[0]["estates"] == 200
    summary = client.get(f"/score/districts/{first.district}").json()
    assert summary["district"]["estates"] == sum(s["estates"] for s in summary["streets"])
    assert client.get("/score/districts/atlantis").status_code == 404
    companies = client.get("/score/companies").json()
    assert [c["rank"] for c in companies] == list(range(1, len(companies) + 1))
    assert sum(c["top_ten"] for c in companies) == 10
    store.close()


def test_commands_generate_score_and_explain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "registry.sqlite"
    assert (
        main(
            [
                "registry",
                "generate",
                "--estates",
                "30",
                "--seed",
                "4",
                "--as-of",
                "2026-06-01",
                "--db",
                str(db),
                "--export",
                str(tmp_path / "csv"),
            ]
        )
        == 0
    )
    assert "30 estates" in capsys.readouterr().out
    assert (
        main(["registry", "import", str(tmp_path / "csv"), "--db", str(tmp_path / "b.sqlite")]) == 0
    )
    capsys.readouterr()
    args = [
        "score",
        "--registry",
        str(db),
        "--alerts",
        str(tmp_path / "none.sqlite"),
        "--at",
        "2026-06-01T09:00:00",
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "等级分布 grade distribution" in table and "物业服务企业排名" in table
    assert main([*args, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["estates"]) == 30 and data["distributions"][0]["district"] == "all"
    estate = data["estates"][0]["estate"]
    assert main([*args, "--estate", estate]) == 0
    explained = capsys.readouterr().out
    assert "安全评分 safety score" in explained and "inspection" in explained
    assert f"= 100 - {data['estates'][0]['score']:.2f}" in explained
    assert main([*args, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("estate,name_zh,district")
    assert main([*args, "--estate", "nowhere"]) == 1


def test_registry_import_command_lists_every_problem(
    city: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiayuan.registry.files import export_csv

    export_csv(city, tmp_path / "csv")
    estates = tmp_path / "csv" / "estates.csv"
    lines = estates.read_text(encoding="utf-8-sig").splitlines()
    lines[1] = lines[1].replace(",31.", ",91.", 1)
    lines[2] = lines[2].replace(city.estates[1].company, "nobody", 1)
    estates.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "r.sqlite"
    assert main(["registry", "import", str(tmp_path / "csv"), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "estates.csv: row 2: lat: 91." in err
    assert "estates.csv: row 3: company: no company 'nobody'" in err
    with RegistryStore(db) as store:
        assert store.estate_count() == 0  # nothing imported


def test_an_instance_owning_some_streets_scores_only_their_estates(
    city: Registry, config: Config, tmp_path: Path
) -> None:
    # A scaled-out set shares one registry; each instance holds only its streets' alerts.
    shared = RegistryStore(tmp_path / "shared-registry.sqlite")
    shared.replace(city)
    mine = sorted({e.street for e in city.estates})[:2]
    on_mine = {e.id for e in city.estates if e.street in mine}
    elsewhere = next(e for e in city.estates if e.street not in mine)
    assert 0 < len(on_mine) < len(city.estates)

    app = FastAPI()
    app.include_router(create_score_router(shared, NoAlerts(), clock=lambda: NOW, streets=mine))
    client = TestClient(app)
    assert {s["estate"] for s in client.get("/score/estates").json()} == on_mine
    other = client.get(f"/score/estates/{elsewhere.id}")
    assert other.status_code == 404 and "another gateway instance" in other.text
    for aggregate in (
        "/score/districts",
        f"/score/districts/{elsewhere.district}",
        "/score/companies",
    ):
        refused = client.get(aggregate)
        assert refused.status_code == 409 and "need every street" in refused.text
    shared.close()

    # The points: its estates and its streets' rows; no partial district or city rows.
    configured = replace(
        config, alerts=replace(config.alerts, registry_db=str(tmp_path / "shared-registry.sqlite"))
    )
    service, scorer = scoring(configured, mine)
    try:
        assert scorer.write_scores(NOW) == len(on_mine)
    finally:
        scorer.close()
        service.stop()
    with InfluxClient(config.influx) as client_db:
        estates = {
            s.tags["estate"]
            for s in client_db.query('SELECT count("score") FROM estate_score GROUP BY "estate"')
        }
        rows = {
            (s.tags["district"], s.tags["street"])
            for s in client_db.query(
                'SELECT count("estates") FROM grade_distribution GROUP BY "district", "street"'
            )
        }
    assert estates == on_mine
    assert {street for _, street in rows} == set(mine)


def test_a_split_set_writes_the_rows_one_instance_owning_every_street_would(
    city: Registry, config: Config, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-registry.sqlite"
    with RegistryStore(shared) as store:
        store.replace(city)
    streets = sorted({e.street for e in city.estates})
    configured = replace(config, alerts=replace(config.alerts, registry_db=str(shared)))
    aggregating = replace(configured, alerts=replace(configured.alerts, score_aggregate=True))
    others, others_scorer = scoring(configured, streets[1::2])
    aggregator, aggregator_scorer = scoring(aggregating, streets[::2])
    try:
        others_scorer.write_scores(NOW)
        aggregator_scorer.write_scores(NOW)  # the others' estate points are in InfluxDB by now
    finally:
        others_scorer.close()
        aggregator_scorer.close()
        others.stop()
        aggregator.stop()

    def counts(d: Distribution) -> tuple[int, ...]:
        return (d.estates, *(d.counts.get(grade, 0) for grade in Grade))

    one_instance = score_report(city, NoAlerts(), NOW, ScoreConfig()).distributions
    with InfluxClient(config.influx) as client:
        written = {
            (s.tags["district"], s.tags["street"]): tuple(
                int(row[s.columns.index(name)])
                for row in s.values
                for name in ("estates", *(grade.key for grade in Grade))
            )
            for s in client.query('SELECT * FROM grade_distribution GROUP BY "district", "street"')
        }
    assert written == {(d.district, d.street): counts(d) for d in one_instance}
    assert ("all", "all") in written and len(written) == len(one_instance)


def test_stopping_the_alert_service_mid_score_ends_the_score_before_closing_its_stores(
    city: Registry, config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A district's score takes seconds: the gateway's stop must end it between two
    # estates, not close the alert store and the registry under a timer thread still
    # reading them, nor wait for the whole score.
    registry_db = tmp_path / "registry.sqlite"
    with closing(RegistryStore(registry_db)) as store:
        store.replace(city)
    configured = replace(config, alerts=replace(config.alerts, registry_db=str(registry_db)))
    service, scorer = scoring(configured, sorted({e.street for e in city.estates}))
    started = threading.Event()
    read: list[object] = []
    upkeep = service.registry.estate_upkeep

    def slowly(*args: object, **kwargs: object) -> Iterator[object]:
        for estate in upkeep(*args, **kwargs):  # type: ignore[arg-type]
            read.append(estate)
            started.set()
            time.sleep(0.1)  # 200 estates: 20 s in all
            yield estate

    service.registry.estate_upkeep = slowly  # type: ignore[method-assign]
    service.timers.append(scorer.tick)
    service.start()
    assert started.wait(10.0)
    service.stop()
    when_stopped = len(read)
    time.sleep(0.5)
    scorer.close()
    assert len(read) == when_stopped < len(city.estates), "the score ran on after the stop"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["alerts.delivery"], caplog.text  # no ops centre set
