"""End-to-end throughput against real Mosquitto and InfluxDB, with baselines in the same run.

Starts its own Mosquitto and InfluxDB (``tools.servers.start_servers``, temporary
directory, stopped at the end) and measures two cardinalities in one run, each with its
own baselines, then prints a summary table of the figures the targets are about:

- the replay: simulated estates with planned faults (``--estates``, ``--minutes``; 20
  estates, 357 devices, each in a 100-reading batch many times over);
- a district (``--devices``, default 100,000; ``simulators/district.py``): a registry's
  family mix, each device at its catalogue period, each estate's second of readings in one
  message as its edge publishes live.  ``--warm-s`` of it come first and only warm the
  gateway up (every device heard from once); (c) and the latency markers start after
  them, so they measure a gateway that knows the district, and ``--district-s`` more are
  measured (a 5,000-reading batch of the gateway then holds each device at most once).

On each:

(a) a bare paho-mqtt subscriber (VERSION2 callbacks, QoS 1) that only counts messages;
(a') the gateway's own MQTT ingest (its network loop, MQTT version and acks in bursts from
    a second thread) and still no processing: the gateway's MQTT floor;
(b) InfluxDB's own ingest: the gateway's telemetry lines in batches of 5,000 through
    ``InfluxClient.write``, measured before the (c) runs and again after each number of
    gateway processes; c/b is against the median (one measurement lasts about a second,
    and a slow or fast second of a shared host moved it by half);
(c) the gateway end to end (``gateway.service.Gateway`` in a child process of its own,
    API and alerts off): MQTT in, validation, detection, InfluxDB out, followed by the
    gateways' own count of readings stored, counted in InfluxDB by query at the end, and
    timed to the moment the gateways' last write to InfluxDB returned, with one reading
    per message and with batched messages.

The publisher (paho, QoS 1, 1,000 messages in flight) and the subscribers are separate
processes, so the publisher's CPU does not compete inside the measured process; on a
2-core machine they still share the cores with the broker and InfluxDB (printed).
A paho QoS 1 publisher manages only a few thousand messages per second, so by default (a)
and (c) drain the whole traffic queued at the broker in their persistent session: a rate
is readings / (last one received or stored − reconnect).  ``--live`` times them from the
first publish instead, while publishing.
Latency: at half the batched peak, fire-alarm readings stamped at publish time are mixed
into the traffic; each opens an anomaly, and InfluxDB is polled for it.  After the
district's latency phase, ``district_scenarios`` runs on the same servers.

    .venv/bin/python bench/throughput.py [--estates 20] [--minutes 20] [--devices 100000]
        [--district-s 10] [--warm-s 10] [--single 30000] [--live]
    .venv/bin/python bench/throughput.py --profile batched  # cProfile of the pipeline only
    .venv/bin/python bench/throughput.py --memory-devices 100000  # one gateway's memory only
    .venv/bin/python bench/throughput.py --replay-only  # (r) only: bench/replay_scenario.py

(r), after the district's latency phase (``district_scenarios``): live-reading latency
while a tenth of the estates replay an hour of backlog, with and without the edge's replay
pacing and the gateway's fair share (bench/replay_scenario.py).

``--memory-devices N``: one gateway process drains a district's first readings
(``simulators/district.py``, N devices of a registry's family mix, each reporting one to
four times) from the broker, then another one N/2 devices'; their resident memory when the
last reading was stored and at the peak, less their memory once subscribed, and what a
device adds between the two.  The N-device run is repeated for each state of the site
models in ``--memory-sites``: none (no registry), learnt (the district's registry, each
estate's water tanks a pump room, and a detection snapshot in which every site has learnt,
built by ``bench/sites.py`` from synthetic healthy rows, as after a clean restart) and
learning (the same with every site's learning rows nearly full).  With ``--alerts`` the
gateway runs its alert service too (SQLite alert store and outbox, no operations-centre
URL: work orders are parked), as in production: the devices fall silent after their
readings, so every device whose silence outlasts its family's limit before the end raises
an offline alert.  ``--malloc glibc`` leaves glibc's malloc as it is (``gateway.malloc_*``
0), against the settings the gateway makes at start (gateway/heap.py).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import replay_scenario
from bench.alert_memory import heap_kb
from bench.child_lines import expect, say
from bench.host_cpu import CpuTimeline, Spent, thread_cpu_s, tree_cpu_s
from bench.influx_engine import (
    done_between,
    engine_stats,
    restart_with_cache_snapshot,
    wait_settled,
)
from bench.markers import note_marks
from bench.qos1_publisher import Qos1Publisher
from gateway.heap import trim_heap
from gateway.pipeline import Message
from gateway.processor import QUIET_S
from gateway.storage.points import telemetry_line
from gateway.transport.inbox import Inbox
from gateway.transport.ingest import MqttIngest
from jiayuan.catalogue import Kind
from jiayuan.config import AlertsConfig, Config, GatewayConfig, InfluxConfig, MqttConfig
from jiayuan.contract import (
    Channel,
    Envelope,
    Reading,
    batch_topic,
    decode_envelope,
    device_topic,
    encode,
    parse_topic,
)
from jiayuan.influx import InfluxClient, InfluxError
from jiayuan.places import Place
from jiayuan.state import SNAPSHOT_FILE
from simulators.district import District, build_district
from simulators.driver import generate
from simulators.faults import plan_faults
from simulators.registry import Estate, build_registry
from tools.replay import as_gateway_input
from tools.servers import INFLUX_CACHE_SNAPSHOT, RunningServers, start_servers

INFLUX_BATCH = 5000
# How often (c) looks at the gateways' own count of readings stored, to see that all are.
# InfluxDB counts them once, at the end: a count is five queries over the whole database,
# which took a sixth of a core polled every 0.2 s at 357 devices, and at 100,000 devices
# seconds of InfluxDB's CPU each, in the run it measured.  The end time is the gateways'
# own: when their last write to InfluxDB returned (``STORED_SAMPLE_S``).
POLL_S = 0.2
STORED_SAMPLE_S = 0.005
LATENCY_POLL_S = 0.05
STALL_S = 30.0  # no progress for this long: report what arrived and move on
SAMPLER = "bench-sampler"  # its thread in the gateway's process: not counted as the gateway
MARK_EDGE = "bench-mark"
MARK_EVERY_S = 0.02  # ~50 markers a second: a p99 over hundreds, not the worst of a few dozen
# The district in the default run: 100,000 devices report about 14,600 readings a second,
# so 10 s make about 145,000 readings (in about 50,000 messages, an estate's second each),
# and a 5,000-reading batch of the gateway holds each device at most once.  The 10 s
# before (the period of every family but lifts) introduce every device first.  At this
# cardinality InfluxDB is slow to take points (bench/README.md), and it takes them all
# in each phase: 10 s keep the run's length bearable.
DISTRICT_DEVICES = 100_000
DISTRICT_S = 10.0
WARM_S = 10.0
# The district's latency: paced traffic between the warm-up stored and the first marker,
# so that the markers meet the paced rate's snapshots and compactions, not the warm-up's.
SETTLE_S = 5.0
# The longest the latency phase waits for the gateways to catch up with the warm-up, and
# then for InfluxDB to run no snapshot or compaction (23 s and 2–3 s on a quiet 2-core
# host; a reconnect or a loaded host takes minutes).
SETTLE_TIMEOUT_S = 180.0
# Paced traffic built for that wait: the markers start at the latest when it has passed
# (a settle of InfluxDB longer than this allowance's 20 s beyond the catch-up can still run
# the traffic out before the first marker, and says so).
CATCH_UP_ALLOWANCE_S = SETTLE_TIMEOUT_S + 20.0
# --memory-devices: every device reports one to four times (a lift every 5 s, the others
# every 10 s), so every signal is seen and every check's state allocated; then they fall
# silent.
MEMORY_WINDOW_S = 20.0

# One message: (topic, payload, readings in it).
Wire = tuple[str, bytes, int]


# --- traffic --------------------------------------------------------------------------------


class Traffic(msgspec.Struct):
    single: list[Wire]  # one reading per message, on the device's own topic
    batched: list[Wire]  # the edge's batch messages
    lines: list[str]  # the same readings as the gateway's telemetry lines
    devices: int
    mark_place: tuple[str, str, str]  # district, street, estate for the marker readings
    # The first batched messages that only warm the gateway up (every device heard from
    # once) and are left out of (c)'s timing; their lines are not in ``lines``.
    warm_wires: int = 0
    warm_lines: list[str] = []  # the warm-up's telemetry lines, for (b)
    label: str = ""
    # The district it was built from (None: the replay), so the latency phase can build
    # as many seconds of it as its steady state needs.
    district: District | None = None
    seconds: float = 0.0  # simulated seconds measured (after the warm-up)


def build_traffic(
    estates: int, minutes: float, batch: int, single_max: int, end_ms: int | None = None
) -> Traffic:
    """Simulator readings (with planned faults), all in the past inside the time window
    (ending a minute ago, or at ``end_ms``: the same traffic again)."""
    registry = build_registry(estates, seed=1)
    if end_ms is None:
        end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - int(minutes * 60_000)
    faults = plan_faults(registry, start_ms, minutes * 60, seed=1).faults
    per_estate: dict[str, list[tuple[Estate, Place, Reading]]] = defaultdict(list)
    for estate, place, reading in as_gateway_input(generate(registry, faults, start_ms, end_ms, 1)):
        per_estate[estate.id].append((estate, place, reading))
    single: list[Wire] = []
    batched: list[Wire] = []
    lines: list[str] = []
    devices: set[str] = set()
    for rows in per_estate.values():
        estate = rows[0][0]
        topic = batch_topic(estate.district, estate.street, estate.id, estate.edge_id)
        for first in range(0, len(rows), batch):
            chunk = [reading for _, _, reading in rows[first : first + batch]]
            payload = encode(Envelope(v=1, edge=estate.edge_id, readings=chunk))
            batched.append((topic, payload, len(chunk)))
        for _, place, reading in rows:
            devices.add(reading.device)
            lines.append(telemetry_line(place, reading))
            channel = Channel.EVENT if reading.event is not None else Channel.TELEMETRY
            kind = Kind(reading.kind)
            one = device_topic(
                estate.district, estate.street, estate.id, kind, reading.device, channel
            )
            single.append((one, encode(Envelope(v=1, edge=estate.edge_id, readings=[reading])), 1))
    # Interleave estates, the way many edges publish at once (a paced run in estate order
    # would send all of its rate to one street, so to one gateway of several, at a time).
    single.sort(key=lambda wire: msgspec.json.decode(wire[1])["readings"][0]["ts"])
    batched.sort(key=lambda wire: msgspec.json.decode(wire[1])["readings"][0]["ts"])
    marked = rows[0][0]
    return Traffic(
        single=single[:single_max],
        batched=batched,
        lines=lines,
        devices=len(devices),
        mark_place=(marked.district, marked.street, marked.id),
        label=f"replay of {estates} estates ({len(devices)} devices)",
    )


def build_district_traffic(
    district: District, seconds: float, warm_s: float, single_max: int
) -> Traffic:
    """``simulators.district``: the district's live traffic, each estate's second in one
    message as its edge publishes it, over ``warm_s`` + ``seconds`` ending a minute ago.
    The first ``warm_s`` (a period of the slowest family) only warm the gateway up, so (c)
    times devices it already knows, as in a district running for hours."""
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - int(seconds * 1000)
    warm_ms = start_ms - int(warm_s * 1000)
    warm = district.traffic(warm_ms, start_ms).wires if warm_s > 0 else []
    measured = district.traffic(start_ms, end_ms)
    single = district.traffic(start_ms, end_ms, single=True).wires[:single_max]
    lines, warm_lines = _telemetry_lines(measured.wires), _telemetry_lines(warm)
    marked = district.estates[0]
    return Traffic(
        single=single,
        batched=warm + measured.wires,
        lines=lines,
        devices=district.devices,
        mark_place=(marked.district, marked.street, marked.id),
        warm_wires=len(warm),
        warm_lines=warm_lines,
        label=f"district of {district.devices:,} devices",
        district=district,
        seconds=seconds,
    )


def _telemetry_lines(wires: list[Wire]) -> list[str]:
    """The gateway's telemetry lines of these messages' readings."""
    lines: list[str] = []
    for topic_text, payload, _ in wires:
        topic = parse_topic(topic_text)
        for reading in decode_envelope(payload).readings:
            place = Place(
                topic.district,
                topic.street,
                topic.estate,
                reading.building,
                reading.kind,
                reading.device,
            )
            lines.append(telemetry_line(place, reading))
    return lines


# --- child processes ------------------------------------------------------------------------


def _child(mode: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, f"--{mode}", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_publisher(
    port: int, traffic_file: str, rate: float, mark: str, warm: int = 0, steady_s: float = 0.0
) -> None:
    """Publish every message at QoS 1 (paced at ``rate`` readings/s when > 0) and report;
    markers only once the first ``warm`` messages are out.  With ``steady_s`` (the
    steady-state latency): the first ``warm`` messages go out unpaced, the rest paced
    right after them; markers start when the parent says "mark" (its settling), and the
    publisher stops ``steady_s`` after that."""
    wires = msgspec.msgpack.decode(Path(traffic_file).read_bytes(), type=list[Wire])
    publisher = Qos1Publisher(port)
    say(sys.stdout, ready=True)
    sys.stdin.readline()  # "go"
    marking = threading.Event()
    if steady_s and warm:

        def mark_on_go() -> None:
            sys.stdin.readline()
            marking.set()

        threading.Thread(target=mark_on_go, daemon=True).start()
    else:
        marking.set()
    marks: list[int] = []
    district, street, estate = mark.split("/") if mark else ("", "", "")
    mark_topic = batch_topic(district, street, estate, MARK_EDGE) if mark else ""
    next_mark = 0.0
    started = time.time()
    sent_readings = 0
    published = 0
    unpaced = warm if steady_s else 0
    total_readings = 0
    progress = Path(traffic_file + ".published")  # for the parent's settling
    noted = 0.0
    for index, (topic, payload, readings) in enumerate(wires):
        if steady_s and marks and time.time() * 1000 - marks[0] > steady_s * 1000:
            break
        if steady_s and time.time() - noted > POLL_S:
            progress.with_suffix(".tmp").write_text(str(total_readings))
            progress.with_suffix(".tmp").replace(progress)  # never read half written
            noted = time.time()
        if index == unpaced and unpaced:  # the warm-up is out: paced from here
            started, sent_readings = time.time(), 0
        if rate > 0 and index >= unpaced:
            due = started + sent_readings / rate
            while (now := time.time()) < due:
                time.sleep(min(due - now, 0.005))
            if mark and index >= warm and now >= next_mark and marking.is_set():
                ts = int(time.time() * 1000)
                alarm = Reading(
                    f"mark-{len(marks)}", "fire", 1, ts, {"fire_alarm": 1}, event="fire.alarm"
                )
                publisher.publish(mark_topic, encode(Envelope(1, MARK_EDGE, [alarm])))
                marks.append(ts)
                published += 1
                next_mark = now + MARK_EVERY_S
        publisher.publish(topic, payload)
        published += 1
        sent_readings += readings
        total_readings += readings
    sent = time.time()
    publisher.wait_acknowledged()
    say(
        sys.stdout,
        start=started,
        sent=sent,
        acked=time.time(),
        marks=marks,
        readings=total_readings,
    )
    publisher.close()


def run_counter(
    port: int, expected: int, drain: bool, gateway_window_s: float | None, protocol: str = "5"
) -> None:
    """The bare subscriber: counts messages, nothing else.

    With ``drain`` it subscribes in a persistent session, goes away while the traffic is
    published (the broker queues it), and is timed from reconnecting to the last message.
    With ``gateway_window_s``: the gateway's own MQTT ingest
    (``gateway.transport.ingest.MqttIngest`` with the MQTT version ``protocol``, its network
    loop and, for v5, its PUBLISH decoder),
    and its messages acknowledged in bursts as the gateway's commit thread does (a batch
    closes after ``QUIET_S`` without messages or at this batch window,
    ``flush_interval_s``; all its messages are acknowledged together); still no
    processing (the gateway's MQTT floor).
    """
    client_id = f"bench-sub-{uuid.uuid4().hex[:6]}"
    subscribed = threading.Event()
    done = threading.Event()
    state = {"count": 0, "last": 0.0}

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        state["count"] += 1
        state["last"] = time.time()
        if state["count"] >= expected:
            done.set()

    def paho_connected() -> Callable[[], None]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_connect = lambda c, *_: c.subscribe("jiayuan/#", qos=1)
        client.connect("127.0.0.1", port)
        client.loop_start()
        subscribed.wait(10)

        def stop() -> None:
            client.disconnect()
            client.loop_stop()

        return stop

    def ingest_connected() -> Callable[[], None]:
        inbox: Inbox = Inbox()
        config = MqttConfig(
            url=f"mqtt://127.0.0.1:{port}",
            gateway_client_id=client_id,
            gateway_protocol="5" if protocol == "5" else "3.1.1",
        )
        ingest = MqttIngest(config, inbox)
        ingest.start()
        ingest.wait_subscribed(10)
        stopping = threading.Event()

        def commit_like_the_gateway() -> None:
            window_s = gateway_window_s or 0.0
            while not stopping.is_set():
                try:
                    burst = [inbox.get(timeout=0.1)]
                except queue.Empty:
                    continue
                closes = time.monotonic() + window_s
                while (wait := min(QUIET_S, closes - time.monotonic())) > 0:
                    try:
                        burst.append(inbox.get(timeout=wait))
                    except queue.Empty:
                        break
                state["count"] += len(burst)
                state["last"] = time.time()
                ingest.ack(burst)
                if state["count"] >= expected:
                    done.set()

        acker = threading.Thread(target=commit_like_the_gateway, daemon=True)
        acker.start()

        def stop() -> None:
            stopping.set()
            acker.join()
            ingest.stop()

        return stop

    connected = paho_connected if gateway_window_s is None else ingest_connected
    stop = connected()
    if drain:
        stop()
    say(sys.stdout, ready=True)
    started = 0.0
    if drain:
        sys.stdin.readline()  # "go": the backlog is at the broker
        started = time.time()
        stop = connected()
    cpu_before = time.process_time()
    while not done.wait(1.0):
        if time.time() - max(state["last"], started) > STALL_S:
            break
    cpu_s = time.process_time() - cpu_before
    stop()
    say(sys.stdout, count=state["count"], last=state["last"], started=started, cpu_s=cpu_s)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_gateway(settings: str, drain: bool) -> None:
    """The gateway in this process until stdin says stop; reports its memory.

    With ``drain`` the first instance only subscribes (persistent session) and stops; after
    "go" (the backlog is at the broker) a second one starts and takes it all.
    """
    from gateway.service import Gateway

    given = json.loads(settings)
    glibc, tuned = given.get("malloc") == "glibc", GatewayConfig()

    def configured(registry: str) -> Config:
        return Config(
            mqtt=MqttConfig(
                url=given["mqtt"],
                gateway_client_id=given["client_id"],
                street_filter=given["streets"],
                gateway_protocol=given["protocol"],
            ),
            influx=InfluxConfig(url=given["influx"], database=given["database"]),
            gateway=GatewayConfig(
                state_dir=given["state_dir"],
                flush_interval_s=given["flush_interval_s"],
                heap_trim_interval_s=given["heap_trim_interval_s"],
                # --malloc glibc: 0 leaves glibc's own settings (gateway/heap.py).
                malloc_mmap_threshold_bytes=0 if glibc else tuned.malloc_mmap_threshold_bytes,
                malloc_arena_max=0 if glibc else tuned.malloc_arena_max,
            ),
            alerts=AlertsConfig(enabled=given["alerts"], registry_db=registry),
            source="bench",
        )

    # With ``drain`` the first instance reads a registry of one estate (so the memory once
    # subscribed has the code that reads one), and what the measured instance's registry
    # and sites hold is counted as its growth.
    registry = given.get("registry", "")
    config = configured(given.get("baseline_registry", "") if drain else registry)
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    if not gateway.wait_ready(30):
        raise RuntimeError("the gateway did not subscribe within 30 s")
    if drain:
        gateway.stop()
    say(sys.stdout, ready=True, rss_kb=_status_kb("VmRSS"), heap=heap_kb())
    if drain:
        sys.stdin.readline()  # "go"
        started = time.time()
        if given.get("snapshot"):  # in place of the one the first instance left
            shutil.copyfile(given["snapshot"], Path(given["state_dir"]) / SNAPSHOT_FILE)
        gateway = Gateway(configured(registry), serve_api=False)
        gateway.start()
        say(sys.stdout, started=started)
    writes = _timed_writes(gateway)
    cpu_before = time.process_time()
    threads_before = thread_cpu_s()
    stored = {"count": 0, "at": 0.0, "rss_kb": 0}
    # (time, readings stored, CPU seconds since cpu_before) at each change: what the
    # gateway had done when its warm-up readings were in.
    progress: list[tuple[float, int, float]] = []
    progress_file = Path(given["progress_file"])
    stop_sampling = threading.Event()

    def sample_stored() -> None:
        """When the gateway's last write to InfluxDB returned (its readings then durable),
        and its resident memory then (what it holds once the traffic is in)."""
        own_before = time.thread_time()
        while not stop_sampling.wait(STORED_SAMPLE_S):
            count = gateway.metrics.snapshot().readings_stored
            if count != stored["count"]:
                stored["count"], stored["at"] = count, time.time()
                stored["rss_kb"] = _status_kb("VmRSS")
                # The gateway's CPU so far, less this thread's own (as cpu_s below).
                own = time.thread_time() - own_before
                progress.append((stored["at"], count, time.process_time() - cpu_before - own))
                progress_file.write_text(str(count))

    sampler = threading.Thread(target=sample_stored, name=SAMPLER, daemon=True)
    sampler.start()
    sys.stdin.readline()
    threads = {
        name: spent - threads_before.get(name, 0.0) for name, spent in thread_cpu_s().items()
    }
    # The gateway's CPU, less this benchmark's own sampler thread.
    cpu_s = time.process_time() - cpu_before - threads.pop(SAMPLER, 0.0)
    stop_sampling.set()
    sampler.join()
    hwm = _status_kb("VmHWM")
    open_anomalies = gateway.detector.book.open_count
    sites = gateway.detector.sites
    held_sites = (
        "no site models"
        if sites is None
        else f"{len(sites.specs):,} sites: {sites.learnt():,} learnt, {sites.learning():,} learning"
    )
    trim_heap()  # what the gateway's own trimmer leaves (gateway/heap.py)
    trimmed_rss_kb = _status_kb("VmRSS")
    heap = heap_kb()
    gateway.stop()
    say(
        sys.stdout,
        hwm_kb=hwm,
        cpu_s=cpu_s,
        threads=threads,
        stored_at=stored["at"],
        stored_rss_kb=stored["rss_kb"],
        trimmed_rss_kb=trimmed_rss_kb,
        open_anomalies=open_anomalies,
        sites=held_sites,
        progress=progress,
        writes=writes,
        heap=heap,
    )


def _timed_writes(gateway: Any) -> list[tuple[float, float, int]]:
    """(when, seconds, lines) of each of the gateway's requests to InfluxDB from now on:
    how its batches reached InfluxDB in the latency phase."""
    writes: list[tuple[float, float, int]] = []
    client = gateway.writer.client
    write = client.write

    def timed(lines: Any) -> None:
        started = time.time()
        write(lines)
        writes.append((started, time.time() - started, len(lines)))

    client.write = timed
    return writes


# --- the measurements -----------------------------------------------------------------------


def _publish(
    servers: RunningServers,
    wires: list[Wire],
    workdir: Path,
    rate: float = 0.0,
    mark: str = "",
    warm: int = 0,
    steady_s: float = 0.0,
) -> subprocess.Popen[str]:
    traffic_file = workdir / f"traffic-{uuid.uuid4().hex[:6]}.msgpack"
    traffic_file.write_bytes(msgspec.msgpack.encode(wires))
    publisher = _child(
        "publish",
        str(servers.mqtt_port),
        str(traffic_file),
        str(rate),
        mark,
        str(warm),
        str(steady_s),
    )
    expect(publisher, "publisher")
    return publisher


def _go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


class SubscriberRun(msgspec.Struct):
    rate: float
    cpu_s: float


def bare_subscriber(
    servers: RunningServers,
    wires: list[Wire],
    workdir: Path,
    drain: bool,
    gateway_window_s: float | None = None,
    protocol: str = "5",
) -> SubscriberRun:
    """(a): readings per second a counting paho subscriber receives, and its CPU time;
    (a') with ``gateway_window_s`` (see ``run_counter``)."""
    counter = _child(
        "count",
        str(servers.mqtt_port),
        str(len(wires)),
        "1" if drain else "",
        "" if gateway_window_s is None else str(gateway_window_s),
        protocol,
    )
    expect(counter, "counter")
    publisher = _publish(servers, wires, workdir)
    _go(publisher)
    published = expect(publisher, "publisher")
    if drain:
        _go(counter)
    counted = expect(counter, "counter")
    publisher.wait()
    counter.wait()
    if counted["count"] != len(wires):
        print(f"  ! bare subscriber received {counted['count']} of {len(wires)} messages")
    total = sum(w[2] for w in wires)
    acked = total / (float(published["acked"]) - float(published["start"]))
    print(f"    publisher: {acked:,.0f} readings/s acknowledged by the broker")
    readings = total * int(counted["count"]) / len(wires)
    began = float(counted["started"] if drain else published["start"])
    return SubscriberRun(readings / (float(counted["last"]) - began), float(counted["cpu_s"]))


class InfluxRun(msgspec.Struct):
    rate: float  # points per second
    cpu_s: float  # InfluxDB's CPU time meanwhile


def influx_ingest(
    servers: RunningServers, lines: list[str], warm_lines: Sequence[str] = ()
) -> InfluxRun:
    """(b): points per second InfluxDB takes in batches of 5,000 (bodies prepared first);
    ``warm_lines`` are written first, untimed, so that their series exist, as they do in
    a database that has been taking a district's readings (a new series costs InfluxDB
    several times a point of one it knows)."""
    database = f"bench_influx_{uuid.uuid4().hex[:6]}"
    bodies = [
        "\n".join(lines[first : first + INFLUX_BATCH]).encode()
        for first in range(0, len(lines), INFLUX_BATCH)
    ]
    # A long timeout: at a district's cardinality a batch or a count can take InfluxDB seconds.
    config = InfluxConfig(url=servers.influx_url, database=database, timeout_s=120.0)
    with InfluxClient(config) as client:
        client.ensure_database()
        for first in range(0, len(warm_lines), INFLUX_BATCH):
            client.write("\n".join(warm_lines[first : first + INFLUX_BATCH]).encode())
        cpu_before = tree_cpu_s(servers.influxd_pid)
        started = time.perf_counter()
        for body in bodies:
            client.write(body)
        elapsed = time.perf_counter() - started
        cpu_s = tree_cpu_s(servers.influxd_pid) - cpu_before
        stored = _stored(client)
        if stored != len(lines) + len(warm_lines):
            print(f"  ! InfluxDB holds {stored} of {len(lines) + len(warm_lines)} points")
    _drop(servers, database)
    return InfluxRun(len(lines) / elapsed, cpu_s)


def _drop(servers: RunningServers, database: str) -> None:
    """Drop a measured database: InfluxDB keeps every database's series index in memory,
    and a district's 100,000 series in each database of a run slowed every later phase."""
    config = InfluxConfig(url=servers.influx_url, database=database, timeout_s=120.0)
    try:
        with InfluxClient(config) as client:
            client.drop_database()
    except InfluxError as error:
        print(f"  ! could not drop {database}: {error}")


def _stored(client: InfluxClient, where: str = "") -> int:
    return sum(client.count(kind.value, "seq", where) for kind in Kind)


class GatewayRun(msgspec.Struct):
    rate: float
    stored: int
    baseline_kb: int  # summed over the instances
    hwm_kb: int
    cpu_s: float  # the instances' CPU time while measured
    latencies_ms: list[float]
    # While measured (from the gateways' start to their last write): InfluxDB's CPU time
    # and the share of the host's cores that was busy (None: not timed on the backlog).
    spent: Spent | None = None
    stored_rss_kb: int = 0  # summed VmRSS when each instance last stored readings
    trimmed_rss_kb: int = 0  # summed VmRSS at the end, right after a heap trim
    open_anomalies: int = 0
    threads: dict[str, float] = {}  # the instances' CPU time over the whole run, by thread
    sites: str = ""  # what the instances' site models held at the end
    steady: str = ""  # the latency phase in steady state: what ran while markers were sent
    # Where the memory grew, from subscribed to the end (bench.alert_memory.heap_kb).
    heap_grown_kb: dict[str, int] = {}


def _start_gateway(
    servers: RunningServers,
    workdir: Path,
    database: str,
    drain: bool,
    streets: str,
    flush_interval_s: float,
    protocol: str,
    heap_trim_s: float,
    alerts: bool,
    progress_file: Path,
    sites: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    settings = {
        "mqtt": servers.mqtt_url,
        "influx": servers.influx_url,
        "database": database,
        "client_id": f"bench-gw-{uuid.uuid4().hex[:6]}",
        "state_dir": str(workdir / database / uuid.uuid4().hex[:6]),
        "streets": streets,
        "flush_interval_s": flush_interval_s,
        "heap_trim_interval_s": heap_trim_s,
        "protocol": protocol,
        "alerts": alerts,
        "progress_file": str(progress_file),
        **(sites or {}),
    }
    return _child("gateway", json.dumps(settings), "1" if drain else "")


def split_streets(wires: list[Wire], instances: int) -> list[str]:
    """Street filters for ``instances`` gateways, balanced by readings (greedy, largest
    street first): the documented scale-out, each instance owning whole streets."""
    if instances == 1:
        return ["+"]
    per_street: dict[str, int] = defaultdict(int)
    for topic, _, readings in wires:
        per_street[topic.split("/")[3]] += readings
    groups: list[list[str]] = [[] for _ in range(instances)]
    loads = [0] * instances
    for street, readings in sorted(per_street.items(), key=lambda item: -item[1]):
        lightest = loads.index(min(loads))
        groups[lightest].append(street)
        loads[lightest] += readings
    return [",".join(group) for group in groups if group]


def gateway_end_to_end(
    servers: RunningServers,
    wires: list[Wire],
    workdir: Path,
    rate: float = 0.0,
    mark: str = "",
    drain: bool = False,
    instances: int = 1,
    flush_interval_s: float = GatewayConfig().flush_interval_s,
    protocol: str = "5",
    heap_trim_s: float = GatewayConfig().heap_trim_interval_s,
    alerts: bool = False,
    warm: int = 0,
    sites: dict[str, str] | None = None,
    settle_s: float = -1.0,
    latency_s: float = 0.0,
) -> GatewayRun:
    """(c): readings per second from first publish to all stored in InfluxDB, through
    ``instances`` gateway processes that split the streets.  The first ``warm`` messages
    only warm the gateways up: the rate, CPU and cores are measured from the moment every
    instance has stored its share of them (markers start after them too).  ``sites``: the
    registries and snapshot of ``memory_sites``.

    ``settle_s`` ≥ 0 with ``warm`` and ``rate`` (the latency in steady state): the warm-up
    goes out unpaced and the paced traffic right after it; markers start ``settle_s``
    after the gateways have stored the warm-up, once InfluxDB runs no snapshot or
    compaction (``_settle``, ``latency_window``)."""
    database = f"bench_gw_{uuid.uuid4().hex[:6]}"
    streets = split_streets(wires, instances)
    if mark and instances > 1:  # the markers' street must be owned too
        marked = mark.split("/")[1]
        if not any(marked in group.split(",") for group in streets):
            streets[0] += f",{marked}"
    progress_files = [workdir / f"{database}-{n}.stored" for n in range(len(streets))]
    gateways = [
        _start_gateway(
            servers,
            workdir,
            database,
            drain,
            group,
            flush_interval_s,
            protocol,
            heap_trim_s,
            alerts,
            progress_file,
            sites,
        )
        for group, progress_file in zip(streets, progress_files, strict=True)
    ]
    readies = [expect(gateway, "gateway") for gateway in gateways]
    baseline = sum(ready["rss_kb"] for ready in readies)
    expected = sum(w[2] for w in wires)
    steady_s = latency_s if settle_s >= 0 and warm and rate > 0 else 0.0
    publisher = _publish(servers, wires, workdir, rate, mark, warm, steady_s)
    seen: dict[str, float] = {}
    stop_polling = threading.Event()
    influx = InfluxConfig(url=servers.influx_url, database=database)

    def poll_anomalies() -> None:
        with InfluxClient(influx) as client:
            while not stop_polling.wait(LATENCY_POLL_S):
                note_marks(client, "anomaly", "start", seen)

    poller = threading.Thread(target=poll_anomalies, daemon=True)
    if mark:
        poller.start()
    timeline = CpuTimeline(servers.influxd_pid).start()
    _go(publisher)
    began = 0.0
    engine_before: dict[str, float] = {}
    if steady_s:
        warm_readings = sum(w[2] for w in wires[:warm])
        engine_before = _settle(servers, publisher, progress_files, warm_readings, settle_s, rate)
        # The publisher stops latency_s after the first marker: what it sent is all.
        published = expect(publisher, "publisher")
        expected = int(published["readings"])
    if drain:  # the whole backlog at the broker first, then the gateways take it
        published = expect(publisher, "publisher")
        for gateway in gateways:
            _go(gateway)
        began = min(float(expect(gateway, "gateway")["started"]) for gateway in gateways)
    # Until the gateways say they stored everything (markers included, in a paced run)
    # or make no progress for STALL_S; InfluxDB counts what it holds once, after.
    stored, last_change = 0, time.time()
    while stored < expected and time.time() - last_change < STALL_S:
        time.sleep(POLL_S)
        now_stored = sum(_progress(path) for path in progress_files)
        if now_stored != stored:
            stored, last_change = now_stored, time.time()
    if not drain:
        if not steady_s:
            published = expect(publisher, "publisher")
        began = float(published["start"])
    publisher.wait()
    latencies: list[float] = []
    if mark:
        deadline = time.time() + 10
        while len(seen) < len(published["marks"]) and time.time() < deadline:
            time.sleep(LATENCY_POLL_S)
        stop_polling.set()
        poller.join()
        for index, ts in enumerate(published["marks"]):
            if f"mark-{index}" in seen:
                latencies.append(seen[f"mark-{index}"] * 1000 - ts)
        if len(latencies) != len(published["marks"]):
            print(f"  ! {len(published['marks']) - len(latencies)} marker anomalies never stored")
    engine_after = engine_stats(servers.influx_url) if engine_before else {}
    ends = []
    for gateway in gateways:
        assert gateway.stdin is not None
        gateway.stdin.write("stop\n")
        gateway.stdin.flush()
    for gateway in gateways:
        ends.append(expect(gateway, "gateway"))
        gateway.wait()
    timeline.stop()
    with InfluxClient(dataclasses.replace(influx, timeout_s=120.0)) as client:
        # The markers are stored as fire readings too: not part of the traffic.
        stored = _stored(client, '"device" !~ /^mark-/' if mark else "")
    _drop(servers, database)
    # Timed to the last write that stored any of it.
    done_at = max(float(end["stored_at"]) for end in ends)
    if stored != expected:
        print(f"  ! InfluxDB holds {stored} of {expected} readings (stalled {STALL_S:g} s)")
    measured, cpu_s = stored, sum(float(end["cpu_s"]) for end in ends)
    if warm:
        warmed, after, after_cpu_s = _after_warm_up(wires[:warm], streets, ends, began)
        if warmed < done_at and after > 0:
            began, measured, cpu_s = warmed, after, after_cpu_s
        else:  # too little traffic to tell the warm-up apart: the whole run
            print("  ! the warm-up and the measured readings were stored together")
    window = ""
    if engine_before and latencies:
        window = latency_window(published["marks"], ends, timeline, engine_before, engine_after)
    return GatewayRun(
        steady=window,
        rate=measured / (done_at - began),
        stored=measured,
        baseline_kb=baseline,
        hwm_kb=sum(int(end["hwm_kb"]) for end in ends),
        cpu_s=cpu_s,
        latencies_ms=latencies,
        spent=timeline.between(began, done_at) if drain else None,
        stored_rss_kb=sum(int(end["stored_rss_kb"]) for end in ends),
        trimmed_rss_kb=sum(int(end["trimmed_rss_kb"]) for end in ends),
        open_anomalies=sum(int(end["open_anomalies"]) for end in ends),
        threads=_summed_threads([end["threads"] for end in ends]),
        sites="; ".join(str(end["sites"]) for end in ends),
        heap_grown_kb={
            part: sum(
                end["heap"][part] - ready["heap"][part]
                for end, ready in zip(ends, readies, strict=True)
            )
            for part in ends[0]["heap"]
        },
    )


CAUGHT_UP_S = 1.0  # markers start once the gateways are less than this behind the traffic


def _settle(
    servers: RunningServers,
    publisher: subprocess.Popen[str],
    progress_files: list[Path],
    warm_readings: int,
    settle_s: float,
    rate: float,
) -> dict[str, float]:
    """While the paced traffic flows: wait until the gateways have stored the warm-up
    and caught up with the paced traffic (less than ``CAUGHT_UP_S`` of it not stored),
    then ``settle_s`` more, then until InfluxDB runs no snapshot or compaction for a
    moment; then tell the publisher to start the markers.  InfluxDB's engine counters
    then."""
    args = publisher.args
    assert isinstance(args, list)
    published = Path(str(args[4]) + ".published")  # run_publisher's argument
    started = time.time()
    while True:
        stored = sum(_progress(path) for path in progress_files)
        behind = _progress(published) - stored
        if stored >= warm_readings and behind < rate * CAUGHT_UP_S:
            break
        if time.time() - started > SETTLE_TIMEOUT_S:
            print(
                f"  ! the gateways had not caught up within {SETTLE_TIMEOUT_S:g} s "
                f"({behind:,} readings behind): the rate is more than the host sustains"
            )
            break
        time.sleep(POLL_S)
    caught_up_s = time.time() - started
    time.sleep(settle_s)
    waited_s = wait_settled(servers.influx_url, SETTLE_TIMEOUT_S)
    print(
        f"    warm-up stored and the paced traffic caught up {caught_up_s:.1f} s after the "
        f"publishing began; markers from {settle_s:g} + {waited_s:.1f} s later (InfluxDB "
        f"then ran no snapshot or compaction); load average {_load()}"
    )
    before = engine_stats(servers.influx_url)
    assert publisher.stdin is not None
    try:
        publisher.stdin.write("mark\n")
        publisher.stdin.flush()
    except BrokenPipeError:  # it has sent all its traffic already
        print("  ! the traffic ran out before the first marker (--district-s)")
    return before


def latency_window(
    marks: list[int],
    ends: list[dict[str, Any]],
    timeline: CpuTimeline,
    engine_before: dict[str, float],
    engine_after: dict[str, float],
) -> str:
    """What the host did from the first marker to the last: InfluxDB's and the gateways'
    cores, the host's, the gateways' writes to InfluxDB (lines, seconds) and the
    snapshots and compactions InfluxDB ran in the paced run."""
    first, last = marks[0] / 1000, marks[-1] / 1000
    spent = timeline.between(first, last)
    gateway_cpu_s = 0.0
    for end in ends:
        cpu_then = [cpu for t, _, cpu in end["progress"] if first <= t <= last]
        if len(cpu_then) > 1:
            gateway_cpu_s += cpu_then[-1] - cpu_then[0]
    writes = [
        (float(s), float(n)) for end in ends for t, s, n in end["writes"] if first <= t <= last
    ]
    seconds = sorted(s * 1000 for s, _ in writes) or [0.0]
    lines = sorted(n for _, n in writes) or [0.0]
    influx = f"InfluxDB {spent.process_cpu_s / spent.seconds:.2f} cores, " if spent else ""
    busy = f", host {spent.host_busy:.0%} busy" if spent else ""
    return (
        f"while markers were sent ({last - first:.0f} s): {influx}gateways "
        f"{gateway_cpu_s / max(1e-9, last - first):.2f} cores{busy}; {len(writes)} writes, "
        f"lines p50 {_percentile(lines, 0.5):,.0f} max {lines[-1]:,.0f}, seconds p50 "
        f"{_percentile(seconds, 0.5):.0f} p99 {_percentile(seconds, 0.99):.0f} max "
        f"{seconds[-1]:.0f} ms; in the paced run InfluxDB did "
        f"{done_between(engine_before, engine_after)}"
    )


def _summed_threads(per_instance: list[dict[str, float]]) -> dict[str, float]:
    summed: dict[str, float] = defaultdict(float)
    for threads in per_instance:
        for name, cpu_s in threads.items():
            summed[name] += cpu_s
    return dict(summed)


def _progress(path: Path) -> int:
    """Readings a gateway process has stored so far, as it last wrote them down."""
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _after_warm_up(
    warm: list[Wire], streets: list[str], ends: list[dict[str, Any]], began: float
) -> tuple[float, int, float]:
    """(when every instance had stored its share of the warm-up, readings each stored
    after that, their CPU seconds after that), from each instance's progress."""
    shares = []
    for group in streets:
        owned = set(group.split(","))
        shares.append(
            sum(n for topic, _, n in warm if group == "+" or topic.split("/")[3] in owned)
        )
    warmed = began
    for share, end in zip(shares, ends, strict=True):
        reached = [t for t, count, _ in end["progress"] if count >= share]
        warmed = max(warmed, reached[0] if reached else float(end["stored_at"]))
    readings, cpu_s = 0, 0.0
    for end in ends:
        before = [(count, cpu) for t, count, cpu in end["progress"] if t <= warmed]
        count_then, cpu_then = before[-1] if before else (0, 0.0)
        final = end["progress"][-1][1] if end["progress"] else 0
        readings += final - count_then
        cpu_s += float(end["cpu_s"]) - cpu_then
    return warmed, readings, cpu_s


def _cpu(rate: float, cpu_s: float, readings: int, who: str) -> None:
    per_reading = cpu_s / readings * 1e6 if readings else 0.0
    print(
        f"    {rate:12,.0f} readings/s; {who} CPU {cpu_s:.1f} s, {per_reading:.1f} µs per reading"
    )


def _per_thread(run: GatewayRun) -> None:
    """The gateway's CPU by thread over the whole run (warm-up included), busiest first,
    as shares (threads under 0.5 % summed as "rest")."""
    total = sum(run.threads.values())
    if not total:
        return
    shown, rest = [], 0.0
    for name, cpu_s in sorted(run.threads.items(), key=lambda item: -item[1]):
        if cpu_s / total < 0.005:
            rest += cpu_s
        else:
            shown.append(f"{name} {cpu_s / total:.0%}")
    print(f"    by thread, share of the gateway's CPU: {', '.join(shown)}, rest {rest / total:.0%}")


def _where_the_cores_went(run: GatewayRun) -> None:
    """InfluxDB's CPU a reading and how busy the host was while (c) was timed: with the
    gateway's own figure, what the cores did for each reading."""
    if run.spent is None or not run.stored:
        return
    print(
        f"    meanwhile InfluxDB CPU {run.spent.process_cpu_s / run.stored * 1e6:.1f} µs a "
        f"reading; the host's cores {run.spent.host_busy:.0%} busy; {run.open_anomalies:,} "
        "anomalies open at the end"
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model}), Python {sys.version.split()[0]}"


def profile_pipeline(wires: list[Wire], top: int, order: str) -> None:
    """cProfile of the gateway's in-process pipeline (bench/pipeline.py's path)."""
    from bench.pipeline import run_batches
    from gateway.collector import tune_collector
    from gateway.detection.detector import Detector
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline import Pipeline

    tune_collector()  # as the gateway runs
    pipeline = Pipeline(Detector(), GatewayMetrics())
    messages = [Message(t, p, i + 1, 1, 0) for i, (t, p, _) in enumerate(wires)]
    profiler = cProfile.Profile()
    profiler.enable()
    run_batches(pipeline, messages, GatewayConfig().batch_max_readings)
    profiler.disable()
    pstats.Stats(profiler).sort_stats(order).print_stats(top)


# --memory-devices: what the measured gateway's site models hold (--memory-sites).
SITE_MODES = ("none", "learnt", "learning")


def memory_sites(district: District, mode: str, workdir: Path) -> dict[str, str]:
    """The files of a gateway of this district whose site models are in ``mode``
    (``SITE_MODES``), as ``gateway_end_to_end``'s ``sites``: none (no registry); learnt
    (the district's registry, each estate's water tanks one pump room, and a detection
    snapshot in which every site has learnt from synthetic healthy rows, as after 12 h of
    running and a clean restart); learning (the same with every site's learning rows
    nearly full, the first 12 h after a start without a snapshot).  With a registry, the
    first instance of a drained run, whose memory once subscribed is the baseline, reads a
    registry of the first estate only.  Built in this process, not the measured one."""
    from bench.sites import AS_OF, site_snapshot
    from gateway.detection.sites import LEARN_ROWS
    from jiayuan.registry.store import RegistryStore
    from simulators.registry import Registry as SimRegistry
    from tools.registry_generate import generate_registry

    def stored(name: str, simulated: SimRegistry) -> Path:
        path = workdir / name
        if not path.exists():
            with RegistryStore(path) as store:
                store.replace(generate_registry(simulated, seed=1, as_of=AS_OF))
        return path

    if mode == "none":
        return {}
    files = {
        "baseline_registry": str(stored("registry-1.sqlite", SimRegistry(district.estates[:1])))
    }
    registry = stored(f"registry-{district.devices}.sqlite", district.registry)
    # Learning: rows short of LEARN_ROWS by more than the run's slots, so no site learns
    # (and fits its model) inside the measured run.
    rows = LEARN_ROWS + 2 if mode == "learnt" else LEARN_ROWS - 10
    snapshot = workdir / f"snapshot-{district.devices}-{mode}.sqlite"
    print(f"    snapshot: {site_snapshot(registry, snapshot, rows)}")
    return files | {"registry": str(registry), "snapshot": str(snapshot)}


def memory_at_scale(
    devices: int,
    protocol: str,
    heap_trim_s: float,
    alerts: bool,
    sites: Sequence[str],
    glibc_malloc: bool = False,
) -> None:
    """One gateway process taking a district's first readings (``simulators.district``:
    ``devices`` devices of a registry's family mix, ``MEMORY_WINDOW_S`` of their live
    traffic) from the broker, once for each state of its site models in ``sites``
    (``memory_sites``), then a fresh one taking half as many devices with the first of
    them: their resident memory when the last reading was stored and at the peak, less
    their memory once subscribed.  The difference between the two runs over the
    difference in devices is the memory a device adds, apart from what the process holds
    whatever the number of devices (the in-flight messages, buffers, caches)."""
    print(f"heap trimmed every {heap_trim_s:g} s (gateway.heap_trim_interval_s, 0 = never)")
    print(f"alert service {'on' if alerts else 'off'} (--alerts)")
    print(f"malloc: {'glibc' if glibc_malloc else 'gateway'}'s settings (--malloc)")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-bench-"))
    servers = start_servers(workdir / "servers")
    held: dict[int, float] = {}
    rows: list[tuple[str, int, float, float, float]] = []
    try:
        phases = [(devices, mode) for mode in sites] + [(devices // 2, sites[0])]
        for count, mode in phases:
            district = build_district(count, seed=1)
            print(f"{count:,} devices, site models: {mode} (load average {_load()})")
            files = memory_sites(district, mode, workdir)
            end_ms = int(time.time() * 1000) - 5_000
            wires = district.traffic(end_ms - int(MEMORY_WINDOW_S * 1000), end_ms).wires
            measured = district.devices
            print(
                f"    {measured:,} devices of {len(district.estates):,} estates "
                f"(simulators/district.py), {MEMORY_WINDOW_S:g} s of their traffic: "
                f"{sum(w[2] for w in wires):,} readings in {len(wires):,} batch messages"
            )
            run = gateway_end_to_end(
                servers,
                wires,
                workdir,
                drain=True,
                protocol=protocol,
                heap_trim_s=heap_trim_s,
                alerts=alerts,
                sites=files | ({"malloc": "glibc"} if glibc_malloc else {}),
            )
            _cpu(run.rate, run.cpu_s, run.stored, "gateway")
            print(
                f"    memory once subscribed {run.baseline_kb / 1024:.1f} MiB; "
                f"{run.open_anomalies:,} anomalies open at the end; held at the end: "
                f"{run.sites}; load average {_load()}; grown:"
            )
            for label, kb in (
                ("when the last reading was stored", run.stored_rss_kb),
                ("at the end, after a heap trim", run.trimmed_rss_kb),
                ("at the peak (VmHWM)", run.hwm_kb),
            ):
                grown = kb - run.baseline_kb
                print(
                    f"      {label:<33} {grown / 1024:7.1f} MiB, "
                    f"{grown * 1024 / measured:6,.0f} B per device"
                )
            print("    where it grew, at the end:")
            for part, kb in run.heap_grown_kb.items():
                print(
                    f"      {part:<33} {kb / 1024:7.1f} MiB, "
                    f"{kb * 1024 / measured:6,.0f} B per device"
                )
            if mode == sites[0]:
                held[measured] = (run.trimmed_rss_kb - run.baseline_kb) * 1024
            peak, stored, trimmed = (
                (kb - run.baseline_kb) * 1024 / measured
                for kb in (run.hwm_kb, run.stored_rss_kb, run.trimmed_rss_kb)
            )
            rows.append((mode, measured, peak, stored, trimmed))
        print("grown per device (B), one gateway process:")
        print(f"  {'site models':<12} {'devices':>8} {'peak':>7} {'stored':>7} {'trimmed':>8}")
        for mode, measured, peak, stored, trimmed in rows:
            print(f"  {mode:<12} {measured:>8,} {peak:>7,.0f} {stored:>7,.0f} {trimmed:>8,.0f}")
        (many, many_bytes), (few, few_bytes) = sorted(held.items(), reverse=True)
        print(
            f"memory a device adds (site models {sites[0]}, after a heap trim, "
            f"{few:,} → {many:,} devices): {(many_bytes - few_bytes) / (many - few):,.0f} B"
        )
        print(f"total {time.perf_counter() - started:.0f} s; servers stopped")
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Summary(msgspec.Struct):
    """One cardinality's figures for the table at the end of a default run."""

    label: str
    gateway_us: float  # gateway CPU a reading, (c) batched with one process
    influx_us: float  # InfluxDB's CPU a point meanwhile
    c_over_b: dict[int, float]  # batched, by number of gateway processes
    p99_ms: float | None  # publish → anomaly stored at half the batched peak


def district_scenarios(
    servers: RunningServers,
    district: District,
    traffic: Traffic,
    args: argparse.Namespace,
    workdir: Path,
) -> None:
    """(r), after the district's latency phase on the same servers: live readings' latency
    while a tenth of a district replays an hour's backlog (``bench/replay_scenario.py``,
    on a district of its own of 10,000 devices whose replaying edges are real agents in
    one process; its docstring says why not this one's 100,000)."""
    replay_scenario.measure(servers, workdir)


def measure(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}; publisher, subscribers, Mosquitto and InfluxDB share them")
    if args.memory_devices:
        memory_at_scale(
            args.memory_devices,
            args.gateway_protocol,
            args.heap_trim_interval,
            args.alerts,
            args.memory_sites,
            args.malloc == "glibc",
        )
        return
    if args.replay_only:
        replay_only()
        return
    started = time.perf_counter()
    traffics: list[Traffic] = []
    district: District | None = None
    if args.estates:
        traffics.append(build_traffic(args.estates, args.minutes, args.batch, args.single))
    if args.devices:
        district = build_district(args.devices, seed=1)
        traffics.append(build_district_traffic(district, args.district_s, args.warm_s, args.single))
    for traffic in traffics:
        print(
            f"traffic, {traffic.label}: {len(traffic.lines):,} readings measured; single: "
            f"{len(traffic.single):,} messages; batched: "
            f"{len(traffic.batched) - traffic.warm_wires:,} messages of "
            f"{len(traffic.lines) / max(1, len(traffic.batched) - traffic.warm_wires):.1f} "
            f"readings on average"
            + (
                f", after {traffic.warm_wires:,} warming the gateway up"
                if traffic.warm_wires
                else ""
            )
        )
    print(f"(built in {time.perf_counter() - started:.1f} s; load average {_load()})")
    if args.profile:
        traffic = traffics[-1]
        profiled = traffic.single if args.profile == "single" else traffic.batched
        profile_pipeline(profiled, args.profile_top, args.profile_sort)
        return
    drain = not args.live
    print(
        f"gateway batch window (flush_interval_s): {args.flush_interval:g} s; "
        f"MQTT {args.gateway_protocol} ingest (mqtt.gateway_protocol); heap trimmed every "
        f"{args.heap_trim_interval:g} s (gateway.heap_trim_interval_s, 0 = never)"
    )
    print(
        "(a) and (c) timed "
        + (
            "while the publisher publishes (--live)"
            if args.live
            else "draining the whole traffic queued at the broker first (--live: while published)"
        )
    )
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-bench-"))
    servers = start_servers(workdir / "servers")
    if args.influx_cache_snapshot != INFLUX_CACHE_SNAPSHOT:
        restart_with_cache_snapshot(servers, args.influx_cache_snapshot)
    print(
        f"InfluxDB [data] cache-snapshot-memory-size {args.influx_cache_snapshot} "
        "(--influx-cache-snapshot)"
    )
    summaries: list[Summary] = []
    try:
        for traffic in traffics:
            print(f"=== {traffic.label}")
            summaries.append(measure_traffic(servers, traffic, args, workdir, drain))
            if traffic.warm_wires and district is not None and not args.latency_rate:
                district_scenarios(servers, district, traffic, args, workdir)
        print_summary(summaries, args.instances)
        print(
            f"total {time.perf_counter() - started:.0f} s; load average {_load()}; servers stopped"
        )
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def replay_only() -> None:
    """(r) alone: bench/replay_scenario.py on servers of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="jiayuan-bench-"))
    servers = start_servers(workdir / "servers")
    try:
        replay_scenario.measure(servers, workdir)
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def print_summary(summaries: list[Summary], instances: int) -> None:
    """The figures the targets are about, one row per cardinality."""
    many = max(1, instances)
    print("summary (targets: ratio ≤ 0.5, c/b ≥ 0.8 with one process, p99 ≤ 250 ms)")
    header = (
        f"  {'traffic':<38} {'gateway µs/reading':>18} {'InfluxDB µs/point':>17} "
        f"{'ratio':>6} {'c/b ×1':>7}"
        + (f" {f'c/b ×{many}':>7}" if many > 1 else "")
        + f" {'p99 ms':>7}"
    )
    print(header)
    for row in summaries:
        ratio = row.gateway_us / row.influx_us if row.influx_us else float("nan")
        p99 = f"{row.p99_ms:7.0f}" if row.p99_ms is not None else f"{'—':>7}"
        print(
            f"  {row.label:<38} {row.gateway_us:18.1f} {row.influx_us:17.1f} {ratio:6.2f} "
            f"{row.c_over_b.get(1, float('nan')):7.3f}"
            + (f" {row.c_over_b.get(many, float('nan')):7.3f}" if many > 1 else "")
            + f" {p99}"
        )


def measure_traffic(
    servers: RunningServers,
    traffic: Traffic,
    args: argparse.Namespace,
    workdir: Path,
    drain: bool,
) -> Summary:
    """(a), (a'), (b), (c) with 1 and --instances processes, and the latency, on one
    traffic; its row of the summary.  ``--latency-rate``: the latency alone, at that rate."""
    if args.latency_rate:
        count = max(1, args.instances)
        print(f"latency alone at {args.latency_rate:,.0f} readings/s (--latency-rate)")
        p99 = latency(servers, traffic, args, workdir, args.latency_rate, count)[1]
        return Summary(traffic.label, 0.0, 0.0, {}, p99)
    print("(a) bare paho subscriber, one reading per message")
    a_single = bare_subscriber(servers, traffic.single, workdir, drain)
    _cpu(a_single.rate, a_single.cpu_s, len(traffic.single), "subscriber")
    print(
        f"(a') the gateway's own MQTT ingest (MQTT {args.gateway_protocol}, its network "
        "loop), a batch's acks together from a second thread, no processing"
    )
    a_manual = bare_subscriber(
        servers,
        traffic.single,
        workdir,
        drain,
        gateway_window_s=args.flush_interval,
        protocol=args.gateway_protocol,
    )
    _cpu(a_manual.rate, a_manual.cpu_s, len(traffic.single), "subscriber")
    measured_batched = traffic.batched[traffic.warm_wires :]
    print(
        f"(a) bare paho subscriber, batched "
        f"({len(traffic.lines) / max(1, len(measured_batched)):.1f} readings a message)"
    )
    a_batched = bare_subscriber(servers, measured_batched, workdir, drain)
    _cpu(a_batched.rate, a_batched.cpu_s, len(traffic.lines), "subscriber")
    b_runs: list[InfluxRun] = []

    def influx_alone(when: str) -> None:
        print(
            f"(b) InfluxDB ingest, batches of {INFLUX_BATCH:,} telemetry lines ({when})"
            + (", timed after the warm-up's lines" if traffic.warm_lines else "")
        )
        b_run = influx_ingest(servers, traffic.lines, traffic.warm_lines)
        b_runs.append(b_run)
        print(
            f"    {b_run.rate:12,.0f} points/s; InfluxDB CPU {b_run.cpu_s:.1f} s, "
            f"{b_run.cpu_s / len(traffic.lines) * 1e6:.1f} µs a point"
        )

    influx_alone("before the gateway runs")
    runs: dict[tuple[str, int], GatewayRun] = {}

    def gateways(
        wires: list[Wire], count: int, rate: float = 0.0, mark: str = "", warm: int = 0
    ) -> GatewayRun:
        """(c) on these messages: timed on the backlog unless paced at ``rate``."""
        return gateway_end_to_end(
            servers,
            wires,
            workdir,
            rate=rate,
            mark=mark,
            drain=drain and not rate,
            instances=count,
            flush_interval_s=args.flush_interval,
            protocol=args.gateway_protocol,
            heap_trim_s=args.heap_trim_interval,
            warm=warm,
        )

    counts = sorted({1, args.instances})
    for count in counts:
        label = "1 process" if count == 1 else f"{count} processes, streets split"
        print(
            f"(c) gateway end to end ({label}), one reading per message"
            + (", timed after the warm-up messages" if traffic.warm_wires else "")
        )
        warm_up = traffic.batched[: traffic.warm_wires]
        run = gateways(warm_up + traffic.single, count, warm=traffic.warm_wires)
        _cpu(run.rate, run.cpu_s, run.stored, "gateway")
        _per_thread(run)
        _where_the_cores_went(run)
        print(f"    c/a = {run.rate / a_single.rate:.3f}; c/a' = {run.rate / a_manual.rate:.3f}")
        runs["single", count] = run
        print(
            f"(c) gateway end to end ({label}), batched"
            + (", timed after the warm-up messages" if traffic.warm_wires else "")
        )
        run = gateways(traffic.batched, count, warm=traffic.warm_wires)
        _cpu(run.rate, run.cpu_s, run.stored, "gateway")
        _per_thread(run)
        _where_the_cores_went(run)
        print(f"    c/a = {run.rate / a_batched.rate:.3f}")
        runs["batched", count] = run
        influx_alone(f"after {label}")
    b = statistics.median(b_run.rate for b_run in b_runs)
    measured_b = ", ".join(f"{b_run.rate:,.0f}" for b_run in b_runs)
    print(f"(b) median {b:,.0f} points/s of {measured_b}")
    c_over_b = {count: runs["batched", count].rate / b for count in counts}
    for count in counts:
        print(f"    c/b = {c_over_b[count]:.3f} batched, {count} process(es)")
    peak_count = max(counts, key=lambda n: runs["batched", n].rate)
    c_batched = runs["batched", peak_count]
    paced, p99 = latency(servers, traffic, args, workdir, c_batched.rate / 2, peak_count)
    print("gateway memory (child process VmHWM; baseline = VmRSS once subscribed)")
    measured = [(f"{kind} ×{count}", run) for (kind, count), run in runs.items()]
    for label, run in [*measured, ("paced", paced)]:
        grown = run.hwm_kb - run.baseline_kb
        print(
            f"    {label:<11} peak {run.hwm_kb / 1024:7.1f} MiB, baseline "
            f"{run.baseline_kb / 1024:6.1f} MiB, grown {grown / 1024:6.1f} MiB "
            f"({grown * 1024 / traffic.devices:,.0f} B per device at {traffic.devices:,} devices)"
        )
    one = runs["batched", 1]
    influx_us = one.spent.process_cpu_s / one.stored * 1e6 if one.spent and one.stored else 0.0
    return Summary(
        label=traffic.label,
        gateway_us=one.cpu_s / one.stored * 1e6 if one.stored else 0.0,
        influx_us=influx_us,
        c_over_b=c_over_b,
        p99_ms=p99,
    )


def latency(
    servers: RunningServers,
    traffic: Traffic,
    args: argparse.Namespace,
    workdir: Path,
    rate: float,
    count: int,
) -> tuple[GatewayRun, float | None]:
    """Publish → anomaly stored for fire-alarm markers in traffic paced at ``rate``.

    On a traffic with a warm-up (the district) this is the latency in steady state: the
    warm-up goes out unpaced and the paced traffic right after it, without a pause (a
    pause would take every lift offline); markers start ``--settle-s`` after the gateways
    have stored the warm-up, once InfluxDB runs no snapshot or compaction.  So InfluxDB
    holds every device's series and the gateways know every device, as in a district
    running for hours, the backlog the warm-up left has been worked off, and the
    snapshots and compactions the markers meet are those of the paced rate.  The replay
    has no warm-up: paced from the start."""
    settle_s = args.settle_s if traffic.warm_wires else -1.0
    print(
        f"latency at {rate:,.0f} readings/s, {count} gateway process(es), fire-alarm markers"
        + (f" from {settle_s:g} s after the warm-up was stored" if traffic.warm_wires else "")
    )
    if settle_s >= 0 and traffic.district is not None:
        wall_s = settle_s + args.latency_s + CATCH_UP_ALLOWANCE_S
        traffic = _long_enough(traffic, rate, wall_s, args.warm_s)
    # In steady state the publisher stops --latency-s after the first marker: all of it.
    slice_readings = int(rate * args.latency_s) if settle_s < 0 else len(traffic.lines)
    wires: list[Wire] = list(traffic.batched[: traffic.warm_wires])
    total = 0
    for wire in traffic.batched[traffic.warm_wires :]:
        if total >= slice_readings:
            break
        wires.append(wire)
        total += wire[2]
    if total < slice_readings:
        print(f"  ! only {total / rate:.1f} s of traffic at this rate (--district-s)")
    paced = gateway_end_to_end(
        servers,
        wires,
        workdir,
        rate=rate,
        mark="/".join(traffic.mark_place),
        instances=count,
        flush_interval_s=args.flush_interval,
        protocol=args.gateway_protocol,
        heap_trim_s=args.heap_trim_interval,
        warm=traffic.warm_wires,
        settle_s=settle_s,
        latency_s=args.latency_s,
    )
    p99: float | None = None
    if paced.latencies_ms:
        p99 = _percentile(paced.latencies_ms, 0.99)
        print(
            f"    publish → anomaly stored: p50 {_percentile(paced.latencies_ms, 0.5):.0f} ms, "
            f"p99 {p99:.0f} ms, max "
            f"{max(paced.latencies_ms):.0f} ms over {len(paced.latencies_ms)} markers "
            f"(polled every {LATENCY_POLL_S * 1000:.0f} ms); load average {_load()}"
        )
    if paced.steady:
        print(f"    {paced.steady}")
    return paced, p99


def _long_enough(traffic: Traffic, rate: float, wall_s: float, warm_s: float) -> Traffic:
    """The district's traffic, built again over enough simulated seconds to last
    ``wall_s`` published at ``rate`` (the markers come after the gateways caught up with
    the warm-up and settled: the measured seconds of (c) run out before)."""
    assert traffic.district is not None
    per_s = len(traffic.lines) / traffic.seconds
    seconds = wall_s * rate / per_s
    if seconds <= traffic.seconds:
        return traffic
    print(f"    {seconds:.0f} simulated seconds of the district's traffic to pace ({wall_s:g} s)")
    return build_district_traffic(traffic.district, seconds, warm_s, 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--estates",
        type=int,
        default=20,
        help="the replay: this many simulated estates with planned faults (0: none)",
    )
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="the replay's simulated minutes"
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=DISTRICT_DEVICES,
        help="also a district's live traffic of this many devices (simulators/district.py; "
        "default %(default)s; 0: none)",
    )
    parser.add_argument(
        "--district-s",
        type=float,
        default=DISTRICT_S,
        help="simulated seconds of the district's traffic measured (default %(default)s)",
    )
    parser.add_argument(
        "--warm-s",
        type=float,
        default=WARM_S,
        help="simulated seconds of district traffic before them that only warm the gateway "
        "up, every device heard from once (default %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=100, help="readings per batch message")
    parser.add_argument(
        "--single", type=int, default=30_000, help="messages in the one-reading run"
    )
    parser.add_argument(
        "--latency-s", type=float, default=15.0, help="seconds of markers in the paced run"
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=SETTLE_S,
        help="on the district: seconds of paced traffic between the warm-up stored and "
        "the first marker (default %(default)s)",
    )
    parser.add_argument(
        "--influx-cache-snapshot",
        default=INFLUX_CACHE_SNAPSHOT,
        metavar="SIZE",
        help="InfluxDB's [data] cache-snapshot-memory-size for this run (default "
        "%(default)s, tools.servers'; InfluxDB's own default is 25m)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        metavar="READINGS_PER_S",
        help="only the latency phase, paced at this rate (--estates 0: the district's alone)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="also measure (c) with this many gateway processes splitting the streets "
        "(docs/scaling.md); 1 = one process only",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=GatewayConfig().flush_interval_s,
        help="the gateways' batch window, gateway.flush_interval_s (default %(default)s s)",
    )
    parser.add_argument(
        "--heap-trim-interval",
        type=float,
        default=GatewayConfig().heap_trim_interval_s,
        help="the gateways' gateway.heap_trim_interval_s (default %(default)s s; 0 = never)",
    )
    parser.add_argument(
        "--gateway-protocol",
        choices=("5", "3.1.1"),
        default=MqttConfig().gateway_protocol,
        help="the gateways' MQTT version, mqtt.gateway_protocol (default %(default)s)",
    )
    parser.add_argument(
        "--live", action="store_true", help="time (a) and (c) while publishing, not a backlog"
    )
    parser.add_argument(
        "--profile", choices=("batched", "single"), help="only profile the pipeline on this traffic"
    )
    parser.add_argument(
        "--memory-devices",
        type=int,
        metavar="N",
        help="only measure one gateway process's memory with N devices' first readings",
    )
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="with --memory-devices: the gateway runs its alert service (as in production); "
        "otherwise it is off in every measurement",
    )
    parser.add_argument(
        "--memory-sites",
        type=lambda text: tuple(text.split(",")),
        default=SITE_MODES,
        help="with --memory-devices: the states of the gateway's site models to measure, "
        f"comma-separated, of {','.join(SITE_MODES)} (default all; the half-size run "
        "takes the first)",
    )
    parser.add_argument(
        "--malloc",
        choices=("gateway", "glibc"),
        default="gateway",
        help="with --memory-devices: glibc's malloc as the gateway sets it (default) or "
        "glibc's own settings (gateway.malloc_* 0)",
    )
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="only (r): live latency while a tenth of the estates replay "
        "(bench/replay_scenario.py)",
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--profile-sort", choices=("tottime", "cumulative"), default="tottime")
    # The child processes' modes.
    parser.add_argument(
        "--publish", nargs=6, metavar=("PORT", "FILE", "RATE", "MARK", "WARM", "STEADY_S")
    )
    parser.add_argument(
        "--count", nargs=5, metavar=("PORT", "EXPECTED", "DRAIN", "WINDOW", "PROTOCOL")
    )
    parser.add_argument("--gateway", nargs=2, metavar=("SETTINGS_JSON", "DRAIN"))
    args = parser.parse_args()
    if args.publish:
        port, traffic_file, rate, mark, warm, steady_s = args.publish
        run_publisher(int(port), traffic_file, float(rate), mark, int(warm), float(steady_s))
    elif args.count:
        port, expected, drain, window, protocol = args.count
        run_counter(
            int(port), int(expected), bool(drain), float(window) if window else None, protocol
        )
    elif args.gateway:
        run_gateway(args.gateway[0], bool(args.gateway[1]))
    else:
        measure(args)


if __name__ == "__main__":
    main()
