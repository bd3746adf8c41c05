"""``jiayuan services install|up|down|status``: real Mosquitto and InfluxDB for a person.

``up`` starts both servers on free loopback ports, detached so they outlive the command,
and records them in ``services.json`` of the state directory (jiayuan.state); ``status``
and ``down`` read that file, and every other command uses the servers it records unless
the configuration names its own.  ``up`` also prints shell ``export`` lines (its other
lines are shell comments), for tools that read the environment only.
``up --secure`` starts the broker with the project's accounts and ACL (one account per
estate of ``--registry``/``--estate``, see docs/security.md) and, with ``--tls-cert`` and
``--tls-key``, a TLS listener beside the plain loopback one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jiayuan.cli_support import print_usage
from jiayuan.state import SERVICES_FILE

if TYPE_CHECKING:
    from jiayuan.broker_auth import EstatePlace
    from tools.servers import RunningServers, SecureBroker

# tools.servers (httpx, paho) and jiayuan.broker_auth are imported by the actions that
# use them, so that building the parser stays fast (tests/tools/test_cli_startup.py).

EXIT_NOT_RUNNING = 3


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "services",
        help="start, stop and check local Mosquitto and InfluxDB servers",
        description="Run the real Mosquitto and InfluxDB servers on free loopback ports, "
        "with all their files in one directory, for the demo and for development.",
    )
    parser.set_defaults(func=lambda args: print_usage(parser))
    commands = parser.add_subparsers(dest="services_command", metavar="ACTION")

    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state",
        metavar="FILE",
        type=Path,
        help=f"state file recording the running servers (default: {SERVICES_FILE} in the "
        "state directory, where the other commands look for them)",
    )

    install = commands.add_parser(
        "install",
        help="install mosquitto, mosquitto-clients and influxdb from Debian when missing",
        description="Install the Debian packages mosquitto, mosquitto-clients (mosquitto_pub "
        "and mosquitto_sub, used by hand in docs/protocol.md) and influxdb if their "
        "binaries are missing (needs root; their system daemons are not started).",
    )
    install.set_defaults(func=_install)

    up = commands.add_parser(
        "up",
        parents=[state],
        help="start both servers in the background",
        description="Start Mosquitto and InfluxDB on free ports of 127.0.0.1, detached, and "
        f"record them in {SERVICES_FILE} of the state directory: the other jiayuan "
        "commands use them from there unless the configuration names servers of its own "
        "([mqtt] url, [influx] url, $JIAYUAN_MQTT_URL, $JIAYUAN_INFLUX_URL). Also prints "
        "them as 'export JIAYUAN_…=…' lines for eval.",
    )
    up.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        help="data directory for both servers, kept by 'down' (default: a new temporary "
        "directory, removed by 'down')",
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="broker with accounts and an ACL: each estate's edge account may publish only "
        "under its own estate's topics; no anonymous clients (docs/security.md)",
    )
    up.add_argument(
        "--registry",
        metavar="FILE",
        type=Path,
        help="with --secure: make an edge account for every estate of this registry "
        "(the SQLite store, a CSV directory or YAML of 'registry export', or a "
        "simulator registry.json)",
    )
    up.add_argument(
        "--estate",
        metavar="DISTRICT/STREET/ESTATE",
        action="append",
        default=[],
        help="with --secure: make an edge account for this estate (repeatable)",
    )
    up.add_argument(
        "--tls-cert", metavar="FILE", type=Path, help="with --secure: server certificate (PEM)"
    )
    up.add_argument(
        "--tls-key", metavar="FILE", type=Path, help="with --secure: its private key (PEM)"
    )
    up.set_defaults(func=_up)

    down = commands.add_parser(
        "down",
        parents=[state],
        help="stop the servers started by 'up'",
        description="Stop the servers recorded in the state file and remove their data "
        "directory if 'up' created it.",
    )
    down.set_defaults(func=_down)

    status = commands.add_parser(
        "status",
        parents=[state],
        help="say whether the servers are running and answering",
        description="Check the servers recorded in the state file; exit 0 when both are "
        f"running and answering, {EXIT_NOT_RUNNING} when not.",
    )
    status.set_defaults(func=_status)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _state_file(args: argparse.Namespace) -> Path:
    """--state, else services.json in the configured state directory."""
    from jiayuan.config import load

    if args.state is not None:
        return Path(args.state)
    return load(getattr(args, "config", None)).state.path / SERVICES_FILE


def _load_state(path: Path) -> RunningServers | None:
    from tools.servers import RunningServers, ServicesError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise ServicesError(f"{path}: unreadable services state: {error}") from None
    if not isinstance(data, dict):
        raise ServicesError(f"{path}: services state is not a JSON object")
    return RunningServers.from_dict(data)


def _save_state(path: Path, servers: RunningServers) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(servers.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _print_servers(servers: RunningServers, state: Path) -> None:
    print(f"# mosquitto  {servers.mqtt_url}  (pid {servers.mosquitto_pid})")
    if servers.mqtt_tls_url:
        print(f"# mqtt TLS   {servers.mqtt_tls_url}  (certificate {servers.tls_cert_file})")
    print(f"# influxdb   {servers.influx_url}  (pid {servers.influxd_pid})")
    print(f"# data dir   {servers.data_dir}")
    print(f"# state      {state}   (stop with: jiayuan services down)")
    print("# the other jiayuan commands use these servers unless configured otherwise")
    print(f"export JIAYUAN_MQTT_URL={servers.mqtt_url}")
    print(f"export JIAYUAN_INFLUX_URL={servers.influx_url}")
    if servers.auth is not None:
        # The gateway's account for this shell; each edge agent gets its own estate's.
        print(f"# accounts   {servers.auth.directory}  ({len(servers.auth.edges)} estates)")
        for place, account in servers.auth.edges.items():
            print(
                f"#   {place.topic_root}: username {account.username}, "
                f"password_file {account.secret_file}"
            )
        print(f"export JIAYUAN_MQTT_USERNAME={servers.auth.gateway.username}")
        print(f"export JIAYUAN_MQTT_PASSWORD_FILE={servers.auth.gateway.secret_file}")


def _security(args: argparse.Namespace) -> SecureBroker | None:
    """The broker security asked for on the command line (None without --secure)."""
    from jiayuan.broker_auth import EstatePlace
    from tools.servers import SecureBroker, ServicesError

    if not args.secure:
        if args.registry or args.estate or args.tls_cert or args.tls_key:
            raise ServicesError("--registry, --estate, --tls-cert and --tls-key need --secure")
        return None
    places = list(_registry_places(args.registry)) if args.registry else []
    for text in args.estate:
        parts = text.split("/")
        if len(parts) != 3:
            raise ServicesError(f"--estate {text!r}: expected DISTRICT/STREET/ESTATE")
        places.append(EstatePlace(*parts))
    return SecureBroker(tuple(dict.fromkeys(places)), args.tls_cert, args.tls_key)


def _registry_places(path: Path) -> tuple[EstatePlace, ...]:
    # Imported here: the plain `services up` needs neither registry.
    from jiayuan.broker_auth import places_of
    from jiayuan.registry.tables import RegistryInvalid
    from simulators.product_registry import simulated_registry
    from tools.servers import ServicesError

    try:
        return places_of(simulated_registry(path).estates)
    except RegistryInvalid as error:
        raise ServicesError(f"--registry: {error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ServicesError(f"--registry {path}: not a registry: {error}") from None


def _install(args: argparse.Namespace) -> int:
    from tools.servers import ServicesError, ensure_installed, find_binary

    try:
        ensure_installed()
    except ServicesError as error:
        print(f"jiayuan services install: {error}", file=sys.stderr)
        return 1
    for name in ("mosquitto", "mosquitto_pub", "influxd"):
        print(f"{name + ':':<15}{find_binary(name)}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from jiayuan.broker_auth import BrokerAuthError
    from jiayuan.config import ConfigError
    from tools.servers import ServicesError, start_servers

    try:
        state_path = _state_file(args)
        previous = _load_state(state_path)
        if previous is not None:
            if previous.mosquitto_running() and previous.influxd_running():
                # Idempotent: a second `up` prints the same servers again.
                _print_servers(previous, state_path)
                return 0
            # Stale state (a reboot, or servers killed by hand): clean up what is left.
            previous.stop()
        security = _security(args)
        data_dir = args.dir.resolve() if args.dir is not None else None
        servers = start_servers(data_dir, install=True, detached=True, secure=security)
        try:
            _save_state(state_path, servers)
        except OSError:
            servers.stop()
            raise
    except (ServicesError, BrokerAuthError, ConfigError, OSError) as error:
        print(f"jiayuan services up: {error}", file=sys.stderr)
        return 1
    _print_servers(servers, state_path)
    return 0


def _down(args: argparse.Namespace) -> int:
    from jiayuan.config import ConfigError
    from tools.servers import ServicesError

    try:
        state_path = _state_file(args)
        servers = _load_state(state_path)
        if servers is None:
            print(f"no servers recorded in {state_path}: nothing to stop")
            return 0
        servers.stop()
    except (ServicesError, ConfigError, OSError) as error:
        print(f"jiayuan services down: {error}", file=sys.stderr)
        return 1
    state_path.unlink(missing_ok=True)
    with_dir = "" if servers.owns_data_dir else f" (data kept in {servers.data_dir})"
    print(f"stopped mosquitto and influxdb{with_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from jiayuan.config import ConfigError
    from tools.servers import ServicesError

    try:
        state_path = _state_file(args)
        servers = _load_state(state_path)
    except (ServicesError, ConfigError) as error:
        print(f"jiayuan services status: {error}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if servers is None:
        print(f"no servers recorded in {state_path}: start them with 'jiayuan services up'")
        return EXIT_NOT_RUNNING
    mosquitto_running = servers.mosquitto_running()
    influxd_running = servers.influxd_running()
    rows = (
        (
            "mosquitto",
            servers.mqtt_url,
            servers.mosquitto_pid,
            mosquitto_running,
            mosquitto_running and servers.mqtt_answers(),
        ),
        (
            "influxdb",
            servers.influx_url,
            servers.influxd_pid,
            influxd_running,
            influxd_running and servers.influx_answers(),
        ),
    )
    for name, url, pid, running, answering in rows:
        state = (
            "not running"
            if not running
            else "running, " + ("answering" if answering else "NOT answering")
        )
        print(f"{name:<10} {state:<24} {url}  (pid {pid})")
    return 0 if all(row[4] for row in rows) else EXIT_NOT_RUNNING
