"""Alerts inside the running gateway: real Mosquitto, InfluxDB, the reference operations
centre on loopback, and the gateway restarted on the same state directory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.grouping import ESTATE_EDGE_STOPPED, ESTATE_UPLINK_DOWN
from alerts.model import AlertState
from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import DriverSample
from gateway.service import Gateway
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.contract import EdgeStatus, edge_status_topic, encode
from jiayuan.state import SNAPSHOT_FILE
from tests.gateway.test_gateway import lift_reading, now_ms, query, wait_for
from tests.support.lift_readings import AT_REST
from tests.support.mqtt_publisher import EDGE, PLACE, Publisher
from tools.opscentre import ReferenceOpsCentre

SECRET, TOKEN = "shared-webhook-secret", "callback-token"


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[ReferenceOpsCentre]:
    ops = ReferenceOpsCentre(
        tmp_path / "opscentre.sqlite",
        SECRET,
        token=TOKEN,
        accept_after_s=0.3,
        complete_after_s=0.6,
    )
    ops.start()
    yield ops
    ops.close()


@pytest.fixture
def alert_config(config: Config, centre: ReferenceOpsCentre) -> Config:
    return replace(
        config,
        alerts=replace(
            config.alerts,
            opscentre_url=centre.workorders_url,
            webhook_secret=SECRET,
            callback_token=TOKEN,
            retry_initial_s=0.1,
            retry_max_s=1.0,
        ),
    )


def started(config: Config) -> Gateway:
    gateway = Gateway(config)
    gateway.start()
    assert gateway.wait_ready(10), "gateway did not subscribe"
    return gateway


def alerts_of(gateway: Gateway) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.api_url}/alerts", timeout=5)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


def test_trapped_passenger_goes_to_the_centre_once_and_back_across_a_restart(
    alert_config: Config, centre: ReferenceOpsCentre, publisher: Publisher
) -> None:
    start = now_ms() - 120_000
    trapped = [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
    gateway = started(alert_config)
    try:
        publisher.readings(trapped)
        wait_for(lambda: len(centre.store.workorders(kind="create")) == 1)
        (order,) = centre.store.workorders(kind="create")
        body = order["body"]
        assert (body["code"], body["severity"]) == ("lift.trapped", "critical")
        assert body["callback_url"] == f"{gateway.api_url}/opscentre/callback"
        alert_id = order["alert_id"]

        # The centre accepts (dispatched) and then completes (resolved) through the callback.
        wait_for(lambda: alerts_of(gateway)[0]["state"] == AlertState.RESOLVED.value)
        detail = httpx.get(f"{gateway.api_url}/alerts/{alert_id}", timeout=5).json()
        steps = [(h["action"], h["actor"]) for h in detail["history"]]
        assert steps[0] == ("raised", "system")
        assert [action for action, _ in steps[1:]] == ["dispatched", "resolved"]
        ticket = centre.store.ticket(alert_id)
        assert ticket is not None and detail["alert"]["work_order_id"] == ticket.work_order_id

        closed = httpx.post(
            f"{gateway.api_url}/alerts/{alert_id}/close",
            json={"actor": "物业 张工", "note": "现场复核 verified on site"},
            timeout=5,
        )
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        refused = httpx.post(
            f"{gateway.api_url}/alerts/{alert_id}/acknowledge",
            json={"actor": "物业 张工"},
            timeout=5,
        )
        assert refused.status_code == 409
        assert "final" in refused.json()["detail"]["reason"]
        gateway.wait_idle()
    finally:
        gateway.stop()

    # The gateway's stop flushed the alert points: time to resolve is in InfluxDB.
    rows = query(alert_config, f"SELECT * FROM alert WHERE alert_id = '{alert_id}'")
    assert {row["action"] for row in rows} >= {"raised", "dispatched", "resolved", "closed"}
    (resolved,) = [row for row in rows if row["action"] == "resolved"]
    assert resolved["ttr_s"] > 0 and resolved["code"] == "lift.trapped"

    # A restart after a crash (no detection snapshot) forgets the duplicate window: the
    # same readings come again (as after a broker redelivery) and re-open the same
    # condition.  Still one work order.
    (Path(alert_config.gateway.state_dir) / SNAPSHOT_FILE).unlink()
    gateway = started(alert_config)
    try:
        publisher.readings(trapped)
        wait_for(lambda: gateway.stats.anomalies_opened.get("lift.trapped", 0) == 1)
        gateway.wait_idle()
        assert [a["id"] for a in alerts_of(gateway)] == [alert_id]
        assert alerts_of(gateway)[0]["state"] == "closed"
    finally:
        gateway.stop()
    assert len(centre.store.workorders(kind="create")) == 1
    assert all(order["deliveries"] == 1 for order in centre.store.workorders())


def test_an_edge_agents_last_will_raises_its_estates_uplink_alert(
    alert_config: Config, publisher: Publisher
) -> None:
    topic = edge_status_topic(*PLACE, EDGE)
    gateway = started(alert_config)

    def uplink_alerts() -> list[dict[str, Any]]:
        return [a for a in alerts_of(gateway) if a["code"] == ESTATE_UPLINK_DOWN]

    try:
        publisher.send(topic, encode(EdgeStatus(v=1, edge=EDGE, state="offline", ts=now_ms())))
        wait_for(lambda: len(uplink_alerts()) == 1)
        (alert,) = uplink_alerts()
        assert (alert["estate"], alert["device"]) == (PLACE[2], EDGE)
        assert alert["condition_active"] and alert["held_until_ms"] > 0
        assert alert["title_zh"] == "小区上行中断"
        publisher.send(topic, encode(EdgeStatus(v=1, edge=EDGE, state="online", ts=now_ms())))
        wait_for(lambda: not uplink_alerts()[0]["condition_active"])
    finally:
        gateway.stop()


class ThreeLifts:
    """Three lifts of the estate at rest, one sample each per poll."""

    def poll(self, now_ms: int) -> list[DriverSample]:
        return [DriverSample(f"L{n}", Kind.LIFT, "b2", now_ms, dict(AT_REST)) for n in (1, 2, 3)]


def test_a_clean_edge_stop_is_no_outage_and_a_killed_edge_is_one(
    alert_config: Config, centre: ReferenceOpsCentre, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("noise: {storm_window_s: 2}\n", encoding="utf-8")
    config = replace(alert_config, alerts=replace(alert_config.alerts, policy_file=str(policy)))
    spool = tmp_path / "spool.sqlite"

    def agent() -> EdgeAgent:
        place = EdgePlace(*PLACE, EDGE)
        return EdgeAgent(config.mqtt, config.edge, place, ThreeLifts(), spool, poll_interval_s=0.2)

    async def run_then_stop() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent().run(stop))
        await asyncio.sleep(2)
        stop.set()  # an operator stops the edge box for maintenance
        await task

    async def run_then_crash() -> None:
        task = asyncio.create_task((edge := agent()).run(asyncio.Event()))
        await asyncio.sleep(2)
        edge.abort_connection()  # no clean disconnect: the broker publishes the last will
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def of_code(code: str) -> list[dict[str, Any]]:
        return [a for a in alerts_of(gateway) if a["code"] == code]

    def offline_opened() -> int:
        return gateway.stats.anomalies_opened.get("lift.offline", 0)

    gateway = started(config)
    try:
        asyncio.run(run_then_stop())
        # The lifts fall silent (15 s); their alerts are held under the stopped edge's.
        wait_for(lambda: offline_opened() == 3, 30)
        time.sleep(4)  # two storm windows and the ticks between
        assert of_code(ESTATE_UPLINK_DOWN) == []
        (stopped,) = of_code(ESTATE_EDGE_STOPPED)
        assert stopped["title_zh"] == "边缘网关已停止" and stopped["device"] == EDGE
        assert stopped["severity"] == "info" and stopped["condition_active"]
        held = [a for a in alerts_of(gateway) if a["code"] == "lift.offline"]
        assert len(held) == 3 and {a["parent_id"] for a in held} == {stopped["id"]}
        assert centre.store.workorders(kind="create") == []

        # Started again, then killed: its last will is an outage, with one work order.
        asyncio.run(run_then_crash())
        wait_for(lambda: len(of_code(ESTATE_UPLINK_DOWN)) == 1, 10)
        assert not of_code(ESTATE_EDGE_STOPPED)[0]["condition_active"]
        wait_for(lambda: len(centre.store.workorders(kind="create")) == 1, 10)
        wait_for(lambda: offline_opened() == 6, 30)
        time.sleep(4)
        (order,) = centre.store.workorders(kind="create")
        (uplink,) = of_code(ESTATE_UPLINK_DOWN)
        assert order["alert_id"] == uplink["id"]
    finally:
        gateway.stop()
