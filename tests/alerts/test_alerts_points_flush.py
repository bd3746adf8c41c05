"""The alert service's points reach InfluxDB in bounded requests, in order, and a failed
request keeps what was not written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from alerts import service as alert_service
from alerts.points import PointBuffer, alert_line
from alerts.service import AlertService
from jiayuan import influx
from jiayuan.anomaly import Anomaly
from jiayuan.config import AlertsConfig, Config, GatewayConfig
from jiayuan.influx import InfluxError

NOW = 1_800_000_000_000


class Recording:
    """InfluxDB's write, recorded; it refuses the request numbered ``fail_at``."""

    def __init__(self, fail_at: int = -1) -> None:
        self.requests: list[list[bytes]] = []
        self.fail_at = fail_at

    def write(self, lines: Sequence[str] | bytes) -> None:
        assert isinstance(lines, bytes)  # one UTF-8 body
        if len(self.requests) == self.fail_at:
            self.fail_at = -1
            raise InfluxError("refused for the test", retryable=True)
        self.requests.append(lines.split(b"\n"))

    def close(self) -> None:
        pass


def offline(devices: int) -> list[Anomaly]:
    return [
        Anomaly("d1", "s1", f"e{i // 100}", "b1", f"lift-{i:04d}", "lift", "lift.offline",
                "critical", "设备离线", "device offline", 0.0, 0.0, NOW - 60_000, 0, "open")
        for i in range(devices)
    ]  # fmt: skip


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlertService:
    monkeypatch.setattr(alert_service, "WRITE_CHUNK_POINTS", 7)
    config = Config(gateway=GatewayConfig(state_dir=str(tmp_path)), alerts=AlertsConfig())
    return AlertService(config, clock=lambda: NOW)


def test_a_storm_of_alert_points_is_written_in_bounded_requests_in_order(
    service: AlertService,
) -> None:
    service.on_anomalies(offline(30))
    expected = list(service.points._lines)
    assert len(expected) >= 30
    influx = Recording()
    service._influx = influx  # type: ignore[assignment]
    service._flush_points()
    assert [len(r) for r in influx.requests][:-1] == [7] * (len(influx.requests) - 1)
    assert 0 < len(influx.requests[-1]) <= 7
    assert [line for request in influx.requests for line in request] == expected
    assert service._pending_lines == []


def test_a_refused_request_keeps_the_points_not_yet_written_for_the_next_tick(
    service: AlertService,
) -> None:
    service.on_anomalies(offline(30))
    expected = list(service.points._lines)
    influx = Recording(fail_at=2)
    service._influx = influx  # type: ignore[assignment]
    service._flush_points()
    assert [line for request in influx.requests for line in request] == expected[:14]
    assert service._pending_lines == expected[14:]
    service._flush_points()  # the next tick: InfluxDB takes them again
    assert [line for request in influx.requests for line in request] == expected
    assert service._pending_lines == []


def test_the_buffer_keeps_each_event_s_line_in_utf_8_and_drains_it_as_text(
    service: AlertService,
) -> None:
    events = service.engine.on_anomalies(offline(3))
    raised = [e for e in events if e.action.value == "raised"]
    assert raised
    lines = service.points.drain()
    # The event's own line, its Chinese title intact (the time moved on only within a series).
    for event in raised:
        assert alert_line(event) in lines
    assert any("设备离线" in line for line in lines)
    assert service.points.drain_encoded() == []
    service.engine.on_anomalies([replace(a, start_ms=a.start_ms + 1) for a in offline(1)])
    assert all(isinstance(line, bytes) for line in service.points.drain_encoded())


def test_events_of_one_series_in_one_millisecond_keep_apart_after_the_clock_moves_on(
    service: AlertService,
) -> None:
    """Each point of a series gets its own time even when a later event's clock is behind
    the times already given; once the clock has passed them, an event keeps its own."""
    (raised,) = [e for e in service.engine.on_anomalies(offline(1)) if e.action.value == "raised"]
    other = replace(raised, alert=replace(raised.alert, device="lift-other"))
    buffer = PointBuffer()
    for event in (raised, raised, other, raised, replace(raised, at_ms=NOW + 1)):
        buffer(event)
    buffer(replace(raised, at_ms=NOW + 10))
    stamps = [int(line.rsplit(b" ", 1)[1]) for line in buffer.drain_encoded()]
    at = raised.at_ms
    assert stamps == [at, at + 1, at, at + 2, at + 3, NOW + 10]


def test_alert_lines_of_an_outage_leave_the_line_caches_as_they_were(
    service: AlertService,
) -> None:
    """Each alert event's tag set (device, action …) is written once: caching it would keep
    some 850 bytes an event through a district's outage (bench/alert_memory.py)."""
    (first,) = [e for e in service.engine.on_anomalies(offline(1)) if e.action.value == "raised"]
    alert_line(first)  # the names every alert line shares, cached if ever
    entries = influx.cached_entries()
    for n in range(2_000):
        event = replace(first, alert=replace(first.alert, device=f"lift-{n}", building=f"b{n}"))
        assert f",device=lift-{n}," in alert_line(event)
    assert influx.cached_entries() == entries
