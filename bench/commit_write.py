"""What the commit thread's InfluxDB write costs this client a line: ``BatchWriter.write``
of the default traffic's telemetry lines (``bench/throughput.py``'s, 5,000 a request as
the gateway writes a full batch) to a real InfluxDB 1.6 on loopback.

``bench/compiled.py`` counts the pipeline, which makes the lines, not their write.  Here
the first request warms the connection; the rest are counted: CPU time a line (the
kernel's share included), or with ``--instructions`` callgrind's count a line, switched on
around the writes only (this client's user-space instructions, not the kernel's).

    .venv/bin/python bench/commit_write.py [--instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINES_PER_REQUEST = 5_000
END_MS = 1_796_664_000_000  # one traffic for every run


def child(lines_file: Path, influx_url: str, counted: bool) -> None:
    from gateway.collector import tune_collector
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline import Pending
    from gateway.storage.writer import BatchWriter
    from jiayuan.config import InfluxConfig
    from jiayuan.influx import InfluxClient

    tune_collector()
    lines: list[str] = pickle.loads(lines_file.read_bytes())
    config = InfluxConfig(url=influx_url, database=f"bench_commit_{uuid.uuid4().hex[:6]}")
    with InfluxClient(config) as client:
        client.ensure_database()
        writer = BatchWriter(client, GatewayMetrics(), threading.Event())
        pending = [Pending(line, "bench", b"", 0, True) for line in lines]
        requests = [
            pending[first : first + LINES_PER_REQUEST]
            for first in range(0, len(pending), LINES_PER_REQUEST)
        ]
        writer.write(requests[0])  # the connection and the database's first shard
        if counted:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True)
        started = time.process_time()
        for request in requests[1:]:
            if writer.write(request):
                raise SystemExit("InfluxDB refused lines")
        cpu = time.process_time() - started
        if counted:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True)
        client.drop_database()
    written = sum(map(len, requests[1:]))
    print(json.dumps({"lines": written, "cpu_us": cpu / written * 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instructions", action="store_true", help="callgrind's count")
    parser.add_argument("--child", nargs=3, metavar=("LINES", "URL", "COUNTED"))
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.child[2] == "1")
        return
    from bench.throughput import build_traffic
    from tools.servers import start_servers

    lines = build_traffic(10, 10.0, 100, 0, END_MS).lines
    with tempfile.TemporaryDirectory() as temporary:
        lines_file = Path(temporary) / "lines.pickle"
        lines_file.write_bytes(pickle.dumps(lines))
        servers = start_servers(Path(temporary) / "servers")
        try:
            prefix: list[str] = []
            if args.instructions:
                out = Path(temporary) / "callgrind.out"
                prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
                prefix.append(f"--callgrind-out-file={out}")
            command = [*prefix, sys.executable, __file__, "--child", str(lines_file)]
            command += [servers.influx_url, "1" if args.instructions else "0"]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
        finally:
            servers.stop()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    size = sum(map(len, lines)) / len(lines)
    print(f"{result['lines']:,} lines of {size:.0f} bytes, {LINES_PER_REQUEST:,} a request")
    if not args.instructions:
        load = os.getloadavg()[0]
        print(
            f"CPU (the kernel's share included): {result['cpu_us']:.2f} µs a line, load {load:.1f}"
        )
    else:
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count from valgrind:\n{done.stderr}")
        print(f"instructions: {int(found.group(1)) / result['lines']:,.0f} a line")


if __name__ == "__main__":
    main()
