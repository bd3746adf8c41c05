"""A statistical anomaly raised in the gateway reaches operators explained: its alert, the
raised step's note, the work order and the notification say the value and what is usual
at that hour, Chinese first; a rule's alert still shows its threshold."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import jsonschema

from alerts.model import AlertAction
from alerts.notify import compose
from alerts.store import AlertStore
from alerts.workorder import WORKORDER_SCHEMA, WorkOrderType, build_workorder
from gateway.detection.detector import Detector
from jiayuan.anomaly import explanation_halves
from tests.support.alerts_lifecycle_support import FakeClock, anomaly, make_engine
from tests.support.seasonal_support import NIGHT_RUN, START_MS, feed, outlet_pressure

VALIDATOR = jsonschema.Draft202012Validator(
    WORKORDER_SCHEMA, format_checker=jsonschema.FormatChecker()
)


def test_a_statistical_alert_says_the_value_and_what_is_usual_at_that_hour(
    tmp_path: Path,
) -> None:
    values = outlet_pressure(8, seed=2)
    values[NIGHT_RUN] += 0.06  # the booster at day pressure at 02:00
    night = [a for a in feed(Detector(), values) if a.start_ms > START_MS + 86_400_000]
    engine, store = make_engine(tmp_path / "alerts.db", FakeClock())
    [raised, *_] = [e for e in engine.on_anomalies(night) if e.action is AlertAction.RAISED]
    alert = raised.alert
    zh, en = explanation_halves(alert.explanation)
    assert zh.startswith("出水压力 0.36") and "工作日 02:00 通常 0.30" in zh, zh
    assert "± 0.00" in zh and zh.count("MPa") == 2, zh
    assert en.startswith("outlet supply pressure 0.36") and en.endswith("at 02:00 on weekdays")
    assert raised.note == f"{alert.title}: {alert.explanation}"
    # Kept with the alert, and in what the operations centre and the manager receive.
    store.close()
    with AlertStore(tmp_path / "alerts.db") as reopened:
        assert reopened.get(alert.id).explanation == alert.explanation
    order = build_workorder(alert, WorkOrderType.CREATE, at_ms=1, callback_url="https://x/cb")
    VALIDATOR.validate(order)
    assert order["explanation"] == alert.explanation
    text = compose(alert, AlertAction.RAISED, at_ms=1).text
    chinese, english = text.split("\n\n", 1)
    assert f"情况：{alert.title_zh}，{zh}" in chinese
    assert f"What happened: {alert.title_en}, {en}" in english


def test_a_rule_alert_keeps_its_threshold(tmp_path: Path) -> None:
    engine, store = make_engine(tmp_path / "alerts.db", FakeClock())
    [raised, *_] = engine.on_anomalies([anomaly("water_tank.chlorine_low", device="T01")])
    assert raised.alert.explanation == ""
    assert raised.note.endswith("(阈值 threshold 0.5)")
    assert "测量值 1，阈值 0.5" in compose(raised.alert, AlertAction.RAISED, at_ms=1).text
    VALIDATOR.validate(
        build_workorder(raised.alert, WorkOrderType.CREATE, at_ms=1, callback_url="https://x")
    )
    store.close()


def test_an_alert_file_from_before_the_explanations_opens_with_none(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    engine, store = make_engine(path, FakeClock())
    [raised, *_] = engine.on_anomalies([anomaly("lift.trapped")])
    store.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE alerts DROP COLUMN explanation")
        db.commit()
    with AlertStore(path) as reopened:
        assert reopened.get(raised.alert.id) == raised.alert
