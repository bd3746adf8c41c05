"""``jiayuan demo``: the whole pipeline on real servers, with injected faults, visible live.

Starts Mosquitto and InfluxDB (or uses configured ones), builds a registry of N estates,
plans labelled faults, runs one edge agent per estate on simulated devices, runs the
gateway with its API and alert service (the reference operations centre, a mail catcher
and a duty officer around it), restarts the gateway half-way, prints progress, and at the
end reports what InfluxDB holds against what was published, which injected faults were
detected, how alerts became work orders and were handled, the estates' safety grades, and
renders the Grafana dashboards' previews from the same InfluxDB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from edge.agent import EdgeAgent, EdgePlace
from edge.drivers import Driver, DriverSample
from gateway.service import Gateway
from jiayuan import config as config_module
from jiayuan.catalogue import Kind
from jiayuan.config import Config
from jiayuan.influx import InfluxClient
from jiayuan.registry.store import REGISTRY_FILE, RegistryStore
from jiayuan.state import (
    ALERTS_FILE,
    CALLBACK_LEDGER_FILE,
    DEAD_LETTER_FILE,
    OUTBOX_FILE,
    SNAPSHOT_FILE,
    SPOOL_FILE,
)
from simulators.driver import SimulatedDriver
from simulators.faults import Fault, plan_faults, write_labels
from simulators.registry import Registry, build_registry
from tools.demo_alerts import (
    COMPLETE_AFTER_S,
    DemoOperations,
    alerts_report,
    format_alerts_summary,
)
from tools.demo_devices import ProtocolHops, connectors_report, hop_estates
from tools.demo_report import (
    FaultLabel,
    build_report,
    format_summary,
    match_faults,
    stored_anomalies,
    stored_readings_by_kind,
)
from tools.registry_generate import generate_registry
from tools.servers import RunningServers, ensure_installed, free_port, start_servers

PROGRESS_EVERY_S = 5.0
# After the last reading, how long the gateway gets to store the backlog.
SETTLE_TIMEOUT_S = 30.0


class SimClock:
    """Simulated epoch milliseconds: starts at the wall clock and runs ``speed`` times faster.

    It never runs behind the wall clock, so the gateway's dead-man check (which takes the
    later of device time and wall time) sees accelerated devices as alive.
    """

    def __init__(self, start_ms: int, speed: float) -> None:
        self.start_ms = start_ms
        self.speed = speed
        self._started = time.monotonic()

    def elapsed_s(self) -> float:
        return (time.monotonic() - self._started) * self.speed

    def now_ms(self) -> int:
        return self.start_ms + int(self.elapsed_s() * 1000)


@dataclass
class KindCounter:
    """Counts what each estate's driver hands to its edge agent, by kind."""

    by_kind: Counter[str] = field(default_factory=Counter)
    # Every sample, kept only when a caller asks (tests compare them with InfluxDB).
    samples: list[DriverSample] | None = None
    # The estates whose devices cross real protocols, for the report.
    hops: list[ProtocolHops] = field(default_factory=list)


class CountingDriver:
    def __init__(self, inner: Driver, counter: KindCounter) -> None:
        self._inner = inner
        self._counter = counter

    def poll(self, now_ms: int) -> list[DriverSample]:
        samples = self._inner.poll(now_ms)
        for sample in samples:
            self._counter.by_kind[sample.kind.value] += 1
        if self._counter.samples is not None:
            self._counter.samples.extend(samples)
        return samples


class DyingDriver:
    """Passes samples on, except one device's from ``dies_at_ms`` on: a monitor that
    fails for good near the end, so the run ends with a device offline, as a real city
    always has one."""

    def __init__(self, inner: Driver, device: str, dies_at_ms: int) -> None:
        self._inner = inner
        self._device = device
        self._dies_at_ms = dies_at_ms

    def poll(self, now_ms: int) -> list[DriverSample]:
        samples = self._inner.poll(now_ms)
        if now_ms < self._dies_at_ms:
            return samples
        return [sample for sample in samples if sample.device != self._device]


def run_command(args: argparse.Namespace) -> int:
    if args.estates < 1 or args.duration <= 0 or args.speed <= 0:
        print("--estates must be ≥ 1, --duration and --speed > 0", file=sys.stderr)
        return 2
    base = config_module.load(args.config)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _servers(base, args.use_configured_servers, out_dir) as config:
        api_port = args.api_port or free_port()
        config = replace(
            config,
            gateway=replace(config.gateway, api_port=api_port, state_dir=str(out_dir / "gateway")),
        )
        report = run_demo(
            config,
            args.estates,
            args.duration,
            args.seed,
            out_dir,
            args.speed,
            restart=args.restart_gateway,
            preview=not args.no_preview,
        )
    print(format_summary(report))
    print(format_alerts_summary(report["alerts"]))
    if args.report:
        Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        print(f"report written to {args.report}")
    return 0 if report["ok"] else 1


