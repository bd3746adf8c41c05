"""The pipeline without servers: any bytes on any topic end as stored lines or dead
letters, never as an exception; and the CLI registers ``gateway run``."""

from __future__ import annotations

import argparse

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import cli
from gateway.detection import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from jiayuan.contract import Envelope, Reading, batch_topic, encode

NOW = 1_700_000_000_000
TOPIC = batch_topic("songjiang", "fangsong", "e1", "edge1")


def pipeline() -> Pipeline:
    return Pipeline(Detector(), GatewayMetrics(), clock=lambda: NOW)


def message(topic: str, payload: bytes, mid: int = 1) -> Message:
    return Message(topic, payload, mid, 1, NOW)


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
