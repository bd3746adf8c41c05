"""``jiayuan chaos``: simulator traffic through the real pipeline while faults are injected.

The gateway runs as its own process (``jiayuan gateway run``, configured through
``JIAYUAN_*`` environment variables, state on disk) so it can be killed with SIGKILL.
While the edge agents publish, the harness kills and restarts the gateway, restarts
Mosquitto, stops InfluxDB for a while and cuts one estate's uplink (a TCP relay between
that edge agent and the broker, closed for five minutes of simulated time).  At the end it
counts, in InfluxDB itself, what was stored against what the devices produced: lost
readings (a device's seq never stored), duplicates (one device+seq stored as two points),
and it compares the alerts raised with the injected faults' labels and counts the work
orders the reference operations centre received per alert.  The cut estate's outage must
cost one work order (its estate uplink alert, the devices' offline alerts held under it);
any other count fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from alerts.grouping import GROUP_CODES, is_offline_code
from alerts.model import Alert
from alerts.store import AlertFilter, AlertStore
from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import Driver
from gateway.storage.deadletters import DeadLetterStore
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.contract import MAX_FUTURE_MS
from jiayuan.influx import InfluxClient, quote_identifier
from jiayuan.registry.store import REGISTRY_FILE, RegistryStore
from jiayuan.state import ALERTS_FILE, DEAD_LETTER_FILE
from simulators.driver import SimulatedDriver
from simulators.faults import Fault, plan_faults, write_labels
from simulators.registry import Registry, build_registry
from tools.demo import CountingDriver, KindCounter, SimClock
from tools.demo_alerts import COMPLETE_AFTER_S, DemoOperations, alerts_report
from tools.registry_generate import generate_registry
from tools.servers import HOST, RunningServers, free_port

GATEWAY_START_TIMEOUT_S = 60.0
GATEWAY_STOP_TIMEOUT_S = 30.0
# After the traffic, how long the gateway gets to store the broker's backlog, and how long
# the count may stand still before the harness stops waiting for the rest.
SETTLE_TIMEOUT_S = 120.0
SETTLE_STALL_S = 15.0


class ChaosError(RuntimeError):
    """The harness itself could not run (a server or the gateway would not start)."""


@dataclass(frozen=True)
class ChaosProfile:
    """When each fault happens, in real seconds from the start of traffic."""

    name: str
    estates: int
    speed: float  # simulated seconds per real second
    traffic_s: float  # real seconds of device traffic
    gateway_kill_at_s: float
    gateway_down_s: float
    mosquitto_restart_at_s: float
    influx_stop_at_s: float
    influx_down_s: float
    uplink_cut_at_s: float
    uplink_cut_sim_s: float = 300.0  # five minutes of simulated time

    def __post_init__(self) -> None:
        # Simulated devices run ahead of the wall clock by traffic_s × (speed − 1); the
        # gateway dead-letters readings stamped further ahead than the contract allows.
        ahead_s = self.traffic_s * (self.speed - 1)
        if self.speed < 1 or ahead_s >= MAX_FUTURE_MS / 1000:
            raise ValueError(
                f"chaos profile {self.name!r}: speed {self.speed:g} over {self.traffic_s:g} s "
                f"puts the devices' clocks {ahead_s:g} s ahead of the gateway's; the "
                f"contract refuses readings more than {MAX_FUTURE_MS / 1000:g} s ahead"
            )
        if self.uplink_cut_at_s + self.uplink_cut_real_s > self.traffic_s:
            raise ValueError(f"chaos profile {self.name!r}: the uplink cut outlasts the traffic")

    @property
    def uplink_cut_real_s(self) -> float:
        return self.uplink_cut_sim_s / self.speed


# The uplink cut overlaps the other faults: five simulated minutes must pass within a run
# whose simulated clock stays under the gateway's five-minute future limit.
FULL = ChaosProfile(
    name="full",
    estates=5,
    speed=2.0,
    traffic_s=230.0,
    gateway_kill_at_s=20.0,
    gateway_down_s=5.0,
    mosquitto_restart_at_s=40.0,
    uplink_cut_at_s=60.0,
    influx_stop_at_s=90.0,
    influx_down_s=60.0,
)
# For the tests: every fault, a shorter InfluxDB outage, faster simulated time.
SHORT = ChaosProfile(
    name="short",
    estates=2,
    speed=6.0,
    traffic_s=54.0,
    gateway_kill_at_s=6.0,
    gateway_down_s=2.0,
    mosquitto_restart_at_s=14.0,
    uplink_cut_at_s=2.0,
    influx_stop_at_s=20.0,
    influx_down_s=8.0,
)
PROFILES = {profile.name: profile for profile in (FULL, SHORT)}


# ---- the gateway as a process ---------------------------------------------------------------


def gateway_environment(config: Config) -> dict[str, str]:
    """The whole configuration as ``JIAYUAN_<SECTION>_<KEY>`` variables for a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    for section_name in ("mqtt", "influx", "gateway", "alerts", "api"):
        section = getattr(config, section_name)
        for item in fields(section):
            value = getattr(section, item.name)
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            env[f"JIAYUAN_{section_name.upper()}_{item.name.upper()}"] = text
    # The gateway runs the same source tree as the harness, wherever it is installed.
    source_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return env


