"""``jiayuan registry import|export|generate|show``: the product registry from the shell.

The registry lives in SQLite at ``[alerts] registry_db`` (by default
``<gateway.state_dir>/registry.sqlite``) unless ``--db`` names another file.  Import and
export take a directory (one CSV file per table) or a ``.yaml``/``.yml`` file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from jiayuan.cli_support import print_usage


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "registry",
        help="小区登记簿 estate registry: import, export, generate or show",
        description="The estate registry: districts, streets, property companies, estates, "
        "buildings and devices, kept in SQLite.",
    )
    parser.set_defaults(func=lambda _args: print_usage(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    def with_db(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--db",
            metavar="FILE",
            help="registry SQLite file (default: [alerts] registry_db, else "
            "<gateway.state_dir>/registry.sqlite)",
        )

    imp = actions.add_parser(
        "import",
        help="replace the registry with CSV files or a YAML file",
        description="Validate PATH (a directory of <table>.csv files or a .yaml file) and, "
        "only if every row is valid, replace the stored registry with it. Every problem is "
        "listed with its file, row and field.",
    )
    imp.add_argument(
        "path",
        metavar="PATH",
        help="a directory holding districts.csv, streets.csv, companies.csv, estates.csv, "
        "buildings.csv and devices.csv (UTF-8, a byte-order mark allowed), or a .yaml/.yml "
        "file as written by `registry export`",
    )
    with_db(imp)
    imp.set_defaults(func=run_import)

    exp = actions.add_parser(
        "export",
        help="write the registry as CSV files or YAML",
        description="Write the stored registry to PATH: a .yaml/.yml file, or a directory "
        "that gets one CSV file per table.",
    )
    exp.add_argument(
        "path",
        metavar="PATH",
        help="a .yaml/.yml file, or a directory (made if missing) for one CSV file per table",
    )
    with_db(exp)
    exp.set_defaults(func=run_export)

    gen = actions.add_parser(
        "generate",
        help="generate a realistic registry from the simulators' estates",
        description="Build the simulators' registry (N estates, seed K, or read it from "
        "--from registry.json) and store the product registry made from it.",
    )
    gen.add_argument(
        "--estates", type=int, default=200, metavar="N", help="how many estates (default: 200)"
    )
    gen.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="K",
        help="the same seed gives the same registry (default: 1)",
    )
    gen.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="the simulators' registry.json (as written by jiayuan simulate or the demo)",
    )
    gen.add_argument(
        "--as-of",
        default="",
        metavar="DATE",
        help="date the inspection and assessment dates are relative to (default: today)",
    )
    gen.add_argument("--export", metavar="PATH", help="also export it (directory or .yaml)")
    with_db(gen)
    gen.set_defaults(func=run_generate)

    show = actions.add_parser(
        "show",
        help="list the estates, or show one estate with its buildings and devices",
        description="Without ESTATE: one line per estate (id, name, district, street, housing "
        "category, property company). With ESTATE: that estate's details and every device "
        "in it, with install, inspection and assessment dates.",
    )
    show.add_argument(
        "estate",
        nargs="?",
        metavar="ESTATE",
        help="an estate id, as in the first column of the list (default: list them all)",
    )
    show.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for reading, json for programs (default: table)",
    )
    with_db(show)
    show.set_defaults(func=run_show)


def db_path(args: argparse.Namespace) -> Path:
    from jiayuan.config import load
    from jiayuan.registry.store import registry_path

    if args.db:
        return Path(args.db)
    return registry_path(load(getattr(args, "config", None)))


def _read(path: str) -> Any:
    from jiayuan.registry.files import import_csv, import_yaml

    return import_yaml(path) if path.endswith((".yaml", ".yml")) else import_csv(path)


def _write(registry: Any, path: str) -> str:
    from jiayuan.registry.files import export_csv, export_yaml

    if path.endswith((".yaml", ".yml")):
        return str(export_yaml(registry, path))
    export_csv(registry, path)
    return f"{path}/<table>.csv"


def _load(args: argparse.Namespace) -> Any:
    """The stored registry, or None after saying on stderr why it cannot be read."""
    from jiayuan.config import ConfigError
    from jiayuan.registry.store import RegistryStore
    from jiayuan.registry.tables import RegistryInvalid

    try:
        path = db_path(args)
        if not path.is_file():
            print(f"没有登记簿 no registry at {path}", file=sys.stderr)
            return None
        with RegistryStore(path) as store:
            return store.load()
    except (ConfigError, RegistryInvalid) as error:
        print(f"无法读取登记簿 cannot read the registry: {error}", file=sys.stderr)
        return None


def run_import(args: argparse.Namespace) -> int:
    from jiayuan.config import ConfigError
    from jiayuan.registry.store import RegistryStore
    from jiayuan.registry.tables import RegistryInvalid

    try:
        registry = _read(args.path)
        target = db_path(args)
    except RegistryInvalid as invalid:
        print(f"登记簿无效 registry not imported: {invalid}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}", file=sys.stderr)
        return 2
    with RegistryStore(target) as store:
        store.replace(registry)
    print(
        f"已导入 imported {len(registry.estates)} estates, {len(registry.buildings)} buildings, "
        f"{len(registry.devices)} devices into {target}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    registry = _load(args)
    if registry is None:
        return 1
    print(f"已导出 exported {len(registry.estates)} estates to {_write(registry, args.path)}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from jiayuan.registry.store import RegistryStore
    from simulators.registry import Registry, build_registry
    from tools.registry_generate import generate_registry

    if args.source:
        simulated = Registry.from_json(Path(args.source).read_text(encoding="utf-8"))
    else:
        if args.estates < 1:
            print("--estates must be at least 1", file=sys.stderr)
            return 2
        simulated = build_registry(args.estates, args.seed)
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else date.today()
    except ValueError:
        print(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    try:
        registry = generate_registry(simulated, args.seed, as_of)
    except ValueError as invalid:
        print(f"登记簿无效 registry not generated: {invalid}", file=sys.stderr)
        return 1
    target = db_path(args)
    with RegistryStore(target) as store:
        store.replace(registry)
    print(
        f"已生成 generated {len(registry.estates)} estates of {len(registry.companies)} "
        f"property companies, {len(registry.devices)} devices into {target}"
    )
    if args.export:
        print(f"已导出 exported to {_write(registry, args.export)}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from jiayuan.registry.api import devices_out, estate_summary

    registry = _load(args)
    if registry is None:
        return 1
    if args.estate:
        try:
            record = registry.record(args.estate)
        except KeyError as error:
            print(error.args[0], file=sys.stderr)
            return 1
        summary = estate_summary(record).model_dump()
        devices = [d.model_dump(mode="json") for d in devices_out(record)]
        if args.format == "json":
            print(json.dumps({**summary, "devices": devices}, ensure_ascii=False, indent=1))
            return 0
        for key, value in summary.items():
            print(f"{key:>12}  {value}")
        print()
        print(
            f"{'device':<28} {'kind':<14} {'building':<12} {'installed':<11} "
            f"{'inspected':<11} {'assessed':<11} ports  model"
        )
        for d in devices:
            print(
                f"{d['id']:<28} {d['kind']:<14} {d['building']:<12} {d['installed']:<11} "
                f"{d['last_inspection'] or '-':<11} {d['last_assessment'] or '-':<11} "
                f"{d['ports'] or '':<6} {d['model']}"
            )
        return 0
    rows = [estate_summary(r).model_dump() for r in registry.records()]
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    print(
        f"{'estate':<26} {'小区 name':<12} {'district':<10} {'street':<12} "
        f"{'category':<17} {'company'}"
    )
    for row in rows:
        print(
            f"{row['id']:<26} {row['name_zh']:<12} {row['district']:<10} {row['street']:<12} "
            f"{row['category']:<17} {row['company_zh']}"
        )
    print(f"{len(rows)} estates")
    return 0
