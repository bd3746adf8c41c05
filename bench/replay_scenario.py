"""Live readings while a tenth of a district's estates replay an hour of backlog, against
real Mosquitto and InfluxDB: their latency with the edge's replay pacing and the gateway's
fair share, and without (the baseline), in one run.

A district's traffic (``simulators/district.py``: ``--devices`` distinct devices in a
registry's family mix, each at its family's period, batched per estate as its edge
publishes) flows live from the estates that stayed online.  A tenth of the estates come
back from an uplink outage: real edge agents (``edge.agent.EdgeAgent``) on spools holding
the hour of their devices' readings the district's schedule made, reading their devices'
live readings from the same schedule at the same time.  Fire-alarm markers stamped when
they are read go out from both kinds of estates (``mark-live-*`` from the live publisher,
``mark-edge-*`` through the replaying edges' spools); InfluxDB is polled for each
marker's reading and its anomaly, so a latency is publish (or driver read) → stored, and
→ anomaly stored.

Three runs, each on a fresh gateway (a child process, alerts off, as bench/throughput.py's
latency run) and database:

- ``baseline``: the edges send their spool oldest first, unpaced and unmarked (an edge
  without live-first), so the gateway sees one lane;
- ``lanes``: the edges send live readings first and their backlog marked but unpaced
  (``replay_rate_limit = 0``): the gateway's two lanes (gateway/transport/inbox.py) alone
  against the flood;
- ``fair``: the edges as shipped (live first, backlog marked and paced at the default
  ``[edge] replay_rate_limit``) and the gateway's two lanes.

Each run measures the markers published in the first ``--window-s`` seconds after the
edges connect, then waits up to ``SETTLE_S`` for the last of them.

    .venv/bin/python bench/replay_scenario.py [--devices 10000] [--window-s 30]
    .venv/bin/python bench/throughput.py --replay-only

The default is a tenth of a 100,000-device district, whose 565 estates' 56 replaying
edges run as real agents in one process: on a 2-core host shared with the broker,
InfluxDB and the gateway, the whole district's 565 agents would measure the host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.child_lines import expect, say
from bench.markers import note_marks
from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import DriverSample
from edge.spool import Spool
from jiayuan.catalogue import Kind
from jiayuan.config import AlertsConfig, Config, EdgeConfig, GatewayConfig, InfluxConfig, MqttConfig
from jiayuan.contract import Envelope, Reading, batch_topic, decode_envelope, encode, parse_topic
from jiayuan.influx import InfluxClient
from simulators.district import District, build_district
from tools.servers import RunningServers, start_servers

MARK_PLACE = ("songjiang", "replay", "mark")  # where the live publisher's markers come from
BACKLOG_S = 3600  # an hour of outage
LEAD_S = 120  # live traffic made for the window and this much more
REPLAYING_SHARE = 0.1
MARK_EVERY_S = 0.1  # live publisher's markers
EDGE_POLL_S = 0.5  # the replaying edges poll (and mark) this often
POLL_S = 0.05  # InfluxDB polled for markers
SETTLE_S = 30.0
TARGET_P99_S = 1.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def mark_reading(name: str, ts: int) -> Reading:
    return Reading(name, "fire", 1, ts, {"fire_alarm": 1}, building="B1", event="fire.alarm")


# --- child processes ------------------------------------------------------------------------


def _child(mode: str, settings: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, f"--{mode}", json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _tell(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdin is not None
    process.stdin.write(word + "\n")
    process.stdin.flush()


def run_gateway(settings: dict[str, Any]) -> None:
    """A gateway until stdin says stop; reports its counters."""
    from gateway.service import Gateway

    config = Config(
        mqtt=MqttConfig(url=settings["mqtt"], gateway_client_id=settings["client_id"]),
        influx=InfluxConfig(url=settings["influx"], database=settings["database"]),
        gateway=GatewayConfig(state_dir=settings["state_dir"]),
        alerts=AlertsConfig(enabled=False),
        source="bench",
    )
    with InfluxClient(config.influx) as client:
        client.ensure_database()
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    if not gateway.wait_ready(30):
        raise RuntimeError("the gateway did not subscribe within 30 s")
    cpu = time.process_time()
    say(sys.stdout, ready=True)
    sys.stdin.readline()
    stats = gateway.stats
    gateway.stop()
    say(
        sys.stdout,
        cpu_s=time.process_time() - cpu,
        stored=stats.readings_stored,
        messages=stats.messages,
        messages_backlog=stats.messages_backlog,
        replayed_unjudged=stats.replayed_unjudged,
        duplicates=stats.duplicates,
        seq_faults=stats.seq_faults,
    )


def run_live_publisher(settings: dict[str, Any]) -> None:
    """The estates that stayed online: each message at its offset after "go", and
    markers, until stop."""
    timed = msgspec.msgpack.decode(
        Path(settings["traffic_file"]).read_bytes(), type=list[tuple[str, bytes, int]]
    )
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-live-{uuid.uuid4().hex[:6]}"
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", settings["port"])
    client.loop_start()
    say(sys.stdout, ready=True)
    sys.stdin.readline()  # "go"
    stop = threading.Event()

    def until_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=until_stop, daemon=True).start()
    marks: list[tuple[str, int]] = []
    mark_topic = batch_topic(*MARK_PLACE, "bench-mark")
    started = time.monotonic()
    next_mark = started
    sent = 0
    while not stop.is_set():
        now = time.monotonic()
        while sent < len(timed) and started + timed[sent][2] / 1000 <= now:
            topic, payload, _ = timed[sent]
            client.publish(topic, payload, qos=1)
            sent += 1
        if now >= next_mark:
            name = f"mark-live-{len(marks)}"
            ts = now_ms()
            marker = encode(Envelope(1, "bench-mark", [mark_reading(name, ts)]))
            client.publish(mark_topic, marker, qos=1)
            marks.append((name, ts))
            next_mark += MARK_EVERY_S
        due = next_mark if sent >= len(timed) else min(next_mark, started + timed[sent][2] / 1000)
        time.sleep(max(0.0, min(0.05, due - time.monotonic())))
    client.loop_stop()
    client.disconnect()
    say(sys.stdout, marks=marks, published=sent)


def samples_of(payloads: list[bytes]) -> list[DriverSample]:
    """The readings of an edge's messages as its driver read them."""
    return [
        DriverSample(r.device, Kind(r.kind), r.building, r.ts, r.values, r.event)
        for payload in payloads
        for r in decode_envelope(payload).readings
    ]


