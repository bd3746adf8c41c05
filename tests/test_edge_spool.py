"""The edge spool on its own: no servers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.agent import envelope_payload
from edge.drivers import DriverSample
from edge.spool import Spool, SpoolError
from jiayuan.catalogue import Kind
from jiayuan.contract import SCHEMA_VERSION, Envelope, decode_envelope, encode


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
