"""What InfluxDB 1.x's storage engine is doing, from its ``/debug/vars``: cache snapshots
and TSM compactions, done and running; and a benchmark's InfluxDB restarted with another
cache snapshot size.

At a district's cardinality they take most of InfluxDB's CPU: a benchmark that measures
latency in steady state waits until none is running before it starts, and says how many
ran while it measured.
"""

from __future__ import annotations

import time
from collections import defaultdict

import httpx

from tools.servers import INFLUX_CACHE_SNAPSHOT, RunningServers

# The engine's counters summed over shards: the cache snapshots written as TSM files
# ("cacheCompactions") and the TSM compactions by level, each with its duration in ns.
KINDS = ("cache", "tsmLevel1", "tsmLevel2", "tsmLevel3", "tsmOptimize", "tsmFull")


def engine_stats(influx_url: str) -> dict[str, float]:
    """``tsm1_engine`` and ``tsm1_cache`` counters summed over every shard."""
    response = httpx.get(f"{influx_url}/debug/vars", timeout=30.0)
    response.raise_for_status()
    totals: dict[str, float] = defaultdict(float)
    for value in response.json().values():
        if isinstance(value, dict) and value.get("name") in ("tsm1_engine", "tsm1_cache"):
            for field, number in value.get("values", {}).items():
                totals[f"{value['name']}.{field}"] += float(number)
    return dict(totals)


def running(stats: dict[str, float]) -> int:
    """Cache snapshots and compactions running now."""
    return int(sum(stats.get(f"tsm1_engine.{kind}CompactionsActive", 0) for kind in KINDS))


def wait_settled(influx_url: str, timeout_s: float, quiet_s: float = 2.0) -> float:
    """Wait until no snapshot or compaction has run for ``quiet_s`` (polled every 0.25 s),
    at most ``timeout_s``; return the seconds waited."""
    started = time.monotonic()
    quiet_since = started
    while time.monotonic() - started < timeout_s:
        now = time.monotonic()
        if running(engine_stats(influx_url)):
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            break
        time.sleep(0.25)
    return time.monotonic() - started


def done_between(before: dict[str, float], after: dict[str, float]) -> str:
    """The snapshots and compactions done between two samples, with their seconds."""
    parts = []
    for kind in KINDS:
        count = after.get(f"tsm1_engine.{kind}Compactions", 0) - before.get(
            f"tsm1_engine.{kind}Compactions", 0
        )
        if count:
            ns = after.get(f"tsm1_engine.{kind}CompactionDuration", 0) - before.get(
                f"tsm1_engine.{kind}CompactionDuration", 0
            )
            label = "cache snapshots" if kind == "cache" else f"{kind} compactions"
            parts.append(f"{count:.0f} {label} ({ns / 1e9:.1f} s)")
    return ", ".join(parts) or "no snapshot or compaction"


def restart_with_cache_snapshot(servers: RunningServers, size: str) -> None:
    """Restart the benchmark's InfluxDB with another ``[data] cache-snapshot-memory-size``
    than ``tools.servers`` writes (an A/B of that configuration)."""
    servers.stop_influx()
    conf = servers.influxdb_conf.read_text()
    setting = f'cache-snapshot-memory-size = "{INFLUX_CACHE_SNAPSHOT}"'
    if setting not in conf:
        raise RuntimeError(f"tools.servers no longer writes {setting!r}")
    servers.influxdb_conf.write_text(
        conf.replace(setting, f'cache-snapshot-memory-size = "{size}"')
    )
    servers.start_influx()
