"""What a write costs InfluxDB and its client, by request size, compression and client.

The gateway's CPU a reading is held against InfluxDB's CPU a point (issue 30), and how the
gateway writes moves both: the lines per request, gzip or not, httpx or the standard
library's ``http.client`` on one keep-alive connection.  Each variant writes the same
telemetry lines (``bench/throughput.py``'s traffic, millisecond timestamps as the gateway
writes them) into a database of its own on a real InfluxDB 1.6, in alternating rounds;
it prints InfluxDB's CPU a point (its process tree, from ``/proc``) and this client's CPU
a point, body building included.

    .venv/bin/python bench/influx_writes.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.host_cpu import tree_cpu_s
from bench.throughput import build_traffic, machine
from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient
from tools.servers import RunningServers, start_servers

Send = Callable[[list[str]], None]


def httpx_sender(
    servers: RunningServers, database: str, compress: bool
) -> tuple[Send, Callable[[], None]]:
    client = InfluxClient(InfluxConfig(url=servers.influx_url, database=database))
    client.ensure_database()
    if not compress:
        return client.write, client.close
    http = client._client  # the same pooled connection, a gzip body

    def send(lines: list[str]) -> None:
        body = gzip.compress("\n".join(lines).encode(), compresslevel=1)
        response = http.post(
            "/write",
            params={"db": database, "precision": "ms"},
            content=body,
            headers={"Content-Encoding": "gzip"},
        )
        if response.status_code != 204:
            raise RuntimeError(f"write failed: {response.status_code} {response.text}")

    return send, client.close


def http_client_sender(servers: RunningServers, database: str) -> tuple[Send, Callable[[], None]]:
    InfluxClient(InfluxConfig(url=servers.influx_url, database=database)).ensure_database()
    url = urlsplit(servers.influx_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
    path = "/write?" + urlencode({"db": database, "precision": "ms"})

    def send(lines: list[str]) -> None:
        connection.request("POST", path, "\n".join(lines).encode())
        response = connection.getresponse()
        answer = response.read()
        if response.status != 204:
            raise RuntimeError(f"write failed: {response.status} {answer!r}")

    return send, connection.close


VARIANTS: dict[str, tuple[int, str, bool]] = {
    # name: (lines per request, client, gzip)
    "httpx 500": (500, "httpx", False),
    "httpx 2,000": (2_000, "httpx", False),
    "httpx 5,000": (5_000, "httpx", False),
    "httpx 10,000": (10_000, "httpx", False),
    "httpx 5,000 gzip": (5_000, "httpx", True),
    "http.client 500": (500, "http.client", False),
    "http.client 5,000": (5_000, "http.client", False),
}


def run(servers: RunningServers, lines: list[str], variant: str) -> tuple[float, float, float]:
    """(InfluxDB µs a point, client µs a point, points/s)."""
    per_request, client, compress = VARIANTS[variant]
    database = f"bench_writes_{uuid.uuid4().hex[:6]}"
    if client == "httpx":
        send, close = httpx_sender(servers, database, compress)
    else:
        send, close = http_client_sender(servers, database)
    try:
        influx_before = tree_cpu_s(servers.influxd_pid)
        cpu_before = time.process_time()
        started = time.perf_counter()
        for first in range(0, len(lines), per_request):
            send(lines[first : first + per_request])
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        influx_cpu = tree_cpu_s(servers.influxd_pid) - influx_before
    finally:
        close()
    points = len(lines)
    return influx_cpu / points * 1e6, client_cpu / points * 1e6, points / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--estates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=20.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    lines = build_traffic(args.estates, args.minutes, 100, 1).lines
    print(f"{len(lines):,} telemetry lines, {sum(map(len, lines)) / len(lines):.0f} bytes a line")
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-bench-"))
    servers = start_servers(workdir / "servers")
    figures: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    try:
        for round_ in range(args.rounds):
            order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                figures[variant].append(run(servers, lines, variant))
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'variant':<20} {'InfluxDB µs/point':>20} {'client µs/point':>18} {'points/s':>18}")
    for variant, runs in figures.items():
        influx = [run[0] for run in runs]
        client = [run[1] for run in runs]
        rate = [run[2] for run in runs]
        print(
            f"{variant:<20} {min(influx):8.1f}–{max(influx):<8.1f}  "
            f"{min(client):7.1f}–{max(client):<7.1f}  {statistics.median(rate):14,.0f}"
        )


if __name__ == "__main__":
    main()
