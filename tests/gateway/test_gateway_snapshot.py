"""The detection state a clean stop saves and the next start takes back
(gateway.detection.snapshot)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from gateway.detection.detector import Detector
from gateway.detection.snapshot import fingerprint, save, take_back
from gateway.service import Gateway
from gateway.transport.dedup import DUPLICATE, NEW, SeqWindow
from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import LIFT
from jiayuan.config import Config
from jiayuan.contract import Reading
from jiayuan.places import Place
from jiayuan.state import SNAPSHOT_FILE
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tests.gateway.test_gateway import lift_reading, now_ms, query, wait_for
from tests.support.mqtt_publisher import Publisher
from tools.replay import as_gateway_input

STREETS = ("+",)
MINUTES = 40
CHUNK = 500  # readings per detection call, as the gateway's batches


@pytest.fixture(scope="module")
def traffic() -> list[tuple[Place, Reading]]:
    """Simulated estates with labelled faults: anomalies open and close throughout."""
    registry = build_registry(3, seed=5)
    start = 1_700_000_000_000
    faults = plan_faults(registry, start, MINUTES * 60, seed=5).faults
    samples = generate(registry, faults, start, start + MINUTES * 60_000, 5)
    return [(place, reading) for _, place, reading in as_gateway_input(samples)]


def judge(detector: Detector, items: list[tuple[Place, Reading]]) -> list[Anomaly]:
    changed: list[Anomaly] = []
    for first in range(0, len(items), CHUNK):
        chunk = items[first : first + CHUNK]
        changed += detector.readings([(place, reading, reading.ts) for place, reading in chunk])
    return changed


def same(left: object, right: object, where: str = "state") -> None:
    """Deep equality of exported state: arrays by value (NaN equal to NaN), objects by
    their attributes."""
    assert type(left) is type(right), where
    if isinstance(left, np.ndarray):
        assert isinstance(right, np.ndarray)
        assert left.dtype == right.dtype and np.array_equal(left, right, equal_nan=True), where
    elif isinstance(left, dict):
        assert isinstance(right, dict) and list(left) == list(right), where
        for key in left:
            same(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, list | tuple | deque):
        assert isinstance(right, list | tuple | deque) and len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            same(a, b, f"{where}[{index}]")
    elif hasattr(left, "__dict__") and not isinstance(left, Place):
        same(vars(left), vars(right), f"{where}.{type(left).__name__}")
    else:
        assert left == right, where


def snapshot_of(
    detector: Detector,
    path: Path,
    seen: SeqWindow | None = None,
    streets: tuple[str, ...] = STREETS,
) -> int:
    return save(path, detector, seen or SeqWindow(), streets, now_ms())


def test_a_restored_detector_judges_the_rest_as_one_that_never_stopped(
    traffic: list[tuple[Place, Reading]], tmp_path: Path
) -> None:
    path = tmp_path / SNAPSHOT_FILE
    running = Detector()
    # Stop at the first batch boundary past a quarter of the traffic with anomalies open.
    half = len(traffic) // 4
    before = judge(running, traffic[:half])
    while not running.book.open_count:
        before += judge(running, traffic[half : half + CHUNK])
        half += CHUNK
    assert half < len(traffic) * 3 // 4
    snapshot_of(running, path)
    open_at_stop = {(a.device, a.code) for a in running.book.list(active=True)}

    restored = Detector()
    back = take_back(path, restored, SeqWindow(), STREETS, now_ms())
    assert back is not None
    assert back.open_anomalies == len(open_at_stop) and back.devices == len(running.offline)
    state, restored_state = running.export_state(), restored.export_state()
    # Every device counts as heard from at the restart (a grace before it is silent).
    for exported in (state, restored_state):
        exported["offline"]["_clocks"] = {
            kind: {**vars(clock), "last_rx": None}
            for kind, clock in exported["offline"]["_clocks"].items()
        }
    same(state, restored_state)
    # A device's rules, statistics and offline check share one row number (one dictionary
    # entry), before the stop and after the restart.
    for detector in (running, restored):
        for kind, rules in detector.rules.items():
            assert detector.statistical._tables[kind.value].rows is rules.device_rows
            assert detector.offline._clocks[kind.value].rows is rules.device_rows
    after_restart = judge(restored, traffic[half:])
    assert after_restart == judge(running, traffic[half:])

    # What the snapshot is for: anomalies open at the stop are closed after the restart;
    # a detector starting afresh never closes them and judges the rest otherwise.
    closed = {(a.device, a.code) for a in after_restart if a.state == "closed"}
    assert open_at_stop & closed, "the traffic must close an anomaly open at the stop"
    assert before and judge(Detector(), traffic[half:]) != after_restart


def test_the_fingerprint_is_the_same_in_every_process() -> None:
    # String hashing, and with it a set's order, differs from process to process: a
    # restarted gateway must still recognise its own snapshot.
    code = (
        "from gateway.detection.detector import Detector; "
        "from gateway.detection.snapshot import fingerprint; "
        "print(fingerprint(Detector(), ('s1', 's3')))"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert printed == {fingerprint(Detector(), ("s1", "s3"))}


def test_the_duplicate_window_is_restored_too(tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT_FILE
    seen = SeqWindow()
    assert all(seen.offer("edge-1", "L1", seq, seq * 1000) == NEW for seq in range(1, 40))
    snapshot_of(Detector(), path, seen)
    restored = SeqWindow()
    assert take_back(path, Detector(), restored, STREETS, now_ms()) is not None
    # A redelivery after the restart, then the next reading.
    assert restored.offer("edge-1", "L1", 17, 17_000) == DUPLICATE
    assert restored.offer("edge-1", "L1", 40, 40_000) == NEW


def test_a_snapshot_is_taken_back_once(
    traffic: list[tuple[Place, Reading]], tmp_path: Path
) -> None:
    # A gateway that crashes after a restored start resumes from InfluxDB, never from a
    # snapshot older than what it acknowledged since.
    path = tmp_path / SNAPSHOT_FILE
    running = Detector()
    judge(running, traffic[:2000])
    snapshot_of(running, path)
    assert take_back(path, Detector(), SeqWindow(), STREETS, now_ms()) is not None
    again = Detector()
    assert take_back(path, again, SeqWindow(), STREETS, now_ms()) is None
    assert len(again.offline) == 0


def test_a_snapshot_for_other_streets_or_damaged_is_refused_and_the_state_stays_fresh(
    traffic: list[tuple[Place, Reading]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / SNAPSHOT_FILE
    running = Detector()
    judge(running, traffic[:2000])

    # A worker set resized: another split of the streets.
    snapshot_of(running, path, streets=("s1", "s2"))
    other = Detector()
    assert take_back(path, other, SeqWindow(), ("s1",), now_ms()) is None
    assert len(other.offline) == 0 and other.book.open_count == 0
    assert "other streets" in caplog.text

    snapshot_of(running, path)
    with sqlite3.connect(path) as db:
        (body,) = db.execute("SELECT body FROM snapshot_part WHERE seq = 0").fetchone()
        damaged = bytes([body[0] ^ 0xFF]) + body[1:]
        db.execute("UPDATE snapshot_part SET body = ? WHERE seq = 0", (damaged,))
    fresh = Detector()
    assert take_back(path, fresh, SeqWindow(), STREETS, now_ms()) is None
    assert len(fresh.offline) == 0
    assert "damaged" in caplog.text


def test_a_large_state_is_kept_in_parts(
    traffic: list[tuple[Place, Reading]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.detection.snapshot.PART_BYTES", 10_000)
    path = tmp_path / SNAPSHOT_FILE
    running = Detector()
    judge(running, traffic[:3000])
    size = snapshot_of(running, path)
    with sqlite3.connect(path) as db:
        (parts,) = db.execute("SELECT count(*) FROM snapshot_part").fetchone()
    assert parts == -(-size // 10_000) > 1
    restored = Detector()
    assert take_back(path, restored, SeqWindow(), STREETS, now_ms()) is not None
    assert judge(restored, traffic[3000:6000]) == judge(running, traffic[3000:6000])


def test_an_anomaly_open_across_a_clean_restart_is_closed_as_one_point(
    config: Config, publisher: Publisher
) -> None:
    start = now_ms() - 120_000
    hold_ms = int(LIFT.threshold("trapped_in_zone_s") * 1000)
    first = Gateway(config, serve_api=False)
    first.start()
    try:
        assert first.wait_ready(10)
        trapped = [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
        publisher.readings(trapped)
        wait_for(lambda: bool(first.anomalies(active=True)))
        assert first.wait_idle()
    finally:
        first.stop()
    assert first.processor.settled

    second = Gateway(config, serve_api=False)
    second.start()
    try:
        assert second.wait_ready(10)
        # Taken back before any traffic, and only once.
        assert [(a.device, a.code, a.start_ms) for a in second.anomalies(active=True)] == [
            ("L1", "lift.trapped", start + 5000 + hold_ms)
        ]
        snapshot = Path(config.gateway.state_dir) / SNAPSHOT_FILE
        assert take_back(snapshot, Detector(), SeqWindow(), STREETS, now_ms()) is None
        # A redelivered reading from before the restart is still a duplicate.
        publisher.readings([trapped[-1]])
        wait_for(lambda: second.stats.duplicates == 1)
        released = lift_reading(7, start + 40_000, passenger_status=1, door_status=1)
        publisher.readings([released])
        wait_for(lambda: not second.anomalies(active=True))
        assert second.wait_idle()
    finally:
        second.stop()
    rows = query(config, "SELECT * FROM anomaly GROUP BY *")
    assert [(r["code"], r["state"], r["start"], r["end"]) for r in rows] == [
        ("lift.trapped", "closed", start + 5000 + hold_ms, start + 40_000)
    ]


def test_an_unreadable_snapshot_file_is_set_aside_and_the_gateway_starts_from_influxdb(
    config: Config, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = Path(config.gateway.state_dir) / SNAPSHOT_FILE
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"not a database" * 100)
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    try:
        assert gateway.wait_ready(10)
        publisher.readings([lift_reading(1, now_ms() - 1000)])
        wait_for(lambda: gateway.stats.readings_stored == 1)
    finally:
        gateway.stop()
    assert "cannot read the detection snapshot" in caplog.text
    assert (snapshot.parent / (SNAPSHOT_FILE + ".unreadable")).exists()
    # The clean stop wrote a new snapshot in its place.
    assert take_back(snapshot, Detector(), SeqWindow(), STREETS, now_ms()) is not None
