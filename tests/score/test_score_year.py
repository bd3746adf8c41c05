"""Which year's district targets a score is judged against: the year of the computation
time by default, each year's own targets where the scheme sets them, the latest set year's
targets after that, and the year said in every output."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from alerts.model import Alert
from jiayuan.registry.store import RegistryStore
from score.config import ScoreConfig, Targets, load_score_config
from score.estate import day_ms, score_report
from simulators.registry import build_registry
from tools.cli import main
from tools.registry_generate import generate_registry

DECEMBER_2026 = date(2026, 12, 7)


class NoAlerts:
    def list_for_estate(self, estate: str, since_ms: int) -> list[Alert]:
        return []


def test_each_set_year_has_its_own_targets_and_later_years_the_latest() -> None:
    config = ScoreConfig()
    assert config.targets_for(2023).targets == Targets(90.0, 40.0, 5.0)
    assert config.targets_for(2024).targets == Targets(95.0, 50.0, 8.0)
    later = config.targets_for(2026)
    assert later.year == 2026 and later.set_for == 2024
    assert later.targets == Targets(95.0, 50.0, 8.0)
    assert "2024" in later.describe() and "2026" in later.describe()


def test_a_chosen_year_before_the_first_set_year_is_refused_with_the_known_years() -> None:
    with pytest.raises(ValueError, match=r"target_year 2022.*2023"):
        ScoreConfig(target_year=2022)
    # A computation time before the scheme (a clock far off) still gets the first targets,
    # and says whose they are.
    early = ScoreConfig().targets_for(2021)
    assert early.set_for == 2023 and "2023" in early.describe()


def test_a_configured_year_of_targets_takes_over_from_then_on(tmp_path: Path) -> None:
    weights = tmp_path / "weights.toml"
    weights.write_text("[targets.2026]\ndabiao_or_better = 97\n", encoding="utf-8")
    config = load_score_config(weights)
    assert config.targets_for(2025).set_for == 2024
    assert config.targets_for(2027).set_for == 2026
    assert config.targets_for(2027).targets.dabiao_or_better == 97.0


def test_the_report_defaults_to_the_year_of_its_computation_time() -> None:
    city = generate_registry(build_registry(5, seed=2), seed=2, as_of=DECEMBER_2026)
    now = day_ms(DECEMBER_2026) + 9 * 3_600_000
    report = score_report(city, NoAlerts(), now, ScoreConfig())
    assert report.targets.year == 2026 and report.targets.set_for == 2024
    earlier = score_report(city, NoAlerts(), day_ms(date(2023, 6, 1)), ScoreConfig())
    assert earlier.targets.year == 2023
    assert earlier.distributions[0].targets == Targets(90.0, 40.0, 5.0)
    # A configured year wins over the computation time's.
    fixed = score_report(city, NoAlerts(), now, ScoreConfig(target_year=2023))
    assert fixed.targets.year == 2023


@pytest.fixture()
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(generate_registry(build_registry(6, seed=4), seed=4, as_of=DECEMBER_2026))
    return path


def _score(registry_file: Path, *extra: str) -> list[str]:
    alerts = registry_file.parent / "no-alerts.sqlite"
    return ["score", "--registry", str(registry_file), "--alerts", str(alerts), *extra]


def test_score_command_in_december_2026_judges_against_2026_and_says_so(
    registry_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_score(registry_file, "--at", "2026-12-07T10:00:00")) == 0
    table = capsys.readouterr().out
    assert "目标年份 target year 2026" in table
    assert "2024" in table  # whose targets those are
    assert main(_score(registry_file, "--at", "2026-12-07T10:00:00", "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target_year"] == 2026 and data["targets_set_for"] == 2024


def test_score_command_takes_any_later_year(
    registry_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_score(registry_file, "--at", "2026-12-07T10:00:00", "--year", "2026")) == 0
    assert "目标年份 target year 2026" in capsys.readouterr().out
    assert main(_score(registry_file, "--at", "2026-12-07T10:00:00", "--year", "2023")) == 0
    table = capsys.readouterr().out
    assert "目标年份 target year 2023" in table and "≥ 90%" in table


def test_score_command_refuses_a_year_without_targets(
    registry_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_score(registry_file, "--year", "2020")) == 2
    assert "2023" in capsys.readouterr().err


def test_the_score_api_names_the_year_of_the_targets(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from score.api import create_score_router

    store = RegistryStore(tmp_path / "registry.sqlite")
    store.replace(generate_registry(build_registry(6, seed=4), seed=4, as_of=DECEMBER_2026))
    now = day_ms(DECEMBER_2026) + 9 * 3_600_000
    app = FastAPI()
    app.include_router(create_score_router(store, NoAlerts(), clock=lambda: now))
    districts = TestClient(app).get("/score/districts").json()
    assert districts and all(d["target_year"] == 2026 for d in districts)
    assert all(
        d["targets_set_for"] == 2024 and d["target_dabiao_or_better"] == 95 for d in districts
    )
    store.close()
