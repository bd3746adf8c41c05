"""Giving the C heap's free pages back to the system.

Every batch allocates and frees many blocks too large for Python's small-object allocator:
message payloads, decoded readings, line-protocol text, HTTP bodies.  glibc's malloc keeps
the freed pages inside its heaps, and between the long-lived per-device objects they are
rarely at the top, where it would give them back on its own.  So a gateway's resident
memory grows far past what it holds, to more than twice its live objects without
trimming (``bench/throughput.py --memory-devices 100000``; figures in bench/README.md).
``malloc_trim(0)`` returns every whole free page; here it runs on a timer of its own
thread.  ctypes releases the GIL for the call, which is short next to the interval.
Where the C library is not glibc, trimming is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _glibc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


_TRIM = _glibc_trim()


def can_trim() -> bool:
    """Whether this C library can give free heap pages back (glibc)."""
    return _TRIM is not None


def trim_heap() -> bool:
    """Give the free pages of the C heap back to the system; False where that cannot be
    done (the call is then a no-op)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class HeapTrimmer:
    """``trim_heap`` every ``interval_s`` seconds on a daemon thread, until stopped."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"gateway.heap_trim_interval_s must be > 0, not {interval_s}")
        self.interval_s = interval_s
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)

    def start(self) -> None:
        if not can_trim():
            log.info("this C library cannot give free heap memory back; not trimming")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trim_heap()
            self.trims += 1
