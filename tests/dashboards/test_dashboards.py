"""Dashboards as code without servers: the model, the catalogue thresholds, the macros,
the provisioning files, the CLI's build, and the push against a recording HTTP server."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import render
from dashboards.collection import all_dashboards
from dashboards.influxql import DATASOURCE_UID
from dashboards.macros import ALL, UnknownVariable, expand, interval_ms
from dashboards.preview import PanelResult, PreviewError, TimeRange, panel_range, time_range
from dashboards.provisioning import build, datasource
from dashboards.push import PushError, push
from dashboards.reference import reference
from dashboards.validate import DashboardInvalid, problems, validate
from jiayuan.catalogue import EBIKE_CHARGER, FIRE, LIFT, WATER_TANK, WATERLOGGING
from jiayuan.config import InfluxConfig
from tools.cli import main

DASHBOARDS = all_dashboards()


def _cjk_first(title: str) -> bool:
    """Chinese first, English beside it."""
    return "\u4e00" <= title[0] <= "\u9fff" and any(c.isascii() and c.isalpha() for c in title)


def _panel(uid: str, title_start: str) -> dict[str, Any]:
    model = next(d for d in DASHBOARDS if d["uid"] == uid)
    return next(p for p in model["panels"] if p["title"].startswith(title_start))


def _lines(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [s["value"] for s in steps if s["value"] is not None]


# --- the dashboards -----------------------------------------------------------------------


def test_every_dashboard_validates_against_grafanas_model() -> None:
    assert {d["uid"] for d in DASHBOARDS} == {
        "jiayuan-overview",
        "jiayuan-estate",
        "jiayuan-alerts",
        "jiayuan-lift",
        "jiayuan-fire",
        "jiayuan-water-tank",
        "jiayuan-ebike-charger",
        "jiayuan-waterlogging",
    }
    for model in DASHBOARDS:
        assert problems(model) == [], model["uid"]


def test_titles_are_chinese_first_with_english_beside() -> None:
    for model in DASHBOARDS:
        assert _cjk_first(model["title"]), model["title"]
        for panel in model["panels"]:
            assert _cjk_first(panel["title"]) or panel["title"] == "pH", panel["title"]
        for variable in model["templating"]["list"]:
            assert _cjk_first(variable["label"]), variable["label"]


def test_variables_chain_district_street_estate_and_queries_use_them() -> None:
    estate = next(d for d in DASHBOARDS if d["uid"] == "jiayuan-estate")
    names = [v["name"] for v in estate["templating"]["list"]]
    assert names == ["district", "street", "estate"]
    street, place = estate["templating"]["list"][1:]
    assert 'WHERE "district" =~ /^$district$/' in street["query"]
    assert '"street" =~ /^$street$/' in place["query"]
    for panel in estate["panels"]:
        assert '"estate" =~ /^$estate$/' in panel["targets"][0]["query"], panel["title"]


def test_threshold_lines_come_from_the_detectors_catalogue() -> None:
    expected = {
        ("jiayuan-lift", "速度"): [LIFT.threshold("overspeed_ratio")],
        ("jiayuan-fire", "喷淋"): [FIRE.threshold("sprinkler_pressure_min")],
        ("jiayuan-fire", "消火栓"): [FIRE.threshold("hydrant_pressure_min")],
        ("jiayuan-fire", "消防水箱"): [FIRE.threshold("tank_level_min")],
        ("jiayuan-water-tank", "水箱水位"): [
            WATER_TANK.threshold("level_low_pct"),
            WATER_TANK.threshold("level_overflow_pct"),
        ],
        ("jiayuan-water-tank", "余氯"): [WATER_TANK.threshold("free_chlorine_min")],
        ("jiayuan-water-tank", "浑浊度"): [WATER_TANK.threshold("turbidity_max")],
        ("jiayuan-water-tank", "pH"): [
            WATER_TANK.threshold("ph_min"),
            WATER_TANK.threshold("ph_max"),
        ],
        ("jiayuan-ebike-charger", "充电口温度"): [EBIKE_CHARGER.threshold("port_temp_max")],
        ("jiayuan-ebike-charger", "充电口电流"): [EBIKE_CHARGER.threshold("port_current_max")],
        ("jiayuan-waterlogging", "积水深度"): [
            WATERLOGGING.threshold("depth_warning_cm"),
            WATERLOGGING.threshold("depth_high_cm"),
        ],
    }
    for (uid, title), values in expected.items():
        panel = _panel(uid, title)
        assert _lines(panel) == values, (uid, title)
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}


def test_a_changed_catalogue_threshold_moves_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboards.water_tank as module

    changed = replace(
        WATER_TANK,
        thresholds=tuple(
            replace(t, value=0.2) if t.name == "free_chlorine_min" else t
            for t in WATER_TANK.thresholds
        ),
    )
    monkeypatch.setattr(module, "WATER_TANK", changed)
    panel = next(p for p in module.dashboard()["panels"] if p["title"].startswith("余氯"))
    assert _lines(panel) == [0.2]


def test_validation_names_what_is_wrong() -> None:
    model = copy.deepcopy(DASHBOARDS[0])
    model["panels"][0]["fieldConfig"]["defaults"]["colour"] = "red"
    model["panels"][1]["type"] = "graphx"
    model["panels"][2]["targets"][0]["query"] += " AND $nowhere"
    model["panels"][3]["id"] = model["panels"][2]["id"]
    model["panels"][4]["gridPos"]["x"] = 20
    model["uid"] = "short"
    with pytest.raises(DashboardInvalid) as caught:
        validate(model)
    found = "\n".join(caught.value.problems)
    assert "fieldConfig.defaults.colour: not in Grafana's model" in found
    assert "unknown panel type 'graphx'" in found
    assert "undefined variable(s) ['nowhere']" in found
    assert "id used twice" in found
    assert "24-column grid" in found
    assert "uid 'short'" in found
    broken = copy.deepcopy(DASHBOARDS[0])
    broken["panels"][0]["targets"][0]["rawQuery"] = False
    assert any("does not decode" in p for p in problems(broken))


# --- macros and time ranges ---------------------------------------------------------------


def test_expand_fills_macros_and_escapes_variables_like_grafana() -> None:
    query = (
        'SELECT mean("x") FROM "m" WHERE "estate" =~ /^$estate$/ AND "street" =~ '
        '/^${street}$/ AND "district" =~ /^[[district]]$/ AND $timeFilter '
        "GROUP BY time($__interval)"
    )
    filled = expand(
        query, {"estate": "a.b-c", "street": ALL, "district": "pd"}, 1_000, 301_000, 10_000
    )
    assert filled == (
        'SELECT mean("x") FROM "m" WHERE "estate" =~ /^a\\.b\\-c$/ AND "street" =~ /^.*$/ '
        'AND "district" =~ /^pd$/ AND time >= 1000ms AND time <= 301000ms GROUP BY time(10s)'
    )
    assert expand("$__timeFilter", {}, 5, 6) == "time >= 5ms AND time <= 6ms"
    with pytest.raises(UnknownVariable, match=r"\$estate"):
        expand("WHERE x =~ /^$estate$/", {}, 0, 1)
    assert interval_ms(0, 3_600_000) == 12_000
    assert interval_ms(0, 10_000) == 10_000  # never under the datasource's 10 s


def test_time_ranges_and_panel_overrides() -> None:
    assert time_range(start=None, end=None, last="15m", now_ms=1_000_000) == TimeRange(
        100_000, 1_000_000
    )
    absolute = time_range(start="2026-03-16T09:00:00+08:00", end="1773623460000", last=None,
                          now_ms=0)  # fmt: skip
    assert absolute == TimeRange(1773622800000, 1773623460000, absolute=True)
    for bad in ({"start": "yesterday", "end": "1"}, {"start": "5", "end": None}):
        with pytest.raises(PreviewError):
            time_range(last=None, now_ms=0, **bad)
    with pytest.raises(PreviewError, match="not before"):
        time_range(start="10", end="5", last=None, now_ms=0)
    with pytest.raises(PreviewError, match="duration"):
        time_range(start=None, end=None, last="six hours", now_ms=0)
    # 2026-03-16 10:30 in Shanghai: "today so far" starts at midnight there.
    now = TimeRange(0, 1773628200000)
    today = panel_range({"timeFrom": "now/d"}, now, "Asia/Shanghai")
    assert today == TimeRange(1773590400000, 1773628200000)
    assert panel_range({"timeFrom": "2h"}, now, "UTC").start_ms == 1773628200000 - 7_200_000
    # An absolute range ignores relative overrides, as Grafana does.
    assert panel_range({"timeFrom": "now/d"}, absolute, "Asia/Shanghai") == absolute


# --- provisioning and the build command ---------------------------------------------------


def test_datasource_for_v1_and_v2_keeps_secrets_out_of_files() -> None:
    v1 = datasource(InfluxConfig(url="http://influx:8086", database="jy", username="g",
                                 password="s3cret"))  # fmt: skip
    assert v1["type"] == "influxdb" and v1["uid"] == DATASOURCE_UID
    assert v1["jsonData"]["dbName"] == "jy" and v1["jsonData"]["version"] == "InfluxQL"
    assert v1["jsonData"]["timeInterval"] == "10s"
    assert v1["user"] == "g" and v1["secureJsonData"] == {"password": "$JIAYUAN_INFLUX_PASSWORD"}
    v2 = datasource(
        InfluxConfig(url="http://influx:8086", api="v2", token="tok", org="o", bucket="b"),
        with_secrets=True,
    )
    assert v2["jsonData"]["dbName"] == "b"
    assert v2["jsonData"]["httpHeaderName1"] == "Authorization"
    assert v2["secureJsonData"] == {"httpHeaderValue1": "Token tok"}


def test_build_command_writes_parseable_provisioning_and_every_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JIAYUAN_INFLUX_URL", "http://127.0.0.1:8086")
    monkeypatch.setenv("JIAYUAN_INFLUX_PASSWORD", "never-in-a-file")
    monkeypatch.setenv("JIAYUAN_INFLUX_USERNAME", "grafana")
    assert main(["dashboards", "build", "--out", "grafana", "--dashboards-path", "/d"]) == 0
    out = tmp_path / "grafana"
    sources = yaml.safe_load((out / "provisioning/datasources/jiayuan.yaml").read_text("utf-8"))
    (source,) = sources["datasources"]
    assert sources["apiVersion"] == 1 and source["url"] == "http://127.0.0.1:8086"
    assert source["uid"] == DATASOURCE_UID and source["user"] == "grafana"
    providers = yaml.safe_load((out / "provisioning/dashboards/jiayuan.yaml").read_text("utf-8"))
    assert providers["providers"][0]["options"]["path"] == "/d"
    assert providers["providers"][0]["type"] == "file"
    for model in DASHBOARDS:
        written = json.loads((out / "dashboards" / f"{model['uid']}.json").read_text("utf-8"))
        assert written == model
    every_file = "".join(p.read_text("utf-8") for p in out.rglob("*") if p.is_file())
    assert "never-in-a-file" not in every_file
    assert len(capsys.readouterr().out.splitlines()) == len(DASHBOARDS) + 2


def test_build_refuses_an_invalid_dashboard(tmp_path: Path) -> None:
    broken = copy.deepcopy(DASHBOARDS[0])
    broken["panels"][0]["type"] = "graphx"
    with pytest.raises(DashboardInvalid, match="graphx"):
        build(tmp_path, InfluxConfig(), [broken])
    assert not (tmp_path / "dashboards").exists()


# --- push against a recording Grafana stand-in --------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    authorization: str
    body: Any


class Recorder:
    """A local HTTP server answering like Grafana's API and keeping every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.folders: set[str] = set()
        self.datasources: set[str] = set()
        self.refuse_dashboards = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization", "")
                recorder.requests.append(Request(self.command, self.path, auth, body))
                status, answer = recorder.route(self.command, self.path, body)
                self._answer(status, answer)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid}) if uid in self.folders else (404, {"message": "nf"})
        if method == "POST" and path == "/api/folders":
            self.folders.add(body["uid"])
            return 200, {"uid": body["uid"], "title": body["title"]}
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid}) if uid in self.datasources else (404, {"message": "nf"})
        if method == "POST" and path == "/api/datasources":
            self.datasources.add(body["uid"])
            return 200, {"message": "Datasource added"}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            return 200, {"message": "Datasource updated"}
        if method == "POST" and path == "/api/dashboards/db":
            if self.refuse_dashboards:
                return 403, {"message": "Permissions needed"}
            uid = body["dashboard"]["uid"]
            return 200, {"uid": uid, "url": f"/d/{uid}/x", "version": 3, "status": "success"}
        return 404, {"message": f"no route {method} {path}"}


