"""What the gateway spends on a message before its readings are processed: its MQTT network
thread, the inbox and the acknowledgements, at a district's shape (each estate's second of
readings in one message, about three readings a message).

A real Mosquitto (``tools.servers``) queues a district's traffic (``simulators/district.py``)
for the gateway's persistent session; a child process then drains it with the gateway's
own ``MqttIngest`` (its network loop, paho client and PUBLISH decoder) into an ``Inbox``,
and a second thread takes the messages as the processing thread does and acknowledges them
in batches as the commit thread does (a batch closes at ``batch_max_readings`` or after
``QUIET_S`` without messages).  Nothing is processed, unless ``--decode``: then the taker
also parses each message's topic and decodes its envelope, as the pipeline does first.

    .venv/bin/python bench/transport.py [--devices 100000] [--seconds 5] [--protocol 5]
    .venv/bin/python bench/transport.py --instructions  # valgrind: repeatable counts

``--end-to-end``: the whole gateway instead (``gateway.service.Gateway``, its alert
service and API off, writing to a real InfluxDB): a first ``--warm-s`` of the district's traffic is
drained uncounted (every device heard from once), then the measured seconds: CPU or, with
``--instructions``, instructions a reading for the whole process, its per-message and its
per-reading work together (no baseline: two commits held against each other).

The baseline, drained the same way in the same run: a bare paho-mqtt client on its own
loop thread (``loop_start``, VERSION2 callbacks, the same MQTT version and QoS 1, paho
acknowledging each message itself) that only counts messages.

Timed, each child reports each thread's own CPU time a message (``network`` the MQTT
network thread, ``taker`` the processing and commit threads' share).  ``--instructions``
runs the children under ``valgrind --tool=callgrind --separate-threads=yes``, instrumented
from just before they connect to just after the last message: instructions a message by
thread, the same count run after run whatever else the host is doing.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STALL_S = 60.0  # under valgrind a message costs a millisecond or more
# --end-to-end under valgrind on a loaded host: a batch of 5,000 readings may take minutes.
E2E_STALL_S = 900.0
FIXED_END_MS = 1_796_000_000_000  # 2026-11-30
T = TypeVar("T")


def build_wires(devices: int, seconds: float) -> list[tuple[str, bytes, int]]:
    from simulators.district import build_district

    district = build_district(devices)
    end_ms = FIXED_END_MS  # the same messages run after run (nothing checks their age here)
    return district.traffic(end_ms - int(seconds * 1000), end_ms).wires


def publish_all(port: int, wires: list[tuple[str, bytes, int]]) -> None:
    """Every message at QoS 1, never more than ``qos1_publisher.MAX_INFLIGHT`` unacknowledged."""
    from bench.qos1_publisher import Qos1Publisher

    publisher = Qos1Publisher(port)
    for topic, payload, _ in wires:
        publisher.publish(topic, payload)
    publisher.wait_acknowledged()
    publisher.close()


def _config(port: int, client_id: str, protocol: str):  # type: ignore[no-untyped-def]
    from jiayuan.config import MqttConfig

    return MqttConfig(
        url=f"mqtt://127.0.0.1:{port}",
        gateway_client_id=client_id,
        gateway_protocol="5" if protocol == "5" else "3.1.1",
    )


def make_session(port: int, client_id: str, protocol: str) -> None:
    """Subscribe the gateway's persistent session and leave: the broker queues for it."""
    from gateway.transport.inbox import Inbox
    from gateway.transport.ingest import MqttIngest

    ingest = MqttIngest(_config(port, client_id, protocol), Inbox())
    ingest.start()
    if not ingest.wait_subscribed(10):
        raise SystemExit("the gateway's session was not subscribed")
    ingest.stop()


def wait_done(done: threading.Event, state: dict[str, int]) -> None:
    """Until ``done``, or ``STALL_S`` without a message more."""
    last = (0, time.monotonic())
    while not done.wait(1.0):
        if state["messages"] != last[0]:
            last = (state["messages"], time.monotonic())
        elif time.monotonic() - last[1] > STALL_S:
            return


