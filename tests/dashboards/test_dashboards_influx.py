"""Every dashboard panel's query, variables filled, against real InfluxDB holding simulator
data; and ``jiayuan dashboards preview`` drawing them.

The database is filled once per module, in-process and deterministically: three simulated
estates over ten minutes of a fixed morning, each with one fault of every chosen type
and one waterlogging gauge gone silent → the gateway's detector → telemetry and anomaly
lines; the anomalies → the real alert engine (alerts.points: ``alert``, ``alert_open``);
the alert store → the real estate score (score.points: ``estate_score``,
``grade_distribution``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from alerts.engine import AlertEngine
from alerts.points import PointBuffer, alert_open_lines
from alerts.policy import AlertPolicy
from alerts.store import AlertStore
from dashboards.collection import all_dashboards
from dashboards.preview import PanelResult, TimeRange, choose_variables, run_panel
from dashboards.render import render_dashboard
from gateway.detection.detector import Detector
from gateway.storage.points import anomaly_line, telemetry_line
from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import Kind
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient
from score.config import ScoreConfig
from score.estate import score_registry
from score.grades import distributions
from score.points import score_lines
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import Registry, build_registry
from tools.cli import main
from tools.registry_generate import generate_registry
from tools.replay import as_gateway_input
from tools.servers import RunningServers

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 16, 9, 0, tzinfo=SHANGHAI)
START_MS = int(START.timestamp() * 1000)
DURATION_S = 600
END_MS = START_MS + DURATION_S * 1000
SILENT_FOR_MS = 90_000  # one gauge per estate stops reporting this long before the end
TICK_MS = 5000
GAUGE_EVERY_MS = 10_000
SCORE_EVERY_MS = 60_000
FAULTS = {
    Kind.LIFT: ["trapped", "overspeed"],
    Kind.FIRE: ["fire_alarm", "low_pressure"],
    Kind.WATER_TANK: ["low_chlorine"],
    Kind.EBIKE_CHARGER: ["over_current"],
    Kind.WATERLOGGING: ["deep_water"],
}
DASHBOARDS = all_dashboards()
PANELS = [(d, p) for d in DASHBOARDS for p in d["panels"]]
WHOLE_RANGE = TimeRange(START_MS - 60_000, END_MS + 60_000, absolute=True)


@dataclass
class Filled:
    influx: InfluxConfig
    registry: Registry
    anomalies: list[Anomaly]
    counts: dict[str, int]


def _lines(tmp: Path) -> tuple[list[str], Registry, list[Anomaly]]:
    registry = build_registry(3, seed=3)
    faults = [
        fault
        for estate in registry.estates
        for fault in plan_faults(
            Registry((estate,)), START_MS, DURATION_S, seed=1, types_per_kind=FAULTS
        ).faults
    ]
    silent = {e.of_kind(Kind.WATERLOGGING)[-1].id for e in registry.estates}
    clock = [START_MS]
    points = PointBuffer()
    engine = AlertEngine(
        AlertStore(tmp / "alerts.db"), AlertPolicy(), clock=lambda: clock[0], sinks=[points]
    )
    detector = Detector()
    lines: list[str] = []
    anomalies: list[Anomaly] = []

    def record(changed: list[Anomaly]) -> None:
        anomalies.extend(changed)
        lines.extend(anomaly_line(a) for a in changed)
        engine.on_anomalies(changed)

    def advance(until_ms: int) -> None:
        nonlocal next_tick
        while next_tick <= until_ms:
            clock[0] = next_tick
            record(detector.tick(next_tick))
            engine.tick(next_tick)
            if next_tick % GAUGE_EVERY_MS == 0:
                lines.extend(alert_open_lines(engine.open_counts(next_tick), next_tick))
            next_tick += TICK_MS

    next_tick = START_MS
    pending: list[Any] = []
    samples = generate(registry, faults, START_MS, END_MS, 1)
    for _, place, reading in as_gateway_input(samples):
        if reading.device in silent and reading.ts >= END_MS - SILENT_FOR_MS:
            continue
        if next_tick <= reading.ts:
            clock[0] = reading.ts
            record(detector.readings(pending))
            pending = []
            advance(reading.ts)
        pending.append((place, reading, reading.ts))
        lines.append(telemetry_line(place, reading))
    record(detector.readings(pending))
    # People act on each estate's first alerts: acknowledge two, resolve one of them.
    live = sorted(engine.store.live_alerts(), key=lambda a: a.created_ms)
    for estate in registry.estates:
        first = [a for a in live if a.estate == estate.id][:2]
        for alert in first:
            clock[0] = alert.created_ms + 20_000
            engine.acknowledge(alert.id, "值班员 on duty")
        clock[0] = first[0].created_ms + 45_000
        engine.resolve(first[0].id, "值班员 on duty")
    advance(END_MS)
    products = generate_registry(registry, seed=1, as_of=START.date())
    config = ScoreConfig()
    for ts in range(START_MS + SCORE_EVERY_MS, END_MS + 1, SCORE_EVERY_MS):
        cards = score_registry(products, engine.store, ts, config)
        lines.extend(score_lines(cards, distributions(cards, config.targets_at(ts).targets), ts))
    lines.extend(points.drain())
    return lines, registry, anomalies


@pytest.fixture(scope="module")
def filled(servers: RunningServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    influx = InfluxConfig(url=servers.influx_url, api="v1", database=f"dash_{uuid.uuid4().hex[:8]}")
    lines, registry, anomalies = _lines(tmp_path_factory.mktemp("dash"))
    counts: dict[str, int] = {}
    for line in lines:
        measurement = line.split(",", 1)[0]
        counts[measurement] = counts.get(measurement, 0) + 1
    with InfluxClient(influx) as client:
        client.ensure_database()
        client.write(lines)
        yield Filled(influx, registry, anomalies, counts)
        client.drop_database()


@pytest.fixture(scope="module")
def chosen(filled: Filled) -> dict[str, dict[str, str]]:
    """Each dashboard's variables as Grafana fills them on load."""
    with InfluxClient(filled.influx) as client:
        return {d["uid"]: choose_variables(client, d, {}, WHOLE_RANGE) for d in DASHBOARDS}


