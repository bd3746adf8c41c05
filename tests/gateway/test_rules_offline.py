"""The timer-driven offline check, the duplicate window and the anomaly book."""

from __future__ import annotations

import random

from gateway.detection.anomalies import AnomalyBook
from gateway.detection.detector import Detector
from gateway.detection.rules import OfflineMonitor
from gateway.detection.rules.base import AnomalyChange
from jiayuan.catalogue import LIFT, Kind
from jiayuan.contract import Reading
from jiayuan.places import Place

T0 = 1_700_000_000_000
AFTER_MS = int(LIFT.offline_after_s * 1000)


def lift_place(device: str = "L1") -> Place:
    return Place("songjiang", "fangsong", "e1", "b1", "lift", device)


def test_offline_fires_from_the_timer_and_clears_on_return() -> None:
    monitor = OfflineMonitor()
    where = lift_place()
    assert monitor.seen(where, T0, T0) is None
    assert monitor.due(T0 + AFTER_MS) == []  # exactly at the limit: not yet
    due = monitor.due(T0 + AFTER_MS + 1)
    assert [(p.device, c.code, c.opened, c.ts_ms) for p, c in due] == [
        ("L1", "lift.offline", True, T0 + AFTER_MS)
    ]
    assert monitor.due(T0 + 10 * AFTER_MS) == []  # opened once
    back = monitor.seen(where, T0 + 100_000, T0 + 100_000)
    assert back is not None and not back.opened and back.code == "lift.offline"
    assert back.value == 100.0


def test_offline_runs_on_device_time_in_accelerated_replays() -> None:
    monitor = OfflineMonitor()
    silent, chatty = lift_place("L1"), lift_place("L2")
    monitor.seen(silent, T0, T0)
    # Device time runs ten times faster than the wall clock.
    for step in range(1, 21):
        monitor.seen(chatty, T0 + step * 1000, T0 + step * 100)
    assert [p.device for p, _ in monitor.due(T0 + 2000)] == ["L1"]


def test_backlog_after_an_outage_is_not_offline() -> None:
    monitor = OfflineMonitor()
    where = lift_place()
    wall = T0 + 600_000  # readings ten minutes old arrive now
    monitor.seen(where, T0, wall)
    assert monitor.due(wall + 1000) == []
    # Still nothing after the backlog stopped for offline_after_s of wall time: offline.
    assert len(monitor.due(wall + AFTER_MS + 1)) == 1


def test_many_devices_grow_the_arrays() -> None:
    monitor = OfflineMonitor()
    for index in range(3000):
        monitor.seen(lift_place(f"L{index}"), T0, T0)
    monitor.seen(lift_place("L7"), T0 + AFTER_MS, T0 + AFTER_MS)
    assert len(monitor.due(T0 + AFTER_MS + 1)) == 2999


def test_a_mass_outage_is_reported_a_share_at_a_time_each_device_once() -> None:
    detector = Detector()
    for index in range(10):
        where = lift_place(f"L{index}")
        detector.reading(where, Reading(where.device, "lift", 1, T0, {"car_status": 0}), T0)
    later = T0 + AFTER_MS + 1
    shares = [detector.tick(later, most=4) for _ in range(4)]
    assert [len(share) for share in shares] == [4, 4, 2, 0]
    devices = [anomaly.device for share in shares for anomaly in share]
    assert sorted(devices) == sorted(f"L{index}" for index in range(10))
    assert detector.tick(later) == []  # without a bound: nothing left, nothing twice


def test_detector_closes_offline_when_data_returns() -> None:
    detector = Detector()
    where = lift_place()
    detector.reading(where, Reading("L1", "lift", 1, T0, {"car_status": 0}), T0)
    opened = detector.tick(T0 + AFTER_MS + 5000)
    assert [(a.code, a.state) for a in opened] == [("lift.offline", "open")]
    back = detector.reading(
        where, Reading("L1", "lift", 2, T0 + 60_000, {"car_status": 0}), T0 + 60_000
    )
    assert [(a.code, a.state, a.end_ms) for a in back] == [("lift.offline", "closed", T0 + 60_000)]
    assert back[0].start_ms == opened[0].start_ms


