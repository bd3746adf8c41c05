"""A healthy estate's dashboards: devices report, nothing goes wrong.  Panels of events
(anomalies, alerts, escalations) are empty then, and that is the good news, not a failure;
panels of telemetry must still have data.  Each panel declares which it is."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.collection import all_dashboards
from dashboards.emptiness import empty_is_healthy
from dashboards.preview import PanelResult, TimeRange, choose_variables, run_panel
from gateway.storage.points import telemetry_line
from jiayuan.catalogue import Kind
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient, Series
from simulators.driver import generate
from simulators.registry import build_registry
from tools.cli import main
from tools.replay import as_gateway_input
from tools.servers import RunningServers

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START_MS = int(dt.datetime(2026, 3, 16, 9, 0, tzinfo=SHANGHAI).timestamp() * 1000)
END_MS = START_MS + 600_000
DASHBOARDS = all_dashboards()
TELEMETRY = {kind.value for kind in Kind}
# Measurements of things happening: nothing happening is their healthy state.
EVENTS = {"anomaly", "alert", "alert_open"}


def _measurements(panel: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for target in panel["targets"]:
        for source in re.findall(r'FROM\s+("[^"]+"|/[^/]+/)', target["query"]):
            if source.startswith("/"):  # the telemetry regex /^(lift|fire|…)$/
                found |= set(re.findall(r"\w+", source)) & TELEMETRY
            else:
                found.add(source.strip('"'))
    return found


@pytest.mark.parametrize(
    "panel",
    [p for d in DASHBOARDS for p in d["panels"]],
    ids=[f"{d['uid']}#{p['id']}" for d in DASHBOARDS for p in d["panels"]],
)
def test_each_panel_declares_whether_empty_is_healthy(panel: dict[str, Any]) -> None:
    measurements = _measurements(panel)
    assert measurements, panel["targets"]
    if measurements <= EVENTS:
        assert empty_is_healthy(panel), f"{panel['title']}: no events is the healthy state"
    else:  # telemetry and scores: a panel without them means something is broken
        assert not empty_is_healthy(panel), f"{panel['title']} reads {measurements}"


def test_the_escalations_panel_says_what_empty_means() -> None:
    board = next(d for d in DASHBOARDS if d["uid"] == "jiayuan-alerts")
    panel = next(p for p in board["panels"] if "Escalations" in p["title"])
    assert empty_is_healthy(panel)
    # Grafana shows the same words instead of "No data".
    assert "升级" in panel["fieldConfig"]["defaults"]["noValue"]


@pytest.fixture(scope="module")
def healthy(servers: RunningServers) -> Iterator[InfluxConfig]:
    """One estate's devices reporting for ten minutes without a fault: telemetry only.

    Its charging piles have 10, 9 and 9 ports: no pile has all twelve."""
    influx = InfluxConfig(url=servers.influx_url, api="v1", database=f"ok_{uuid.uuid4().hex[:8]}")
    samples = generate(build_registry(1, seed=6), [], START_MS, END_MS, 1)
    lines = [telemetry_line(place, reading) for _, place, reading in as_gateway_input(samples)]
    with InfluxClient(influx) as client:
        client.ensure_database()
        client.write(lines)
        yield influx
        client.drop_database()


def _preview(influx: InfluxConfig, out: Path, monkeypatch: pytest.MonkeyPatch, *boards: str) -> int:
    monkeypatch.chdir(out.parent)
    monkeypatch.setenv("JIAYUAN_INFLUX_URL", influx.url)
    monkeypatch.setenv("JIAYUAN_INFLUX_DATABASE", influx.database)
    span = ["--from", str(START_MS), "--to", str(END_MS)]
    chosen = [arg for uid in boards for arg in ("--dashboard", uid)]
    return main(["dashboards", "preview", "--out", str(out), *span, *chosen])


def test_preview_of_a_healthy_estate_passes_and_names_the_quiet_panels(
    healthy: InfluxConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = _preview(healthy, tmp_path / "png", monkeypatch, "jiayuan-alerts", "jiayuan-lift")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Escalations: no series" not in printed
    assert re.search(r"无事件 quiet .*告警升级 Escalations", printed), printed
    assert " 0 empty" in printed
    assert (tmp_path / "png" / "jiayuan-alerts.png").stat().st_size > 10_000


def test_preview_still_fails_when_telemetry_is_missing(
    healthy: InfluxConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Fire panels read the fire measurement; the estate has fire devices, but not in 1970.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JIAYUAN_INFLUX_URL", healthy.url)
    monkeypatch.setenv("JIAYUAN_INFLUX_DATABASE", healthy.database)
    span = ["--from", "0", "--to", "600000"]
    args = ["dashboards", "preview", "--out", str(tmp_path), *span, "--dashboard", "jiayuan-fire"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "无数据 EMPTY  喷淋管网压力 Sprinkler pipe pressure" in printed
    assert "无数据 EMPTY  异常事件" not in printed  # no anomaly is no failure


def test_a_panel_of_nothing_but_nulls_is_empty() -> None:
    board = next(d for d in DASHBOARDS if d["uid"] == "jiayuan-ebike-charger")
    panel = next(p for p in board["panels"] if "Ports in use" in p["title"])
    nulls = Series("ebike_charger", {"device": "C01"}, ["time", "n"], [[0, None], [1, None]])
    assert PanelResult(panel, series=[nulls]).empty  # Grafana draws nothing: "No data"
    some = Series("ebike_charger", {"device": "C01"}, ["time", "n"], [[0, None], [1, 3]])
    assert not PanelResult(panel, series=[some]).empty


def test_ports_in_use_counts_the_ports_of_piles_with_fewer_than_twelve(
    healthy: InfluxConfig,
) -> None:
    board = next(d for d in DASHBOARDS if d["uid"] == "jiayuan-ebike-charger")
    panel = next(p for p in board["panels"] if "Ports in use" in p["title"])
    span = TimeRange(START_MS, END_MS, absolute=True)
    with InfluxClient(healthy) as client:
        ports = {
            row[0]
            for s in client.query('SHOW FIELD KEYS FROM "ebike_charger"')
            for row in s.values
            if str(row[0]).endswith("_plugged")
        }
        assert len(ports) < 12  # the case that summed to null
        variables = choose_variables(client, board, {}, span)
        result = run_panel(client, panel, variables, span, board["timezone"])
    assert not result.error and not result.empty, result.queries
    counts = [row[-1] for s in result.series for row in s.values]
    assert all(isinstance(n, int | float) and 0 <= n <= len(ports) for n in counts), counts
    assert any(n > 0 for n in counts), counts
