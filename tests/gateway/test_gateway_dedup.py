"""Duplicates against the real Mosquitto and InfluxDB: no reading, however crafted, and no
edge box numbering its readings again from 1 makes the gateway drop a device's readings."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.service import Gateway
from jiayuan.config import Config
from tests.gateway.test_gateway import lift_reading, now_ms, query, wait_for
from tests.support.mqtt_publisher import Publisher

STRAY_SEQ = 5_000_000


@pytest.fixture
def gateway(config: Config) -> Iterator[Gateway]:
    gw = Gateway(config)
    gw.start()
    assert gw.wait_ready(10), "gateway did not subscribe"
    yield gw
    gw.stop()


def lift_rows(config: Config, device: str) -> list[dict[str, object]]:
    return query(config, f"SELECT * FROM lift WHERE device = '{device}' GROUP BY *")


def test_a_stray_seq_does_not_silence_the_device_nor_make_it_offline(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    # Device time just ahead of the wall clock, so the offline check judges by it: L2's
    # readings say 60 s passed, and a lift silent for 15 s of that would go offline.
    start = now_ms()
    step = 2000
    both = [
        lift_reading(seq, start + seq * step, device)
        for seq in (1, 2, 3)
        for device in ("L1", "L2")
    ]
    publisher.readings(both)
    publisher.readings([lift_reading(STRAY_SEQ, start + 7000, "L1")])
    later = [
        lift_reading(seq, start + seq * step, device)
        for seq in range(4, 31)
        for device in ("L1", "L2")
    ]
    publisher.readings(later)
    wait_for(lambda: gateway.stats.readings_received == 61)
    gateway.wait_idle()
    stored = lift_rows(config, "L1")
    assert sorted(int(str(row["seq"])) for row in stored) == [*range(1, 31), STRAY_SEQ]
    assert len(lift_rows(config, "L2")) == 30
    assert gateway.stats.duplicates == 0
    assert not [a for a in gateway.anomalies(active=True) if a.code == "lift.offline"]
    # The same stray reading again is a redelivery: dropped.
    publisher.readings([lift_reading(STRAY_SEQ, start + 7000, "L1")])
    wait_for(lambda: gateway.stats.duplicates == 1)
    with httpx.Client(base_url=str(gateway.api_url), timeout=5) as http:
        counters = http.get("/health").json()["counters"]
        assert counters["seq_faults"] == 1
        assert counters["seq_faults_by_device"] == {"edge1/L1": 1}
        assert 'jiayuan_gateway_seq_faults_total{kind="jump"} 1.0' in http.get("/metrics").text


def test_an_edge_box_replaced_numbering_again_from_1_is_stored(
    gateway: Gateway, publisher: Publisher, config: Config
) -> None:
    # L1's old box sent 100 readings (seq 1 has left the bitmap), L2's 10 (still in it).
    old = now_ms() - 3_600_000
    publisher.readings([lift_reading(seq, old + seq * 1000, "L1") for seq in range(1, 101)])
    publisher.readings([lift_reading(seq, old + seq * 1000, "L2") for seq in range(1, 11)])
    new = now_ms() - 60_000
    replaced = [
        lift_reading(seq, new + seq * 1000, device)
        for seq in range(1, 11)
        for device in ("L1", "L2")
    ]
    publisher.readings(replaced)
    wait_for(lambda: gateway.stats.readings_received == 130)
    gateway.wait_idle()
    assert len(lift_rows(config, "L1")) == 110 and len(lift_rows(config, "L2")) == 20
    assert gateway.stats.duplicates == 0
    assert gateway.stats.seq_faults_by_device == {"edge1/L1": 1, "edge1/L2": 1}
    # QoS 1 redeliveries of the new box's readings and of the old box's are still dropped.
    publisher.readings([replaced[8], lift_reading(99, old + 99 * 1000, "L1")])
    wait_for(lambda: gateway.stats.duplicates == 2)
    gateway.wait_idle()
    assert len(lift_rows(config, "L1")) == 110


def test_after_a_clean_restart_redeliveries_are_dropped_and_new_readings_stored(
    config: Config, publisher: Publisher
) -> None:
    start = now_ms() - 60_000
    first_part = [lift_reading(seq, start + seq * 1000) for seq in range(1, 6)]
    stray = lift_reading(STRAY_SEQ, start + 5500)
    second_part = [lift_reading(seq, start + seq * 1000) for seq in range(6, 9)]
    first = Gateway(config, serve_api=False)
    first.start()
    try:
        assert first.wait_ready(10)
        publisher.readings(first_part)
        publisher.readings([stray])
        publisher.readings(second_part)
        wait_for(lambda: first.stats.readings_stored == 9)
        assert first.wait_idle()
    finally:
        first.stop()
    assert first.processor.settled  # the clean stop saved the duplicate window

    second = Gateway(config, serve_api=False)
    second.start()
    try:
        assert second.wait_ready(10)
        publisher.readings([second_part[1], stray])  # the edge replays after reconnecting
        wait_for(lambda: second.stats.duplicates == 2)
        publisher.readings([lift_reading(seq, start + seq * 1000) for seq in range(9, 13)])
        wait_for(lambda: second.stats.readings_received == 6)
        assert second.wait_idle()
        assert second.stats.readings_stored == 4 and second.stats.duplicates == 2
    finally:
        second.stop()
    seqs = sorted(int(str(row["seq"])) for row in lift_rows(config, "L1"))
    assert seqs == [*range(1, 13), STRAY_SEQ]
