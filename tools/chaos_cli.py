"""``jiayuan chaos``: the fault-injection harness from the command line (see docs/chaos.md)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chaos",
        help="混沌测试 run simulator traffic while killing the gateway, restarting "
        "Mosquitto, stopping InfluxDB and cutting an uplink; count what was lost",
        description="Start private Mosquitto and InfluxDB servers on loopback, run the "
        "gateway as its own process and one edge agent per simulated estate, and while "
        "they run: SIGKILL the gateway and start it again, restart Mosquitto, stop InfluxDB "
        "(60 s in the full profile), and cut one estate's uplink for 5 minutes of simulated "
        "time.  Then print readings published, stored, lost and duplicated (counted in "
        "InfluxDB by device and seq), alerts raised against the fault labels, and work "
        "orders per alert at the reference operations centre, and the work orders the cut "
        "estate's outage sent (one is wanted).  Exit status 0 when nothing was lost or "
        "duplicated, no alert or work order was duplicated and the cut estate sent one "
        "work order.",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="the short profile (2 estates, ~1 minute, a 5 s InfluxDB outage) used by tests",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=".jiayuan/chaos",
        help="where labels, spools, gateway state and its log go (default .jiayuan/chaos)",
    )
    parser.add_argument("--report", metavar="FILE.json", help="also write the report as JSON")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from jiayuan import config as config_module
    from tools.chaos import FULL, SHORT, ChaosError, format_report, run_chaos
    from tools.servers import ServicesError, start_servers

    try:
        base = config_module.load(args.config)
    except config_module.ConfigError as error:
        print(f"配置错误 configuration error: {error}", file=sys.stderr)
        return 2
    profile = SHORT if args.short else FULL
    try:
        servers = start_servers()
    except ServicesError as error:
        print(f"服务器无法启动 servers did not start: {error}", file=sys.stderr)
        return 2
    try:
        config = config_module.with_servers(base, servers.mqtt_url, servers.influx_url)
        config = replace(
            config,
            influx=replace(config.influx, api="v1", database="jiayuan_chaos"),
            mqtt=replace(config.mqtt, gateway_client_id="jiayuan-chaos-gateway"),
        )
        report = run_chaos(config, servers, profile, Path(args.out), args.seed)
    except ChaosError as error:
        print(f"混沌测试失败 chaos run failed: {error}", file=sys.stderr)
        return 2
    finally:
        servers.stop()
    print(format_report(report))
    if args.report:
        Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        print(f"report written to {args.report}")
    return 0 if report["ok"] else 1
