"""``jiayuan edge run``: one estate's edge agent on simulated devices, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jiayuan.cli_support import add_log_level, print_usage, setup_logging
from jiayuan.config import ConfigError, load

if TYPE_CHECKING:
    from edge.agent import EdgeAgent

PROGRESS_EVERY_S = 5.0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "edge",
        help="边缘代理 the edge agent: devices → durable spool → MQTT",
        description="家园边缘代理 Jiayuan edge agent: reads an estate's devices, keeps every "
        "reading in a durable spool and publishes it to the broker with QoS 1, losing "
        "nothing while the broker or the network is away.",
    )
    parser.set_defaults(func=lambda args: print_usage(parser))
    commands = parser.add_subparsers(dest="edge_command", metavar="ACTION")
    run = commands.add_parser(
        "run",
        help="run one estate's agent on simulated devices until interrupted",
        description="Run the edge agent of one estate of the registry on simulated devices, "
        "printing progress every few seconds, until SIGINT or SIGTERM; "
        "then poll once more, drain the spool for a few seconds, announce 'offline' and "
        "disconnect. Readings left in the spool are sent at the next start.",
    )
    run.add_argument(
        "--registry",
        metavar="PATH",
        help="the registry: the SQLite store of 'jiayuan registry generate|import', a CSV "
        "directory or .yaml file of 'registry export', or the registry.json of 'jiayuan "
        "simulate' (default: the store, [alerts] registry_db or "
        "<state dir>/gateway/registry.sqlite)",
    )
    run.add_argument("--estate", required=True, metavar="ID", help="the estate id to run")
    run.add_argument(
        "--labels",
        metavar="FILE",
        help="fault labels JSON (labels.json of 'jiayuan simulate') whose faults the "
        "simulated devices of this estate inject (default: no faults)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="K",
        help="random seed of the simulated devices (default: 1)",
    )
    run.add_argument(
        "--start",
        default="now",
        metavar="TIME",
        help="simulated start: 'now', epoch milliseconds, or ISO 8601 (Shanghai time when "
        "no zone is given); use the start of the run that wrote --labels so its faults "
        "happen (default: now)",
    )
    run.add_argument(
        "--spool",
        metavar="FILE",
        help="the agent's SQLite spool; reuse it across restarts so sequence numbers "
        "continue and unsent readings are replayed (default: <edge.spool_dir>/<estate>.sqlite)",
    )
    run.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between two polls of the devices (default: 1)",
    )
    add_log_level(run, "WARNING")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Heavy and optional parts only when running.
    import asyncio

    from edge.agent import EdgeAgent, EdgePlace
    from jiayuan.registry.store import registry_path
    from jiayuan.timezone import parse_start
    from simulators.driver import SimulatedDriver
    from simulators.faults import read_labels
    from simulators.product_registry import simulated_registry

    setup_logging(args.log_level)
    try:
        config = load(getattr(args, "config", None))
        path = Path(args.registry) if args.registry else registry_path(config)
        if not args.registry and not path.is_file():
            print(
                f"没有登记簿 no registry at {path}: make one with 'jiayuan registry generate' "
                "(or 'registry import'), or name one with --registry"
            )
            return 2
        registry = simulated_registry(path)
        estate = registry.estate(args.estate)
        faults = read_labels(args.labels) if args.labels else []
        start_ms = parse_start(args.start)
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}")
        return 2
    except (OSError, ValueError, KeyError) as error:
        print(f"输入错误 input error: {error}")
        return 2
    spool = Path(args.spool or Path(config.edge.spool_dir) / f"{estate.id}.sqlite")
    agent = EdgeAgent(
        config.mqtt,
        config.edge,
        EdgePlace(estate.district, estate.street, estate.id, estate.edge_id),
        SimulatedDriver(registry, estate.id, faults, start_ms, args.seed),
        spool,
        poll_interval_s=args.poll_interval,
    )
    print(
        f"边缘代理已启动 edge agent running: estate {estate.id} ({len(estate.devices)} devices), "
        f"MQTT {config.mqtt.url} ({config.origin_of('mqtt.url')}), registry {path}, "
        f"spool {spool} ({agent.stats.pending} readings waiting)",
        flush=True,
    )
    asyncio.run(_until_signal(agent))
    stats = agent.stats
    print(
        f"已停止 stopped: {stats.samples_read} read, {stats.readings_acked} published, "
        f"{stats.pending} still spooled, {stats.reconnects} reconnects",
        flush=True,
    )
    return 0


async def _until_signal(agent: EdgeAgent) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(agent.run(stop))
    stopping = asyncio.create_task(stop.wait())
    started = time.monotonic()
    try:
        while not stop.is_set() and not task.done():
            await asyncio.wait(
                {task, stopping}, timeout=PROGRESS_EVERY_S, return_when=asyncio.FIRST_COMPLETED
            )
            if not stop.is_set() and not task.done():
                _print_progress(time.monotonic() - started, agent)
        if stop.is_set():
            print("正在停止 stopping…", flush=True)
        await task
    finally:
        stopping.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _print_progress(elapsed: float, agent: EdgeAgent) -> None:
    stats = agent.stats
    link = "connected" if stats.connected else "DISCONNECTED, spooling"
    print(
        f"[{elapsed:5.0f}s] read {stats.samples_read}, published {stats.readings_acked} "
        f"in {stats.messages_acked} messages, spooled {stats.pending}, {link}, "
        f"reconnects {stats.reconnects}",
        flush=True,
    )
