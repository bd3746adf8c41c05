"""The wire contract: topics, envelopes, reading checks, and the generated protocol doc."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from jiayuan import catalogue_doc
from jiayuan.catalogue import FAMILIES, Kind, port_field
from jiayuan.contract import (
    Channel,
    ContractError,
    Envelope,
    Reading,
    TimeWindow,
    batch_topic,
    check_reading,
    decode_envelope,
    device_topic,
    encode,
    parse_topic,
)

NOW = 1_764_000_000_000


def reading(**overrides: object) -> Reading:
    fields: dict[str, object] = {
        "device": "sj-0001-L01",
        "kind": "lift",
        "seq": 1,
        "ts": NOW,
        "values": {"car_status": 1, "speed": 1.5},
    }
    fields.update(overrides)
    return Reading(**fields)  # type: ignore[arg-type]


BATCH = parse_topic(batch_topic("songjiang", "yongfeng", "sj-0001", "sj-0001-edge"))


def test_topics_round_trip() -> None:
    text = device_topic("songjiang", "yongfeng", "sj-0001", Kind.LIFT, "L1", Channel.EVENT)
    assert text == "jiayuan/v1/songjiang/yongfeng/sj-0001/lift/L1/event"
    topic = parse_topic(text)
    assert (topic.street, topic.kind, topic.channel) == ("yongfeng", "lift", Channel.EVENT)
    assert str(topic) == text


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("jiayuan/v1/a/b/c/lift/d", "is not jiayuan/v1"),
        ("other/v1/a/b/c/lift/d/telemetry", "is not jiayuan/v1"),
        ("jiayuan/v1/a/b/c/rocket/d/telemetry", "unknown kind"),
        ("jiayuan/v1/a/b/c/lift/d/gossip", "unknown channel"),
        ("jiayuan/v1/a/b c/c/lift/d/telemetry", "street"),
    ],
)
def test_bad_topics_say_why(topic: str, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        parse_topic(topic)


def test_envelope_round_trip_keeps_types() -> None:
    envelope = Envelope(v=1, edge="e1", readings=[reading()])
    decoded = decode_envelope(encode(envelope))
    assert decoded == envelope
    assert isinstance(decoded.readings[0].values["car_status"], int)
    assert isinstance(decoded.readings[0].values["speed"], float)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{", "not a valid envelope"),
        (b'{"v":2,"edge":"e","readings":[]}', "schema version 2"),
        (b'{"v":1,"edge":"e","readings":[]}', "no readings"),
        (
            b'{"v":1,"edge":"e","readings":[{"device":"d","kind":"lift","seq":1,"ts":1,'
            b'"values":{"speed":true}}]}',
            "got `bool`",
        ),
        (
            b'{"v":1,"edge":"e","readings":[{"device":"d","kind":"lift","seq":1,"ts":1,'
            b'"values":{},"extra":1}]}',
            "unknown field",
        ),
        (b"x" * 300_000, "exceeds"),
    ],
)
def test_bad_envelopes_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        decode_envelope(payload)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"kind": "rocket"}, "unknown kind"),
        ({"seq": 0}, "seq 0"),
        ({"ts": NOW - 31 * 86_400_000}, "30 days old"),
        ({"ts": NOW + 600_000}, "future"),
        ({"values": {"car_status": 1.5}}, "not an integer"),
        ({"values": {"speed": 99.0}}, "above the plausible maximum"),
        ({"values": {"depth": 1.0}}, "not a signal of lift"),
        ({"values": {"speed": float("nan")}}, "not finite"),
        ({"values": {}}, "neither values nor an event"),
        ({"event": "fire.alarm"}, "does not belong to kind lift"),
    ],
)
def test_bad_readings_say_why(overrides: dict[str, object], reason: str) -> None:
    problem = check_reading(reading(**overrides), BATCH, now_ms=NOW)
    assert problem is not None and reason in problem


def test_device_ids_are_checked_each_time_and_not_kept() -> None:
    # The gateway checks a device's ids once and then vouches for them: a cache of device
    # ids would only hold a district's worth of them (a set entry each, 16-32 B).
    readings = [reading(device=f"sj-0001-X{n:05d}") for n in range(5_000)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        assert all(check_reading(r, BATCH, now_ms=NOW) is None for r in readings)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16_000  # a set of 5,000 ids would be 131,072 B
    for bad in ("sj 0001", "x" * 65, ""):
        for _ in range(2):  # refused again: nothing remembered it as valid
            problem = check_reading(reading(device=bad), BATCH, now_ms=NOW)
            assert problem is not None and "device id" in problem


def test_reading_must_match_a_device_topic() -> None:
    topic = parse_topic(device_topic("d", "s", "e", Kind.LIFT, "other", Channel.TELEMETRY))
    problem = check_reading(reading(), topic, now_ms=NOW)
    assert problem is not None and "published on the topic" in problem


def test_event_channel_needs_an_event_code() -> None:
    topic = parse_topic(device_topic("d", "s", "e", Kind.LIFT, "sj-0001-L01", Channel.EVENT))
    assert "no event code" in (check_reading(reading(), topic, now_ms=NOW) or "")
    assert check_reading(reading(event="lift.fault_code"), topic, now_ms=NOW) is None


def test_port_fields_are_signals_of_the_charger_only() -> None:
    charger = FAMILIES[Kind.EBIKE_CHARGER]
    assert charger.signal(port_field(3, "temp")) is not None
    assert charger.signal("temp") is None  # per-port signals need their port prefix
    assert charger.signal("p13_temp") is None
    good = reading(kind="ebike_charger", values={port_field(12, "current"): 2.5, "smoke": 0})
    assert check_reading(good, BATCH, now_ms=NOW) is None


def test_every_family_has_an_offline_code_and_bilingual_titles() -> None:
    for fam in FAMILIES.values():
        codes = {event.code for event in fam.events}
        assert f"{fam.kind.value}.offline" in codes
        for event in fam.events:
            assert event.code.startswith(fam.kind.value + ".")
            assert event.title.startswith(event.title_zh) and event.title_en in event.title


def test_protocol_doc_tables_are_generated_from_the_catalogue() -> None:
    document = Path(__file__).parents[2].joinpath("docs", "protocol.md").read_text("utf-8")
    assert catalogue_doc.replace_section(document, catalogue_doc.render()) == document, (
        "docs/protocol.md is stale: run python -m jiayuan.catalogue_doc --write docs/protocol.md"
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"seq": 2**63}, "is not an integer from 1 to"),
        ({"seq": -(2**70)}, "is not an integer from 1 to"),
        ({"values": {"car_position": 2**64}}, "outside the 64-bit integer range"),
        ({"values": {f"v{n}": n for n in range(65)}}, "65 values, more than 64"),
        ({"values": {"speed": "fast"}}, "is not a number"),
        ({"event": "lift." + "x" * 65}, "does not belong to kind lift"),
        ({"device": "d" * 200}, "… (202 characters)"),  # long ids are echoed cut short
        ({"kind": "k" * 500}, "unknown kind"),
        ({"ts": 0}, "more than 30 days old by the gateway's clock"),
        ({"ts": NOW * 1000}, "more than 5 minutes in the future"),  # microseconds
    ],
)
def test_limits_say_which_limit(overrides: dict[str, object], reason: str) -> None:
    problem = check_reading(reading(**overrides), BATCH, now_ms=NOW)
    assert problem is not None and reason in problem
    assert len(problem) < 300  # a sender's huge value is never echoed whole


def test_time_window_is_configurable_and_checked() -> None:
    window = TimeWindow.from_seconds(3600, 0)
    assert check_reading(reading(ts=NOW - 3_600_000), BATCH, NOW, window) is None
    late = check_reading(reading(ts=NOW - 3_600_001), BATCH, NOW, window)
    early = check_reading(reading(ts=NOW + 1), BATCH, NOW, window)
    assert late is not None and "more than 1 hour old" in late
    assert early is not None and "more than 0 seconds in the future" in early
    with pytest.raises(ValueError, match="max_reading_age_s must be > 0"):
        TimeWindow.from_seconds(0, 10)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_numbers_are_named(literal: bytes) -> None:
    payload = encode(Envelope(v=1, edge="e", readings=[reading(values={"speed": 1.5})]))
    with pytest.raises(ContractError, match="NaN and Infinity are not JSON numbers"):
        decode_envelope(payload.replace(b"1.5", literal))


def test_other_malformed_json_gets_no_nan_hint() -> None:
    with pytest.raises(ContractError) as caught:
        decode_envelope(b'{"v":1,"edge":"e","readings":[}')
    assert "malformed" in str(caught.value) and "NaN" not in str(caught.value)


def test_long_topic_is_echoed_cut_short() -> None:
    with pytest.raises(ContractError) as caught:
        parse_topic("jiayuan/v1/" + "a" * 70_000)
    assert len(str(caught.value)) < 300
