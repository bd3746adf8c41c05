"""The edge spool on its own: no servers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from edge.agent import envelope_payload
from edge.drivers import DriverSample
from edge.spool import Spool, SpoolError
from jiayuan.catalogue import Kind
from jiayuan.config import Config, MqttConfig
from jiayuan.contract import SCHEMA_VERSION, Envelope, decode_envelope, encode
from tests.edge.test_edge_agent import (
    CountingDriver,
    _closed_port,
    collecting,
    in_loop,
    make_agent,
    make_place,
    until,
)


def tank(device: str, ts: int, level: float | int = 50, pump: float | int = 1) -> DriverSample:
    return DriverSample(
        device, Kind.WATER_TANK, "B1", ts, {"level_pct": level, "pump_running": pump}
    )


def test_seqs_start_at_one_per_device_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    first = spool.append("E1", [tank("T1", 1), tank("T2", 1), tank("T1", 2)])
    assert [(r.device, r.seq) for r in first] == [("T1", 1), ("T2", 1), ("T1", 2)]
    spool.remove([id_ for id_, _ in spool.peek(10)])  # even an emptied spool keeps the seqs
    spool.close()

    spool = Spool(path)
    assert spool.last_seq("T1") == 2 and spool.last_seq("T2") == 1 and spool.last_seq("X") == 0
    again = spool.append("E1", [tank("T1", 3), tank("T2", 2), tank("T3", 1)])
    assert [(r.device, r.seq) for r in again] == [("T1", 3), ("T2", 2), ("T3", 1)]
    spool.close()


def test_values_are_normalised_to_the_catalogue_types(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    [reading] = spool.append("E1", [tank("T1", 5, level=50, pump=1.0)])
    assert reading.values == {"level_pct": 50.0, "pump_running": 1}
    assert isinstance(reading.values["level_pct"], float)
    assert isinstance(reading.values["pump_running"], int)
    [(_, stored)] = spool.peek(1)
    assert stored == reading
    assert type(stored.values["level_pct"]) is float and type(stored.values["pump_running"]) is int
    spool.close()


def test_peek_is_oldest_first_and_remove_forgets(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.append("E1", [tank("T1", ts) for ts in range(1, 6)])
    spool.append("E1", [tank("T2", ts) for ts in range(1, 4)])
    assert spool.pending() == 8
    rows = spool.peek(100)
    assert [r.key for _, r in rows] == [("T1", s) for s in range(1, 6)] + [
        ("T2", s) for s in range(1, 4)
    ]
    ids = [id_ for id_, _ in rows]
    assert ids == sorted(ids)
    # A cursor: what comes after the last id already handed out.
    assert [r.key for _, r in spool.peek(2, after_id=ids[2])] == [("T1", 4), ("T1", 5)]
    # Acks may come back out of order; removing twice is harmless.
    spool.remove([ids[3], ids[0]])
    spool.remove([ids[0]])
    assert spool.pending() == 6
    assert [r.key for _, r in spool.peek(3)] == [("T1", 2), ("T1", 3), ("T1", 5)]
    spool.remove(ids)
    assert spool.pending() == 0 and spool.peek(10) == []
    # Ids are never reused, so a cursor stays valid after the spool was emptied.
    spool.append("E1", [tank("T1", 9)])
    [(new_id, reading)] = spool.peek(10, after_id=ids[-1])
    assert new_id > ids[-1] and reading.key == ("T1", 6)
    spool.close()


def test_replay_after_reopen_starts_from_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    spool.append("E1", [tank("T1", ts) for ts in range(1, 11)])
    spool.remove([id_ for id_, _ in spool.peek(4)])
    spool.close()
    spool = Spool(path)
    assert spool.pending() == 6
    assert [r.seq for _, r in spool.peek(100)] == list(range(5, 11))
    spool.close()


def test_a_spool_belongs_to_one_edge(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    spool.append("E1", [tank("T1", 1)])
    spool.close()
    spool = Spool(path)
    with pytest.raises(SpoolError, match="E1"):
        spool.append("E2", [tank("T1", 2)])
    assert spool.pending() == 1 and spool.last_seq("T1") == 1
    spool.close()


def test_budget_drops_the_oldest_and_warns_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool.db", max_readings=10)
    with caplog.at_level(logging.WARNING, logger="edge.spool"):
        spool.append("E1", [tank("T1", ts) for ts in range(1, 9)])
        assert "80%" in caplog.text and spool.dropped == 0
        spool.append("E1", [tank("T1", ts) for ts in range(9, 14)])
    assert spool.dropped == 3 and spool.pending() == 10
    assert [r.seq for _, r in spool.peek(100)] == list(range(4, 14))
    assert "dropped the 3 oldest" in caplog.text
    spool.close()


def test_peek_raw_respects_a_byte_budget(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.append("E1", [tank("T1", ts) for ts in range(1, 11)])
    one = len(spool.peek_raw(1)[0][1]) + 1
    assert len(spool.peek_raw(100, max_bytes=3 * one)) == 3
    assert len(spool.peek_raw(100, max_bytes=1)) == 1  # always at least one
    spool.close()


def test_envelope_is_spliced_from_stored_readings(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    readings = spool.append("E-1.x", [tank("T1", 1_700_000_000_000), tank("T2", 1)])
    payload = envelope_payload("E-1.x", [body for _, body in spool.peek_raw(10)])
    assert payload == encode(Envelope(SCHEMA_VERSION, "E-1.x", readings))
    assert decode_envelope(payload).readings == readings
    spool.close()


def test_byte_budget_drops_the_oldest_warns_first_and_survives_reopen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    probe = Spool(tmp_path / "probe.db")
    probe.append("E1", [tank("T1", 1)])
    one = probe.bytes_stored()  # readings with one-digit seq and ts; later ones are longer
    probe.close()
    spool = Spool(path, max_bytes=10 * one, warn_fraction=0.5)

    def stored() -> int:
        return sum(len(body) for _, body in spool.peek_raw(100))

    with caplog.at_level(logging.WARNING, logger="edge.spool"):
        spool.append("E1", [tank("T1", ts) for ts in range(1, 5)])
        assert not spool.warning and "budget" not in caplog.text
        spool.append("E1", [tank("T1", 5)])
        assert spool.warning and "50%" in caplog.text and spool.dropped == 0
        spool.append("E1", [tank("T1", ts) for ts in range(6, 14)])
    # 13 readings of 111-112 bytes against 1,110: the four oldest go, nothing else.
    assert (spool.dropped, spool.pending()) == (4, 9)
    assert spool.bytes_stored() == stored() <= 10 * one
    assert [r.seq for _, r in spool.peek(100)] == list(range(5, 14))
    assert "dropped the 4 oldest" in caplog.text
    spool.remove([id_ for id_, _ in spool.peek(6)])
    assert (spool.pending(), spool.warning) == (3, False)
    left = spool.bytes_stored()
    assert left == stored() > 0
    spool.close()
    reopened = Spool(path, max_bytes=left + 1)
    assert (reopened.pending(), reopened.bytes_stored(), reopened.warning) == (3, left, True)
    reopened.close()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_bytes": 0}, "edge.spool_max_bytes"),
        ({"warn_fraction": 0.0}, "edge.spool_warn_fraction"),
        ({"max_readings": 0}, "max_readings"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_setting(
    tmp_path: Path, settings: dict[str, float], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        Spool(tmp_path / "spool.db", **settings)  # type: ignore[arg-type]


@pytest.mark.servers
@in_loop
async def test_after_a_long_outage_the_agent_replays_what_its_byte_budget_kept(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Uplink down while 3 x 200 readings are spooled against a budget of about 300 of
    them: warned first, the oldest dropped and counted; the rest arrives, in order."""
    path = tmp_path / "edge.db"
    probe = Spool(tmp_path / "probe.db")
    probe.append("E1", [tank("T1", 10**12 + 5)])  # about as long as the driver's readings
    budget = 300 * probe.bytes_stored()
    probe.close()
    edge = replace(config.edge, spool_max_bytes=budget, spool_warn_fraction=0.8)
    place = make_place()
    driver = CountingDriver(total=200, per_poll=20)
    down = replace(config, mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{_closed_port()}"))
    cut_off = make_agent(down, place, driver, path, edge, drain_timeout_s=0.2)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="edge.spool"):
        task = asyncio.create_task(cut_off.run(stop))
        await until(lambda: driver.done, 10, "all readings polled")
        stop.set()
        await asyncio.wait_for(task, 5)
    stats = cut_off.stats
    assert stats.readings_spooled == 600 and stats.readings_dropped > 0
    assert stats.pending == 600 - stats.readings_dropped
    assert stats.spool_budget_warning and 0 < stats.spool_bytes <= budget
    assert "of its budget" in caplog.text and "dropped the" in caplog.text
    assert caplog.text.index("of its budget") < caplog.text.index("dropped the")

    async with collecting(config.mqtt, place.estate) as collector:
        back = make_agent(config, place, CountingDriver(total=0, per_poll=0), path, edge)
        stop = asyncio.Event()
        task = asyncio.create_task(back.run(stop))
        await until(lambda: back.stats.pending == 0, 10, "the spool drained")
        stop.set()
        await asyncio.wait_for(task, 5)
        await until(lambda: len(collector.readings) == stats.pending, 5, "all arrived")
    assert back.stats.spool_bytes == 0 and not back.stats.spool_budget_warning
    expected = driver.expected()
    assert collector.readings == {key: expected[key] for key in collector.readings}
    # What survived is each device's newest readings, with no gap, arriving in seq order.
    for device, _ in CountingDriver.DEVICES:
        firsts = list(dict.fromkeys(seq for d, seq in collector.arrivals if d == device))
        assert firsts == list(range(firsts[0], 201)) and firsts[0] > 1
