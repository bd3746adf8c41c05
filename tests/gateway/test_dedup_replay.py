"""The duplicate window when live readings overtake their device's backlog
(docs/protocol.md, "Replay"): no duplicate, no fault, repeats still dropped."""

from __future__ import annotations

from gateway.transport.dedup import DUPLICATE, NEW, RESET, SeqWindow

T0 = 1_700_000_000_000


def ts(seq: int) -> int:
    return T0 + seq * 5000


def test_a_backlog_behind_live_readings_on_a_fresh_gateway_is_new() -> None:
    # A gateway that never heard of the device (restarted without its snapshot) gets the
    # live readings 721-730 first, then the hour of backlog 1-720, then more live ones.
    window = SeqWindow()
    verdicts = [window.offer("e", "d", seq, ts(seq)) for seq in range(721, 731)]
    verdicts += [window.offer("e", "d", seq, ts(seq)) for seq in range(1, 721)]
    verdicts += [window.offer("e", "d", seq, ts(seq)) for seq in range(731, 741)]
    assert set(verdicts) == {NEW}
    # A backlog message sent again (its PUBACK lost) and a live one: repeats.
    assert {window.offer("e", "d", seq, ts(seq)) for seq in range(700, 721)} == {DUPLICATE}
    assert window.offer("e", "d", 740, ts(740)) == DUPLICATE


def test_live_readings_interleaved_with_their_backlog_are_new() -> None:
    window = SeqWindow()
    for seq in range(1, 6):  # before the outage
        assert window.offer("e", "d", seq, ts(seq)) == NEW
    live = iter(range(106, 200))
    for seq in range(6, 106):  # the backlog, a live reading after every ten
        assert window.offer("e", "d", seq, ts(seq)) == NEW
        if seq % 10 == 0:
            fresh = next(live)
            assert window.offer("e", "d", fresh, ts(fresh)) == NEW


def test_a_lower_seq_with_a_newer_timestamp_is_still_a_reset() -> None:
    window = SeqWindow()
    for seq in range(100, 110):
        window.offer("e", "d", seq, ts(seq))
    assert window.offer("e", "d", 1, ts(500)) == RESET  # an edge box replaced
