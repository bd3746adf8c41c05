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

With the timer running, glibc's own give-backs are turned off (``keep_freed_memory``):
by default a block over 128 KB gets a mapping of its own, and freeing memory at the top of
a heap gives it back at once.  Every batch's large buffers (the InfluxDB request body, as
text and as bytes, and the network loop's socket reads) were then mapped, faulted in page
by page and given back again, batch after batch: most of what joining and encoding a
request body cost.  Kept, they are reused by the next batch, and the timer still gives
back whatever stays free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


# glibc's mallopt parameters (malloc.h), and the values set while the timer trims.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap: a request body of 10,000 lines is a few MB.
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
# Free memory at the top of a heap stays until the timer trims it.
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def _glibc(function: str) -> Callable[[int], int] | Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return found


_TRIM: Callable[[int], int] | None = _glibc("malloc_trim")  # type: ignore[assignment]
_MALLOPT: Callable[[int, int], int] | None = _glibc("mallopt")  # type: ignore[assignment]


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


def keep_freed_memory() -> bool:
    """Leave freed memory for reuse until the next ``trim_heap`` (see the module's
    docstring); False where the C library has no such settings (nothing changed)."""
    if _MALLOPT is None or _TRIM is None:
        return False
    return bool(_MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        _MALLOPT(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


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
        keep_freed_memory()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trim_heap()
            self.trims += 1
