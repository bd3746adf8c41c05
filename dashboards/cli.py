"""``jiayuan dashboards build | push | preview``: Grafana dashboards as code."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from jiayuan.cli_support import print_usage
from jiayuan.config import Config, ConfigError, load

TOKEN_ENV = "JIAYUAN_GRAFANA_TOKEN"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboards",
        help="看板 Grafana dashboards: build provisioning files, push, preview as PNG",
        description="家园看板 Jiayuan's Grafana dashboards as code: write them with "
        "provisioning files, upload them through Grafana's HTTP API, or preview every "
        "panel against InfluxDB without Grafana.",
    )
    parser.set_defaults(func=lambda args: print_usage(parser))
    commands = parser.add_subparsers(dest="dashboards_command", metavar="ACTION")

    build = commands.add_parser(
        "build",
        help="write dashboard JSON and Grafana provisioning files",
        description="Validate every dashboard against Grafana's model and write "
        "OUT/dashboards/*.json, OUT/provisioning/datasources/jiayuan.yaml (InfluxDB from "
        "the [influx] config, secrets as $JIAYUAN_INFLUX_PASSWORD/$JIAYUAN_INFLUX_TOKEN) "
        "and OUT/provisioning/dashboards/jiayuan.yaml.",
    )
    build.add_argument("--out", required=True, type=Path, metavar="DIR")
    build.add_argument(
        "--dashboards-path",
        metavar="PATH",
        help="where the Grafana server will read the JSON files (default: OUT/dashboards "
        "as an absolute path on this machine)",
    )
    build.set_defaults(func=_build)

    push = commands.add_parser(
        "push",
        help="upload the dashboards through Grafana's HTTP API",
        description="Create the folder if needed and save every dashboard in it, "
        "overwriting earlier versions. The token may also come from $" + TOKEN_ENV + ".",
    )
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument("--token", help=f"service-account token (default: ${TOKEN_ENV})")
    push.add_argument("--folder", default=None, help="folder title (default: 家园 Jiayuan)")
    push.add_argument(
        "--datasource-uid",
        default=None,
        help="point the dashboards at this existing datasource instead of jiayuan-influxdb",
    )
    push.add_argument(
        "--with-datasource",
        action="store_true",
        help="also create or update the InfluxDB datasource from the [influx] config",
    )
    push.set_defaults(func=_push)

    preview = commands.add_parser(
        "preview",
        help="run every panel's queries against InfluxDB and draw one PNG per dashboard",
        description="Fill the template variables (first value, or --var), run every "
        "panel's InfluxQL against the configured InfluxDB and write OUT/<uid>.png. Exits "
        "1 when a query fails or a panel that must have data (telemetry, scores) returns "
        "none; panels of events (anomalies, alerts, escalations) may be empty, as they are "
        "when nothing happens, and are listed as quiet.",
    )
    preview.add_argument("--out", required=True, type=Path, metavar="DIR")
    preview.add_argument("--from", dest="start", help="range start: ISO 8601 or epoch ms")
    preview.add_argument("--to", dest="end", help="range end: ISO 8601 or epoch ms")
    preview.add_argument("--last", help="relative range ending now, e.g. 15m, 6h (default 6h)")
    preview.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="choose a variable's value (repeatable; VALUE 'all' for every value)",
    )
    preview.add_argument("--dashboard", action="append", default=[], metavar="UID",
                         help="only these dashboards (repeatable)")  # fmt: skip
    preview.set_defaults(func=_preview)


def _config(args: argparse.Namespace) -> Config | None:
    try:
        return load(getattr(args, "config", None))
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}", file=sys.stderr)
        return None


def _build(args: argparse.Namespace) -> int:
    from dashboards.collection import all_dashboards
    from dashboards.provisioning import build
    from dashboards.validate import DashboardInvalid

    config = _config(args)
    if config is None:
        return 2
    try:
        written = build(args.out, config.influx, all_dashboards(), args.dashboards_path)
    except DashboardInvalid as error:
        print(f"看板无效 invalid dashboard: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _push(args: argparse.Namespace) -> int:
    from dashboards.collection import all_dashboards
    from dashboards.push import PushError, push

    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"no Grafana token: give --token or set ${TOKEN_ENV}", file=sys.stderr)
        return 2
    config = _config(args)
    if config is None:
        return 2
    options: dict[str, Any] = {}
    if args.folder:
        options["folder_title"] = args.folder
    if args.datasource_uid:
        options["datasource_uid"] = args.datasource_uid
    try:
        pushed = push(
            all_dashboards(),
            args.url,
            token,
            influx=config.influx if args.with_datasource else None,
            **options,
        )
    except PushError as error:
        print(f"上传失败 push failed: {error}", file=sys.stderr)
        return 1
    for board in pushed:
        print(f"{board.uid}  v{board.version}  {board.title}  {board.url}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from dashboards.collection import all_dashboards
    from dashboards.preview import PreviewError, preview_all, time_range
    from jiayuan.influx import InfluxClient, InfluxError

    config = _config(args)
    if config is None:
        return 2
    try:
        given = dict(_pair(text) for text in args.var)
        span = time_range(
            start=args.start, end=args.end, last=args.last, now_ms=time.time_ns() // 1_000_000
        )
        models = [m for m in all_dashboards() if not args.dashboard or m["uid"] in args.dashboard]
        missing = set(args.dashboard) - {m["uid"] for m in models}
        if missing:
            raise PreviewError(f"unknown dashboard uid(s): {', '.join(sorted(missing))}")
        print(f"InfluxDB {config.influx.url} ({config.origin_of('influx.url')})", flush=True)
        with InfluxClient(config.influx) as client:
            previews = preview_all(client, models, args.out, span, given)
    except (PreviewError, InfluxError) as error:
        print(f"预览失败 preview failed: {error}", file=sys.stderr)
        return 2
    from dashboards.emptiness import empty_means

    empty = quiet = 0
    for board in previews:
        chosen = ", ".join(f"{k}={v}" for k, v in board.variables.items())
        print(f"{board.png}  {board.title}  [{chosen}]  {len(board.panels)} panels")
        for panel in board.quiet_panels:
            quiet += 1
            print(f"  无事件 quiet  {panel.title}: {empty_means(panel.panel)}")
        for panel in board.empty_panels:
            empty += 1
            why = panel.error or "no series"
            print(f"  无数据 EMPTY  {panel.title}: {why}")
            for query in panel.queries:
                print(f"      {query}")
    panels = sum(len(b.panels) for b in previews)
    queries = sum(len(p.queries) for b in previews for p in b.panels)
    print(
        f"{len(previews)} dashboards, {panels} panels, {queries} queries, {empty} empty, "
        f"{quiet} quiet (events panels with nothing to show)"
    )
    return 1 if empty else 0


def _pair(text: str) -> tuple[str, str]:
    from dashboards.preview import PreviewError

    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise PreviewError(f"--var {text!r}: expected NAME=VALUE, e.g. estate=ziteng-mingdi")
    return name, value
