"""A restarted gateway takes back from InfluxDB the devices it knew and their offline state."""

from __future__ import annotations

from gateway.detection.detector import Detector
from gateway.detection.resume import resume_detector
from gateway.service import Gateway
from jiayuan.catalogue import LIFT
from jiayuan.config import Config
from jiayuan.influx import InfluxClient
from tests.gateway.test_gateway import lift_reading, now_ms, query, wait_for
from tests.support.mqtt_publisher import Publisher

AFTER_MS = int(LIFT.offline_after_s * 1000)


def test_a_device_silent_across_a_restart_is_still_reported_and_its_return_closes_it(
    config: Config, publisher: Publisher
) -> None:
    # Device time runs ahead of the wall clock (an accelerated replay), as in test_gateway.
    start = now_ms()
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    try:
        assert gateway.wait_ready(10)
        # L1 reports, then L2 reports well after L1's silence: L1 goes offline.  L3 reports
        # once, later, so its silence begins just before the stop.
        publisher.readings(
            [lift_reading(1, start, "L1"), lift_reading(1, start + 3 * AFTER_MS, "L2")]
        )
        wait_for(lambda: any(a.device == "L1" for a in gateway.anomalies(active=True)))
        publisher.readings([lift_reading(1, start + 4 * AFTER_MS, "L3")])
        gateway.wait_idle()
    finally:
        gateway.stop()

    wall = now_ms()
    detector = Detector()
    with InfluxClient(config.influx) as client:
        resumed = resume_detector(detector, client, wall)
    assert (resumed.devices, resumed.open_anomalies) == (3, 1)
    assert [(a.device, a.code) for a in detector.book.list(active=True)] == [("L1", "lift.offline")]

    # The devices it knew are judged as before the restart: nobody is silent yet at the
    # last reading's time ...
    assert detector.tick(wall) == []
    # ... and later the silent ones are reported with the start their silence had; L1 is
    # not reported a second time.
    later = start + 6 * AFTER_MS
    silent = detector.tick(later)
    assert sorted((a.device, a.start_ms) for a in silent) == [
        ("L2", start + 4 * AFTER_MS),
        ("L3", start + 5 * AFTER_MS),
    ]
    # L1 returning closes the anomaly that was open before the restart.
    place = next(p for p in detector.offline.places() if p.device == "L1")
    back = detector.reading(place, lift_reading(2, later + 1000, "L1"), wall)
    assert [(a.device, a.code, a.state, a.start_ms) for a in back] == [
        ("L1", "lift.offline", "closed", start + AFTER_MS)
    ]
    rows = query(config, "SELECT * FROM anomaly WHERE device = 'L1'")
    assert [row["start"] for row in rows] == [start + AFTER_MS]