class EstateDriver:
    """A replaying estate's devices, live: each reading once its time after "go" has come
    (stamped then), and a marker at every poll."""

    def __init__(
        self, estate: str, live: list[DriverSample], start_ms: int, marks: list[tuple[str, int]]
    ) -> None:
        self.estate = estate
        self.live = sorted(live, key=lambda sample: sample.ts)
        self.start_ms = start_ms
        self.marks = marks
        self.go_ms = 0
        self.taken = 0
        self.polls = 0

    def poll(self, now: int) -> list[DriverSample]:
        ts = now_ms()
        if not self.go_ms:
            self.go_ms = ts
        samples = []
        while self.taken < len(self.live):
            sample = self.live[self.taken]
            at = self.go_ms + sample.ts - self.start_ms
            if at > ts:
                break
            samples.append(replace(sample, ts=at))
            self.taken += 1
        name = f"mark-edge-{self.estate}-{self.polls}"
        samples.append(DriverSample(name, Kind.FIRE, "B1", ts, {"fire_alarm": 1}, "fire.alarm"))
        self.marks.append((name, ts))
        self.polls += 1
        return samples


class OldestFirstAgent(EdgeAgent):
    """The baseline: everything spooled is sent oldest first, unpaced and unmarked."""

    def _backlog_at_connect(self) -> int:
        return 0