class GatewayProcess:
    """``jiayuan gateway run`` as a child process that can be killed and started again."""

    def __init__(self, config: Config, work_dir: Path) -> None:
        self._env = gateway_environment(config)
        self._work_dir = work_dir
        self.log_path = work_dir / "gateway.log"
        self.api_url = f"http://{config.gateway.api_host}:{config.gateway.api_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "gateway", "run"],
                env=self._env,
                cwd=self._work_dir,  # no ./jiayuan.toml of the caller's is picked up
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is the harness's alone
            )
        self.starts += 1
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(0.1)
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise ChaosError(f"the gateway did not start (log {self.log_path}):\n{tail}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def kill(self) -> None:
        """SIGKILL: no flush, no acknowledgement, no clean disconnect."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(GATEWAY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- an uplink that can be cut ----------------------------------------------------------------


class UplinkProxy:
    """A TCP relay between one edge agent and the broker: ``cut`` is the cable pulled out
    (connections reset, new ones refused), ``restore`` plugs it back in on the same port."""

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self._broker = (broker_host, broker_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, HOST, self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, edge_reader: asyncio.StreamReader, edge: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker = await asyncio.open_connection(*self._broker)
        except OSError:
            edge.transport.abort()  # the broker is down: the edge sees a reset, as it would
            return
        self._writers.update((edge, broker))
        try:
            await asyncio.gather(_pipe(edge_reader, broker), _pipe(broker_reader, edge))
        finally:
            for writer in (edge, broker):
                self._writers.discard(writer)
                writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.transport.abort()  # one side closed: close the other, as a cable would


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """What the harness did and when (real seconds from the start of traffic)."""

    started: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)

    def note(self, text: str) -> None:
        at = time.monotonic() - self.started
        self.events.append((round(at, 1), text))
        print(f"[{at:6.1f}s] {text}", flush=True)


def run_chaos(
    config: Config, servers: RunningServers, profile: ChaosProfile, out_dir: Path, seed: int = 1
) -> dict[str, Any]:
    """Run ``profile`` against ``servers`` (which it stops and starts) and report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    registry = build_registry(profile.estates, seed)
    start_ms = int(time.time() * 1000)
    sim_duration_s = profile.traffic_s * profile.speed
    plan = plan_faults(registry, start_ms, sim_duration_s, seed)
    write_labels(out_dir / "labels.json", plan.faults)
    state_dir = out_dir / "gateway"
    _fresh_state(state_dir)
    estate_registry = generate_registry(registry, seed, date.today())
    with RegistryStore(state_dir / REGISTRY_FILE) as store:
        store.replace(estate_registry)
    operations = DemoOperations(out_dir)
    operations.start()
    try:
        config = replace(
            config,
            gateway=replace(config.gateway, state_dir=str(state_dir), api_port=free_port()),
            alerts=operations.alerts_config(config.alerts, estate_registry),
        )
        with InfluxClient(config.influx) as client:
            client.ensure_database()
        gateway = GatewayProcess(config, out_dir)
        cut_estate = registry.estates[0].id
        print(
            f"chaos profile {profile.name!r}: {profile.estates} estates, "
            f"{len(registry.devices())} devices, {len(plan.faults)} labelled faults, "
            f"{profile.traffic_s:g} s of traffic at {profile.speed:g}× simulated time",
            flush=True,
        )
        counter = KindCounter(samples=[])
        try:
            gateway.start()
            timeline = Timeline()
            pending = asyncio.run(
                _traffic(
                    config, servers, profile, registry, plan.faults, start_ms, seed,
                    out_dir, counter, gateway, cut_estate, timeline,
                )
            )  # fmt: skip
            published = Counter(sample.device for sample in counter.samples or [])
            stored = _wait_until_stored(config, sum(published.values()))
            timeline.note("traffic stored; letting the last alerts reach the operations centre")
            # The centre accepts and completes work orders on its own clock; let it finish.
            time.sleep(COMPLETE_AFTER_S + 2.0)
        finally:
            gateway.stop()
        with InfluxClient(config.influx) as client:
            orders = alerts_report(operations, state_dir / ALERTS_FILE, client)
        ordered = {order["alert_id"] for order in operations.centre.store.workorders(kind="create")}
    finally:
        operations.close()
    with AlertStore(state_dir / ALERTS_FILE) as alert_store:
        alerts = alert_store.list_alerts(AlertFilter(limit=1_000_000))
    dead_letters = DeadLetterStore(state_dir / DEAD_LETTER_FILE)
    try:
        dead_letter_totals = dead_letters.totals()
    finally:
        dead_letters.close()
    kinds = {device.id: device.kind.value for device in registry.devices()}
    cut_devices = {device.id for device in registry.devices() if device.estate == cut_estate}
    alert_counts = alerts_vs_labels(alerts, plan.faults, cut_devices)
    cut = uplink_cut_report(alerts, plan.faults, cut_estate, cut_devices, ordered)
    report: dict[str, Any] = {
        "profile": asdict(profile),
        "seed": seed,
        "devices": len(kinds),
        "timeline": timeline.events,
        "gateway_starts": gateway.starts,
        "dead_letters": dead_letter_totals,
        "alerts": alert_counts,
        "uplink_cut": cut,
        "work_orders": {
            "created": orders["work_orders_created"],
            "alerts_with_work_order": orders["work_orders_created"]
            - orders["duplicate_work_orders"],
            "duplicate_work_orders": orders["duplicate_work_orders"],
            "redeliveries_absorbed": orders["redeliveries_absorbed"],
            "critical_alerts": orders["critical_alerts"],
            "critical_without_work_order": orders["critical_without_work_order"],
        },
        "out_dir": str(out_dir),
    }
    readings = readings_report(published, stored, pending)
    report["readings"] = readings
    report["ok"] = (
        readings["lost"] == 0
        and readings["duplicated"] == 0
        and readings["unexpected"] == 0
        and readings["pending_in_spools"] == 0
        and not any(dead_letter_totals.values())
        and orders["duplicate_work_orders"] == 0
        and alert_counts["duplicate_alerts"] == 0
        and cut["work_orders"] == 1
    )
    return report


def _fresh_state(state_dir: Path) -> None:
    # Each run starts with no alerts, outbox, registry or ingest state from an earlier run.
    if state_dir.exists():
        for path in state_dir.iterdir():
            if path.is_file():
                path.unlink()
    state_dir.mkdir(parents=True, exist_ok=True)


async def _traffic(
    config: Config,
    servers: RunningServers,
    profile: ChaosProfile,
    registry: Registry,
    faults: Sequence[Fault],
    start_ms: int,
    seed: int,
    out_dir: Path,
    counter: KindCounter,
    gateway: GatewayProcess,
    cut_estate: str,
    timeline: Timeline,
) -> int:
    """Edge agents publish for ``profile.traffic_s`` while the faults are injected; returns
    the readings still in the edge spools after they stopped."""
    clock = SimClock(start_ms, profile.speed)
    proxy = UplinkProxy(config.mqtt.host, config.mqtt.port)
    await proxy.restore()
    stop = asyncio.Event()
    agents = []
    for estate in registry.estates:
        driver: Driver = SimulatedDriver(registry, estate.id, faults, start_ms, seed)
        spool = out_dir / "spools" / f"{estate.id}.sqlite"
        spool.parent.mkdir(parents=True, exist_ok=True)
        spool.unlink(missing_ok=True)
        mqtt = config.mqtt
        if estate.id == cut_estate:
            mqtt = replace(mqtt, url=proxy.url)
        agents.append(
            EdgeAgent(
                mqtt,
                config.edge,
                EdgePlace(estate.district, estate.street, estate.id, estate.edge_id),
                CountingDriver(driver, counter),
                spool,
                clock=clock.now_ms,
                poll_interval_s=0.5,
                drain_timeout_s=30.0,
                # Back within a few seconds of a broker restart or a restored uplink.
                backoff_max_s=2.0,
            )
        )
    tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
    timeline.note(f"traffic started: {len(agents)} edge agents, gateway pid {gateway.pid}")
    try:
        await _inject(profile, servers, gateway, proxy, cut_estate, timeline)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await proxy.cut()
    timeline.note("traffic stopped; edge spools drained")
    return sum(agent.stats.pending for agent in agents)


async def _inject(
    profile: ChaosProfile,
    servers: RunningServers,
    gateway: GatewayProcess,
    proxy: UplinkProxy,
    cut_estate: str,
    timeline: Timeline,
) -> None:
    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, second - (time.monotonic() - timeline.started)))

    async def blocking(action: Callable[[], None]) -> None:
        # In a thread: the edge agents keep reading their devices meanwhile.
        await asyncio.to_thread(action)

    steps: list[tuple[float, str, Callable[[], Coroutine[Any, Any, None]]]] = [
        (profile.gateway_kill_at_s, "SIGKILL gateway", lambda: blocking(gateway.kill)),
        (
            profile.gateway_kill_at_s + profile.gateway_down_s,
            "gateway started again",
            lambda: blocking(gateway.start),
        ),
        (
            profile.mosquitto_restart_at_s,
            "Mosquitto restarted",
            lambda: blocking(servers.restart_mosquitto),
        ),
        (profile.influx_stop_at_s, "InfluxDB stopped", lambda: blocking(servers.stop_influx)),
        (
            profile.influx_stop_at_s + profile.influx_down_s,
            "InfluxDB started again",
            lambda: blocking(servers.start_influx),
        ),
        (profile.uplink_cut_at_s, f"uplink of {cut_estate} cut", proxy.cut),
        (
            profile.uplink_cut_at_s + profile.uplink_cut_real_s,
            f"uplink of {cut_estate} restored",
            proxy.restore,
        ),
    ]
    try:
        for second, text, action in sorted(steps, key=lambda step: step[0]):
            await at(second)
            await action()
            timeline.note(text)
        await at(profile.traffic_s)
    finally:
        # Whatever happened, leave the servers running for the count.
        await blocking(servers.start_mosquitto)
        await blocking(servers.start_influx)