@pytest.fixture
def grafana() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


def test_push_creates_folder_and_datasource_and_overwrites_dashboards(
    grafana: Recorder,
) -> None:
    influx = InfluxConfig(url="http://influx:8086", database="jy")
    pushed = push(DASHBOARDS, grafana.url, "glsa_token", influx=influx, datasource_uid="ds-x1")
    assert [p.uid for p in pushed] == [d["uid"] for d in DASHBOARDS]
    assert pushed[0].url == "/d/jiayuan-overview/x" and pushed[0].version == 3
    assert {r.authorization for r in grafana.requests} == {"Bearer glsa_token"}
    calls = [(r.method, r.path) for r in grafana.requests]
    assert calls[:4] == [
        ("GET", "/api/folders/jiayuan"),
        ("POST", "/api/folders"),
        ("GET", "/api/datasources/uid/ds-x1"),
        ("POST", "/api/datasources"),
    ]
    assert grafana.requests[1].body == {"title": "家园 Jiayuan", "uid": "jiayuan"}
    assert grafana.requests[3].body["uid"] == "ds-x1"
    assert grafana.requests[3].body["jsonData"]["dbName"] == "jy"
    saves = [r for r in grafana.requests if r.path == "/api/dashboards/db"]
    assert [r.method for r in saves] == ["POST"] * len(DASHBOARDS)
    for request, model in zip(saves, DASHBOARDS, strict=True):
        assert request.body["overwrite"] is True
        assert request.body["folderUid"] == "jiayuan"
        sent = request.body["dashboard"]
        assert (sent["uid"], sent["title"]) == (model["uid"], model["title"])
        # Every reference now names the chosen datasource, none the default one.
        assert DATASOURCE_UID not in json.dumps(sent)
        assert sent["panels"][0]["targets"][0]["datasource"]["uid"] == "ds-x1"
    # A second push finds folder and datasource and updates rather than creates.
    grafana.requests.clear()
    push(DASHBOARDS[:1], grafana.url, "glsa_token", influx=influx, datasource_uid="ds-x1")
    assert [(r.method, r.path) for r in grafana.requests] == [
        ("GET", "/api/folders/jiayuan"),
        ("GET", "/api/datasources/uid/ds-x1"),
        ("PUT", "/api/datasources/uid/ds-x1"),
        ("POST", "/api/dashboards/db"),
    ]