def test_fill_wrote_every_measurement_the_dashboards_read(filled: Filled) -> None:
    for measurement in (
        *(k.value for k in Kind),
        "anomaly",
        "alert",
        "alert_open",
        "estate_score",
        "grade_distribution",
    ):
        assert filled.counts.get(measurement, 0) > 0, measurement


def test_variables_are_chained_and_take_the_first_value(
    filled: Filled, chosen: dict[str, dict[str, str]]
) -> None:
    first = min((e.district, e.street, e.id) for e in filled.registry.estates)
    assert chosen["jiayuan-estate"] == dict(
        zip(("district", "street", "estate"), first, strict=True)
    )
    assert chosen["jiayuan-overview"] == {"district": first[0], "street": first[1]}
    # The street list under a district only holds that district's streets.
    with InfluxClient(filled.influx) as client:
        pudong = choose_variables(client, DASHBOARDS[1], {"district": "pudong"}, WHOLE_RANGE)
    assert pudong["street"] in {e.street for e in filled.registry.estates if e.district == "pudong"}


@pytest.mark.parametrize(
    ("model", "panel"), PANELS, ids=[f"{d['uid']}#{p['id']}" for d, p in PANELS]
)
def test_every_panel_query_returns_series(
    filled: Filled,
    chosen: dict[str, dict[str, str]],
    model: dict[str, Any],
    panel: dict[str, Any],
) -> None:
    with InfluxClient(filled.influx) as client:
        result = run_panel(client, panel, chosen[model["uid"]], WHOLE_RANGE, model["timezone"])
    assert not result.error, result.error
    assert result.series and not result.empty, (panel["title"], result.queries)
    # Nothing left for Grafana to fill: no $variable, $timeFilter or $__interval.
    assert not any(re.search(r"\$\w|\[\[", query) for query in result.queries), result.queries