# ---- what was stored ---------------------------------------------------------------------------


def stored_seqs(client: InfluxClient) -> dict[str, list[int]]:
    """Every stored telemetry point's seq, per device (a duplicate shows up twice)."""
    seqs: dict[str, list[int]] = {}
    for kind in Kind:
        query = f'SELECT "seq" FROM {quote_identifier(kind.value)} GROUP BY "device"'
        for series in client.query(query):
            column = series.columns.index("seq")
            seqs.setdefault(series.tags["device"], []).extend(
                int(row[column]) for row in series.values
            )
    return seqs


def _wait_until_stored(config: Config, published: int) -> dict[str, list[int]]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last_progress, last_distinct = time.monotonic(), -1
    with InfluxClient(config.influx) as client:
        while True:
            seqs = stored_seqs(client)
            distinct = sum(len(set(values)) for values in seqs.values())
            now = time.monotonic()
            if distinct > last_distinct:
                last_progress, last_distinct = now, distinct
            if distinct >= published or now > deadline or now - last_progress > SETTLE_STALL_S:
                return seqs
            time.sleep(1.0)


def readings_report(
    published: Counter[str], stored: dict[str, list[int]], pending_in_spools: int
) -> dict[str, Any]:
    """Lost, duplicated and unexpected readings, by device and seq.

    An edge spool numbers each device's readings 1, 2, 3 …, so a device that produced n
    readings must have exactly the seqs 1..n stored, each once.
    """
    lost = duplicated = unexpected = points = 0
    lost_by_device: dict[str, int] = {}
    for device in set(published) | set(stored):
        values = stored.get(device, [])
        points += len(values)
        distinct = set(values)
        duplicated += len(values) - len(distinct)
        expected = range(1, published.get(device, 0) + 1)
        missing = len(expected) - len(distinct.intersection(expected))
        unexpected += len(distinct.difference(expected))
        if missing:
            lost_by_device[device] = missing
            lost += missing
    return {
        "published": sum(published.values()),
        "stored_points": points,
        "stored_distinct": points - duplicated,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "pending_in_spools": pending_in_spools,
        "lost_by_device": lost_by_device,
    }


