"""The whole pipeline on real Mosquitto and InfluxDB: simulators → edge → broker → gateway."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import DriverSample
from gateway.service import Gateway
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.influx import InfluxClient, quote_identifier
from jiayuan.state import SNAPSHOT_FILE
from simulators.driver import SimulatedDriver
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tools.demo import CountingDriver, KindCounter, SimClock, run_demo

pytestmark = pytest.mark.servers


def stored_rows(config: Config, kind: Kind) -> dict[tuple[str, int], dict[str, object]]:
    """Every stored point of a kind, keyed by (device, timestamp)."""
    rows: dict[tuple[str, int], dict[str, object]] = {}
    with InfluxClient(config.influx) as client:
        for series in client.query(f"SELECT * FROM {quote_identifier(kind.value)}"):
            for values in series.values:
                row = dict(zip(series.columns, values, strict=True))
                rows[(str(row["device"]), int(row["time"]))] = row  # type: ignore[call-overload]
    return rows


def test_demo_stores_what_was_published_and_detects_every_fault(
    config: Config, tmp_path: Path
) -> None:
    samples: list[DriverSample] = []
    report = run_demo(
        config,
        estates=3,
        duration_s=60,
        seed=11,
        out_dir=tmp_path,
        speed=4,
        sample_sink=samples,
        preview=False,  # the dashboards' own tests prove every panel
    )

    assert report["faults_skipped"] == []
    assert report["dead_letters"] == 0 and report["pending_in_spools"] == 0
    for kind, row in report["by_kind"].items():
        assert row["published"] == row["stored"] > 0, kind
        assert row["faults_injected"] >= 2, kind  # at least two fault types + offline each
    missed = [fault for fault in report["faults"] if not fault["detected"]]
    assert missed == []
    # 16 planned faults and the gauge that dies for good near the end.
    assert report["faults_injected"] == 17 and report["ok"]
    # An estate's healthy water tanks crossed Modbus TCP and a fire panel GB/T
    # 26875.3; their readings are among those stored as published.
    connectors = report["connectors"]
    by_connector = connectors["readings_by_connector"]
    assert by_connector["modbus"] > 0 and by_connector["gb26875"] > 0, connectors
    assert set(connectors["hopped_devices"].values()) == {"gb26875", "modbus"}
    assert all(d["errors"] == {} for d in connectors["modbus_devices"].values()), connectors
    fire_link = connectors["gb26875"]
    assert fire_link["denied"] == 0 and fire_link["bad_frames"] == {}, fire_link

    # Every critical alert became one work order at the reference centre, and the people
    # around it took every alert through its lifecycle.
    alerts = report["alerts"]
    assert alerts["critical_alerts"] >= 3 and alerts["critical_without_work_order"] == []
    assert alerts["duplicate_work_orders"] == 0
    assert alerts["work_orders_created"] >= alerts["critical_alerts"]
    assert alerts["time_to_acknowledge_s"]["count"] >= alerts["critical_alerts"]
    assert alerts["emails_received"] >= alerts["critical_alerts"]
    # The estate's, the street's and the company's group robots each named every critical
    # alert, within the 2 s, without breaking a platform's rate limit.
    robots = alerts["robots"]
    assert robots["limit_violations"] == [] and robots["refused"] == 0
    for platform in ("wecom", "dingtalk", "feishu"):
        delay = robots[platform]["critical_delay_s"]
        assert delay["count"] == alerts["critical_alerts"], platform
        assert delay["over_2_s"] == 0, platform
    assert report["score"]["estates"] == 3

    # Same values, not only the same count: every sample is in InfluxDB as it was read.
    assert len(samples) == report["readings_published"]
    for kind in Kind:
        rows = stored_rows(config, kind)
        of_kind = [sample for sample in samples if sample.kind is kind]
        assert len(rows) == len(of_kind)
        for sample in of_kind:
            row = rows[(sample.device, sample.ts)]
            for name, value in sample.values.items():
                assert row[name] == value, (sample.device, sample.ts, name)
            assert row["building"] == sample.building
            assert row.get("event") == sample.event  # no column at all in a kind without events


def test_a_second_demo_run_in_the_same_directory_starts_afresh(
    config: Config, tmp_path: Path
) -> None:
    # `make demo` twice in one checkout: the same seed gives the same edges, devices and
    # sequence numbers, so anything the first run's gateway saved (its duplicate window in
    # the detection snapshot, its InfluxDB spool, its dead letters) must not reach the
    # second run.
    def demo(database: str) -> dict[str, object]:
        own = replace(config, influx=replace(config.influx, database=database))
        with InfluxClient(own.influx) as client:
            client.ensure_database()
        return run_demo(
            own, estates=1, duration_s=20, seed=3, out_dir=tmp_path, speed=4, preview=False
        )

    first = demo(config.influx.database)
    assert first["readings_published"] == first["readings_stored"]
    assert (tmp_path / "gateway" / SNAPSHOT_FILE).exists()  # the clean stop saved it
    again = f"{config.influx.database}_again"
    second = demo(again)
    try:
        assert second["readings_published"] == second["readings_stored"]
        assert second["dead_letters"] == 0 and second["ok"] == first["ok"]
    finally:
        with InfluxClient(replace(config.influx, database=again)) as client:
            client.drop_database()


def test_an_edge_restarted_mid_run_neither_loses_nor_repeats_readings(
    config: Config, tmp_path: Path
) -> None:
    registry = build_registry(1, seed=5)
    estate = registry.estates[0]
    clock = SimClock(int(time.time() * 1000), speed=3.0)
    plan = plan_faults(registry, clock.start_ms, 40, seed=5)
    counter = KindCounter()
    # The devices keep running while their edge agent crashes: one driver for both agents.
    driver = CountingDriver(
        SimulatedDriver(registry, estate.id, plan.faults, clock.start_ms, 5), counter
    )
    place = EdgePlace(estate.district, estate.street, estate.id, estate.edge_id)
    spool = tmp_path / "spool.sqlite"

    def agent() -> EdgeAgent:
        return EdgeAgent(
            config.mqtt, config.edge, place, driver, spool, clock=clock.now_ms, poll_interval_s=0.2
        )

    async def crash_then_resume() -> None:
        first = agent()
        task = asyncio.create_task(first.run(asyncio.Event()))
        await asyncio.sleep(4)
        first.abort_connection()  # no clean disconnect, no drain: a crash
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(2)  # devices go on producing while the agent is down
        stop = asyncio.Event()
        second = agent()
        resumed = asyncio.create_task(second.run(stop))
        await asyncio.sleep(4)
        stop.set()
        await resumed
        assert second.stats.pending == 0

    gateway = Gateway(config)
    gateway.start()
    try:
        gateway.wait_ready(10)
        asyncio.run(crash_then_resume())
        read = sum(counter.by_kind.values())
        deadline = time.monotonic() + 20
        while gateway.stats.readings_stored < read and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        gateway.stop()

    seqs: dict[str, list[int]] = defaultdict(list)
    for kind in Kind:
        for (device, _), row in stored_rows(config, kind).items():
            seqs[device].append(int(row["seq"]))  # type: ignore[call-overload]
    assert sum(len(device_seqs) for device_seqs in seqs.values()) == read
    for device, device_seqs in seqs.items():
        # Each device's readings are 1..n: none lost, none stored twice, no seq reused.
        assert sorted(device_seqs) == list(range(1, len(device_seqs) + 1)), device
