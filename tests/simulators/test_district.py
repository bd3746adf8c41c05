"""A district's traffic: layout and family mix, the contract, periods, batching, health,
determinism, and the fire alarms a latency probe asks for."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

import msgspec
import pytest

from edge.agent import envelope_payload
from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from jiayuan.catalogue import Kind, family
from jiayuan.contract import (
    BATCH,
    MAX_PAYLOAD_BYTES,
    Channel,
    Reading,
    check_reading,
    decode_envelope,
    parse_topic,
)
from simulators.district import JITTER_SHARE, District, Traffic, build_district
from simulators.registry import build_registry

START = 1_765_000_000_000  # 2025-12-06, a Saturday
MINUTE = 60_000


@pytest.fixture(scope="module")
def district() -> District:
    return build_district(400, seed=3)


@pytest.fixture(scope="module")
def live(district: District) -> Traffic:
    return district.traffic(START, START + 10 * MINUTE)


def readings_of(traffic: Traffic) -> list[tuple[str, Reading]]:
    """(topic, reading) of every reading, in wire order."""
    return [
        (topic, reading)
        for topic, payload, _ in traffic.wires
        for reading in decode_envelope(payload).readings
    ]


def test_exactly_n_devices_of_a_registry_in_its_family_mix(district: District) -> None:
    assert district.devices == 400
    ids = [device.id for device in district.registry.devices()]
    assert len(set(ids)) == 400
    # The first 400 devices of the registry for the same seed: its mix, not a made-up one.
    registry = build_registry(len(district.estates), seed=3)
    assert ids == [device.id for device in registry.devices()][:400]
    mix = Counter(device.kind for device in district.registry.devices())
    assert set(mix) == set(Kind)
    assert mix[Kind.LIFT] > mix[Kind.FIRE] > mix[Kind.WATER_TANK]


def test_every_reading_is_valid_and_every_device_reports(district: District, live: Traffic) -> None:
    seen: set[str] = set()
    for topic_text, reading in readings_of(live):
        topic = parse_topic(topic_text)
        assert topic.kind == BATCH
        assert check_reading(reading, topic, now_ms=START + 10 * MINUTE) is None
        assert reading.event is None
        seen.add(reading.device)
    assert seen == {device.id for device in district.registry.devices()}
    assert live.readings == sum(readings for _, _, readings in live.wires)


def test_each_device_reports_at_its_family_period_with_jitter(live: Traffic) -> None:
    stamps: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for _, reading in readings_of(live):
        stamps[reading.device, reading.kind].append(reading)
    for (device, kind), readings in stamps.items():
        period = family(kind).heartbeat_s * 1000
        readings.sort(key=lambda reading: reading.ts)
        gaps = [b.ts - a.ts for a, b in pairwise(readings)]
        assert all(
            period * (1 - 2 * JITTER_SHARE) <= gap <= period * (1 + 2 * JITTER_SHARE)
            for gap in gaps
        ), device
        assert abs(len(readings) - 10 * MINUTE / period) <= 1, device
        # One edge numbers a device's readings one by one.
        assert [b.seq - a.seq for a, b in pairwise(readings)] == [1] * len(gaps)
    jitters = {reading.ts % 1000 for readings in stamps.values() for reading in readings}
    assert len(jitters) > 100  # not on a grid


def test_live_edges_publish_each_estate_s_second_as_one_message(
    district: District, live: Traffic
) -> None:
    assert live.publish_ms == sorted(live.publish_ms)
    edges = {estate.edge_id: estate for estate in district.estates}
    windows: set[tuple[str, int]] = set()
    for (topic_text, payload, count), published in zip(live.wires, live.publish_ms, strict=True):
        envelope = decode_envelope(payload)
        estate = edges[envelope.edge]
        topic = parse_topic(topic_text)
        assert (topic.district, topic.street, topic.estate, topic.device) == (
            estate.district,
            estate.street,
            estate.id,
            estate.edge_id,
        )
        assert count == len(envelope.readings)
        assert {reading.device for reading in envelope.readings} <= {
            device.id for device in estate.devices
        }
        assert all(published - 1000 <= reading.ts < published for reading in envelope.readings)
        windows.add((envelope.edge, published))
    assert len(windows) == len(live.wires)  # one message per estate and second


@pytest.mark.slow
def test_a_backlog_is_cut_into_the_edge_s_batches(district: District) -> None:
    backlog = district.traffic(START, START + 15 * MINUTE, flush_ms=15 * MINUTE, batch_max=100)
    assert len(backlog.wires) > len(district.estates)
    for _, payload, count in backlog.wires:
        assert count <= 100
        assert len(payload) <= MAX_PAYLOAD_BYTES
        envelope = decode_envelope(payload)
        assert len(envelope.readings) == count
        # The edge's envelope around the readings (edge.agent.envelope_payload).
        assert payload.startswith(envelope_payload(envelope.edge, [])[:-2])
    # The same readings as the live edges send in that time, only batched differently.
    live = district.traffic(START, START + 15 * MINUTE)
    assert sorted(_keys(backlog)) == sorted(_keys(live))


def test_a_window_is_the_longer_window_cut_to_it(district: District) -> None:
    whole = district.traffic(START, START + 4 * MINUTE)
    halves = [
        district.traffic(START, START + 2 * MINUTE),
        district.traffic(START + 2 * MINUTE, START + 4 * MINUTE),
    ]
    assert sorted(_bodies(whole)) == sorted(_bodies(halves[0]) + _bodies(halves[1]))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(district: District) -> None:
    again = build_district(400, seed=3).traffic(START, START + MINUTE)
    assert again.wires == district.traffic(START, START + MINUTE).wires
    other = build_district(400, seed=4).traffic(START, START + MINUTE)
    assert other.wires != again.wires


def test_single_messages_go_to_each_device_s_own_topic(district: District) -> None:
    single = district.traffic(START, START + MINUTE, single=True, alarms=2)
    batched = district.traffic(START, START + MINUTE, alarms=2)
    assert single.readings == batched.readings == len(single.wires)
    assert sorted(_bodies(single)) == sorted(_bodies(batched))
    for topic_text, payload, _ in single.wires:
        topic = parse_topic(topic_text)
        (reading,) = decode_envelope(payload).readings
        assert (topic.kind, topic.device) == (reading.kind, reading.device)
        expected = Channel.EVENT if reading.event else Channel.TELEMETRY
        assert topic.channel is expected
        assert check_reading(reading, topic, now_ms=START + MINUTE) is None


def test_only_the_chosen_estates_send(district: District) -> None:
    chosen = [0, 3]
    traffic = district.traffic(START, START + MINUTE, estates=chosen)
    edges = {decode_envelope(payload).edge for _, payload, _ in traffic.wires}
    assert edges == {district.estates[n].edge_id for n in chosen}


@pytest.mark.slow
def test_healthy_traffic_opens_no_anomaly_and_alarms_open_one_each(district: District) -> None:
    """Through the gateway's own pipeline, past every statistical detector's warm-up but
    drift's: no dead letter, and only the asked-for fire alarms open anomalies."""
    end = START + 12 * MINUTE
    traffic = district.traffic(START, end, alarms=3)
    assert len(traffic.alarms) == 3
    assert len({alarm.device for alarm in traffic.alarms}) == 3
    for alarm in traffic.alarms:
        carried = decode_envelope(traffic.wires[alarm.wire][1]).readings
        (marked,) = [reading for reading in carried if reading.device == alarm.device]
        assert (marked.event, marked.values["fire_alarm"], marked.ts) == (
            "fire.alarm",
            1,
            alarm.ts,
        )
    pipeline = Pipeline(Detector(), GatewayMetrics(), clock=lambda: end)
    batch = Batch()
    opened: list[str] = []
    for mid, (topic, payload, _) in enumerate(traffic.wires, start=1):
        pipeline.add(Message(topic, payload, mid, 1, end), batch)
        if batch.readings >= 2000:
            pipeline.detect(batch)
            assert batch.dead == []
            opened += [
                msgspec.json.encode(line.origin).decode()
                for line in batch.lines
                if not line.is_reading
            ]
            batch = Batch()
    pipeline.detect(batch)
    opened += [
        msgspec.json.encode(line.origin).decode() for line in batch.lines if not line.is_reading
    ]
    assert batch.dead == []
    changes = Counter(
        (anomaly["device"], anomaly["code"], anomaly["state"])
        for anomaly in map(msgspec.json.decode, opened)
    )
    # Each alarm opens one anomaly, and the panel's next (healthy) reading closes it.
    assert changes == Counter(
        (alarm.device, "fire.alarm", state)
        for alarm in traffic.alarms
        for state in ("open", "closed")
    )


def test_bad_windows_are_refused(district: District) -> None:
    with pytest.raises(ValueError, match="empty"):
        district.traffic(START, START)
    with pytest.raises(ValueError, match="batch_max"):
        district.traffic(START, START + MINUTE, batch_max=0)
    with pytest.raises(ValueError, match="at least one"):
        build_district(0)


def _bodies(traffic: Traffic) -> list[bytes]:
    return [msgspec.json.encode(reading) for _, reading in readings_of(traffic)]


def _keys(traffic: Traffic) -> list[tuple[str, int, int]]:
    return [(reading.device, reading.seq, reading.ts) for _, reading in readings_of(traffic)]
