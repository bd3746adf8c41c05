"""Score arithmetic on hand-built estates and alerts: each indicator moves the score the
documented way (docs/score.md), the lines add up, and the grade caps apply."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from alerts.model import Alert, AlertState, EscalationLevel
from jiayuan.catalogue import Kind
from jiayuan.registry.model import (
    Building,
    Company,
    Device,
    District,
    Estate,
    EstateRecord,
    FeeBand,
    HousingCategory,
    Registry,
)
from jiayuan.registry.model import Street as StreetRecord
from score.config import ScoreConfig, load_score_config
from score.estate import ScoreCard, day_ms, score_estate
from score.grades import Grade

TODAY = date(2026, 6, 1)
NOW = day_ms(TODAY) + 12 * 3_600_000  # noon in Shanghai
MIN = 60_000
CONFIG = ScoreConfig()
# Family weights 30/30/15/15/10: a point off the lift family is 0.3 off the score.
LIFT_SHARE = 0.3


def device(
    device_id: str,
    kind: Kind,
    installed: date = date(2020, 1, 1),
    inspected: date | None = TODAY - timedelta(days=100),
    assessed: date | None = None,
    ports: int = 0,
    building: str = "b01",
) -> Device:
    return Device(device_id, "e1", building, kind, "model", installed, inspected, assessed, ports)


def estate(*devices: Device, households: int = 200) -> EstateRecord:
    defaults = [
        device("e1-L01", Kind.LIFT),
        device("e1-L02", Kind.LIFT),
        device("e1-F01", Kind.FIRE),
        device("e1-W01", Kind.WATER_TANK),
        device("e1-C01", Kind.EBIKE_CHARGER, ports=10),
        device("e1-G01", Kind.WATERLOGGING),
    ]
    chosen = {d.id: d for d in defaults} | {d.id: d for d in devices}
    registry = Registry(
        districts=(District("songjiang", "松江区"),),
        streets=(StreetRecord("yongfeng", "songjiang", "永丰街道"),),
        companies=(Company("co1", "上海某物业"),),
        estates=(
            Estate(
                "e1",
                "测试花园",
                "songjiang",
                "yongfeng",
                "co1",
                HousingCategory.COMMERCIAL,
                FeeBand.CLOSED_FROM_2_5,
                31.03,
                121.22,
            ),
        ),
        buildings=(Building("e1", "b01", 18, households),),
        devices=tuple(chosen.values()),
    )
    return registry.record("e1")


def alert(
    code: str = "lift.trapped",
    severity: str = "critical",
    device_id: str = "e1-L01",
    created: int = NOW - 10 * MIN,
    state: AlertState = AlertState.OPEN,
    ack_deadline: int = 0,
    resolve_deadline: int = 0,
    acknowledged: int = 0,
    resolved: int = 0,
) -> Alert:
    kind = code.split(".")[0]
    return Alert(
        id=f"{device_id}:{code}:{created}",
        district="songjiang",
        street="yongfeng",
        estate="e1",
        building="b01",
        device=device_id,
        kind=kind,
        code=code,
        severity=severity,
        title_zh="告警",
        title_en="alert",
        state=state,
        value=1.0,
        threshold=0.0,
        detail="",
        first_seen_ms=created,
        last_seen_ms=created,
        repeat_count=1,
        condition_active=state is AlertState.OPEN,
        incident_id="",
        escalation=EscalationLevel.ESTATE,
        ack_deadline_ms=ack_deadline,
        resolve_deadline_ms=resolve_deadline,
        acknowledged_ms=acknowledged,
        dispatched_ms=0,
        resolved_ms=resolved,
        closed_ms=0,
        work_order_id="",
        silenced=False,
        flapping=False,
        created_ms=created,
        updated_ms=max(created, acknowledged, resolved),
    )


def line(card: ScoreCard, family: str, indicator: str) -> float:
    (found,) = [x for x in card.lines if x.family == family and x.indicator == indicator]
    return found.penalty


def test_a_well_kept_estate_without_alerts_scores_100() -> None:
    card = score_estate(estate(), [], NOW, CONFIG)
    assert card.score == 100.0
    assert card.grade is Grade.SHIFAN and not card.capped
    assert card.families == {k.value: 100.0 for k in Kind}
    assert all(x.penalty == 0 for x in card.lines)


def test_lines_add_up_to_what_the_score_lost() -> None:
    card = score_estate(
        estate(device("e1-L01", Kind.LIFT, inspected=TODAY - timedelta(days=400))),
        [alert(), alert("fire.offline", "high", "e1-F01")],
        NOW,
        CONFIG,
    )
    assert sum(x.impact for x in card.lines) == pytest.approx(100 - card.score, abs=0.01)


def test_an_open_critical_alert_costs_25_and_3_recent_and_caps_the_grade_at_dabiao() -> None:
    card = score_estate(estate(), [alert()], NOW, CONFIG)
    assert line(card, "lift", "open_critical") == 25
    assert line(card, "lift", "recent_critical") == 3
    assert card.families["lift"] == 72
    assert card.score == pytest.approx(100 - 28 * LIFT_SHARE)  # 91.6: 规范 by score
    assert card.score_grade is Grade.GUIFAN
    assert card.grade is Grade.DABIAO and card.capped
    assert "lift.trapped e1-L01" in card.cap_reason
    assert [a.code for a in card.open_alerts] == ["lift.trapped"]


def test_two_open_criticals_hit_the_cap_of_50() -> None:
    alerts = [alert(created=NOW - n * MIN, device_id=f"e1-L0{n % 2 + 1}") for n in (1, 2, 3)]
    card = score_estate(estate(), alerts, NOW, CONFIG)
    assert line(card, "lift", "open_critical") == 50
    assert line(card, "lift", "recent_critical") == 9


def test_a_critical_fault_past_its_resolve_deadline_caps_at_budabiao() -> None:
    late = alert(created=NOW - 3 * 3_600_000, resolve_deadline=NOW - 3_600_000)
    card = score_estate(estate(), [late], NOW, CONFIG)
    assert card.grade is Grade.BUDABIAO and card.capped
    assert "past its resolve deadline" in card.cap_reason


def test_once_resolved_only_the_recent_count_remains_and_the_cap_lifts() -> None:
    done = alert(state=AlertState.RESOLVED, resolved=NOW - MIN, acknowledged=NOW - 9 * MIN)
    card = score_estate(estate(), [done], NOW, CONFIG)
    assert line(card, "lift", "open_critical") == 0
    assert line(card, "lift", "recent_critical") == 3
    assert not card.capped and card.grade is Grade.SHIFAN
    # Computed as of a moment before it was resolved, it counts as open again.
    before = score_estate(estate(), [done], NOW - 5 * MIN, CONFIG)
    assert line(before, "lift", "open_critical") == 25 and before.capped
    # And before it was raised, not at all.
    assert score_estate(estate(), [done], NOW - 20 * MIN, CONFIG).score == 100


def test_recent_means_within_the_window() -> None:
    old = alert(
        state=AlertState.CLOSED, created=NOW - 40 * 86_400_000, resolved=NOW - 39 * 86_400_000
    )
    card = score_estate(estate(), [old], NOW, CONFIG)
    assert card.score == 100


def test_cancelled_alerts_do_not_count() -> None:
    card = score_estate(estate(), [alert(state=AlertState.CANCELLED)], NOW, CONFIG)
    assert card.score == 100


def test_other_open_alerts_cost_2_each() -> None:
    card = score_estate(estate(), [alert("water_tank.low_level", "high", "e1-W01")], NOW, CONFIG)
    assert line(card, "water_tank", "open_other") == 2
    assert card.score == pytest.approx(100 - 2 * 0.15)
    assert not card.capped


def test_late_acknowledgement_costs_its_share_of_15() -> None:
    on_time = alert(
        "fire.alarm",
        device_id="e1-F01",
        created=NOW - 60 * MIN,
        ack_deadline=NOW - 55 * MIN,
        acknowledged=NOW - 58 * MIN,
    )
    missed = alert(
        "fire.alarm", device_id="e1-F01", created=NOW - 30 * MIN, ack_deadline=NOW - 25 * MIN
    )
    not_due = alert("fire.alarm", device_id="e1-F01", created=NOW - MIN, ack_deadline=NOW + 4 * MIN)
    card = score_estate(estate(), [on_time, missed, not_due], NOW, CONFIG)
    assert line(card, "fire", "late_ack") == pytest.approx(15 * 1 / 2)
    (ack,) = [x for x in card.lines if x.indicator == "late_ack" and x.family == "fire"]
    assert ack.value.startswith("1 of 2 late")


def test_late_resolution_costs_its_share_of_15() -> None:
    late = alert(
        "water_tank.low_level",
        "high",
        "e1-W01",
        created=NOW - 30 * 3_600_000,
        state=AlertState.RESOLVED,
        resolve_deadline=NOW - 6 * 3_600_000,
        resolved=NOW - 3_600_000,
        acknowledged=NOW - 29 * 3_600_000,
    )
    card = score_estate(estate(), [late], NOW, CONFIG)
    assert line(card, "water_tank", "late_resolve") == 15


def test_offline_devices_cost_their_share_of_40() -> None:
    card = score_estate(estate(), [alert("lift.offline", "high", "e1-L02")], NOW, CONFIG)
    assert line(card, "lift", "offline") == 20  # 1 of 2 lifts
    assert line(card, "lift", "open_other") == 0  # not counted twice
    assert line(card, "lift", "detector") == 0


def test_stuck_or_drifting_sensors_cost_their_share_of_20() -> None:
    alerts = [alert("fire.stuck", "warning", "e1-F01"), alert("fire.drift", "warning", "e1-F01")]
    card = score_estate(estate(), alerts, NOW, CONFIG)
    assert line(card, "fire", "detector") == 20  # one device, however many detectors
    assert line(card, "fire", "open_other") == 0


def test_each_overdue_inspection_costs_10_up_to_40() -> None:
    overdue = [
        device(f"e1-L0{n}", Kind.LIFT, inspected=TODAY - timedelta(days=400)) for n in (1, 2)
    ]
    card = score_estate(estate(*overdue), [], NOW, CONFIG)
    assert line(card, "lift", "inspection") == 20
    never = device("e1-F01", Kind.FIRE, installed=date(2024, 1, 1), inspected=None)
    assert line(score_estate(estate(never), [], NOW, CONFIG), "fire", "inspection") == 10
    new = device("e1-F01", Kind.FIRE, installed=TODAY - timedelta(days=100), inspected=None)
    assert line(score_estate(estate(new), [], NOW, CONFIG), "fire", "inspection") == 0
    # Water tanks every 183 days.
    tank = device("e1-W01", Kind.WATER_TANK, inspected=TODAY - timedelta(days=200))
    assert line(score_estate(estate(tank), [], NOW, CONFIG), "water_tank", "inspection") == 10


def test_a_lift_past_15_years_without_assessment_costs_15() -> None:
    old = device("e1-L01", Kind.LIFT, installed=date(2008, 1, 1))
    card = score_estate(estate(old), [], NOW, CONFIG)
    assert line(card, "lift", "assessment") == 15
    assessed = replace(old, last_assessment=date(2023, 3, 1))
    assert line(score_estate(estate(assessed), [], NOW, CONFIG), "lift", "assessment") == 0
    # Within the grace period after turning 15 it is not yet overdue.
    just_15 = device("e1-L01", Kind.LIFT, installed=date(2011, 5, 1))
    assert line(score_estate(estate(just_15), [], NOW, CONFIG), "lift", "assessment") == 0


def test_charging_coverage_below_target_costs_the_shortfall_times_40() -> None:
    card = score_estate(estate(households=500), [], NOW, CONFIG)  # 10 ports: 2 per 100
    assert line(card, "ebike_charger", "charging") == pytest.approx(40 * (1 - 2 / 5))
    assert (
        line(score_estate(estate(households=200), [], NOW, CONFIG), "ebike_charger", "charging")
        == 0
    )


def test_a_family_cannot_go_below_zero() -> None:
    alerts = [alert(created=NOW - n * MIN, device_id="e1-L01") for n in range(1, 6)]
    alerts += [alert("lift.offline", "high", "e1-L02"), alert("lift.offline", "high", "e1-L01")]
    old = [
        device(
            f"e1-L0{n}",
            Kind.LIFT,
            installed=date(2000, 1, 1),
            inspected=TODAY - timedelta(days=900),
        )
        for n in (1, 2)
    ]
    card = score_estate(estate(*old), alerts, NOW, CONFIG)
    assert card.families["lift"] == 0
    assert sum(x.penalty for x in card.lines if x.family == "lift") == pytest.approx(100)
    assert card.score == pytest.approx(70)


def test_families_without_devices_are_left_out_and_weights_rescaled() -> None:
    registry_record = estate()
    only_lifts = replace(
        registry_record, devices=tuple(d for d in registry_record.devices if d.kind is Kind.LIFT)
    )
    card = score_estate(only_lifts, [alert()], NOW, CONFIG)
    assert set(card.families) == {"lift"}
    assert card.score == 72  # the lift family is the whole score


def test_weights_and_bands_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.toml"
    path.write_text("open_critical_points = 40\nshifan_from = 99\n[family_weights]\nlift = 70\n")
    config = load_score_config(path)
    card = score_estate(estate(), [alert()], NOW, config)
    assert line(card, "lift", "open_critical") == 40
    assert card.score == pytest.approx(100 - 43 * 70 / 140)
    (tmp_path / "bad.toml").write_text("open_critcal_points = 40\n")
    with pytest.raises(ValueError, match="unknown key 'open_critcal_points'"):
        load_score_config(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text("guifan_from = 99\n")
    with pytest.raises(ValueError, match="grade bands must rise"):
        load_score_config(tmp_path / "bad2.toml")
