"""A gateway batch larger than one engine call (``alerts.service.ENGINE_CALL_MAX``): a
district's outage handed to the alert service at once raises the same alerts, groups and
work orders as in one call, each once, and a redelivery raises nothing more."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from alerts import service as alert_service
from alerts.grouping import ESTATE_UPLINK_DOWN
from alerts.service import AlertService
from jiayuan.anomaly import Anomaly
from jiayuan.config import Config, GatewayConfig
from tests.support.alerts_lifecycle_support import T0, FakeClock, anomaly

ESTATES = [f"songjiang-e0{n}" for n in range(1, 4)]
BUILDINGS = ["b01", "b02", "b03", "b04"]
PER_BUILDING = 5


def population(district: str, street: str, estate: str, building: str) -> int:
    if estate not in ESTATES:
        return 0
    return PER_BUILDING * (1 if building else len(BUILDINGS))


def outage() -> list[Anomaly]:
    """Every lift of three estates falls silent (their last readings a little apart)."""
    return [
        anomaly(
            "lift.offline",
            device=f"L{e}{b}{n}",
            building=building,
            estate=estate,
            start_ms=T0 + 10 * (e * 100 + b * 10 + n),
        )
        for e, estate in enumerate(ESTATES)
        for b, building in enumerate(BUILDINGS)
        for n in range(PER_BUILDING)
    ]


def alert_service_at(state_dir: Path, clock: FakeClock) -> AlertService:
    config = Config(gateway=GatewayConfig(state_dir=str(state_dir)))
    return AlertService(config, clock=clock, population=population)


def settled(service: AlertService, clock: FakeClock) -> tuple[set[tuple[str, ...]], list[str]]:
    """After the storm window: each live alert (estate, device, code, its group's code) and
    the work orders queued."""
    clock.advance(int(service.engine.policy.noise.storm_window_s * 1000) + 1000)
    service.engine.tick()
    alerts = service.store.live_alerts()
    groups = {a.id: a.code for a in alerts}
    seen = {(a.estate, a.device, a.code, groups.get(a.parent_id, "")) for a in alerts}
    orders = [m.key for m in service.dispatcher.outbox.messages(channel="workorder")]
    return seen, orders


def test_an_outage_in_several_engine_calls_raises_what_one_call_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anomalies = outage()
    one_clock = FakeClock()
    one_call = alert_service_at(tmp_path / "one", one_clock)
    one_call.engine.on_anomalies(anomalies)
    expected, expected_orders = settled(one_call, one_clock)

    monkeypatch.setattr(alert_service, "ENGINE_CALL_MAX", 7)
    clock = FakeClock()
    service = alert_service_at(tmp_path / "calls", clock)
    service.on_anomalies(anomalies)
    seen, orders = settled(service, clock)

    assert seen == expected
    # One estate alert a cause, every lift held under its estate's: one work order each.
    held = [s for s in seen if s[2] == "lift.offline"]
    assert len(held) == len(anomalies)
    assert {s[3] for s in held} == {ESTATE_UPLINK_DOWN}
    assert len(orders) == len(expected_orders) == len(ESTATES)

    # The broker redelivers the batch (a restart before its acknowledgement): nothing new.
    service.on_anomalies([replace(a) for a in anomalies])
    again, orders_again = settled(service, clock)
    assert again == seen and orders_again == orders
