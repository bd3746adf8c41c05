"""A storm of alerts to one estate's group robots through the whole gateway (real
Mosquitto and InfluxDB, the alert engine, the outbox), with the gateway stopped in the
middle and started again on the same state directory: the stand-ins of the three
platforms (simulators/robot_platforms.py) count every limit broken."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from alerts.outbox import MessageState, Outbox
from alerts.robot_delivery import RobotContent
from alerts.robots import LIMITS, ROBOT_CHANNELS
from alerts.store import AlertFilter
from gateway.service import Gateway
from jiayuan.config import Config
from jiayuan.state import OUTBOX_FILE
from simulators.robot_platforms import RobotPlatforms
from tests.support.alerts_lifecycle_support import anomaly

WECOM_KEY = "restart-wecom-key"
DING_TOKEN, DING_SECRET = "restart-ding-token", "SECrestart-ding"
FEISHU_TOKEN, FEISHU_SECRET = "restart-feishu-hook", "restart-feishu-secret"
ESTATE = "songjiang-e01"
SCALE = 10.0  # a "minute" of the stand-ins and of the limits lasts 6 s
# Severities of the storm's alerts (critical, high, warning in turn).
CODES = ("lift.trapped", "fire.fault", "water_tank.level_low")


def robot_config(config: Config, standin: RobotPlatforms, state: Path) -> Config:
    contacts = state.parent / "contacts.yaml"
    contacts.write_text(
        f"{ESTATE}:\n"
        f"  - {{name: 物业群, wecom_key: {WECOM_KEY}, phone: '13800000000'}}\n"
        f"  - {{name: 钉钉群, dingtalk_token: {DING_TOKEN}, dingtalk_secret: {DING_SECRET}}}\n"
        f"  - {{name: 飞书群, feishu_token: {FEISHU_TOKEN}, feishu_secret: {FEISHU_SECRET}}}\n",
        encoding="utf-8",
    )
    urls = standin.urls()
    return replace(
        config,
        gateway=replace(config.gateway, state_dir=str(state)),
        alerts=replace(
            config.alerts,
            contacts_file=str(contacts),
            wecom_url=urls["wecom"],
            dingtalk_url=urls["dingtalk"],
            feishu_url=urls["feishu"],
            retry_initial_s=0.05,
            retry_max_s=0.5,
        ),
    )


def robot_messages(gateway: Gateway) -> list[tuple[str, str, MessageState]]:
    """(channel, alert id, state) of every robot message in the gateway's outbox."""
    assert gateway.alerts is not None
    outbox = gateway.alerts.dispatcher.outbox
    return [
        (m.channel, RobotContent.decode(m.body).alert_id, m.state)
        for m in outbox.messages(limit=-1)
        if m.channel in ROBOT_CHANNELS
    ]


def started(config: Config) -> Gateway:
    gateway = Gateway(config)
    gateway.start()
    assert gateway.wait_ready(10), "gateway did not subscribe"
    return gateway


class Storm:
    """200 alerts of one estate, one every 1/200 of a (scaled) minute from ``began``."""

    def __init__(self) -> None:
        self.began = time.monotonic()  # the same clock in a forked child
        self.start_ms = time.time_ns() // 1_000_000

    def feed(self, gateway: Gateway, numbers: range) -> None:
        assert gateway.alerts is not None
        for number in numbers:
            code = CODES[number % 3]
            gateway.alerts.on_anomalies(
                [anomaly(code, device=f"D{number:03d}", estate=ESTATE, start_ms=self.start_ms)]
            )
            pause = self.began + number * MINUTE_S / 200 - time.monotonic()
            time.sleep(max(0.0, pause))


MINUTE_S = 60.0 / SCALE
PENDING = MessageState.PENDING


def pending_robot_messages(state: Path) -> int:
    outbox = Outbox(state / OUTBOX_FILE)
    try:
        return sum(
            1
            for m in outbox.messages(MessageState.PENDING, limit=-1)
            if m.channel in ROBOT_CHANNELS
        )
    finally:
        outbox.close()


def first_half_then_wait(settings: Config, storm: Storm, fed: Any) -> None:
    """In a forked child: a gateway takes the first 100 alerts and keeps sending until
    it is killed."""
    gateway = started(settings)
    storm.feed(gateway, range(1, 101))
    fed.set()
    time.sleep(600)
    os._exit(1)


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_storm_of_200_alerts_across_a_gateway_restart(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """200 alerts in one (scaled) minute to one estate's three robots, the gateway
    stopped (or killed, SIGKILL) and started again on the same state directory after the
    hundredth: no platform limit is broken, every alert is named in some message on every
    platform, no message is lost."""
    for channel, limits in list(LIMITS.items()):
        monkeypatch.setitem(LIMITS, channel, limits.scaled(SCALE))
    state = tmp_path / "state"
    with RobotPlatforms(time_scale=SCALE) as standin:
        standin.add("wecom", WECOM_KEY)
        standin.add("dingtalk", DING_TOKEN, DING_SECRET)
        standin.add("feishu", FEISHU_TOKEN, FEISHU_SECRET)
        settings = robot_config(config, standin, state)
        storm = Storm()
        if end == "stop":
            gateway = started(settings)
            storm.feed(gateway, range(1, 101))
            # Waiting when the stop begins (a stop lets the deliverer finish its round).
            waiting = sum(1 for _, _, state in robot_messages(gateway) if state is PENDING)
            gateway.stop()
        else:
            fork = multiprocessing.get_context("fork")
            fed = fork.Event()
            child = fork.Process(target=first_half_then_wait, args=(settings, storm, fed))
            child.start()
            assert fed.wait(60), "the first gateway did not take its alerts"
            os.kill(child.pid or 0, signal.SIGKILL)  # in the middle of sending
            child.join(10)
            waiting = pending_robot_messages(state)
        sent_before_restart = len(standin.received)
        gateway = started(settings)
        try:
            storm.feed(gateway, range(101, 201))
            deadline = time.monotonic() + 15 * MINUTE_S
            while time.monotonic() < deadline and any(
                state is MessageState.PENDING for _, _, state in robot_messages(gateway)
            ):
                time.sleep(0.2)
            messages = robot_messages(gateway)
            assert gateway.alerts is not None
            every = AlertFilter(estate=ESTATE, limit=1000)
            alert_ids = {a.id for a in gateway.alerts.store.list_alerts(every)}
        finally:
            gateway.stop()
    assert len(alert_ids) == 200
    # The restart came in the middle: some sent before it, some waiting across it.
    assert 0 < sent_before_restart < len(standin.received)
    assert waiting > 0
    assert standin.violations == []
    assert standin.refused == []
    # One message per alert and robot, each delivered: none lost, none parked.
    assert sorted((c, a) for c, a, _ in messages) == sorted(
        (channel, alert) for channel in ROBOT_CHANNELS for alert in alert_ids
    )
    assert {state for _, _, state in messages} == {MessageState.DELIVERED}
    for platform in ROBOT_CHANNELS:
        texts = "\n".join(standin.texts(platform))
        named = set(re.findall(r"al-[0-9a-f]{20}", texts))
        assert named >= alert_ids, f"{platform}: {len(alert_ids - named)} alerts never named"
        assert len(standin.texts(platform)) < 200, f"{platform}: digests, not one per alert"