def test_push_reports_the_step_grafana_refused(grafana: Recorder) -> None:
    grafana.refuse_dashboards = True
    with pytest.raises(PushError, match=r"save dashboard 'jiayuan-overview' \(HTTP 403\)"):
        push(DASHBOARDS, grafana.url, "t")
    assert not any(r.path == "/api/datasources" for r in grafana.requests)


def test_push_command_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JIAYUAN_GRAFANA_TOKEN", raising=False)
    assert main(["dashboards", "push", "--url", "http://127.0.0.1:9"]) == 2
    assert "no Grafana token" in capsys.readouterr().err


# --- docs and fonts -----------------------------------------------------------------------


def test_docs_hold_the_generated_panel_reference() -> None:
    text = (Path(__file__).parents[2] / "docs" / "dashboards.md").read_text("utf-8")
    assert reference(DASHBOARDS) in text, "run: python -m dashboards.reference"


def test_missing_cjk_font_warns_once_and_still_draws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "CJK_FONTS", ("No Such Font 无此字体",))
    render.cjk_font.cache_clear()
    try:
        with pytest.warns(UserWarning, match="fonts-wqy-zenhei") as warned:
            for name in ("a.png", "b.png"):
                model = DASHBOARDS[-1]
                empty = [PanelResult(panel) for panel in model["panels"]]
                render.render_dashboard(model, empty, {}, 0, 60_000, tmp_path / name)
        assert len([w for w in warned if "CJK" in str(w.message)]) == 1
        assert (tmp_path / "b.png").stat().st_size > 10_000
    finally:
        render.cjk_font.cache_clear()
