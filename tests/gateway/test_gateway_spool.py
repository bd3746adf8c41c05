"""The gateway's InfluxDB disk spool, against the real Mosquitto and InfluxDB.

InfluxDB is stopped with the ``servers`` fixture: batches go to the spool, their messages
are acknowledged, anomalies still reach the alert side, and everything is replayed in
order when InfluxDB returns, also after a gateway restart; the disk budget warns before
it is full and, when full, the gateway stops acknowledging rather than dropping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from gateway.pipeline import Pending
from gateway.service import Gateway
from gateway.storage.spool import InfluxSpool
from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.contract import Reading
from jiayuan.influx import InfluxClient
from jiayuan.state import SPOOL_FILE
from tests.gateway.test_gateway import lift_reading, now_ms, query, sample_readings, wait_for
from tests.support.mqtt_publisher import Publisher
from tools.servers import RunningServers

pytestmark = pytest.mark.servers


def spooling(config: Config, **gateway: float | int) -> Config:
    """Spool after a short wait, so the tests need not wait the default 5 s."""
    return replace(config, gateway=replace(config.gateway, spool_after_s=0.3, **gateway))


def started(config: Config) -> Gateway:
    gw = Gateway(config, serve_api=False)
    gw.start()
    assert gw.wait_ready(10), "gateway did not subscribe"
    return gw


def metric(gw: Gateway, name: str) -> float:
    value = gw.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def message_readings(index: int, count: int = 30) -> list[Reading]:
    """The ``index``-th message: ``count`` readings of every kind, seqs and times its own."""
    readings = sample_readings(count, now_ms() - 60_000 + index * 1000)
    return [msgspec.structs.replace(r, seq=r.seq + index * count) for r in readings]


def lift_count(config: Config) -> int:
    with InfluxClient(config.influx) as client:
        return client.count("lift", "seq")


def stored_total(config: Config) -> int:
    with InfluxClient(config.influx) as client:
        return sum(client.count(kind.value, "seq") for kind in Kind)


def test_influx_down_acks_once_spooled_and_replays_in_order(
    config: Config, publisher: Publisher, servers: RunningServers
) -> None:
    config = spooling(config)
    gw = started(config)
    heard: list[Anomaly] = []
    gw.processor._on_anomalies = heard.extend
    start = now_ms() - 120_000
    try:
        servers.stop_influx()
        # Six trapped readings open an anomaly; then 40 more readings in four messages.
        publisher.readings(
            [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
        )
        for index in range(4):
            first = 7 + index * 10
            publisher.readings(
                [lift_reading(seq, start + 40_000 + seq) for seq in range(first, first + 10)]
            )
        # One reading at a timestamp InfluxDB will get again (same series, same time):
        # the value written last wins, so the spooled one must not be written after it.
        same_ts = start + 100_000
        publisher.readings([lift_reading(100, same_ts, car_position=1)])
        wait_for(lambda: gw.stats.acked == 6, timeout_s=20)
        assert gw.stats.readings_stored == 0
        assert metric(gw, "jiayuan_gateway_spool_lines") >= 47
        # The alert side heard the anomaly open and close before the messages were acked.
        assert [(a.code, a.state) for a in heard] == [
            ("lift.trapped", "open"),
            ("lift.trapped", "closed"),
        ]

        servers.start_influx()
        publisher.readings([lift_reading(101, same_ts, car_position=9)])
        wait_for(lambda: gw.stats.acked == 7, timeout_s=20)
        assert gw.wait_idle(30), "the spool was not replayed"
    finally:
        gw.stop()
    assert lift_count(config) == 47  # 48 readings, two of them at the same time
    rows = query(config, f"SELECT car_position, seq FROM lift WHERE time = {same_ts}ms")
    assert [(r["car_position"], r["seq"]) for r in rows] == [(9, 101)]
    assert metric(gw, "jiayuan_gateway_spool_lines") == 0
    assert metric(gw, "jiayuan_gateway_batches_replayed_total") >= 1
    anomalies = query(config, "SELECT * FROM anomaly GROUP BY *")
    assert [r["code"] for r in anomalies] == ["lift.trapped"]


def test_restart_while_the_spool_holds_data_replays_it_once(
    config: Config, publisher: Publisher, servers: RunningServers
) -> None:
    config = spooling(config)
    first = started(config)
    try:
        servers.stop_influx()
        for index in range(5):
            publisher.readings(message_readings(index))
        wait_for(lambda: first.stats.acked == 5, timeout_s=20)
        spooled = metric(first, "jiayuan_gateway_batches_spooled_total")
        assert spooled >= 1 and first.stats.readings_stored == 0
    finally:
        first.stop(timeout_s=1)
        servers.start_influx()
    with InfluxSpool(
        Path(config.gateway.state_dir) / SPOOL_FILE, max_bytes=config.gateway.spool_max_bytes
    ) as spool:
        assert spool.lines > 0

    second = started(config)
    try:
        wait_for(lambda: second.stats.readings_stored == 150, timeout_s=30)
        assert second.wait_idle(10)
        assert second.stats.messages == 0  # acknowledged before: the broker kept nothing
        assert metric(second, "jiayuan_gateway_batches_replayed_total") == spooled
    finally:
        second.stop()
    assert stored_total(config) == 150

    third = started(config)
    try:
        assert third.wait_idle(10)
        assert metric(third, "jiayuan_gateway_batches_replayed_total") == 0
    finally:
        third.stop()


def test_full_spool_stops_acknowledging_and_loses_nothing(
    config: Config, publisher: Publisher, servers: RunningServers, caplog: pytest.LogCaptureFixture
) -> None:
    # About three messages of 30 readings fit (one compresses to some 1,400 bytes).
    config = spooling(config, spool_max_bytes=5000, batch_max_readings=30)
    gw = started(config)
    caplog.set_level(logging.WARNING, logger="gateway")
    try:
        servers.stop_influx()
        for index in range(8):
            publisher.readings(message_readings(index))
        wait_for(lambda: metric(gw, "jiayuan_gateway_spool_full") == 1, timeout_s=20)
        assert metric(gw, "jiayuan_gateway_spool_budget_warning") == 1
        assert "of its budget" in caplog.text and "is full" in caplog.text
        acked = gw.stats.acked
        assert 1 <= acked < 8
        assert metric(gw, "jiayuan_gateway_spool_bytes") <= 5000
        servers.start_influx()
        wait_for(lambda: gw.stats.acked == 8, timeout_s=30)
        assert gw.wait_idle(30)
    finally:
        gw.stop()
    assert metric(gw, "jiayuan_gateway_spool_full") == 0
    assert stored_total(config) == 240 and gw.stats.readings_stored == 240


def test_spool_keeps_order_and_warns_before_its_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def batch(n: int) -> list[Pending]:
        return [Pending(f"m,t=a v={n}i {n}", "t/x", b'{"n":1}', n, True)]

    path = tmp_path / SPOOL_FILE
    with InfluxSpool(path, max_bytes=10_000) as spool:
        bodies = [InfluxSpool.encode(batch(n)) for n in range(3)]
        for body in bodies:
            spool.append(body, 1)
        size = spool.bytes_stored
    with InfluxSpool(path, max_bytes=size + len(bodies[0]) // 2, warn_fraction=0.5) as spool:
        assert "replaying them first" in caplog.text
        assert "of its budget" in caplog.text and spool.warning
        assert not spool.fits(bodies[0])
        seen: list[Sequence[str]] = []
        while (oldest := spool.oldest()) is not None:
            seen.append([p.line for p in oldest.pending])
            spool.remove(oldest.id)
        assert seen == [[f"m,t=a v={n}i {n}"] for n in range(3)]
        assert (spool.batches, spool.lines, spool.bytes_stored, spool.warning) == (0, 0, 0, False)


@pytest.mark.parametrize(("field", "value"), [("max_bytes", 0), ("warn_fraction", 1.5)])
def test_spool_rejects_a_bad_budget_naming_the_setting(
    tmp_path: Path, field: str, value: float
) -> None:
    settings: dict[str, float] = {"max_bytes": 100, "warn_fraction": 0.8, field: value}
    with pytest.raises(ValueError, match=f"gateway.spool_{field}"):
        InfluxSpool(
            tmp_path / SPOOL_FILE,
            max_bytes=int(settings["max_bytes"]),
            warn_fraction=settings["warn_fraction"],
        )