def alerts_vs_labels(
    alerts: Sequence[Alert], faults: Sequence[Fault], cut_devices: set[str]
) -> dict[str, Any]:
    """Which labelled faults raised an alert of their expected code on their device, which
    alerts no label explains (an uplink cut really does take devices offline), and
    duplicates: two alerts of one device+condition open at the same time."""
    raised = {(alert.device, alert.code) for alert in alerts}
    expected = {(fault.device, fault.expected_code) for fault in faults}
    missed = sorted(f"{device} {code}" for device, code in expected - raised)
    # Group alerts stand for an outage, not a device's fault: uplink_cut_report counts them.
    unexplained = [
        alert
        for alert in alerts
        if (alert.device, alert.code) not in expected and alert.code not in GROUP_CODES
    ]
    from_cut = [
        alert
        for alert in unexplained
        if alert.device in cut_devices and alert.code.endswith(".offline")
    ]
    return {
        "raised": len(alerts),
        "expected": len(expected),
        "expected_raised": len(expected & raised),
        "missed": missed,
        "offline_from_uplink_cut": len(from_cut),
        "other_unexplained": sorted(
            f"{alert.device} {alert.code}" for alert in unexplained if alert not in from_cut
        ),
        "duplicate_alerts": _overlapping(alerts),
    }


