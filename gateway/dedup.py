"""Dropping readings the gateway has already seen, identified by (edge, device, seq).

Per (edge, device): the highest seq seen and a 64-bit bitmap of which of the 64 seqs at
and below it were seen (bit k stands for ``high - k``), in two typed arrays indexed through
one dict, so a device costs 16 bytes plus its dict entry.  They are the standard library's
``array``, not numpy's: they are read and written one item a reading, and an item of a
numpy array costs several times more to get or set (a numpy scalar each time).  An edge
keeps each device's order, so a seq more than 64 below the highest is a late redelivery
and counts as a duplicate.

A clean stop saves this state with the detector's (``gateway.snapshot``).  After a gateway
crash the broker redelivers what was not yet acknowledged and the gateway, with fresh
state, stores it again; that is harmless
because InfluxDB overwrites a point with the same measurement, tag set and timestamp,
and a redelivered reading carries the same ones.
"""

from __future__ import annotations

from array import array

from gateway.state import Stateful

WINDOW = 64
_MASK = (1 << WINDOW) - 1


class SeqWindow(Stateful):
    STATE = ("_index", "_high", "_seen")

    def __init__(self) -> None:
        self._index: dict[tuple[str, str], int] = {}
        self._high = array("q")  # int64
        self._seen = array("Q")  # uint64

    def __len__(self) -> int:
        return len(self._index)

    def first_time(self, edge: str, device: str, seq: int) -> bool:
        """True the first time (edge, device, seq) is offered, False for a duplicate."""
        index = self._index.get((edge, device))
        if index is None:
            self._index[edge, device] = len(self._high)
            self._high.append(seq)
            self._seen.append(1)
            return True
        high = self._high[index]
        seen = self._seen[index]
        if seq > high:
            shift = seq - high
            seen = ((seen << shift) | 1) & _MASK if shift < WINDOW else 1
            self._high[index] = seq
            self._seen[index] = seen
            return True
        offset = high - seq
        if offset >= WINDOW or seen >> offset & 1:
            return False
        self._seen[index] = seen | (1 << offset)
        return True
