"""Giving the C heap's free pages back to the system.

Every batch allocates and frees many blocks too large for Python's small-object allocator:
message payloads, decoded readings, line-protocol text, HTTP bodies.  glibc's malloc keeps
the freed pages inside its heaps, and between the long-lived per-device objects they are
rarely at the top, where it would give them back on its own.  So a gateway's resident
memory grows far past what it holds, to more than twice its live objects without
trimming (``bench/throughput.py --memory-devices 100000``; figures in bench/README.md).
``malloc_trim(0)`` returns every whole free page; here it runs on a timer of its own
thread.  ctypes releases the GIL for the call, which is short next to the interval.

Two of glibc's defaults make the heap hold more than trimming can give back, so the gateway
sets them at start (``tune_malloc``, ``mallopt``; the environment's ``MALLOC_*`` variables
would reach a benchmark, not an operator's service):

- the mmap threshold: a block of 128 KiB or more gets a memory map of its own, unmapped
  when freed; but glibc raises the threshold (up to 32 MiB) each time such a block is
  freed, so after the first large request body or numpy array the next ones come from the
  heap, where the small long-lived blocks allocated around them pin the freed space.
  A fixed threshold keeps large blocks out of the heap for good.
- the number of arenas: each thread that allocates gets an arena of its own, up to eight
  a core, and every arena keeps its own free space; the gateway's threads (MQTT,
  processing, writer, alert timer, deliveries, API) do not need their own.

Where the C library is not glibc, trimming and tuning are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


# mallopt's parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# glibc refuses a fixed mmap threshold above HEAP_MAX / 2 (32 MiB on 64-bit).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def _glibc(function: str) -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return found


_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt") if _TRIM is not None else None


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


def tune_malloc(mmap_threshold_bytes: int, arena_max: int) -> bool:
    """Fix glibc's mmap threshold and cap its arenas, each unless 0 (glibc's own then);
    False where the C library is not glibc.  A value out of range raises ValueError naming
    its ``gateway`` key.  Process-wide, and best called before the threads start: an arena
    made already stays."""
    if not 0 <= mmap_threshold_bytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"gateway.malloc_mmap_threshold_bytes must be 0 to {MAX_MMAP_THRESHOLD}, "
            f"not {mmap_threshold_bytes}"
        )
    if arena_max < 0:
        raise ValueError(f"gateway.malloc_arena_max must be ≥ 0, not {arena_max}")
    if _MALLOPT is None:
        return False
    for parameter, value in ((M_MMAP_THRESHOLD, mmap_threshold_bytes), (M_ARENA_MAX, arena_max)):
        if value and not _MALLOPT(parameter, value):
            raise ValueError(f"glibc refused mallopt({parameter}, {value})")
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
