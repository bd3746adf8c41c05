"""The cyclic garbage collector's thresholds for a gateway process.

The hot path makes and drops several container objects per reading (decoded readings and
their value dicts, places, pending lines, batch tuples), so at CPython's default first
threshold (700 allocations) a generation-0 collection runs every few dozen readings and
the older generations, which hold the per-device detection state, are swept far more often
than anything in them could become garbage: a visible share of the pipeline's time at the
default (``bench/pipeline.py`` shows it).  Reference counting still frees everything at
once; only reference cycles wait a little longer.
"""

from __future__ import annotations

import gc

# Generation 0 collected every 50,000 net allocations instead of 700: more than a batch
# of 5,000 readings keeps alive, so most of a batch's objects are freed before a
# collection would move them to generation 1 (at 10,000 they were, and generation 1's
# sweeps cost as much as all of generation 0's). The older generations keep CPython's
# ratios (every 10 collections of the one below).
GATEWAY_THRESHOLDS = (50_000, 10, 10)


def tune_collector() -> None:
    """Set the gateway's thresholds for this process (idempotent; never lowers one)."""
    current = gc.get_threshold()
    gc.set_threshold(
        *(max(now, wanted) for now, wanted in zip(current, GATEWAY_THRESHOLDS, strict=True))
    )