def test_anomaly_book_one_per_device_and_condition() -> None:
    book = AnomalyBook(recent_closed=2)
    where = lift_place()
    opened = book.apply(where, AnomalyChange("lift.trapped", True, T0, 20.0, 20.0))
    assert opened is not None and opened.state == "open" and opened.title_zh == "困人"
    assert book.apply(where, AnomalyChange("lift.trapped", True, T0 + 5, 20.0, 20.0)) is None
    assert book.apply(where, AnomalyChange("lift.power_loss", False, T0, 1.0, 2.0)) is None
    closed = book.apply(where, AnomalyChange("lift.trapped", False, T0 + 9000, 0.0, 20.0))
    assert closed is not None and closed.end_ms == T0 + 9000 and closed.start_ms == T0
    for index in range(3):
        book.apply(where, AnomalyChange("lift.power_loss", True, T0 + index, float("nan"), 2))
        book.apply(where, AnomalyChange("lift.power_loss", False, T0 + index + 1, 1.0, 2.0))
    assert len(book.list(active=False)) == 2  # the ring is bounded
    assert book.list(active=False)[0].value == 0.0  # NaN is not storable
    assert book.list(kind="fire") == [] and book.list(estate="e1")
    assert Kind.LIFT.value == "lift"


def _fed_one_at_a_time(
    monitor: OfflineMonitor, items: list[tuple[Place, Reading, int]]
) -> list[AnomalyChange | None]:
    return [monitor.seen(place, reading.ts, received) for place, reading, received in items]


def _by_kind(items: list[tuple[Place, Reading, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for index, (_, reading, _) in enumerate(items):
        grouped.setdefault(reading.kind, []).append(index)
    return grouped


def test_seen_many_is_seen_reading_by_reading() -> None:
    """The batch form (compiled: C arrays, Places known by identity) leaves the state and
    returns the changes that ``seen`` does one reading at a time, through new devices, the
    arrays growing past their first 1,024 rows, a device's building changing, equal but
    new Places, readings out of order and devices coming back from offline."""
    rng = random.Random(7)
    one, many = OfflineMonitor(), OfflineMonitor()
    devices = [("lift", f"L{n}") for n in range(1_100)] + [
        ("waterlogging", f"G{n}") for n in range(300)
    ]
    buildings: dict[str, str] = {}
    places: dict[str, Place] = {}
    now, returned = T0, 0
    for _ in range(12):
        items: list[tuple[Place, Reading, int]] = []
        for _ in range(400):
            kind, device = rng.choice(devices)
            if device not in buildings or rng.random() < 0.02:
                buildings[device] = f"b{rng.randrange(3)}"
            place = places.get(device)
            if place is None or place.building != buildings[device] or rng.random() < 0.05:
                place = places[device] = Place("d", "s", "e", buildings[device], kind, device)
            ts = now + rng.randrange(-5_000, 5_000)  # not in order
            values: dict[str, float | int | str | bool] = {"x": 1}
            reading = Reading(device=device, kind=kind, seq=1, ts=ts, values=values)
            items.append((place, reading, now + rng.randrange(0, 3_000)))
        backs = many.seen_many(items, _by_kind(items))
        assert backs == _fed_one_at_a_time(one, items)
        returned += sum(back is not None for back in backs)
        _assert_same_state(many, one)
        now += rng.choice([1_000, 10_000, 4 * AFTER_MS])  # now and then all go silent
        assert many.due(now) == one.due(now)
    assert returned > 100 and len(many._clocks["lift"].places) > 1_024  # both paths taken


def _assert_same_state(a: OfflineMonitor, b: OfflineMonitor) -> None:
    left, right = a.export_state(), b.export_state()
    assert left["_latest_ts"] == right["_latest_ts"]
    for kind, clock in left["_clocks"].items():
        other = right["_clocks"][kind]
        assert clock.rows == other.rows and clock.places == other.places
        for name in ("last_ts", "last_rx", "heard", "offline"):
            assert (getattr(clock, name) == getattr(other, name)).all(), name
