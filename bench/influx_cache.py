"""InfluxDB's CPU a point at a district's cardinality, by cache snapshot size.

A district writes one point per device every few seconds, so how often InfluxDB 1.x writes
its cache out (``[data] cache-snapshot-memory-size``) decides how many values a series
each TSM file holds, and how much compacting follows.  For each size, alternating: a real
InfluxDB (``tools.servers``) restarted with that size, a district's first ``--warm-s`` of
telemetry lines written to make every series, then ``--seconds`` more written at
``--rate`` points/s in requests of ``--lines``; InfluxDB's CPU a point (its process tree)
over the paced part, and the snapshots and compactions it ran (``/debug/vars``) until the
last write returned.

    .venv/bin/python bench/influx_cache.py [--devices 100000] [--sizes 25m 256m]
        [--rate 7000] [--lines 150] [--seconds 70] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.host_cpu import tree_cpu_s
from bench.influx_engine import done_between, engine_stats, restart_with_cache_snapshot
from bench.throughput import _telemetry_lines, machine
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient
from simulators.district import build_district
from tools.servers import start_servers

WARM_BATCH = 5000


def measure(size: str, warm: list[str], lines: list[str], rate: float, per_write: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-influx-cache-"))
    servers = start_servers(workdir / "servers")
    try:
        restart_with_cache_snapshot(servers, size)
        config = InfluxConfig(url=servers.influx_url, database="district", timeout_s=300.0)
        with InfluxClient(config) as client:
            client.ensure_database()
            for first in range(0, len(warm), WARM_BATCH):
                client.write(warm[first : first + WARM_BATCH])
            before = engine_stats(servers.influx_url)
            cpu_before = tree_cpu_s(servers.influxd_pid)
            started = time.time()
            for first in range(0, len(lines), per_write):
                due = started + first / rate
                while (now := time.time()) < due:
                    time.sleep(min(0.005, due - now))
                client.write(lines[first : first + per_write])
            elapsed = time.time() - started
            cpu_s = tree_cpu_s(servers.influxd_pid) - cpu_before
            after = engine_stats(servers.influx_url)
        print(
            f"  {size:>6}: {cpu_s / len(lines) * 1e6:6.1f} µs of InfluxDB CPU a point, "
            f"{len(lines) / elapsed:7,.0f} points/s taken ({rate:,.0f} asked); "
            f"{done_between(before, after)}; load average "
            + " ".join(f"{load:.2f}" for load in os.getloadavg())
        )
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--sizes", nargs="+", default=["25m", "256m"])
    parser.add_argument("--rate", type=float, default=7000.0, help="points/s asked")
    parser.add_argument("--lines", type=int, default=150, help="lines a write request")
    parser.add_argument("--warm-s", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=70.0, help="of district traffic")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    district = build_district(args.devices, seed=1)
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - int(args.seconds * 1000)
    warm = _telemetry_lines(district.traffic(start_ms - int(args.warm_s * 1000), start_ms).wires)
    lines = _telemetry_lines(district.traffic(start_ms, end_ms).wires)
    print(
        f"{args.devices:,} devices: {len(warm):,} lines make the series, then {len(lines):,} "
        f"at {args.rate:,.0f} points/s in requests of {args.lines}"
    )
    for _ in range(args.rounds):
        for size in args.sizes:
            measure(size, warm, lines, args.rate, args.lines)


if __name__ == "__main__":
    main()
