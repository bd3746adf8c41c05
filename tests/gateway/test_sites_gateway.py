"""A registry site through the real gateway (Mosquitto, InfluxDB, the alert engine): the
pump room's broken relation is stored in InfluxDB as one anomaly and becomes one alert."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import msgspec
import pytest

from gateway.detection.sites import LEARN_ROWS, MIN_SLOT_S
from gateway.service import Gateway
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.places import Place
from jiayuan.registry.model import (
    Building,
    Company,
    Device,
    District,
    Estate,
    FeeBand,
    HousingCategory,
    Registry,
    Street,
)
from jiayuan.registry.store import RegistryStore, registry_path
from tests.gateway.test_gateway import now_ms, query, wait_for
from tests.support.mqtt_publisher import PLACE, Publisher
from tests.support.pump_room import CYCLE_S, pump_room, tank_id

pytestmark = pytest.mark.servers

DISTRICT, STREET, ESTATE = PLACE
CODE = "water_tank.relation_broken"


def pump_room_registry() -> Registry:
    tanks = tuple(
        Device(
            tank_id(ESTATE, tank),
            ESTATE,
            "pumproom",
            Kind.WATER_TANK,
            "二次供水监测终端 WQ-5",
            date(2024, 1, 1),
            None,
            site="pumproom",
        )
        for tank in ("W01", "W02")
    )
    return Registry(
        districts=(District(DISTRICT, "松江区"),),
        streets=(Street(STREET, DISTRICT, "方松街道"),),
        companies=(Company("c1", "测试物业"),),
        estates=(
            Estate(
                ESTATE,
                "测试花园",
                DISTRICT,
                STREET,
                "c1",
                HousingCategory.COMMERCIAL,
                FeeBand.CLOSED_FROM_2_5,
                31.03,
                121.23,
            ),
        ),
        buildings=(Building(ESTATE, "pumproom", 0, 0),),
        devices=tanks,
    )


def test_a_broken_relation_is_stored_once_and_becomes_one_alert(
    config: Config, publisher: Publisher
) -> None:
    with RegistryStore(registry_path(config)) as store:
        store.replace(pump_room_registry())
    places = tuple(
        Place(DISTRICT, STREET, ESTATE, "pumproom", "water_tank", tank_id(ESTATE, tank))
        for tank in ("W01", "W02")
    )
    # The registry's site has a slot of 3 min: 12 h to learn (readings every minute).
    learnt_s = LEARN_ROWS * int(MIN_SLOT_S) + 600
    broken = (learnt_s + 1800, learnt_s + 1800 + 6 * CYCLE_S)
    seconds = broken[1] + 6 * 3600
    start = now_ms() - seconds * 1000 - 60_000
    readings = list(pump_room(places, seconds, seed=4, broken=broken, start_ms=start, period_s=60))
    gateway = Gateway(config)
    gateway.start()
    try:
        assert gateway.wait_ready(10), "gateway did not subscribe"
        assert gateway.detector.sites is not None and len(gateway.detector.sites.specs) == 1
        for first in range(0, len(readings), 500):
            publisher.readings(readings[first : first + 500])
        # One anomaly: its point, opened and then closed in place (same time and tags).
        wait_for(lambda: [row["state"] for row in stored(config)] == ["closed"], timeout_s=90)
        gateway.wait_idle()
        (row,) = stored(config)
        assert row["device"] == places[0].device
        assert start + broken[0] * 1000 <= row["time"] <= start + broken[0] * 1000 + 3_600_000
        assert row["detail"].startswith("站点 site pumproom"), row["detail"]
        assert "W01 出水压力 supply_pressure" in row["detail"]
        wait_for(lambda: len(site_alerts(gateway)) == 1)
        (alert,) = site_alerts(gateway)
        assert alert["severity"] == "warning" and alert["device"] == places[0].device
    finally:
        gateway.stop()


def stored(config: Config) -> list[dict[str, Any]]:
    return query(config, f"SELECT * FROM anomaly WHERE code = '{CODE}'")


def site_alerts(gateway: Gateway) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.api_url}/alerts", timeout=5)
    response.raise_for_status()
    return [a for a in response.json() if a["code"] == CODE]


def test_a_clean_restart_keeps_the_learnt_site_model(
    config: Config, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    with RegistryStore(registry_path(config)) as store:
        store.replace(pump_room_registry())
    places = tuple(
        Place(DISTRICT, STREET, ESTATE, "pumproom", "water_tank", tank_id(ESTATE, tank))
        for tank in ("W01", "W02")
    )
    seconds = LEARN_ROWS * int(MIN_SLOT_S) + 1200
    start = now_ms() - seconds * 1000 - 60_000
    readings = list(pump_room(places, seconds, seed=5, start_ms=start, period_s=60))
    first = Gateway(config)
    first.start()
    try:
        assert first.wait_ready(10), "gateway did not subscribe"
        for chunk in range(0, len(readings), 500):
            publisher.readings(readings[chunk : chunk + 500])
        sites = first.detector.sites
        assert sites is not None
        wait_for(lambda: sites.learnt() == 1, timeout_s=60)
        first.wait_idle()
    finally:
        first.stop()
    caplog.clear()
    second = Gateway(config)
    second.start()
    try:
        assert second.wait_ready(10), "gateway did not subscribe"
        assert second.detector.sites is not None and second.detector.sites.learnt() == 1
        # One more hour of healthy rows: judged at once, nothing learnt again or raised.
        later = list(pump_room(places, 3600, seed=6, start_ms=start + seconds * 1000, period_s=60))
        renumbered = [msgspec.structs.replace(r, seq=r.seq + len(readings)) for r in later]
        publisher.readings(renumbered)
        second.wait_idle()
        assert "站点模型从数据流学习" not in caplog.text
        assert stored(config) == []
    finally:
        second.stop()
