"""What a server's processes and the whole host spent on the CPU between two moments.

A benchmark that shares a small host with Mosquitto and InfluxDB needs to say where the
cores went: the gateway's share is measured in its own process, InfluxDB's and the host's
here, from ``/proc`` (Linux).  ``CpuTimeline`` samples both in a thread, so the moments can
be chosen afterwards (a run's start and the time its last write returned).
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from pathlib import Path

import msgspec

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a server runs under tools.servers' watchdog,
    as its child)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _process_cpu_s(stat: bytes) -> float:
    # The command name may hold spaces and parentheses: the fields follow the last ")".
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def tree_cpu_s(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and every process below it; a process that
    is gone adds 0."""
    total = 0.0
    for member in tree(pid):
        try:
            total += _process_cpu_s(Path(f"/proc/{member}/stat").read_bytes())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _host_ticks(stat: bytes) -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot, from ``/proc/stat``: user, nice,
    system, irq and softirq are busy, idle and I/O wait are not; time stolen by the
    hypervisor is neither (the guest fields are counted in user and nice already)."""
    line = stat.split(b"\n", 1)[0]
    user, nice, system, idle, iowait, irq, softirq = (int(f) for f in line.split()[1:8])
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


class Spent(msgspec.Struct, frozen=True):
    seconds: float  # wall time between the two samples used
    process_cpu_s: float  # the watched process tree's CPU time
    host_busy: float  # share of all cores' time that was busy, 0–1


class CpuTimeline:
    """Samples one process tree's CPU time and the host's busy ticks every ``interval_s``
    from ``start()`` to ``stop()``.  The tree is found once (a server starts no processes
    while measured) and its ``/proc`` files are kept open and read again in place: the
    sampler shares the host it measures (opening and walking them every time took 44 ms
    of CPU a second)."""

    def __init__(self, pid: int, interval_s: float = 0.025) -> None:
        self.pids = tree(pid)
        self.interval_s = interval_s
        self._samples: list[tuple[float, float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> CpuTimeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        files = [os.open(f"/proc/{pid}/stat", os.O_RDONLY) for pid in self.pids]
        host = os.open("/proc/stat", os.O_RDONLY)
        try:
            while True:
                busy, ticks = _host_ticks(os.pread(host, 4096, 0))
                spent = sum(_process_cpu_s(os.pread(f, 4096, 0)) for f in files)
                self._samples.append((time.time(), spent, busy, ticks))
                if self._stop.wait(self.interval_s):
                    return
        finally:
            for descriptor in [*files, host]:
                os.close(descriptor)

    def between(self, start: float, end: float) -> Spent | None:
        """What was spent from the first sample at or after ``start`` (epoch seconds) to
        the last one at or before ``end``; None when the span holds fewer than two samples
        (a run shorter than the sampling interval)."""
        times = [sample[0] for sample in self._samples]
        first, last = bisect_left(times, start), bisect_right(times, end) - 1
        if last <= first:
            return None
        t0, cpu0, busy0, ticks0 = self._samples[first]
        t1, cpu1, busy1, ticks1 = self._samples[last]
        return Spent(t1 - t0, cpu1 - cpu0, (busy1 - busy0) / max(1, ticks1 - ticks0))


def thread_cpu_s() -> dict[str, float]:
    """This process's CPU seconds by thread name, from each thread's own CPU clock
    (nanoseconds, where ``/proc``'s figures come in clock ticks).  Threads of the same
    name are summed; a thread that has ended is no longer counted."""
    spent: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            cpu_s = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
        spent[thread.name] = spent.get(thread.name, 0.0) + cpu_s
    return spent