def paho_client(port: int, client_id: str, protocol: str, on_message: Any, wait: bool) -> Any:
    """The baseline: a bare paho client in a persistent session, subscribed at QoS 1 on
    every (re)connect, on paho's own loop thread (``wait``: until it is subscribed; the
    broker sends what it queued first)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from gateway.transport.ingest import RECEIVE_MAXIMUM, SESSION_EXPIRY_S

    v5 = protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe("jiayuan/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    else:
        client.connect("127.0.0.1", port)
    client.loop_start()
    if wait and not subscribed.wait(10):
        raise SystemExit("the baseline's session was not subscribed")
    return client


def measured(
    start: Callable[[], T], done: threading.Event, state: dict[str, int]
) -> tuple[T, float, dict[str, float], dict[str, float]]:
    """Start the drain and wait for its end: what ``start`` returned, the wall seconds, and
    the threads' CPU seconds before and after (under callgrind, only this is counted)."""
    from bench.host_cpu import thread_cpu_s

    if os.environ.get("BENCH_CALLGRIND"):
        callgrind_control("on")
    before = thread_cpu_s()
    started = time.perf_counter()
    result = start()
    wait_done(done, state)
    elapsed = time.perf_counter() - started
    after = thread_cpu_s()
    if os.environ.get("BENCH_CALLGRIND"):
        callgrind_control("off")
    return result, elapsed, before, after


def paho_child(port: int, client_id: str, protocol: str, expected: int) -> None:
    """The baseline drains the session's ``expected`` messages; CPU seconds by thread."""
    import paho.mqtt.client  # noqa: F401  (imported before the CPU clocks start)

    import gateway.transport.ingest  # noqa: F401

    done = threading.Event()
    state = {"messages": 0, "readings": 0}

    def on_message(*_: Any) -> None:
        state["messages"] += 1
        if state["messages"] >= expected:
            done.set()

    client, elapsed, before, after = measured(
        lambda: paho_client(port, client_id, protocol, on_message, wait=False), done, state
    )
    client.disconnect()
    client.loop_stop()
    cpu = {
        ("network" if name.startswith("paho-mqtt-client") else name): spent - before.get(name, 0.0)
        for name, spent in after.items()
    }
    print(json.dumps({**state, "wall_s": elapsed, "cpu_s": cpu}))


def profile_network_thread() -> None:
    """cProfile the network loop's thread; its top functions go to stderr at its end."""
    import cProfile
    import io
    import pstats

    from gateway.transport import mqtt_loop

    run = mqtt_loop.NetworkLoop._run

    def profiled(self: mqtt_loop.NetworkLoop) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
            sys.stderr.write(text.getvalue())

    mqtt_loop.NetworkLoop._run = profiled  # type: ignore[method-assign]


def child(port: int, client_id: str, protocol: str, expected: int, decode: bool) -> None:
    """Drain the session's ``expected`` messages; print CPU seconds by thread."""
    if os.environ.get("BENCH_PROFILE"):
        profile_network_thread()
    from gateway.collector import tune_collector
    from gateway.processor import QUIET_S
    from gateway.transport.inbox import Inbox
    from gateway.transport.ingest import MqttIngest
    from jiayuan.config import GatewayConfig
    from jiayuan.contract import decode_envelope, parse_topic

    tune_collector()
    limit = GatewayConfig().batch_max_readings
    inbox = Inbox()
    ingest = MqttIngest(_config(port, client_id, protocol), inbox)
    done = threading.Event()
    state = {"messages": 0, "readings": 0}
    taker_cpu_s = [0.0]

    def take() -> None:
        """The processing thread's gets and the commit thread's acknowledgements."""
        started_s = time.thread_time()
        while not done.is_set():
            try:
                batch = [inbox.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < limit:
                try:
                    batch.append(inbox.get(timeout=QUIET_S))
                except queue.Empty:
                    break
            if decode:
                for message in batch:
                    parse_topic(message.topic)
                    state["readings"] += len(decode_envelope(message.payload).readings)
            ingest.ack(batch)
            state["messages"] += len(batch)
            if state["messages"] >= expected:
                taker_cpu_s[0] = time.thread_time() - started_s  # before the main thread looks
                done.set()

    taker = threading.Thread(target=take, name="taker", daemon=True)
    taker.start()
    _, elapsed, before, after = measured(ingest.start, done, state)
    ingest.stop()
    taker.join()
    cpu = {
        ("network" if name == "gateway-mqtt" else name): spent - before.get(name, 0.0)
        for name, spent in after.items()
        if name != "taker"
    }
    cpu["taker"] = taker_cpu_s[0]
    print(json.dumps({**state, "wall_s": elapsed, "cpu_s": cpu}))


def under_callgrind(argv: list[str], out_file: str, threads_apart: bool = False) -> list[str]:
    """``argv`` run by callgrind with instrumentation off until the child turns it on
    (``callgrind_control``); ``threads_apart``: a file for each thread."""
    threads = ["--separate-threads=yes"] if threads_apart else []
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        *threads,
        f"--callgrind-out-file={out_file}",
        *argv,
    ]


