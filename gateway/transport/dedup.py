"""Dropping readings the gateway has already seen: the same (edge, device, seq) with the
same timestamp.

A device's readings come numbered 1, 2, 3, … by its edge, in order.  The same reading
comes again when the broker redelivers a QoS 1 message or the edge replays its spool after
reconnecting (several messages a device, so up to hundreds of readings behind its newest).
Numbering also breaks: an edge box replaced starts again from 1, an edge spool rolled back
by a power cut reuses seqs, and anyone who can publish can send a seq far ahead.  Storing a
reading twice costs nothing (InfluxDB overwrites a point with the same measurement, tag set
and timestamp); dropping a new one loses data.  So a reading is dropped only when it is the
same reading again, and no reading, however numbered, makes later ones look like repeats.

Per (edge, device), two windows, each a highest seq, the timestamp of the reading with that
seq, a 64-bit bitmap of which of the 64 seqs at and below it were seen (bit k stands for
``high - k``) and the lowest seq it took.  The first window is the device's current
numbering; the second is the one before a reset or jump, or a stray reading's.  A reading
is a duplicate when a window has its seq marked and its timestamp is that window's newest
(the highest seq) or not newer (a seq below it); or when its seq lies within a window's
span but more than 64 below its highest, and it is no newer than that window's newest (a
replay).  Everything else is stored: the next seqs of the nearest window below advance
it; a seq marked with a newer timestamp, or far from both windows, opens a window in
place of the one that spans fewer seqs.  A stray reading's window spans one seq, so it
never displaces a device's own numbering, and it holds only its own seq: the device's
readings below it are not in its span.

``offer`` says which: ``NEW``, ``DUPLICATE``, or a new reading that shows a fault,
``RESET`` (the numbering went back with a newer timestamp) or ``JUMP`` (a seq further
ahead than milliseconds have passed: more than a reading a millisecond).

The windows are the standard library's typed arrays, two items per device, not numpy's:
they are read and written one item a reading, and an item of a numpy array costs several
times more to get or set (a numpy scalar each time).  ``offer_many`` takes one message's
readings at once, so that the compiled build reads the arrays as C arrays (typed
memoryviews, taken once a message) rather than an item at a time through Python's
array protocol.  A device costs 64 bytes plus its
entry in its edge's dictionary (a dictionary an edge, not an (edge, device) tuple a device:
a tuple kept a device, and with it the edge's name as each message decoded it).  A clean
stop saves this state with the detector's (``gateway.detection.snapshot``).  After a
gateway crash the broker redelivers what was not yet acknowledged and the gateway, with
fresh state, stores it again.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any

from gateway.detection.state import Stateful, row_number, shared_numbers

WINDOW = 64
_MASK = (1 << WINDOW) - 1

# What ``offer`` says of a reading.
DUPLICATE = 0
NEW = 1
RESET = 2
JUMP = 3
# Not yet judged (offer_many's verdicts while it works).
_UNJUDGED = -1

FAULT_NAMES = {RESET: "reset", JUMP: "jump"}
FAULT_MEANINGS = {
    "reset": "its numbering went back with a newer timestamp (an edge box replaced or reset)",
    "jump": "its seq jumped further ahead than time has passed (a stray or crafted reading)",
}


def _add_new(
    window: SeqWindow,
    known: dict[str, int],
    devices: list[str],
    seqs: list[int],
    stamps: list[int],
    verdicts: list[int],
) -> None:
    """Windows for the devices not yet in ``known``, each from its first reading here
    (``NEW``); its later readings here are judged as any known device's."""
    for i in range(len(devices)):
        device = devices[i]
        if device not in known:
            known[device] = row_number(len(window._high) // 2)
            window._high.extend((seqs[i], 0))
            window._newest.extend((stamps[i], 0))
            window._seen.extend((1, 0))
            window._low.extend((seqs[i], 0))
            verdicts[i] = NEW


def _offer_known(
    window: SeqWindow,
    known: dict[str, int],
    devices: list[str],
    seqs: list[int],
    stamps: list[int],
    verdicts: list[int],
) -> None:
    """The verdicts still ``_UNJUDGED`` of one edge's readings, in order: devices already
    in ``known``.  Nearly every reading is the next seq of its device's current window,
    above both windows, and advances it here; any other is judged by ``_judge``.  A
    function, not a method, so that the compiled build reads and writes the windows as C
    integers, their arrays taken as typed memoryviews once a call (dedup.pxd)."""
    highs, newest, seen = window._high, window._newest, window._seen
    for i in range(len(devices)):
        if verdicts[i] != _UNJUDGED:
            continue
        slot = 2 * known[devices[i]]
        seq, ts = seqs[i], stamps[i]
        high = highs[slot]
        if seq <= high or seq - high >= WINDOW or highs[slot + 1] > high:
            verdicts[i] = window._judge(slot, seq, ts)
            continue
        seen[slot] = ((seen[slot] << (seq - high)) | 1) & _MASK
        highs[slot] = seq
        newest[slot] = ts
        verdicts[i] = NEW


class SeqWindow(Stateful):
    STATE = ("_index", "_high", "_newest", "_seen", "_low")

    def __init__(self) -> None:
        # Edge → device → its index.
        self._index: dict[str, dict[str, int]] = {}
        # Device i's windows are items 2i (current) and 2i + 1; high 0 is an empty window
        # (a seq is at least 1).
        self._high = array("q")  # int64
        self._newest = array("q")  # int64: the timestamp of the reading with seq high
        self._seen = array("Q")  # uint64
        self._low = array("q")  # int64: the lowest seq the window took

    def __len__(self) -> int:
        return len(self._high) // 2

    def import_state(self, state: Mapping[str, Any]) -> None:
        super().import_state(state)
        for known in self._index.values():
            shared_numbers(known)

    def offer(self, edge: str, device: str, seq: int, ts: int) -> int:
        """``DUPLICATE`` for a reading seen before, else the reading is recorded as seen:
        ``NEW``, or ``RESET`` or ``JUMP`` for a new reading that breaks the numbering."""
        return self.offer_many(edge, [device], [seq], [ts])[0]

    def offer_many(
        self, edge: str, devices: list[str], seqs: list[int], stamps: list[int]
    ) -> list[int]:
        """``offer`` of each reading of ``edge`` in turn (device, seq and timestamp at the
        same index): their verdicts in order."""
        known = self._index.get(edge)
        if known is None:
            known = self._index[edge] = {}
        verdicts = [_UNJUDGED] * len(devices)
        # New devices first: their windows are added before the arrays are read as
        # memoryviews (an array exporting its buffer cannot grow).
        _add_new(self, known, devices, seqs, stamps, verdicts)
        _offer_known(self, known, devices, seqs, stamps, verdicts)
        return verdicts

    def _judge(self, slot: int, seq: int, ts: int) -> int:
        highs, newest, seen, lows = self._high, self._newest, self._seen, self._low
        windows = (slot, slot + 1) if highs[slot + 1] else (slot,)
        # The same reading again.
        for w in windows:
            offset = highs[w] - seq
            if not (0 <= offset < WINDOW and seen[w] >> offset & 1):
                continue
            if ts == newest[w] if offset == 0 else ts <= newest[w]:
                return DUPLICATE
        # The next seqs of the nearest window below.
        below = -1
        for w in windows:
            if highs[w] < seq and (below < 0 or highs[w] > highs[below]):
                below = w
        if below >= 0 and seq - highs[below] < WINDOW:
            seen[below] = ((seen[below] << (seq - highs[below])) | 1) & _MASK
            highs[below] = seq
            newest[below] = ts
            if below != slot:
                self._swap(slot)
            return NEW
        # A seq within a window not seen yet: a late reading.
        for w in windows:
            offset = highs[w] - seq
            if 0 < offset < WINDOW and not seen[w] >> offset & 1:
                seen[w] |= 1 << offset
                lows[w] = min(lows[w], seq)
                return NEW
        # A window's own seq that has left its bitmap, no newer than its newest: a replay.
        for w in windows:
            if lows[w] <= seq <= highs[w] - WINDOW and ts <= newest[w]:
                return DUPLICATE
        # A seq seen with another timestamp: the numbering went back.
        for w in windows:
            offset = highs[w] - seq
            if 0 <= offset < WINDOW:
                if offset == 0:
                    newest[w] = ts
                    return RESET
                return self._open(slot, seq, ts, RESET)
        if below < 0:  # behind every window: a reset if newer, else a late reading (a
            # backlog sent after the device's live readings, docs/protocol.md "Replay")
            return self._open(slot, seq, ts, RESET if ts > newest[slot] else NEW)
        far = seq - highs[below] > ts - newest[below]
        return self._open(slot, seq, ts, JUMP if far else NEW)

    def _open(self, slot: int, seq: int, ts: int, verdict: int) -> int:
        """A new current window at ``seq``, in place of the one that spans fewer seqs
        (the older one when as many): a stray reading's window spans none."""
        other = slot + 1
        highs, newest, seen, lows = self._high, self._newest, self._seen, self._low
        if not highs[other] or highs[slot] - lows[slot] >= highs[other] - lows[other]:
            highs[other], newest[other] = highs[slot], newest[slot]
            seen[other], lows[other] = seen[slot], lows[slot]
        highs[slot], newest[slot], seen[slot], lows[slot] = seq, ts, 1, seq
        return verdict

    def _swap(self, slot: int) -> None:
        other = slot + 1
        for values in (self._high, self._newest, self._seen, self._low):
            values[slot], values[other] = values[other], values[slot]
