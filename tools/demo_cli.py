"""``jiayuan demo``: its command line; the demo itself (tools.demo) is imported to run."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.detection.restart_memory import CLEAN_STOP_KEEPS


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline with simulated estates and injected faults",
        description="Start Mosquitto and InfluxDB on free loopback ports (installing them from "
        "Debian packages when missing and run as root), simulate N estates with labelled "
        "faults, run one edge agent per estate (a few healthy devices read over Modbus TCP "
        "and GB/T 26875.3), the gateway with its API and alert service, "
        "the reference operations centre, a mail catcher and a duty officer; print live "
        "progress, the estates' grades against the district targets and the company "
        "ranking, render the dashboards' previews (OUT/previews), then a report of readings "
        "published vs stored in InfluxDB, faults injected vs detected, and work orders, "
        "time to acknowledge and time to resolve. Exit status 0 when everything was stored "
        "and detected and every critical alert reached the centre once within 5 s.",
    )
    parser.add_argument("--estates", type=int, default=5, help="number of estates (default 5)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of traffic (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second (default 1: real time); the simulation "
        "runs ahead of the wall clock, so keep duration × (1 - 1/speed) under 5 minutes",
    )
    parser.add_argument("--report", metavar="FILE.json", help="write the report as JSON here")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=".jiayuan/demo",
        help="where the registry, fault labels, edge spools, gateway state and previews go "
        "(default .jiayuan/demo)",
    )
    parser.add_argument(
        "--use-configured-servers",
        action="store_true",
        help="use the MQTT broker and InfluxDB from the configuration instead of starting "
        "private ones",
    )
    parser.add_argument(
        "--api-port", type=int, default=0, help="gateway API port (default: a free one)"
    )
    parser.add_argument(
        "--restart-gateway",
        action="store_true",
        help="stop the gateway cleanly half-way and start it again (shows that no reading "
        "is lost and no work order duplicated across a restart; the new gateway takes back "
        f"the {CLEAN_STOP_KEEPS})",
    )
    parser.add_argument(
        "--no-preview",
        action="store_true",
        help="skip rendering the dashboards' previews (OUT/previews/*.png)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tools.demo import run_command

    return run_command(args)