def callgrind_control(instrumentation: str) -> None:
    """Instrumentation on or off for this process (its own stdout left to its parent)."""
    subprocess.run(
        ["callgrind_control", "-i", instrumentation, str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def gateway_child(settings: str) -> None:
    """The whole gateway: drains the warm-up uncounted, says so, then the measured traffic;
    prints its CPU seconds by thread and the readings it stored meanwhile."""
    from bench.host_cpu import thread_cpu_s
    from gateway.service import Gateway
    from jiayuan.config import AlertsConfig, Config, GatewayConfig, InfluxConfig, MqttConfig

    given = json.loads(settings)
    config = Config(
        mqtt=MqttConfig(
            url=f"mqtt://127.0.0.1:{given['port']}",
            gateway_client_id=given["client_id"],
            gateway_protocol=given["protocol"],
        ),
        influx=InfluxConfig(url=given["influx"], database=given["database"]),
        gateway=GatewayConfig(state_dir=given["state_dir"]),
        alerts=AlertsConfig(enabled=False),  # as bench/throughput.py's (c)
        source="bench",
    )
    gateway = Gateway(config, serve_api=False)
    gateway.start()
    if not gateway.wait_ready(120):
        raise SystemExit("the gateway did not subscribe")
    print("ready", flush=True)

    def stored_at_least(count: int) -> None:
        last = (0, time.monotonic())
        while (stored := gateway.stats.readings_stored) < count:
            if stored != last[0]:
                last = (stored, time.monotonic())
            elif time.monotonic() - last[1] > E2E_STALL_S:
                raise SystemExit(f"stalled at {stored} of {count} readings stored")
            time.sleep(0.05)

    warm = int(given["warm_readings"])
    stored_at_least(warm)
    if os.environ.get("BENCH_CALLGRIND"):
        callgrind_control("on")
    before = thread_cpu_s()
    start = gateway.stats.readings_stored
    print("warm", flush=True)
    stored_at_least(warm + int(given["readings"]))
    after = thread_cpu_s()
    if os.environ.get("BENCH_CALLGRIND"):
        callgrind_control("off")
    stored = gateway.stats.readings_stored - start
    gateway.stop()
    cpu = {name: spent - before.get(name, 0.0) for name, spent in after.items()}
    print(json.dumps({"readings": stored, "cpu_s": cpu}), flush=True)


def end_to_end(servers: Any, devices: int, seconds: float, warm_s: float, args: Any) -> None:
    """The whole gateway on a district's traffic, its warm-up uncounted."""
    from simulators.district import build_district

    district = build_district(devices)
    # Inside the gateway's time window: the measured seconds end a minute ago.
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - int(seconds * 1000)
    warm = district.traffic(start_ms - int(warm_s * 1000), start_ms).wires
    measured = district.traffic(start_ms, end_ms).wires
    readings = sum(count for _, _, count in measured)
    print(
        f"end to end: {len(warm):,} messages warm the gateway up, then {len(measured):,} "
        f"messages, {readings:,} readings measured ({readings / len(measured):.2f} a message)"
    )
    with tempfile.TemporaryDirectory() as workdir:
        settings = {
            "port": servers.mqtt_port,
            "influx": servers.influx_url,
            "database": f"bench_transport_{uuid.uuid4().hex[:6]}",
            "client_id": f"bench-e2e-{uuid.uuid4().hex[:6]}",
            "protocol": args.protocol,
            "state_dir": workdir,
            "warm_readings": sum(count for _, _, count in warm),
            "readings": readings,
        }
        argv = [sys.executable, __file__, "--gateway-child", json.dumps(settings)]
        env = dict(os.environ)
        if args.instructions:
            env["BENCH_CALLGRIND"] = "1"
            argv = under_callgrind(argv, f"{workdir}/callgrind.out")
        load = os.getloadavg()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the gateway did not start")
        publish_all(servers.mqtt_port, warm)
        if child.stdout.readline().strip() != "warm":
            raise SystemExit("the gateway did not take its warm-up")
        publish_all(servers.mqtt_port, measured)
        result = json.loads(child.stdout.readline())
        child.wait()
        total = _instructions(Path(workdir), "callgrind.out") if args.instructions else {}
    stored = result["readings"]
    print(f"  {stored:,} readings stored while measured, load average {load[0]:.2f}")
    if total:
        print(f"  instructions a reading, whole gateway: {sum(total.values()) / stored:,.0f}")
    else:
        cpu = result["cpu_s"]
        shown = ", ".join(
            f"{n} {spent / stored * 1e6:.2f}" for n, spent in sorted(cpu.items()) if spent > 0
        )
        print(f"  CPU µs a reading: {sum(cpu.values()) / stored * 1e6:.2f} ({shown})")


def _instructions(out_dir: Path, pattern: str = "callgrind.out-*") -> dict[str, int]:
    """Instructions by thread from callgrind's per-thread files (the network thread is the
    one that reads a socket; the taker the other one that takes from a queue)."""
    counts: dict[str, int] = {}
    for path in sorted(out_dir.glob(pattern)):
        text = path.read_text(errors="replace")
        if "sock_recv" in text:
            name = "network"
        elif "SimpleQueue_get" in text:
            name = "taker"
        else:
            name = "other"
        found = re.search(r"^totals:\s*(\d+)", text, re.M)
        if found:
            counts[name] = counts.get(name, 0) + int(found.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="of district traffic")
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    parser.add_argument("--rounds", type=int, default=1, help="drains of the same traffic")
    parser.add_argument("--decode", action="store_true", help="the taker decodes each message")
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the network thread"
    )
    parser.add_argument(
        "--end-to-end", action="store_true", help="the whole gateway, instructions a reading"
    )
    parser.add_argument("--warm-s", type=float, default=10.0, help="--end-to-end's warm-up")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "PORT", "ID", "PROTOCOL", "EXPECTED"))
    parser.add_argument("--gateway-child", metavar="SETTINGS_JSON")
    args = parser.parse_args()
    if args.gateway_child:
        gateway_child(args.gateway_child)
        return
    if args.end_to_end:
        from tools.servers import start_servers as start

        servers = start()
        try:
            end_to_end(servers, args.devices, args.seconds, args.warm_s, args)
        finally:
            servers.stop()
        return
    if args.child:
        kind, port, client_id, protocol, expected = args.child
        if kind == "paho":
            paho_child(int(port), client_id, protocol, int(expected))
        else:
            child(int(port), client_id, protocol, int(expected), args.decode)
        return

    from tools.servers import start_servers

    wires = build_wires(args.devices, args.seconds)
    readings = sum(count for _, _, count in wires)
    size = sum(len(payload) for _, payload, _ in wires)
    print(
        f"{len(wires):,} messages, {readings:,} readings ({readings / len(wires):.2f} a "
        f"message, {size / len(wires):.0f} B payload a message), MQTT {args.protocol}"
        f"{', decoded' if args.decode else ''}"
    )
    servers = start_servers()
    try:
        for round_ in range(args.rounds):
            # Alternated, so neither always meets the host's quieter minutes.
            kinds = ("paho", "gateway") if round_ % 2 == 0 else ("gateway", "paho")
            for kind in kinds:
                drain(servers.mqtt_port, wires, kind, args, f"round {round_ + 1}")
    finally:
        servers.stop()


