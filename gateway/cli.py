"""``jiayuan gateway run``: the gateway in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from dataclasses import replace
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from gateway.detection.restart_memory import CLEAN_STOP_KEEPS, CRASH_KEEPS
from jiayuan.cli_support import add_log_level, print_usage, setup_logging
from jiayuan.config import BUILT_IN, Config, ConfigError, load
from jiayuan.state import SERVICES_FILE, SNAPSHOT_FILE

READY_WAIT_S = 10.0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="网关 the gateway: MQTT ingest, validation, detection, InfluxDB, HTTP API",
        description="家园网关 Jiayuan gateway: receives readings over MQTT, checks them, drops "
        "duplicates, detects anomalies, writes to InfluxDB and serves an HTTP API.",
    )
    parser.set_defaults(func=lambda args: print_usage(parser))
    commands = parser.add_subparsers(dest="gateway_command", metavar="ACTION")
    run = commands.add_parser(
        "run",
        help="run until interrupted (SIGINT or SIGTERM)",
        description="Run the gateway in the foreground until SIGINT or SIGTERM, then flush, "
        "acknowledge and disconnect cleanly, and save the detection state "
        f"({CLEAN_STOP_KEEPS}) to {SNAPSHOT_FILE} in the state directory for the next "
        f"start; a start without one reads the {CRASH_KEEPS} back from InfluxDB "
        "(docs/architecture.md).",
    )
    run.add_argument(
        "--streets",
        metavar="S1,S2",
        help="the streets this instance owns, separated by commas, or '+' for all "
        "(overrides [mqtt] street_filter; docs/scaling.md)",
    )
    run.add_argument(
        "--client-id",
        metavar="ID",
        help="this instance's MQTT persistent-session client id, distinct per instance "
        "(overrides [mqtt] gateway_client_id)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N gateway processes on this host, the named streets dealt out between "
        "them, each with client id <id>-wK, state directory <state_dir>/wK and API port "
        "api_port+K-1 (default: 1; docs/scaling.md)",
    )
    # Set by the --workers supervisor on its workers (gateway/workers.py), not by people.
    run.add_argument("--supervisor-pid", type=int, default=0, help=argparse.SUPPRESS)
    add_log_level(run, "INFO")
    run.set_defaults(func=_run)


def with_overrides(config: Config, streets: str | None, client_id: str | None) -> Config:
    """The configuration with the command line's --streets and --client-id, checked."""
    from gateway.transport.ingest import owned_streets

    mqtt = config.mqtt
    if streets is not None:
        mqtt = replace(mqtt, street_filter=streets)
    if client_id is not None:
        if not client_id.strip():
            raise ConfigError("--client-id: empty; give each gateway instance its own id")
        mqtt = replace(mqtt, gateway_client_id=client_id)
    owned_streets(mqtt.street_filter)  # a bad filter stops the start with its reason
    return replace(config, mqtt=mqtt)


def unconfigured_and_silent(config: Config) -> list[str]:
    """The URLs of the servers that nobody configured or started and that nothing answers
    at their built-in address: waiting for those would be waiting for ever."""
    influx = urlsplit(config.influx.url)
    addresses = {
        "mqtt.url": (config.mqtt.url, config.mqtt.host, config.mqtt.port),
        "influx.url": (config.influx.url, influx.hostname or "127.0.0.1", influx.port or 8086),
    }
    silent = []
    for key, (url, host, port) in addresses.items():
        if config.origins.get(key) != BUILT_IN:
            continue  # configured: if it is down, the gateway waits for it and says so
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            silent.append(url)
    return silent


def no_servers_message(config: Config, silent: list[str]) -> str:
    return (
        f"没有服务器 no servers: nothing configured and nothing answers at {', '.join(silent)} "
        f"(the built-in defaults). Start private ones with 'jiayuan services up' (every "
        f"command finds them in {config.state.path / SERVICES_FILE}), or name yours: "
        "[mqtt] url / $JIAYUAN_MQTT_URL, [influx] url / $JIAYUAN_INFLUX_URL."
    )


def _run(args: argparse.Namespace) -> int:
    from gateway.service import Gateway  # heavy imports only when running
    from gateway.workers import plan_workers, run_workers, stop_with_supervisor

    setup_logging(args.log_level)
    try:
        config = with_overrides(
            load(getattr(args, "config", None)),
            getattr(args, "streets", None),
            getattr(args, "client_id", None),
        )
        workers = getattr(args, "workers", 1)
        plan = plan_workers(config, workers) if workers != 1 else []
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}")
        return 2
    silent = unconfigured_and_silent(config)
    if silent:
        print(no_servers_message(config, silent), flush=True)
        return 2
    print(f"网关启动中 gateway starting: {config.servers_text()}", flush=True)
    if plan:
        return run_workers(plan, getattr(args, "config", None), args.log_level)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    supervisor_pid = getattr(args, "supervisor_pid", 0)
    if supervisor_pid and not stop_with_supervisor(supervisor_pid):
        # The set is gone already: start nothing that would hold its streets.
        print(f"监控进程已退出 supervisor {supervisor_pid} gone; not starting", flush=True)
        return 1
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    gateway = Gateway(config)
    try:
        gateway.start()
        # Said once the subscription is in place (readings sent before it, to a session
        # the broker does not know yet, would not be kept for this gateway).
        ready = gateway.wait_ready(READY_WAIT_S)
        print(
            (
                "网关已启动 gateway running"
                if ready
                else "网关等待 MQTT gateway waiting for the broker"
            )
            + f": MQTT {config.mqtt.url} ({config.origin_of('mqtt.url')}) as "
            f"{config.mqtt.gateway_client_id!r} (filter {gateway.ingest.topic_filter}), "
            f"InfluxDB {config.influx.url} ({config.origin_of('influx.url')}), "
            f"API {gateway.api_url} (/health /anomalies /dead-letters /metrics /docs)",
            flush=True,
        )
        stop.wait()
        print("正在停止 stopping…", flush=True)
    finally:
        gateway.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = gateway.stats
    print(
        f"已停止 stopped: {stats.messages} messages, {stats.readings_stored} readings stored, "
        f"{stats.duplicates} duplicates, {stats.dead_letters} dead letters",
        flush=True,
    )
    for line in gateway.leftover().describe():
        print(line, flush=True)
    return 0