@contextlib.contextmanager
def _servers(base: Config, use_configured: bool, out_dir: Path) -> Iterator[Config]:
    if use_configured:
        print(base.servers_text(), flush=True)
        yield base
        return
    ensure_installed()
    servers: RunningServers = start_servers()
    print(
        f"Mosquitto at {servers.mqtt_url}, InfluxDB at {servers.influx_url} "
        f"(data in {servers.data_dir})"
    )
    try:
        demo_db = replace(base.influx, url=servers.influx_url, api="v1", database="jiayuan_demo")
        yield replace(
            config_module.with_servers(base, servers.mqtt_url, servers.influx_url), influx=demo_db
        )
    finally:
        servers.stop()
        print("servers stopped")


def run_demo(
    config: Config,
    estates: int,
    duration_s: float,
    seed: int,
    out_dir: Path,
    speed: float = 1.0,
    sample_sink: list[DriverSample] | None = None,
    *,
    restart: bool = False,
    preview: bool = True,
) -> dict[str, Any]:
    """Run the pipeline for ``duration_s`` simulated seconds and report what happened.

    ``sample_sink``, when given, receives every sample the simulated devices produced.
    """
    registry = build_registry(estates, seed)
    start_ms = int(time.time() * 1000)
    plan = plan_faults(registry, start_ms, duration_s, seed)
    traffic_s = duration_s + (COMPLETE_AFTER_S + 3.0) * speed
    dead = _dead_for_good(registry, plan.faults, start_ms, duration_s, traffic_s)
    labelled = [*plan.faults, *([dead] if dead else [])]
    (out_dir / "registry.json").write_text(registry.to_json())
    write_labels(out_dir / "labels.json", labelled)
    print(
        f"{estates} estates, {len(registry.devices())} devices, "
        f"{len(labelled)} faults injected (labels: {out_dir / 'labels.json'})"
    )
    state_dir = Path(config.gateway.state_dir)
    _fresh_state(state_dir)
    estate_registry = generate_registry(registry, seed, date.today())
    with RegistryStore(state_dir / REGISTRY_FILE) as store:
        store.replace(estate_registry)

    operations = DemoOperations(out_dir)
    operations.start()
    config = replace(
        config,
        alerts=operations.alerts_config(
            config.alerts,
            estate_registry,
            page_url=f"http://{config.gateway.api_host}:{config.gateway.api_port}",
        ),
        api=operations.api_config(config.api),
    )
    gateway = Gateways(config)
    api_url = f"http://{config.gateway.api_host}:{config.gateway.api_port}"
    print(f"gateway API: {api_url}/health  {api_url}/alerts  {api_url}/score/estates  /docs")
    print(f"operations centre (reference receiver): {operations.centre.workorders_url}")
    print(f"InfluxDB: {config.influx.url}  database {config.influx.database!r}")
    operations.start_operator(api_url)
    counter = KindCounter(samples=sample_sink)
    try:
        pending = asyncio.run(
            _run_edges(
                config,
                registry,
                plan.faults,
                SimClock(start_ms, speed),
                seed,
                # Healthy traffic goes on after the faults' window while the centre
                # completes the last work orders (devices that fell silent would look
                # offline otherwise).
                traffic_s,
                out_dir,
                counter,
                gateway,
                restart,
                dead,
            )
        )
        published = sum(counter.by_kind.values())
        _wait_until_stored(config, published)
        _wait_for_offline_checks(gateway.current)
        if gateway.current.score is not None:
            gateway.current.score.write_scores()
    finally:
        operations.stop_operator()
        gateway.stop()

    try:
        with InfluxClient(config.influx) as client:
            stored = stored_readings_by_kind(client)
            anomalies = stored_anomalies(client)
            alerts = alerts_report(operations, state_dir / ALERTS_FILE, client)
            previews = _previews(client, out_dir / "previews") if preview else None
    finally:
        operations.close()
    labels = [_label(fault) for fault in labelled]
    report = build_report(
        estates=estates,
        duration_s=duration_s,
        seed=seed,
        published_by_kind=dict(counter.by_kind),
        stored_by_kind=stored,
        pending_in_spools=pending,
        dead_letters=gateway.dead_letters,
        outcomes=match_faults(labels, anomalies),
        skipped_faults=[str(skipped) for skipped in plan.skipped],
        anomalies=anomalies,
        where={
            "api": api_url,
            "influx_url": config.influx.url,
            "influx_database": config.influx.database,
            "out_dir": str(out_dir),
        },
    )
    report["connectors"] = connectors_report(counter.hops)
    print(f"readings by connector: {report['connectors']['readings_by_connector']}")
    report["gateway_restarts"] = gateway.restarts
    report["alerts"] = alerts
    report["score"] = _scores(state_dir, estates)
    report["dashboards"] = previews
    report["ok"] = report["ok"] and alerts["ok"]
    return report