def _panel(uid: str, title_start: str) -> tuple[dict[str, Any], dict[str, Any]]:
    model = next(d for d in DASHBOARDS if d["uid"] == uid)
    return model, next(p for p in model["panels"] if p["title"].startswith(title_start))


def _values(
    filled: Filled, chosen: dict[str, dict[str, str]], uid: str, title_start: str
) -> list[Any]:
    model, panel = _panel(uid, title_start)
    with InfluxClient(filled.influx) as client:
        result = run_panel(client, panel, chosen[uid], WHOLE_RANGE, model["timezone"])
    return [row[-1] for series in result.series for row in series.values]


def test_panels_show_what_the_detector_found(
    filled: Filled, chosen: dict[str, dict[str, str]]
) -> None:
    estate = chosen["jiayuan-lift"]["estate"]
    mine = [a for a in filled.anomalies if a.estate == estate]
    trapped = [a for a in mine if a.code == "lift.trapped" and a.state == "closed"]
    assert trapped, "the trapped fault was not detected"
    assert _values(filled, chosen, "jiayuan-lift", "困人") == [len(trapped)]
    rescue = sorted(_values(filled, chosen, "jiayuan-lift", "救援用时"))
    assert rescue == sorted((a.end_ms - a.start_ms) / 1000 for a in trapped)
    # Offline: the silenced gauges of the chosen district and street, still open.
    place = chosen["jiayuan-overview"]
    still_offline = {
        a.device
        for a in filled.anomalies
        if a.code.endswith(".offline")
        and a.district == place["district"]
        and a.street == place["street"]
    } - {a.device for a in filled.anomalies if a.code.endswith(".offline") and a.state == "closed"}
    assert _values(filled, chosen, "jiayuan-overview", "离线设备 Devices") == [len(still_offline)]


def test_preview_command_draws_one_png_per_dashboard(
    filled: Filled,
    chosen: dict[str, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./jiayuan.toml of someone else's
    monkeypatch.setenv("JIAYUAN_INFLUX_URL", filled.influx.url)
    monkeypatch.setenv("JIAYUAN_INFLUX_DATABASE", filled.influx.database)
    out = tmp_path / "png"
    span = ["--from", str(WHOLE_RANGE.start_ms), "--to", str(WHOLE_RANGE.end_ms)]
    code = main(["dashboards", "preview", "--out", str(out), *span])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"{len(DASHBOARDS)} dashboards, {len(PANELS)} panels" in printed
    assert " 0 empty" in printed
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(d["uid"] for d in DASHBOARDS)
    for model in DASHBOARDS:
        # The same page with every panel empty: the preview must differ from it visibly.
        blank = tmp_path / "blank" / f"{model['uid']}.png"
        nothing = [PanelResult(panel) for panel in model["panels"]]
        variables = chosen[model["uid"]]
        render_dashboard(model, nothing, variables, WHOLE_RANGE.start_ms, WHOLE_RANGE.end_ms, blank)
        drawn, empty = (matplotlib.image.imread(p) for p in (out / blank.name, blank))
        assert drawn.shape == empty.shape and drawn.shape[1] > 1000
        changed = float((abs(drawn - empty).max(axis=2) > 0.1).mean())
        assert changed > 0.01, f"{model['uid']}: only {changed:.2%} of the page drawn"


def test_preview_fails_and_names_empty_panels(
    filled: Filled,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JIAYUAN_INFLUX_URL", filled.influx.url)
    monkeypatch.setenv("JIAYUAN_INFLUX_DATABASE", filled.influx.database)
    span = ["--from", str(WHOLE_RANGE.start_ms), "--to", str(WHOLE_RANGE.end_ms)]
    code = main(
        [
            "dashboards", "preview", "--out", str(tmp_path), *span,
            "--dashboard", "jiayuan-waterlogging", "--var", "estate=no-such-estate",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1
    assert "无数据 EMPTY  积水深度 Water depth" in printed
    assert (tmp_path / "jiayuan-waterlogging.png").stat().st_size > 10_000
