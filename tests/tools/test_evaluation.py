"""The evaluation: the matcher on hand-built labels and anomalies, and ``jiayuan eval``
end to end on short scenarios (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jiayuan.anomaly import OPEN, Anomaly
from jiayuan.catalogue import Kind
from simulators.faults import LOOK_ALIKE, Fault
from simulators.scenarios import build
from tools.cli import main
from tools.evaluation import ALL, NO_FAULT, Row, Score, evaluate, score

T0 = 1_750_000_000_000


def label(
    fault_id: str,
    device: str,
    code: str,
    start_s: float,
    end_s: float,
    onset_s: float | None = None,
    hold_s: float = 0.0,
    also: tuple[str, ...] = (),
    kind: Kind = Kind.LIFT,
    fault_type: str = "trapped",
) -> Fault:
    return Fault(
        fault_id,
        kind,
        fault_type,
        code,
        "e1",
        device,
        T0 + round(start_s * 1000),
        T0 + round(end_s * 1000),
        None if onset_s is None else T0 + round(onset_s * 1000),
        hold_s,
        also,
    )


def anomaly(device: str, code: str, start_s: float, kind: Kind = Kind.LIFT) -> Anomaly:
    return Anomaly(
        "d", "s", "e1", "b1", device, kind.value, code, "high", "", "", 0.0, 0.0,
        T0 + round(start_s * 1000), 0, OPEN,
    )  # fmt: skip


def rows(result: Score) -> dict[tuple[str, str], Row]:
    return {(r.kind, r.fault_type): r for r in result.rows}


def test_true_false_positives_misses_and_delays() -> None:
    labels = [
        label("f1", "L1", "lift.trapped", 100, 150, hold_s=20),
        label("f2", "L2", "lift.trapped", 100, 150, hold_s=20),  # missed
    ]
    found = [
        anomaly("L1", "lift.trapped", 121.5),  # 1.5 s after onset + hold
        anomaly("L1", "lift.trapped", 140),  # a second one for the same label: still TP
        anomaly("L3", "lift.overspeed", 50),  # no label: FP
        anomaly("L2", "lift.overspeed", 120),  # wrong code on a faulty device: FP
    ]
    result = score(labels, found, device_hours=2000)
    trapped = rows(result)["lift", "trapped"]
    assert (trapped.labels, trapped.detected, trapped.tp, trapped.fp) == (2, 1, 2, 1)
    assert trapped.delays_s == [1.5]
    assert rows(result)["lift", NO_FAULT].fp == 1
    lift = rows(result)["lift", ALL]
    assert (lift.tp, lift.fp, lift.precision, lift.recall) == (2, 2, 0.5, 0.5)
    assert lift.f1 == pytest.approx(0.5)
    assert result.false_alerts == 2
    assert result.false_alerts_per_1000_device_hours == 1.0


def test_window_runs_from_onset_to_end_plus_tolerance() -> None:
    labels = [label("f1", "L1", "lift.trapped", 100, 150, onset_s=105)]
    assert rows(score(labels, [anomaly("L1", "lift.trapped", 104)], 1))["lift", ALL].tp == 0
    assert rows(score(labels, [anomaly("L1", "lift.trapped", 159)], 1))["lift", ALL].tp == 1
    late = score(labels, [anomaly("L1", "lift.trapped", 161)], 1)
    assert rows(late)["lift", "trapped"].detected == 0
    assert rows(late)["lift", NO_FAULT].fp == 1  # past the window: charged to no fault
    wider = score(labels, [anomaly("L1", "lift.trapped", 161)], 1, tolerance_s=20)
    assert rows(wider)["lift", "trapped"].detected == 1


def test_also_codes_count_from_the_start_and_statistical_side_alerts_are_neutral() -> None:
    deep = label(
        "f1", "G1", "waterlogging.depth_30", 100, 130, onset_s=108,
        also=("waterlogging.depth_15",), kind=Kind.WATERLOGGING, fault_type="deep_water",
    )  # fmt: skip
    found = [
        anomaly("G1", "waterlogging.depth_15", 104, Kind.WATERLOGGING),
        anomaly("G1", "waterlogging.depth_30", 110, Kind.WATERLOGGING),
        anomaly("G1", "waterlogging.rate_of_change", 105, Kind.WATERLOGGING),
    ]
    row = rows(score([deep], found, 1))["waterlogging", "deep_water"]
    assert (row.detected, row.tp, row.fp, row.side) == (1, 2, 0, 1)
    assert row.delays_s == [-4.0]  # the earliest detecting anomaly, an also_code


def test_look_alikes_expect_nothing() -> None:
    parked = label("f1", "L1", LOOK_ALIKE, 100, 340, fault_type="parked_open_cleaning")
    quiet = score([parked], [], 10)
    assert rows(quiet)["lift", "parked_open_cleaning"].recall is None
    noisy = score([parked], [anomaly("L1", "lift.stuck", 200)], 10)
    assert rows(noisy)["lift", "parked_open_cleaning"].fp == 1  # not a side alert
    assert noisy.false_alerts == 1


def test_standard_scenario_catches_every_classic_rule_fault() -> None:
    result = evaluate(build("standard", seed=2, estates=2, duration_s=300))
    by_type = rows(result.score)
    labelled = {(f.kind.value, f.fault_type) for f in result.scenario.faults}
    assert len(labelled) == 16
    for key in labelled:
        assert by_type[key].recall == 1.0, by_type[key]
        # Rules alert within 2 s of their condition's own duration being met.
        worst = by_type[key].delay_worst_s
        assert worst is not None and worst <= 2.0


@pytest.mark.slow
def test_hard_scenario_catches_every_slow_fault_within_five_minutes() -> None:
    result = evaluate(build("hard", estates=2))
    by_type = rows(result.score)
    assert result.score.false_alerts == 0
    for fault_type in ("pressure_bleed", "chlorine_stuck", "hot_port"):
        row = next(r for (_, t), r in by_type.items() if t == fault_type)
        assert row.labels >= 2 and row.recall == 1.0, row
        # Statistical faults: within 5 minutes of becoming detectable.
        worst, from_start = row.delay_worst_s, row.from_start_worst_s
        assert worst is not None and from_start is not None
        assert 0 <= worst <= 300 and from_start >= worst, row


def test_eval_command_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "eval.json"
    argv = ["eval", "--scenario", "standard", "--scenario", "healthy", "--hours", "0.1"]
    assert main([*argv, "--estates", "1", "--seed", "3", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "电梯 Lift" in out and "per 1,000 device-hours" in out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert [s["name"] for s in data["scenarios"]] == ["standard", "healthy"]
    standard, healthy = data["scenarios"]
    assert standard["rows"] and all(r["recall"] in (1.0, None) for r in standard["rows"])
    assert healthy["device_hours"] > 0
    assert healthy["false_alerts_per_1000_device_hours"] >= 0.0
    assert all(r["labels"] == 0 for r in healthy["rows"])
