"""The inbox's two lanes: live messages first, an edge's replayed backlog at its share."""

from __future__ import annotations

import queue

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.agent import envelope_payload
from gateway.pipeline import Message
from gateway.transport.inbox import BACKLOG, LIVE, Inbox, lane_of
from jiayuan.contract import Envelope, Reading, decode_envelope, encode

READING = Reading(device="L1", kind="lift", seq=1, ts=1, values={"speed": 1.0})


def message(payload: bytes, mid: int) -> Message:
    return Message("t", payload, mid, 1, 0)


def live(mid: int) -> Message:
    return message(envelope_payload("e1", [msgspec.json.encode(READING)]), mid)


def backlog(mid: int) -> Message:
    return message(envelope_payload("e1", [msgspec.json.encode(READING)], replay=True), mid)


def test_the_marker_is_found_before_or_after_the_readings_and_nowhere_else() -> None:
    marked = Envelope(v=1, edge="e1", readings=[READING], replay=True)
    assert lane_of(encode(marked)) == BACKLOG  # msgspec puts it after the readings
    assert lane_of(envelope_payload("e1", [b"{}"], replay=True)) == BACKLOG  # the edge: before
    assert lane_of(b'{"v": 1, "replay" : true, "edge": "e1", "readings": []}') == BACKLOG
    assert lane_of(encode(Envelope(v=1, edge="e1", readings=[READING]))) == LIVE
    assert lane_of(b'{"v":1,"replay":false,"edge":"e1","readings":[]}') == LIVE
    # Inside a reading it is a value, not the envelope's marker.
    inside = b'{"v":1,"edge":"e1","readings":[{"values":{"replay":true}}' + b" " * 200 + b"]}"
    assert lane_of(inside) == LIVE
    assert lane_of(b"") == LIVE and lane_of(b"not json") == LIVE


readings = st.lists(
    st.builds(
        Reading,
        device=st.sampled_from(["L1", "replay", "F-2"]),
        kind=st.just("lift"),
        seq=st.integers(1, 10**6),
        ts=st.integers(0, 2**41),
        # A value named as the marker must never be taken for it.
        values=st.dictionaries(
            st.sampled_from(["replay", "speed", "replay "]),
            st.one_of(
                st.integers(0, 1),
                st.floats(allow_nan=False, allow_infinity=False),
                st.sampled_from(["true", " true"]),
            ),
            max_size=3,
        ),
        building=st.text(max_size=40),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(readings, st.booleans(), st.booleans(), st.sampled_from(["e1", "edge-" + "x" * 59]))
def test_the_lane_is_the_envelopes_own_marker_as_the_edge_or_msgspec_writes_it(
    readings: list[Reading], replay: bool, by_edge: bool, edge: str
) -> None:
    if by_edge:
        payload = envelope_payload(edge, [msgspec.json.encode(r) for r in readings], replay=replay)
    else:
        payload = encode(Envelope(v=1, edge=edge, readings=readings, replay=replay))
    assert decode_envelope(payload).replay is replay
    assert lane_of(payload) == (BACKLOG if replay else LIVE)


def test_the_envelope_carries_the_marker_only_when_set() -> None:
    assert b"replay" not in encode(Envelope(v=1, edge="e1", readings=[READING]))
    assert decode_envelope(envelope_payload("e1", [msgspec.json.encode(READING)])).replay is False
    decoded = decode_envelope(envelope_payload("e1", [msgspec.json.encode(READING)], replay=True))
    assert decoded.replay is True and decoded.readings == [READING]


def test_live_messages_go_first_and_the_backlog_keeps_its_share() -> None:
    inbox = Inbox(live_per_backlog=3)
    for mid in range(1, 5):
        inbox.put(backlog(mid))
    for mid in range(11, 19):
        inbox.put(live(mid))
    assert inbox.waiting(BACKLOG) == 4 and inbox.waiting(LIVE) == 8 and inbox.qsize() == 12
    order = [inbox.get(timeout=0).mid for _ in range(12)]
    # Three live, one backlog, while both wait; then what is left, in arrival order.
    assert order == [11, 12, 13, 1, 14, 15, 16, 2, 17, 18, 3, 4]
    assert inbox.empty() and inbox.waiting_bytes == 0
    assert inbox.received(BACKLOG) == 4 and inbox.received(LIVE) == 8
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0)


def test_a_backlog_alone_is_taken_at_once() -> None:
    inbox = Inbox()
    inbox.put(backlog(1))
    assert inbox.get(timeout=0).mid == 1


def test_each_lane_has_its_byte_budget() -> None:
    inbox = Inbox()
    size = len(backlog(1).payload)
    for mid in range(4):
        inbox.put(backlog(mid))
    # The backlog lane may hold four times the live lane's budget.
    assert not inbox.held_back(size)
    inbox.put(backlog(5))
    assert inbox.held_back(size)
    other = Inbox()
    other.put(live(1))
    other.put(live(2))
    assert other.held_back(len(live(1).payload)) and not other.held_back(10 * size)


def test_a_negative_share_is_refused() -> None:
    with pytest.raises(ValueError, match="live_per_backlog must be at least 0"):
        Inbox(live_per_backlog=-1)