def uplink_cut_report(
    alerts: Sequence[Alert],
    faults: Sequence[Fault],
    estate: str,
    devices: set[str],
    ordered: set[str],
) -> dict[str, Any]:
    """What the cut estate's outage cost the operations centre: its outage alerts (the
    group alerts of the estate and the offline alerts no label explains) and how many of
    them sent a work order — one is the goal (docs/alerts.md, "Alert storms")."""
    expected = {(fault.device, fault.expected_code) for fault in faults}
    groups = [a for a in alerts if a.estate == estate and a.code in GROUP_CODES]
    offline = [
        a
        for a in alerts
        if a.device in devices and is_offline_code(a.code) and (a.device, a.code) not in expected
    ]
    outage = groups + offline
    return {
        "estate": estate,
        "devices": len(devices),
        "devices_offline": len({a.device for a in offline}),
        "group_alerts": sorted(f"{a.code} {a.building}".strip() for a in groups),
        "held_under_group": sum(1 for a in offline if a.parent_id),
        "work_orders": sum(1 for a in outage if a.id in ordered),
        "work_orders_for": sorted(
            f"{a.code} {a.device}".strip() for a in outage if a.id in ordered
        ),
    }


def _overlapping(alerts: Sequence[Alert]) -> int:
    by_condition: dict[tuple[str, str, str], list[Alert]] = {}
    for alert in alerts:
        by_condition.setdefault((alert.device, alert.code, alert.detail), []).append(alert)
    duplicates = 0
    for group in by_condition.values():
        group.sort(key=lambda alert: alert.created_ms)
        for earlier, later in itertools.pairwise(group):
            ended = earlier.closed_ms or earlier.resolved_ms
            if not ended or ended > later.created_ms:
                duplicates += 1
    return duplicates


def format_report(report: dict[str, Any]) -> str:
    readings, alerts, orders = report["readings"], report["alerts"], report["work_orders"]
    cut = report["uplink_cut"]
    lines = [
        f"混沌测试 chaos run {report['profile']['name']!r}: {report['devices']} devices, "
        f"gateway started {report['gateway_starts']} times",
        *(f"  [{at:6.1f}s] {text}" for at, text in report["timeline"]),
        f"读数 readings: published {readings['published']}, stored {readings['stored_points']} "
        f"points ({readings['stored_distinct']} distinct device+seq), lost {readings['lost']}, "
        f"duplicated {readings['duplicated']}, unexpected seqs {readings['unexpected']}, "
        f"left in edge spools {readings['pending_in_spools']}; dead letters "
        f"{sum(report['dead_letters'].values())} {report['dead_letters'] or ''}",
        f"告警 alerts: {alerts['raised']} raised; labelled faults {alerts['expected_raised']}/"
        f"{alerts['expected']} raised an alert; offline alerts from the uplink cut "
        f"{alerts['offline_from_uplink_cut']}; duplicate alerts {alerts['duplicate_alerts']}",
        f"工单 work orders at the operations centre: {orders['created']} for "
        f"{orders['alerts_with_work_order']} alerts, duplicates "
        f"{orders['duplicate_work_orders']}, redeliveries absorbed "
        f"{orders['redeliveries_absorbed']}; critical alerts without one: "
        f"{len(orders['critical_without_work_order'])}",
        f"上行中断 uplink cut of {cut['estate']}: {cut['devices_offline']}/{cut['devices']} "
        f"devices offline, {cut['held_under_group']} held under "
        f"{', '.join(cut['group_alerts']) or 'no group alert'}; work orders for the outage "
        f"{cut['work_orders']} (want 1: {', '.join(cut['work_orders_for']) or 'none'})",
    ]
    if readings["lost_by_device"]:
        lines.append(f"  LOST by device: {readings['lost_by_device']}")
    for missed in alerts["missed"]:
        lines.append(f"  no alert for labelled fault: {missed}")
    for other in alerts["other_unexplained"]:
        lines.append(f"  alert no label explains: {other}")
    lines.append("RESULT: " + ("OK" if report["ok"] else "PROBLEMS — see above"))
    return "\n".join(lines)
