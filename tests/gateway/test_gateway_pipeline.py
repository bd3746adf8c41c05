"""The pipeline without servers: any bytes on any topic end as stored lines or dead
letters, never as an exception; and the CLI registers ``gateway run``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import cli
from gateway import pipeline as pipeline_module
from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.storage.deadletters import Reason
from jiayuan.anomaly import Anomaly
from jiayuan.config import GatewayConfig
from jiayuan.contract import MAX_PAYLOAD_BYTES, Envelope, Reading, Value, batch_topic, encode
from jiayuan.places import Place

NOW = 1_700_000_000_000
TOPIC = batch_topic("songjiang", "fangsong", "e1", "edge1")


def pipeline() -> Pipeline:
    return Pipeline(Detector(), GatewayMetrics(), clock=lambda: NOW)


def message(topic: str, payload: bytes, mid: int = 1) -> Message:
    return Message(topic, payload, mid, 1, NOW)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    topic=st.one_of(
        st.just(TOPIC),
        st.text(max_size=80),
        st.builds(lambda kind: f"jiayuan/v1/d/s/e/{kind}/x/telemetry", st.text(max_size=12)),
    ),
    payload=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda values: encode(
                Envelope(
                    v=1,
                    edge="edge1",
                    readings=[Reading(device="L1", kind="lift", seq=1, ts=NOW, values=values)],
                )
            ),
            st.dictionaries(
                st.sampled_from(["speed", "car_status", "door_status", "nonsense", "p01_temp"]),
                st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5)),
                max_size=4,
            ),
        ),
    ),
)
def test_any_message_ends_stored_or_dead_lettered(topic: str, payload: bytes) -> None:
    batch = Batch()
    pipeline().add(message(topic, payload), batch)
    assert batch.messages and (batch.lines or batch.dead)
    assert all(letter.reason.value != "internal_error" for letter in batch.dead)
    for pending in batch.lines:
        assert "\n" not in pending.line


def test_one_bad_reading_does_not_spoil_its_envelope() -> None:
    good = Reading(device="G1", kind="waterlogging", seq=1, ts=NOW, values={"depth": 1})
    future = Reading(device="G2", kind="waterlogging", seq=1, ts=NOW + 3_600_000, values={})
    batch = Batch()
    pipe = pipeline()
    pipe.add(message(TOPIC, encode(Envelope(v=1, edge="edge1", readings=[future, good]))), batch)
    assert [d.reason.value for d in batch.dead] == ["bad_reading"]
    assert "future" in batch.dead[0].detail
    # The int depth is written as a float, so the field's type never changes.
    assert [p.line.split(" ")[1] for p in batch.lines] == ["depth=1.0,seq=1i"]


def test_batch_topic_must_name_the_envelope_edge() -> None:
    reading = Reading(device="G1", kind="waterlogging", seq=1, ts=NOW, values={"depth": 1.0})
    batch = Batch()
    pipeline().add(message(TOPIC, encode(Envelope(v=1, edge="other", readings=[reading]))), batch)
    assert [d.reason.value for d in batch.dead] == ["bad_payload"] and not batch.lines


def test_cli_registers_gateway_run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--config", "x.toml", "gateway", "run"])
    assert args.func.__name__ == "_run" and args.config == "x.toml"
    assert parser.parse_args(["gateway"]).func(args) == 2  # prints its usage


# --- the accounting invariant: every message ends as stored readings, dead letters or
# duplicates, whatever its topic and bytes ------------------------------------------------

_DEVICES = st.sampled_from(["W1", "W2", "L1", "bad id", "", "x" * 65, "家园"])
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
_READINGS = st.fixed_dictionaries(
    {
        "device": _DEVICES,
        "kind": st.sampled_from(["waterlogging", "lift", "rocket", ""]),
        "seq": st.one_of(st.integers(min_value=1, max_value=5), st.integers()),
        "ts": st.one_of(
            st.integers(min_value=NOW - 60_000, max_value=NOW),
            st.integers(min_value=-(2**64), max_value=2**64),
        ),
        "values": st.dictionaries(
            st.sampled_from(["depth", "rain_rate", "speed", "car_status", "Bad", "x"]),
            st.one_of(_NUMBERS, st.text(max_size=300), st.booleans(), st.none()),
            max_size=3,
        ),
    },
    optional={
        "building": st.sampled_from(["b1", "b 1"]),
        "event": st.sampled_from(["waterlogging.depth_15", "lift.trapped", "nope"]),
        "extra": st.integers(),
    },
)


def _envelope_bytes(readings: list[dict[str, object]], edge: str, literal: str | None) -> bytes:
    # msgspec writes NaN and infinities as null; a sender may write them as bare literals.
    payload = msgspec.json.encode({"v": 1, "edge": edge, "readings": readings})
    return payload.replace(b"null", literal.encode()) if literal else payload


_PAYLOADS = st.one_of(
    st.builds(
        _envelope_bytes,
        st.lists(_READINGS, min_size=1, max_size=6),
        st.sampled_from(["edge1", "edge2", "edge 1"]),
        st.sampled_from([None, None, "NaN", "Infinity", "-Infinity"]),
    ),
    st.binary(max_size=120),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 5000)),
    st.builds(
        lambda body: msgspec.json.encode(body),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        ),
    ),
)
_TOPICS = st.one_of(
    st.just(TOPIC),
    st.just(batch_topic("songjiang", "fangsong", "e1", "edge2")),
    st.sampled_from(
        [
            "jiayuan/v1/songjiang/fangsong/e1/waterlogging/W1/telemetry",
            "jiayuan/v1/songjiang/fangsong/e1/waterlogging/W1/event",
            "jiayuan/v1/songjiang/fangsong/e1/edge/edge1/status",
            "jiayuan/v1/songjiang/fangsong/e1/lift/L1/status",
            "jiayuan/v1/songjiang/fangsong/e\ufffd/batch/edge1/telemetry",  # invalid UTF-8
        ]
    ),
    st.text(max_size=60),
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_TOPICS, _PAYLOADS), min_size=1, max_size=8))
def test_every_message_is_accounted_for(traffic: list[tuple[str, bytes]]) -> None:
    pipe = pipeline()
    batch = Batch()
    for mid, (topic, payload) in enumerate(traffic, start=1):
        before_dead, before_lines = len(batch.dead), len(batch.lines)
        before_received = batch.readings
        before_duplicates = pipe.metrics.snapshot().duplicates
        pipe.add(message(topic, payload, mid), batch)
        stats = pipe.metrics.snapshot()
        received = batch.readings - before_received
        new_dead = batch.dead[before_dead:]
        new_readings = [p for p in batch.lines[before_lines:] if p.is_reading]
        if received:  # an envelope: each reading stored, dead-lettered or a duplicate
            assert all(d.reason is Reason.BAD_READING for d in new_dead)
            assert len(new_readings) + len(new_dead) + stats.duplicates - before_duplicates == (
                received
            )
        else:  # refused whole (one dead letter), an edge status, or an empty status
            assert not new_readings
            assert len(new_dead) <= 1
        for letter in new_dead:
            assert letter.reason is not Reason.INTERNAL_ERROR, letter.detail
            assert letter.detail and len(letter.payload) <= MAX_PAYLOAD_BYTES
    # The processor counts messages and received readings per batch (tests/gateway/test_gateway.py).
    assert len(batch.messages) == len(traffic)
    assert pipe.metrics.snapshot().dead_letters == len(batch.dead)


def test_nan_literal_is_named_in_the_reason() -> None:
    batch = Batch()
    body = b'{"v":1,"edge":"edge1","readings":[{"device":"W1","kind":"waterlogging",'
    body += b'"seq":1,"ts":%d,"values":{"depth":NaN}}]}' % NOW
    pipeline().add(message(TOPIC, body), batch)
    [letter] = batch.dead
    assert letter.reason is Reason.BAD_PAYLOAD
    assert "NaN and Infinity are not JSON" in letter.detail


def test_oversized_message_is_dead_lettered_cut_short() -> None:
    batch = Batch()
    payload = b"x" * (MAX_PAYLOAD_BYTES + 10_000)
    pipeline().add(message(TOPIC, payload), batch)
    [letter] = batch.dead
    assert f"exceeds the limit of {MAX_PAYLOAD_BYTES} bytes" in letter.detail
    assert f"first {MAX_PAYLOAD_BYTES} of {len(payload)} bytes" in letter.detail
    assert letter.payload == payload[:MAX_PAYLOAD_BYTES]


def _one_reading(ts: int) -> bytes:
    reading = Reading(device="W1", kind="waterlogging", seq=1, ts=ts, values={"depth": 1.0})
    return encode(Envelope(v=1, edge="edge1", readings=[reading]))


def test_the_timestamp_window_comes_from_the_configuration() -> None:
    window = Pipeline.window_of(GatewayConfig(max_reading_age_s=60, max_reading_future_s=1))
    pipe = Pipeline(Detector(), GatewayMetrics(), clock=lambda: NOW, window=window)
    batch = Batch()
    pipe.add(message(TOPIC, _one_reading(NOW - 61_000)), batch)
    pipe.add(message(TOPIC, _one_reading(NOW + 2_000), mid=2), batch)
    details = [d.detail for d in batch.dead]
    assert "more than 1 minute old" in details[0] and "in the future" in details[1]
    # The default window takes both.
    batch = Batch()
    pipeline().add(message(TOPIC, _one_reading(NOW - 61_000)), batch)
    assert not batch.dead and len(batch.lines) == 1


# --- detection once per processor batch ---------------------------------------------------


def _depth(device: str, seq: int, ts: int) -> bytes:
    reading = Reading(device=device, kind="waterlogging", seq=seq, ts=ts, values={"depth": 0.0})
    return encode(Envelope(v=1, edge="edge1", readings=[reading]))


def test_a_reading_waiting_in_the_batch_counts_as_seen_by_the_offline_timer() -> None:
    now = [NOW]
    pipe = Pipeline(Detector(), GatewayMetrics(), clock=lambda: now[0])
    first = Batch()
    pipe.add(Message(TOPIC, _depth("G1", 1, now[0]), 1, 1, now[0]), first)
    pipe.detect(first)
    now[0] += 31_000  # past the gauge's 30 s: silent, unless the next reading is counted
    batch = Batch()
    pipe.add(Message(TOPIC, _depth("G1", 2, now[0]), 2, 1, now[0]), batch)
    pipe.tick(batch)  # the timer fires while the reading waits for detection
    pipe.detect(batch)
    assert not [p for p in batch.lines if not p.is_reading], "a live gauge reported offline"
    now[0] += 31_000  # and silence after it is still noticed
    later = Batch()
    pipe.tick(later)
    assert [p.origin.code for p in later.lines if isinstance(p.origin, Anomaly)] == [
        "waterlogging.offline"
    ]


class _BrokenDetector(Detector):
    def readings(self, items: Sequence[tuple[Place, Reading, int]]) -> list[Anomaly]:
        raise RuntimeError("a detector bug")


def test_a_detector_bug_is_counted_and_the_readings_are_still_stored() -> None:
    pipe = Pipeline(_BrokenDetector(), GatewayMetrics(), clock=lambda: NOW)
    batch = Batch()
    pipe.add(message(TOPIC, _depth("G1", 1, NOW)), batch)
    pipe.add(message(TOPIC, _depth("G2", 1, NOW), mid=2), batch)
    pipe.detect(batch)
    assert [p.is_reading for p in batch.lines] == [True, True] and not batch.dead
    assert pipe.metrics.snapshot().detection_failures == 1
    assert not batch.undetected  # judged (or given up on) once, not again with the next batch


def _places_of(pipe: Pipeline, topic: str, readings: list[Reading], mid: int) -> list[Place]:
    batch = Batch()
    pipe.add(message(topic, encode(Envelope(v=1, edge="edge1", readings=readings)), mid), batch)
    assert not batch.dead
    return [place for place, _, _ in batch.undetected]


def _gauge(device: str, seq: int, building: str = "") -> Reading:
    values: dict[str, Value] = {"depth": 1.0}
    return Reading(
        device=device, kind="waterlogging", seq=seq, ts=NOW, values=values, building=building
    )


@pytest.mark.parametrize("limit", [262_144, 1])
def test_a_device_keeps_its_place_until_its_labels_change(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readings of one device share its Place; a new building or kind, or the same id in
    another estate, gets a Place of its own; a full memory of places starts over."""
    monkeypatch.setattr(pipeline_module, "_PLACES_LIMIT", limit)
    pipe = pipeline()
    first, again = _places_of(pipe, TOPIC, [_gauge("G1", 1, "b1"), _gauge("G1", 2, "b1")], 1)
    assert first == again == Place("songjiang", "fangsong", "e1", "b1", "waterlogging", "G1")
    if limit > 1:
        assert first is again
    (moved,) = _places_of(pipe, TOPIC, [_gauge("G1", 3, "b2")], 2)
    assert moved.building == "b2" and moved.key == first.key
    lift = Reading(device="G1", kind="lift", seq=4, ts=NOW, values={"speed": 0.5}, building="b2")
    (relabelled,) = _places_of(pipe, TOPIC, [lift], 3)
    assert relabelled.kind == "lift" and relabelled.building == "b2"
    elsewhere = batch_topic("songjiang", "fangsong", "e2", "edge1")
    (other,) = _places_of(pipe, elsewhere, [_gauge("G1", 5, "b2")], 4)
    assert other.estate == "e2" and other.kind == "waterlogging"
    (back,) = _places_of(pipe, TOPIC, [_gauge("G1", 6, "b2")], 5)
    assert back == moved


def test_a_device_heard_from_still_has_a_new_building_or_kind_checked() -> None:
    """The ids of a device already heard from are not checked again; a reading of it with
    another building or kind is, like any reading of a new device."""
    pipe = pipeline()
    _places_of(pipe, TOPIC, [_gauge("G1", 1, "b1")], 1)
    bad_building = _gauge("G1", 2, "b 1")
    bad_kind = Reading(device="G1", kind="lifts", seq=3, ts=NOW, values={"speed": 0.5})
    late = Reading(device="G1", kind="waterlogging", seq=4, ts=NOW - 31 * 86_400_000, values={})
    readings = [bad_building, bad_kind, late, _gauge("G1", 5, "b1")]
    batch = Batch()
    pipe.add(message(TOPIC, encode(Envelope(v=1, edge="edge1", readings=readings)), 2), batch)
    details = [letter.detail for letter in batch.dead]
    assert len(details) == 3
    assert details[0].startswith("building id 'b 1' is not")
    assert details[1].startswith("unknown kind 'lifts'")
    assert "old by the gateway's clock" in details[2]
    assert [reading.seq for _, reading, _ in batch.undetected] == [5]
