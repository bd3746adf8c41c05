"""The duplicate window (gateway.transport.dedup): a reading is dropped only when it is the same
reading again (edge, device, seq and timestamp); no reading, however crafted, makes it
drop a device's later readings."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Batch, Message, Pipeline
from gateway.transport.dedup import DUPLICATE, JUMP, NEW, RESET, SeqWindow
from jiayuan.contract import Envelope, Reading, batch_topic, encode

T0 = 1_700_000_000_000
STEP = 10_000  # a device reporting every 10 s


def ts(seq: int) -> int:
    return T0 + seq * STEP


def test_the_same_reading_again_is_a_duplicate_within_and_below_the_window() -> None:
    window = SeqWindow()
    assert window.offer("edge1", "L1", 10, ts(10)) == NEW
    assert window.offer("edge1", "L1", 10, ts(10)) == DUPLICATE
    assert window.offer("edge1", "L2", 10, ts(10)) == NEW  # another device
    assert window.offer("edge2", "L1", 10, ts(10)) == NEW  # another edge
    assert window.offer("edge1", "L1", 8, ts(8)) == NEW  # late but unseen
    assert window.offer("edge1", "L1", 8, ts(8)) == DUPLICATE
    for seq in range(11, 401):
        assert window.offer("edge1", "L1", seq, ts(seq)) == NEW
    # A spool replay after the edge's reconnect: hundreds of readings a device, in order,
    # reaching far below the bitmap: each the same reading as before.
    assert all(window.offer("edge1", "L1", seq, ts(seq)) == DUPLICATE for seq in range(100, 401))
    assert window.offer("edge1", "L1", 401, ts(401)) == NEW
    for device in range(5000):
        assert window.offer("edge1", f"d{device}", 1, T0) == NEW
    assert len(window) == 5003


def test_a_stray_seq_far_ahead_is_stored_and_the_device_keeps_being_stored() -> None:
    window = SeqWindow()
    for seq in range(1, 101):
        assert window.offer("edge1", "L1", seq, ts(seq)) == NEW
    # One well-formed reading with a seq far ahead, stamped up to the 5 minutes into the
    # future the gateway accepts: the worst a single message can claim.
    assert window.offer("edge1", "L1", 5_000_000, ts(100) + 300_000) == JUMP
    for seq in range(101, 200):
        assert window.offer("edge1", "L1", seq, ts(seq)) == NEW, seq
    # Redeliveries of both are still the same readings.
    assert window.offer("edge1", "L1", 5_000_000, ts(100) + 300_000) == DUPLICATE
    assert window.offer("edge1", "L1", 150, ts(150)) == DUPLICATE
    assert window.offer("edge1", "L1", 60, ts(60)) == DUPLICATE


def test_many_stray_readings_between_real_ones_stop_nothing() -> None:
    window = SeqWindow()
    for seq in range(1, 51):
        window.offer("edge1", "L1", seq, ts(seq))
    for seq in range(51, 151):
        for stray in range(3):  # three crafted readings, far ahead, before each real one
            far = 1_000_000 * (seq * 3 + stray)
            assert window.offer("edge1", "L1", far, ts(seq) + 290_000) != DUPLICATE
        assert window.offer("edge1", "L1", seq, ts(seq)) == NEW, seq
    assert window.offer("edge1", "L1", 149, ts(149)) == DUPLICATE


def test_a_stray_seq_behind_or_on_the_next_seq_stops_nothing() -> None:
    window = SeqWindow()
    for seq in range(1, 101):
        window.offer("edge1", "L1", seq, ts(seq))
    assert window.offer("edge1", "L1", 1, ts(100) + 300_000) == RESET  # back, newer time
    assert window.offer("edge1", "L1", 101, ts(100) + 300_000) == NEW  # takes the next seq
    # The real seq 101: the same seq with another timestamp is another reading.
    assert window.offer("edge1", "L1", 101, ts(101)) == RESET
    assert window.offer("edge1", "L1", 101, ts(101)) == DUPLICATE
    for seq in range(102, 120):
        assert window.offer("edge1", "L1", seq, ts(seq)) == NEW


@pytest.mark.parametrize("old_readings", [10, 300])
def test_a_replaced_edge_box_numbering_again_from_1_is_stored(old_readings: int) -> None:
    # Within the bitmap (seq 1 marked by the old box) and below it.
    window = SeqWindow()
    for seq in range(1, old_readings + 1):
        window.offer("edge1", "L1", seq, ts(seq))
    start = ts(old_readings) + 3_600_000  # the new box, an hour later
    verdicts = [window.offer("edge1", "L1", seq, start + seq * STEP) for seq in range(1, 500)]
    assert verdicts == [RESET] + [NEW] * 498
    # The new box's redeliveries are duplicates, and so are the old box's.
    assert window.offer("edge1", "L1", 7, start + 7 * STEP) == DUPLICATE
    assert window.offer("edge1", "L1", 499, start + 499 * STEP) == DUPLICATE
    assert window.offer("edge1", "L1", old_readings, ts(old_readings)) == DUPLICATE


def test_a_stray_seq_soon_after_a_box_was_replaced_stops_nothing() -> None:
    # The new box's numbering has taken fewer readings than the old box's when a stray
    # reading, stamped 5 minutes ahead, comes: the new box's readings are still stored.
    window = SeqWindow()
    for seq in range(1, 1001):
        window.offer("edge1", "L1", seq, ts(seq))
    start = ts(1000) + 3_600_000
    for seq in range(1, 6):
        window.offer("edge1", "L1", seq, start + seq * STEP)
    assert window.offer("edge1", "L1", 5_000_000, start + 5 * STEP + 300_000) == JUMP
    for seq in range(6, 100):
        assert window.offer("edge1", "L1", seq, start + seq * STEP) != DUPLICATE, seq


def test_a_gap_in_the_numbering_is_no_fault_and_redeliveries_on_both_sides_are_dropped() -> None:
    window = SeqWindow()
    for seq in range(1, 30):
        window.offer("edge1", "L1", seq, ts(seq))
    # 500 readings the gateway never got (an edge spool over its budget dropped them).
    assert window.offer("edge1", "L1", 530, ts(530)) == NEW
    assert window.offer("edge1", "L1", 531, ts(531)) == NEW
    assert window.offer("edge1", "L1", 29, ts(29)) == DUPLICATE
    assert window.offer("edge1", "L1", 530, ts(530)) == DUPLICATE
    assert window.offer("edge1", "L1", 5, ts(5)) == DUPLICATE  # below both, older: replayed


def test_the_window_state_round_trips_through_export_and_import() -> None:
    window = SeqWindow()
    for seq in range(1, 90):
        window.offer("edge1", "L1", seq, ts(seq))
    window.offer("edge1", "L1", 9_000_000, ts(89))
    restored = SeqWindow()
    restored.import_state(window.export_state())
    assert restored.offer("edge1", "L1", 9_000_000, ts(89)) == DUPLICATE
    assert restored.offer("edge1", "L1", 70, ts(70)) == DUPLICATE
    assert restored.offer("edge1", "L1", 90, ts(90)) == NEW


def test_a_device_costs_a_few_dozen_bytes_of_arrays() -> None:
    window = SeqWindow()
    for device in range(1000):
        window.offer("edge1", f"d{device}", 1, T0)
    arrays = [value for value in window.export_state().values() if hasattr(value, "itemsize")]
    per_device = sum(len(a) * a.itemsize for a in arrays) / 1000
    assert per_device <= 64  # two windows of seq, timestamp, bitmap and count


# --- through the pipeline -------------------------------------------------------------------

TOPIC = batch_topic("songjiang", "fangsong", "e1", "edge1")
NOW = ts(1000)


def lift(seq: int, at: int) -> Reading:
    return Reading(device="L1", kind="lift", seq=seq, ts=at, values={"car_status": 0})


def run(pipe: Pipeline, readings: list[Reading]) -> list[int]:
    """The seqs of the readings the pipeline would store."""
    batch = Batch()
    for number, reading in enumerate(readings):
        payload = encode(Envelope(v=1, edge="edge1", readings=[reading]))
        pipe.add(Message(TOPIC, payload, number + 1, 1, NOW), batch)
    assert not batch.dead
    return [int(p.line.rsplit("seq=", 1)[1].split("i")[0]) for p in batch.lines if p.is_reading]


def test_after_a_stray_seq_the_pipeline_stores_every_later_reading_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = Pipeline(Detector(), GatewayMetrics(), clock=lambda: NOW)
    assert run(pipe, [lift(seq, ts(seq)) for seq in range(1, 11)]) == list(range(1, 11))
    with caplog.at_level(logging.WARNING, logger="gateway.pipeline"):
        stray = lift(5_000_000, ts(10) + 5_000)
        later = [lift(seq, ts(seq)) for seq in range(11, 31)]
        assert run(pipe, [stray, *later]) == [5_000_000, *range(11, 31)]
        # The same again is dropped: a redelivery.
        assert run(pipe, [stray, later[3]]) == []
        # A second fault of the device is counted, not logged again.
        assert run(pipe, [lift(9_000_000, ts(30) + 1)]) == [9_000_000]
    stats = pipe.metrics.snapshot()
    assert stats.duplicates == 2
    assert stats.seq_faults == 2
    assert stats.seq_faults_by_device == {"edge1/L1": 2}
    logged = [r.getMessage() for r in caplog.records if "edge1" in r.getMessage()]
    assert len(logged) == 1 and "L1" in logged[0] and "5000000" in logged[0]
    exposition = pipe.metrics.exposition().decode()
    assert 'jiayuan_gateway_seq_faults_total{kind="jump"} 2.0' in exposition
    assert "jiayuan_gateway_seq_fault_devices 1.0" in exposition


_OFFERS = st.lists(
    st.tuples(
        st.sampled_from(("e1", "e2")),
        st.sampled_from(("L1", "L2", "L3")),
        st.integers(1, 200),  # seqs close enough to meet each window's every path
        st.integers(0, 200),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(offers=_OFFERS, cuts=st.lists(st.integers(1, 8), min_size=1))
def test_readings_offered_a_message_at_a_time_get_the_verdicts_of_one_at_a_time(
    offers: list[tuple[str, str, int, int]], cuts: list[int]
) -> None:
    one_by_one = SeqWindow()
    alone = [one_by_one.offer(edge, device, seq, ts(at)) for edge, device, seq, at in offers]
    together, grouped, start = SeqWindow(), [], 0
    while start < len(offers):
        # A message: consecutive readings of one edge (a device may come more than once).
        edge = offers[start][0]
        end = start
        while end < len(offers) and end - start < cuts[len(grouped) % len(cuts)]:
            if offers[end][0] != edge:
                break
            end += 1
        chunk = offers[start:end]
        grouped += together.offer_many(
            edge, [o[1] for o in chunk], [o[2] for o in chunk], [ts(o[3]) for o in chunk]
        )
        start = end
    assert grouped == alone
    assert together.export_state() == one_by_one.export_state()