def _dead_for_good(
    registry: Registry, faults: Sequence[Fault], start_ms: int, duration_s: float, traffic_s: float
) -> Fault | None:
    """A waterlogging gauge with no other fault dies at 60 % of the run, for good."""
    busy = {fault.device for fault in faults}
    for device in registry.devices():
        if device.kind is Kind.WATERLOGGING and device.id not in busy:
            return Fault(
                fault_id="dead-1",
                kind=device.kind,
                fault_type="dead_for_good",
                expected_code=f"{device.kind.value}.offline",
                estate=device.estate,
                device=device.id,
                start_ms=start_ms + int(duration_s * 600),
                end_ms=start_ms + int(traffic_s * 1000),
            )
    return None


class Gateways:
    """The demo's gateway, which it may restart: one at a time, on the same state."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.current = self._started()
        self.restarts = 0
        self._dead_letters_before = 0

    def _started(self) -> Gateway:
        gateway = Gateway(self.config)
        gateway.start()
        return gateway

    def restart(self) -> None:
        self.current.stop()
        self._dead_letters_before += self.current.stats.dead_letters
        self.current = self._started()
        self.restarts += 1

    def stop(self) -> None:
        self.current.stop()

    @property
    def dead_letters(self) -> int:
        return self._dead_letters_before + self.current.stats.dead_letters


def _fresh_state(state_dir: Path) -> None:
    # Each demo run starts with nothing of an earlier run: no alerts, outbox or registry,
    # and no gateway state.  The same seed gives the same edges, devices and sequence
    # numbers, so an earlier run's duplicate window (in the detection snapshot) would drop
    # every reading of this one; its InfluxDB spool was for another server.
    gateway_files = (SNAPSHOT_FILE, SPOOL_FILE, DEAD_LETTER_FILE)
    for name in (ALERTS_FILE, OUTBOX_FILE, CALLBACK_LEDGER_FILE, REGISTRY_FILE, *gateway_files):
        for suffix in ("", "-wal", "-shm"):
            (state_dir / (name + suffix)).unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)


def _scores(state_dir: Path, estates: int) -> dict[str, Any]:
    from alerts.store import AlertStore
    from score.cli import explain_card, render_report
    from score.config import ScoreConfig
    from score.estate import score_report
    from score.grades import ALL

    with RegistryStore(state_dir / REGISTRY_FILE) as registry_store:
        estate_registry = registry_store.load()
    with AlertStore(state_dir / ALERTS_FILE) as alert_store:
        report = score_report(estate_registry, alert_store, int(time.time() * 1000), ScoreConfig())
    print()
    print(render_report(report, "table", list_estates=estates <= 10))
    lowest = min(report.cards, key=lambda card: card.score)
    print()
    print(f"jiayuan score --estate {lowest.estate}  (the lowest score, line by line):")
    print(explain_card(lowest, "table"))
    city = next(d for d in report.distributions if d.district == ALL)
    return {
        "estates": len(report.cards),
        "grades": {grade.zh: n for grade, n in city.counts.items()},
        "pct_dabiao_or_better": round(city.pct_dabiao_or_better, 1),
        "pct_guifan_or_better": round(city.pct_guifan_or_better, 1),
        "pct_shifan": round(city.pct_shifan, 1),
        "meets_targets": city.meets_targets,
        "shortfalls": city.shortfalls(),
        "top_ten": [c.company for c in report.companies if c.top_ten],
        "lowest": {"estate": lowest.estate, "score": lowest.score, "grade": lowest.grade.zh},
    }


def _previews(client: InfluxClient, out: Path) -> dict[str, Any]:
    from dashboards.collection import all_dashboards
    from dashboards.preview import preview_all, time_range

    span = time_range(start=None, end=None, last="15m", now_ms=int(time.time() * 1000))
    every = {"district": "all", "street": "all", "estate": "all"}
    results = preview_all(client, all_dashboards(), out, span, every)
    empty = [f"{r.title}: {p.title}" for r in results for p in r.empty_panels]
    quiet = [f"{r.title}: {p.title}" for r in results for p in r.quiet_panels]
    panels = sum(len(r.panels) for r in results)
    print(
        f"dashboards: {len(results)} previews in {out}, {panels} panels, "
        f"{panels - len(empty) - len(quiet)} with data, {len(quiet)} quiet (no events)"
        + (f"; empty: {empty}" if empty else "")
    )
    return {
        "previews": len(results),
        "panels": panels,
        "empty_panels": empty,
        "quiet_panels": quiet,
    }


async def _run_edges(
    config: Config,
    registry: Registry,
    faults: Sequence[Fault],
    clock: SimClock,
    seed: int,
    duration_s: float,
    out_dir: Path,
    counter: KindCounter,
    gateway: Gateways,
    restart: bool,
    dead: Fault | None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    agents = []
    background = []
    faulty = {fault.device for fault in faults} | ({dead.device} if dead else set())
    hopping = hop_estates(registry.estates, faulty)
    for estate in registry.estates:
        driver: Driver = SimulatedDriver(registry, estate.id, faults, clock.start_ms, seed)
        if estate.id in hopping:
            # Some healthy devices cross real protocols: Modbus TCP and GB/T 26875.3
            # (tools/demo_devices.py).
            modbus, fire = hopping[estate.id]
            healthy = [d.id for d in estate.devices if d.id not in faulty]
            hops = ProtocolHops(
                driver, estate, healthy, clock.now_ms, clock.speed, modbus=modbus, fire=fire
            )
            counter.hops.append(hops)
            background.append(hops)
            driver = hops
        if dead is not None and dead.estate == estate.id:
            driver = DyingDriver(driver, dead.device, dead.start_ms)
        driver = CountingDriver(driver, counter)
        place = EdgePlace(estate.district, estate.street, estate.id, estate.edge_id)
        spool = out_dir / "spools" / f"{estate.id}.sqlite"
        spool.parent.mkdir(parents=True, exist_ok=True)
        spool.unlink(missing_ok=True)  # each demo run starts from an empty spool
        agents.append(
            EdgeAgent(
                config.mqtt,
                config.edge,
                place,
                driver,
                spool,
                clock=clock.now_ms,
                poll_interval_s=0.5,
            )
        )
    tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
    tasks += [asyncio.create_task(hops.run(stop)) for hops in background]
    real_duration = duration_s / clock.speed
    started = time.monotonic()
    next_progress = PROGRESS_EVERY_S
    restart_at = real_duration / 2 if restart else None
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if elapsed >= real_duration:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(0.5, real_duration - elapsed))
        if restart_at is not None and time.monotonic() - started >= restart_at:
            restart_at = None
            print("restarting the gateway (the edges spool meanwhile) …", flush=True)
            # In a thread: the edge agents keep reading their devices while it restarts.
            await asyncio.to_thread(gateway.restart)
            print("gateway restarted", flush=True)
        if time.monotonic() - started >= next_progress:
            next_progress += PROGRESS_EVERY_S
            _print_progress(clock.elapsed_s(), agents, counter, gateway.current)
    if stop.is_set():
        print("stopping early (signal received)")
    stop.set()
    await asyncio.gather(*tasks)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    return sum(agent.stats.pending for agent in agents)


def _print_progress(
    elapsed: float, agents: list[EdgeAgent], counter: KindCounter, gateway: Gateway
) -> None:
    acked = sum(agent.stats.readings_acked for agent in agents)
    stats = gateway.stats
    by_kind = Counter(anomaly.kind for anomaly in gateway.anomalies())
    anomalies = ", ".join(f"{kind} {count}" for kind, count in sorted(by_kind.items())) or "none"
    print(
        f"[{elapsed:5.0f}s] read {sum(counter.by_kind.values())}, published {acked}, "
        f"stored {stats.readings_stored}, dead letters {stats.dead_letters}; "
        f"anomalies: {anomalies}",
        flush=True,
    )


def _wait_until_stored(config: Config, published: int) -> None:
    # Counted in InfluxDB, not by the gateway's counters: those start again at a restart,
    # and a reading redelivered after it is counted twice but stored once.
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    with InfluxClient(config.influx) as client:
        while time.monotonic() < deadline:
            if sum(stored_readings_by_kind(client).values()) >= published:
                return
            time.sleep(0.5)


def _wait_for_offline_checks(gateway: Gateway) -> None:
    # The dead-man check runs on a timer; one more period lets it see the final silence.
    time.sleep(1.5)


def _label(fault: Fault) -> FaultLabel:
    return FaultLabel(
        fault_id=fault.fault_id,
        kind=fault.kind.value,
        fault_type=fault.fault_type,
        expected_code=fault.expected_code,
        estate=fault.estate,
        device=fault.device,
        start_ms=fault.start_ms,
        end_ms=fault.end_ms,
    )