def drain(port: int, wires: list[tuple[str, bytes, int]], kind: str, args: Any, label: str) -> None:
    """Queue the traffic for a fresh session, let a child of ``kind`` drain it, and print
    its figures."""
    client_id = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    if kind == "paho":
        paho_client(port, client_id, args.protocol, None, wait=True).disconnect()
    else:
        make_session(port, client_id, args.protocol)
    publish_all(port, wires)
    argv = [sys.executable, __file__, "--child", kind, str(port), client_id, args.protocol]
    argv += [str(len(wires))] + (["--decode"] if args.decode else [])
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        env = dict(os.environ)
        if args.profile and kind == "gateway":
            env["BENCH_PROFILE"] = "1"
        if args.instructions:
            env["BENCH_CALLGRIND"] = "1"
            argv = under_callgrind(argv, f"{workdir}/callgrind.out", threads_apart=True)
        run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode != 0 or not lines:
            raise SystemExit(f"the child failed:\n{run.stdout}\n{run.stderr[-3000:]}")
        result = json.loads(lines[-1])
        counts = _instructions(Path(workdir)) if args.instructions else {}
    if args.profile and kind == "gateway":
        print(run.stderr[run.stderr.find("function calls") :])
    messages = result["messages"]
    name = "bare paho client" if kind == "paho" else "gateway's ingest"
    print(
        f"{label}, {name}: {messages:,} of {len(wires):,} messages in "
        f"{result['wall_s']:.2f} s, load average {load[0]:.2f}"
    )
    if counts:
        total = sum(counts.values())
        shown = ", ".join(f"{n} {count / messages:,.0f}" for n, count in sorted(counts.items()))
        print(f"  instructions a message: {total / messages:,.0f} ({shown})")
    else:
        cpu = result["cpu_s"]
        shown = ", ".join(f"{n} {spent / messages * 1e6:.2f}" for n, spent in sorted(cpu.items()))
        print(f"  CPU µs a message: {sum(cpu.values()) / messages * 1e6:.2f} ({shown})")


if __name__ == "__main__":
    main()