def run_edges(settings: dict[str, Any]) -> None:
    """The replaying estates' edge agents: spools filled with their hour of backlog, then
    connected on "go", their drivers reading the estates' live readings."""
    plan = msgspec.msgpack.decode(
        Path(settings["plan_file"]).read_bytes(), type=list[tuple[str, list[bytes], list[bytes]]]
    )
    workdir = Path(settings["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    mqtt_config = MqttConfig(url=settings["mqtt"])
    edge_config = EdgeConfig(spool_dir=str(workdir))
    mode = settings["mode"]
    agent_class = OldestFirstAgent if mode == "baseline" else EdgeAgent
    if mode == "lanes":
        edge_config = replace(edge_config, replay_rate_limit=0.0)
    marks: list[tuple[str, int]] = []
    agents = []
    backlog = 0
    for topic, spooled, live in plan:
        place = parse_topic(topic)
        path = workdir / f"{place.device}.sqlite"
        spool = Spool(path)
        samples = samples_of(spooled)
        for chunk in range(0, len(samples), 5000):
            spool.append(place.device, samples[chunk : chunk + 5000])
        spool.close()
        backlog += len(samples)
        driver = EstateDriver(place.estate, samples_of(live), settings["live_start_ms"], marks)
        agents.append(
            agent_class(
                mqtt_config,
                edge_config,
                EdgePlace(place.district, place.street, place.estate, place.device),
                driver,
                path,
                poll_interval_s=EDGE_POLL_S,
                drain_timeout_s=1.0,
            )
        )
    say(sys.stdout, ready=True, backlog=backlog)
    sys.stdin.readline()  # "go"

    async def run() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(run())
    say(
        sys.stdout,
        marks=marks,
        replayed=sum(a.stats.readings_replayed for a in agents),
        acked=sum(a.stats.readings_acked for a in agents),
        pending=sum(a.stats.pending for a in agents),
    )


# --- the measurement ------------------------------------------------------------------------


class Latencies(msgspec.Struct):
    count: int
    seen: int
    p50_s: float
    p99_s: float
    max_s: float


class RunResult(msgspec.Struct):
    name: str
    stored: dict[str, Latencies]  # by marker source: live, edge
    anomaly: dict[str, Latencies]
    backlog: int
    replayed: int
    pending_at_end: int
    gateway: dict[str, Any]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def _latencies(marks: list[tuple[str, int]], seen: dict[str, float], ended: float) -> Latencies:
    """Latency of each marker; one never seen counts as its wait until the polling
    ``ended`` (a floor)."""
    values = []
    for name, ts in marks:
        at = seen.get(name, ended)
        values.append((at * 1000 - ts) / 1000)
    return Latencies(
        count=len(marks),
        seen=sum(1 for name, _ in marks if name in seen),
        p50_s=_percentile(values, 0.5),
        p99_s=_percentile(values, 0.99),
        max_s=max(values, default=0.0),
    )


MODES = ("baseline", "lanes", "fair")


def replaying_estates(district: District) -> list[int]:
    """A tenth of the estates, spread over the district's streets."""
    every = round(1 / REPLAYING_SHARE)
    return list(range(0, len(district.estates), every))


def plan_traffic(district: District, run_dir: Path, window_s: float) -> tuple[Path, Path, int]:
    """The online estates' live messages (with their offsets after "go") and, per
    replaying edge, its hour of backlog and its live messages; files for the children."""
    start = now_ms()
    end = start + int((window_s + LEAD_S) * 1000)
    replaying = replaying_estates(district)
    online = sorted(set(range(len(district.estates))) - set(replaying))
    live = district.traffic(start, end, estates=online)
    timed = [
        (topic, payload, at - start)
        for (topic, payload, _), at in zip(live.wires, live.publish_ms, strict=True)
    ]
    per_edge: dict[str, tuple[list[bytes], list[bytes]]] = {}
    # One window as long as the outage: the whole spool, as the edge batches a backlog.
    backlog = district.traffic(
        start - BACKLOG_S * 1000, start, flush_ms=BACKLOG_S * 1000, estates=replaying
    )
    for topic, payload, _ in backlog.wires:
        per_edge.setdefault(topic, ([], []))[0].append(payload)
    for topic, payload, _ in district.traffic(start, end, estates=replaying).wires:
        per_edge.setdefault(topic, ([], []))[1].append(payload)
    traffic_file = run_dir / "live.msgpack"
    traffic_file.write_bytes(msgspec.msgpack.encode(timed))
    plan_file = run_dir / "edges.msgpack"
    plan_file.write_bytes(
        msgspec.msgpack.encode([(topic, old, new) for topic, (old, new) in per_edge.items()])
    )
    return traffic_file, plan_file, start


def end_session(port: int, client_id: str) -> None:
    """Make the broker forget a stopped gateway's persistent session: otherwise it keeps
    queueing the next runs' messages for it, a share of the broker's work in them."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=properties)
    client.loop_start()
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


def run_once(
    servers: RunningServers, workdir: Path, name: str, district: District, window_s: float
) -> RunResult:
    database = f"bench_replay_{name}_{uuid.uuid4().hex[:6]}"
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    traffic_file, plan_file, live_start = plan_traffic(district, run_dir, window_s)
    client_id = f"bench-replay-{uuid.uuid4().hex[:6]}"
    gateway = _child(
        "gateway",
        {
            "mqtt": servers.mqtt_url,
            "influx": servers.influx_url,
            "database": database,
            "client_id": client_id,
            "state_dir": str(run_dir / "gateway"),
        },
    )
    edges = _child(
        "edges",
        {
            "mqtt": servers.mqtt_url,
            "plan_file": str(plan_file),
            "live_start_ms": live_start,
            "workdir": str(run_dir / "edges"),
            "mode": name,
        },
    )
    live = _child("live", {"port": servers.mqtt_port, "traffic_file": str(traffic_file)})
    expect(gateway, "gateway")
    prepared = expect(edges, "edges")
    expect(live, "live publisher")
    seen_stored: dict[str, float] = {}
    seen_anomaly: dict[str, float] = {}
    stop_polling = threading.Event()
    influx = InfluxConfig(url=servers.influx_url, database=database)

    def poll() -> None:
        with InfluxClient(influx) as client:
            while not stop_polling.wait(POLL_S):
                for measurement, field, seen in (
                    ("fire", "fire_alarm", seen_stored),
                    ("anomaly", "start", seen_anomaly),
                ):
                    note_marks(client, measurement, field, seen)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _tell(live, "go")  # the district's live traffic runs on its own...
    time.sleep(3.0)  # ...for a moment before the replaying edges reconnect
    _tell(edges, "go")
    time.sleep(window_s)
    _tell(live, "stop")
    _tell(edges, "stop")
    live_marks = [tuple(m) for m in expect(live, "live publisher")["marks"]]
    edge_end = expect(edges, "edges")
    edge_marks = [tuple(m) for m in edge_end["marks"]]
    deadline = time.time() + SETTLE_S
    wanted = {str(m[0]) for m in live_marks + edge_marks}
    while time.time() < deadline and not wanted <= (seen_stored.keys() & seen_anomaly.keys()):
        time.sleep(POLL_S)
    stop_polling.set()
    poller.join()
    ended = time.time()
    _tell(gateway, "stop")
    gateway_end = expect(gateway, "gateway")
    for process in (gateway, edges, live):
        process.wait()
    end_session(servers.mqtt_port, client_id)
    by_source = {"live": live_marks, "edge": edge_marks}
    return RunResult(
        name=name,
        stored={k: _latencies(v, seen_stored, ended) for k, v in by_source.items()},
        anomaly={k: _latencies(v, seen_anomaly, ended) for k, v in by_source.items()},
        backlog=int(prepared["backlog"]),
        replayed=int(edge_end["acked"]),
        pending_at_end=int(edge_end["pending"]),
        gateway=gateway_end,
    )


def _print_run(run: RunResult, window_s: float) -> None:
    g = run.gateway
    print(
        f"  {run.name}: backlog {run.backlog:,} readings; in {window_s:g} s the replaying "
        f"edges had {run.replayed:,} readings acknowledged (backlog and live), "
        f"{run.pending_at_end:,} still spooled at the end; the gateway stored "
        f"{g['stored']:,} readings ({g['messages_backlog']:,} messages in its backlog lane, "
        f"{g['replayed_unjudged']:,} replayed readings not judged), CPU {g['cpu_s']:.1f} s"
    )
    for what, table in (("publish → stored", run.stored), ("publish → anomaly", run.anomaly)):
        for source, lat in table.items():
            where = "online estates" if source == "live" else "replaying estates"
            verdict = "ok" if lat.p99_s <= TARGET_P99_S and lat.seen == lat.count else "MISSED"
            # Markers never stored count as their wait until the end: a floor, "≥".
            floor = "≥" if lat.seen < lat.count else " "
            print(
                f"    {what:18} {where:18} p50 {lat.p50_s * 1000:7.0f} ms  p99 {floor}"
                f"{lat.p99_s * 1000:7.0f} ms  max {floor}{lat.max_s * 1000:7.0f} ms  "
                f"({lat.seen}/{lat.count} markers stored)  {verdict}"
            )


def measure(
    servers: RunningServers,
    workdir: Path,
    devices: int = 10_000,
    window_s: float = 30.0,
    district: District | None = None,
) -> list[RunResult]:
    """The three runs, printed; the hook bench/throughput.py calls in its default run."""
    if district is None:
        district = build_district(devices, seed=1)
    replaying = len(replaying_estates(district))
    print(
        f"\n(r) live readings while {replaying} of {len(district.estates)} estates "
        f"({district.devices:,} devices, simulators/district.py) replay "
        f"{BACKLOG_S // 60} minutes of backlog; target p99 ≤ {TARGET_P99_S:g} s; edge "
        f"replay_rate_limit {EdgeConfig().replay_rate_limit:g} readings/s"
    )
    results = []
    for mode in MODES:
        run = run_once(servers, workdir, mode, district, window_s)
        _print_run(run, window_s)
        results.append(run)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000, help="devices in the district")
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--gateway", help=argparse.SUPPRESS)
    parser.add_argument("--edges", help=argparse.SUPPRESS)
    parser.add_argument("--live", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for mode, run in (("gateway", run_gateway), ("edges", run_edges), ("live", run_live_publisher)):
        if getattr(args, mode):
            run(json.loads(getattr(args, mode)))
            return
    servers = start_servers()
    try:
        with tempfile.TemporaryDirectory(prefix="jiayuan-replay-") as workdir:
            results = measure(servers, Path(workdir), args.devices, args.window_s)
        if args.json:
            args.json.write_bytes(msgspec.json.encode(results))
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
