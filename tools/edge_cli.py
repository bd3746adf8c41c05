"""``jiayuan edge run``: one estate's edge agent on simulated devices, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.profile import SHIPPED_PROFILES
from jiayuan.cli_support import add_log_level, print_usage, setup_logging
from jiayuan.config import ConfigError, load

if TYPE_CHECKING:
    from edge.agent import EdgeAgent
    from edge.devices import ModbusDevice

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
        help="run one estate's agent until interrupted",
        description="Run the edge agent of one estate of the registry (the stored one, or "
        "--registry), "
        "printing progress every few seconds, until SIGINT or SIGTERM; then poll once more, "
        "drain the spool for a few seconds, announce 'stopped' and disconnect. Readings left "
        "in the spool are sent at the next start. A device whose registry entry has a "
        "'connect' object (profile, address, unit) is read over Modbus through its profile "
        "(docs/devices.md); the others are simulated.",
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
    run.add_argument(
        "--profiles",
        metavar="DIR",
        help=f"directory of device profiles (default: the shipped ones, {SHIPPED_PROFILES})",
    )
    run.add_argument(
        "--fire-listen",
        metavar="HOST:PORT",
        help="where GB/T 26875.3 transmission devices connect, for the fire systems whose "
        "'connect' entry has protocol 'gb26875' (e.g. 0.0.0.0:9026)",
    )
    run.add_argument(
        "--vendor-mappings",
        metavar="DIR",
        help="directory of vendor JSON mappings (default: the shipped ones, "
        f"{SHIPPED_PROFILES / 'vendor'})",
    )
    run.add_argument(
        "--vendor-http",
        metavar="HOST:PORT",
        help="where vendor platforms push JSON by HTTP, for devices whose 'connect' entry "
        "has protocol 'json' and an HTTP mapping",
    )
    run.add_argument(
        "--vendor-mqtt",
        metavar="URL",
        help="the broker vendor JSON is published on (default: the agent's own broker)",
    )
    run.add_argument(
        "--no-simulated",
        action="store_true",
        help="read only the devices with a 'connect' entry; simulate none",
    )
    add_log_level(run, "WARNING")
    run.set_defaults(func=_run)
    _add_probe(commands)
    _add_profiles(commands)


def _add_probe(commands: Any) -> None:
    probe = commands.add_parser(
        "probe",
        help="read one device once and print its decoded values",
        description="Read one Modbus device once, through its profile, and print every value "
        "with its unit beside the catalogue's plausible range and the raw registers; or read "
        "a raw register range (--function, --register, --count). For commissioning: exits 1 "
        "when the device cannot be read, with the reason.",
    )
    which = probe.add_argument_group("the device, from the registry")
    which.add_argument(
        "--registry",
        metavar="PATH",
        help="the registry holding the device: the SQLite store, a CSV directory, a .yaml "
        "file or a registry.json",
    )
    which.add_argument("--device", metavar="ID", help="device id with a 'connect' entry")
    direct = probe.add_argument_group("or the device given directly")
    direct.add_argument(
        "--profile", metavar="NAME|FILE", help="profile name (in --profiles) or file"
    )
    direct.add_argument(
        "--address",
        metavar="ADDR",
        help="tcp://HOST:PORT, rtu+tcp://HOST:PORT or serial:///dev/ttyUSB0?baudrate=9600",
    )
    direct.add_argument("--unit", type=int, default=1, metavar="N", help="unit id (default 1)")
    raw = probe.add_argument_group("or a raw register range (with --address and --unit)")
    raw.add_argument("--function", type=int, choices=(1, 2, 3, 4), default=3)
    raw.add_argument("--register", type=int, metavar="ADDR", help="first register (0-based)")
    raw.add_argument("--count", type=int, default=1, metavar="N")
    raw.add_argument(
        "--type",
        choices=("int16", "uint16", "int32", "uint32", "float32", "float64", "string"),
        help="also decode the range as one value of this type",
    )
    raw.add_argument("--order", default="ABCD", choices=("ABCD", "CDAB", "BADC", "DCBA"))
    raw.add_argument("--timeout", type=float, default=1.0, metavar="S")
    probe.add_argument(
        "--profiles", metavar="DIR", help=f"profile directory (default {SHIPPED_PROFILES})"
    )
    add_log_level(probe, "ERROR")
    probe.set_defaults(func=_probe)


def _add_profiles(commands: Any) -> None:
    profiles = commands.add_parser(
        "profiles",
        help="device profiles",
        description="Device profiles: how a device model is read (docs/devices.md).",
    )
    profiles.set_defaults(func=lambda args: print_usage(profiles))
    actions = profiles.add_subparsers(dest="profiles_command", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate every profile of a directory",
        description="Validate every *.toml profile of a directory against the catalogue; "
        "print each error with its file, line and field, and exit 1 when there is one.",
    )
    check.add_argument("directory", metavar="DIR", nargs="?", default=str(SHIPPED_PROFILES))
    check.set_defaults(func=_check_profiles)


def _check_profiles(args: argparse.Namespace) -> int:
    from edge.profile import ProfileError, load_profiles
    from edge.readplan import plan_reads

    try:
        profiles = load_profiles(Path(args.directory))
    except ProfileError as error:
        print(f"配置文件错误 profile errors:\n{error}")
        return 1
    for name, profile in sorted(profiles.items()):
        fields = len(profile.values) + sum(
            1 for s in profile.statuses for b in s.bits if b.field is not None
        )
        print(
            f"ok {name}: {profile.kind.value}, {fields} signals, "
            f"{len(plan_reads(profile))} request(s) per poll every {profile.poll_s:g} s "
            f"({profile.source.split(':')[0]})"
        )
    print(f"{len(profiles)} profiles valid")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from edge.devices import DeviceConfigError, ModbusDevice, parse_address
    from edge.probe import probe_device, probe_raw
    from edge.profile import ProfileError, load_profile, load_profiles

    setup_logging(args.log_level)
    try:
        if args.registry or args.device:
            if not (args.registry and args.device):
                raise ValueError("give --registry and --device together")
            device = _registry_device(Path(args.registry), args.device, _profiles_dir(args))
            result = asyncio.run(probe_device(device))
        elif args.address is None:
            raise ValueError("give --registry and --device, or --address (see --help)")
        elif args.profile is not None:
            endpoint = parse_address(args.address)
            candidate = Path(args.profile)
            if candidate.suffix == ".toml" and candidate.exists():
                profile = load_profile(candidate)
            else:
                profiles = load_profiles(_profiles_dir(args))
                if args.profile not in profiles:
                    raise ValueError(
                        f"no profile {args.profile!r}; known: {', '.join(sorted(profiles))}"
                    )
                profile = profiles[args.profile]
            device = ModbusDevice(
                "probe", profile.kind, "", profile, endpoint, args.unit, profile.poll_s
            )
            result = asyncio.run(probe_device(device))
        elif args.register is not None:
            result = asyncio.run(
                probe_raw(
                    parse_address(args.address),
                    args.unit,
                    args.function,
                    args.register,
                    args.count,
                    args.timeout,
                    args.type,
                    args.order,
                )
            )
        else:
            raise ValueError("with --address give --profile, or --register for a raw read")
    except (ProfileError, DeviceConfigError, ValueError, KeyError, OSError) as error:
        print(f"输入错误 input error: {error}")
        return 2
    for line in result.lines:
        if line:
            print(line)
    return 0 if result.ok else 1


def _profiles_dir(args: argparse.Namespace) -> Path:
    return Path(args.profiles) if args.profiles else SHIPPED_PROFILES


def _registry_device(path: Path, device_id: str, profiles_dir: Path) -> ModbusDevice:
    """The device of the registry (any form) with its ``connect`` entry, checked."""
    from edge.devices import RegistryEstate, connected_devices, registry_entries
    from edge.profile import load_profiles

    for estate_id, entries in registry_entries(path).items():
        for entry in entries:
            if entry.get("id") != device_id:
                continue
            if "connect" not in entry:
                raise ValueError(f"device {device_id} has no 'connect' entry in {path}")
            alone = RegistryEstate(estate_id, "", "", "", (entry,))
            found = connected_devices(alone, load_profiles(profiles_dir))
            if not found:
                raise ValueError(
                    f"device {device_id} is not a Modbus device (its connect protocol is "
                    f"{entry['connect'].get('protocol')!r}): probe reads Modbus devices"
                )
            return found[0]
    raise KeyError(f"no device {device_id!r} in the registry {path}")


def _run(args: argparse.Namespace) -> int:
    # Heavy and optional parts only when running.
    from edge.agent import EdgeAgent, EdgePlace, wall_clock_ms
    from edge.devices import (
        DeviceConfigError,
        RegistryEstate,
        connected_devices,
        fire_link_devices,
        json_devices,
    )
    from edge.drivers import Driver, Drivers
    from edge.gb26875 import FireLinkListener
    from edge.modbus import ModbusDriver
    from edge.profile import ProfileError, load_profiles
    from edge.vendor_json import DeadLetters, VendorJson, load_json_profiles
    from jiayuan.registry.store import registry_path
    from jiayuan.timezone import parse_start
    from simulators.driver import SimulatedDriver
    from simulators.faults import read_labels
    from simulators.product_registry import simulated_registry
    from simulators.registry import Registry

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
        # One read serves both the real devices (their connect entries) and the simulated.
        registry = simulated_registry(path)
        estate = registry.estate(args.estate)
        faults = read_labels(args.labels) if args.labels else []
        start_ms = parse_start(args.start)
        connected = RegistryEstate(
            estate.id,
            estate.district,
            estate.street,
            estate.edge_id,
            tuple(device.edge_entry() for device in estate.devices),
        )
        needs_profiles = any("connect" in d for d in connected.devices)
        profiles = load_profiles(_profiles_dir(args)) if needs_profiles else {}
        real = connected_devices(connected, profiles)
        fire_links = fire_link_devices(connected)
        if fire_links and not args.fire_listen:
            raise ValueError(
                f"{len(fire_links)} fire systems are reached over GB/T 26875.3: "
                "give --fire-listen HOST:PORT"
            )
        listen = _host_port(args.fire_listen) if args.fire_listen else None
        needs_mappings = any(
            isinstance(d.get("connect"), dict) and d["connect"].get("protocol") == "json"
            for d in connected.devices
        )
        mappings = (
            load_json_profiles(
                Path(args.vendor_mappings) if args.vendor_mappings else SHIPPED_PROFILES / "vendor"
            )
            if needs_mappings
            else {}
        )
        vendor = json_devices(connected, mappings)
        if any(d.profile.transport == "http" for d in vendor) and not args.vendor_http:
            raise ValueError("devices push vendor JSON by HTTP: give --vendor-http HOST:PORT")
        vendor_http = _host_port(args.vendor_http) if args.vendor_http else ("127.0.0.1", 0)
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}")
        return 2
    except (ProfileError, DeviceConfigError) as error:
        print(f"设备配置错误 device configuration error:\n{error}")
        return 2
    except (OSError, ValueError, KeyError) as error:
        print(f"输入错误 input error: {error}")
        return 2
    drivers: list[Driver] = []
    if real:
        drivers.append(ModbusDriver(real, wall_clock_ms))
    if fire_links and listen is not None:
        drivers.append(FireLinkListener(listen[0], listen[1], fire_links, wall_clock_ms))
    spool = Path(args.spool or Path(config.edge.spool_dir) / f"{estate.id}.sqlite")
    if vendor:
        dead = DeadLetters(spool.with_name(f"{spool.stem}-vendor-deadletters.jsonl"))
        drivers.append(
            VendorJson(
                vendor,
                dead,
                wall_clock_ms,
                http_host=vendor_http[0],
                http_port=vendor_http[1],
                mqtt_url=args.vendor_mqtt or config.mqtt.url,
            )
        )
    real_ids = {d.id for d in real} | {d.id for d in fire_links} | {d.id for d in vendor}
    simulated = tuple(d for d in estate.devices if d.id not in real_ids)
    if simulated and not args.no_simulated:
        only = Registry((dataclasses.replace(estate, devices=simulated),))
        drivers.append(SimulatedDriver(only, estate.id, faults, start_ms, args.seed))
    agent = EdgeAgent(
        config.mqtt,
        config.edge,
        EdgePlace(estate.district, estate.street, estate.id, estate.edge_id),
        Drivers(*drivers),
        spool,
        poll_interval_s=args.poll_interval,
    )
    shown_simulated = 0 if args.no_simulated else len(simulated)
    running = (
        f"边缘代理已启动 edge agent running: estate {estate.id} ({len(real)} devices over "
        f"Modbus, {len(fire_links)} over GB/T 26875.3, {len(vendor)} by vendor JSON, "
        f"{shown_simulated} simulated), "
        f"MQTT {config.mqtt.url} ({config.origin_of('mqtt.url')}), registry {path}, "
        f"spool {spool} ({agent.stats.pending} readings waiting)"
    )
    failed: BaseException | None = None
    try:
        asyncio.run(_until_signal(agent, running))
    except* OSError as errors:  # a listener's port taken, a serial port that will not open
        failed = errors
        while isinstance(failed, BaseExceptionGroup):
            failed = failed.exceptions[0]
    if failed is not None:
        print(f"启动失败 could not run: {failed}", flush=True)
        return 1
    stats = agent.stats
    print(
        f"已停止 stopped: {stats.samples_read} read, {stats.readings_acked} published, "
        f"{stats.pending} still spooled, {stats.reconnects} reconnects",
        flush=True,
    )
    for driver in drivers:
        if isinstance(driver, ModbusDriver):
            _print_device_health(driver)
        elif isinstance(driver, VendorJson):
            print(
                f"  vendor JSON: {driver.stats.messages} messages, {driver.stats.samples} "
                f"readings, dead-lettered {driver.stats.dead or 'none'}",
                flush=True,
            )
        elif isinstance(driver, FireLinkListener):
            fire = driver.stats
            print(
                f"  GB/T 26875.3: {fire.frames} frames, {fire.confirmed} confirmed, "
                f"{fire.denied} denied, bad frames {fire.bad_frames or 'none'}",
                flush=True,
            )
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--fire-listen {text!r}: want HOST:PORT")
    return host, int(port)


def _print_device_health(driver: Any) -> None:
    for health in driver.health():
        errors = ", ".join(f"{reason} {n}" for reason, n in sorted(health.errors.items()))
        print(
            f"  {health.device} (unit {health.unit} on {health.line}): {health.state}, "
            f"{health.good_polls}/{health.polls} polls good, {health.overruns} overruns"
            + (f"; errors: {errors}" if errors else ""),
            flush=True,
        )


async def _until_signal(agent: EdgeAgent, running: str) -> None:
    """Run the agent until SIGINT or SIGTERM; ``running`` is printed once those are
    handled (a stop from then on drains the spool, one before it ends the process)."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(running, flush=True)
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
