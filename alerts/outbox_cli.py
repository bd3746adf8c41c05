"""``jiayuan alerts outbox list|retry``: see what the outbox holds and retry parked messages.

Works on the outbox file in ``[gateway] state_dir`` whether the gateway runs or not (SQLite
takes both); a running gateway sends what is retried within a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jiayuan.cli_support import print_usage

STATES = ("parked", "pending", "delivered", "all")


def add_parser(subparsers: Any) -> None:
    alerts = subparsers.add_parser(
        "alerts",
        help="告警 alerts: the delivery outbox of work orders and notifications",
        description="告警 Alerts of the gateway (the lifecycle's HTTP API is /alerts).",
    )
    alerts.set_defaults(func=lambda _args: print_usage(alerts))
    groups = alerts.add_subparsers(dest="group", metavar="GROUP")
    outbox = groups.add_parser(
        "outbox",
        help="发件箱 outbox: list messages, retry parked ones",
        description="发件箱 The outbox of work orders and property-manager notifications "
        "(<state_dir>/outbox.sqlite). A message is parked when the receiver refused it "
        "for good or no destination was configured; the gateway retries parked messages "
        "by itself when it starts with their channel configured differently.",
    )
    outbox.set_defaults(func=lambda _args: print_usage(outbox))
    actions = outbox.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser(
        "list", help="messages, newest first, then the counts", description="List messages."
    )
    listing.add_argument(
        "--state", choices=STATES, default="parked", help="which (default: %(default)s)"
    )
    listing.add_argument("--channel", help="workorder, email or manager_webhook")
    listing.add_argument("--limit", type=int, default=100, help="at most (default: %(default)s)")
    listing.set_defaults(func=_list)

    retry = actions.add_parser(
        "retry",
        help="make parked messages due now (by id or key, or --all)",
        description="Make parked messages due now, by id or key, or every one with --all.",
    )
    retry.add_argument("messages", nargs="*", metavar="ID|KEY", help="e.g. 17 or wo:<alert_id>")
    retry.add_argument("--all", action="store_true", help="every parked message")
    retry.set_defaults(func=_retry)


def _outbox_path(args: argparse.Namespace) -> Path | None:
    from jiayuan.config import ConfigError, load
    from jiayuan.state import OUTBOX_FILE

    try:
        config = load(getattr(args, "config", None))
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}", file=sys.stderr)
        return None
    path = Path(config.gateway.state_dir) / OUTBOX_FILE
    if not path.is_file():
        print(
            f"没有发件箱 no outbox at {path}: is [gateway] state_dir the gateway's?",
            file=sys.stderr,
        )
        return None
    return path


def _list(args: argparse.Namespace) -> int:
    from alerts.outbox import MessageState, Outbox
    from alerts.workorder import shanghai_iso

    path = _outbox_path(args)
    if path is None:
        return 1
    state = None if args.state == "all" else MessageState(args.state)
    with Outbox(path) as outbox:
        messages = outbox.messages(state, args.channel, max(1, args.limit))
        counts = outbox.counts()
    for m in messages:
        print(
            f"{m.id:>6}  {m.state.value:<9}  {m.channel:<15}  {m.key}  "
            f"created {shanghai_iso(m.created_ms)}  attempts {m.attempts}"
        )
        if m.last_error:
            print(f"        {m.last_error}")
    print(", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from alerts.outbox import NotParked, Outbox, UnknownMessage

    if bool(args.messages) == bool(args.all):
        print("name parked messages by id or key, or give --all (not both)", file=sys.stderr)
        return 2
    path = _outbox_path(args)
    if path is None:
        return 1
    ids = [int(name) for name in args.messages if name.isdigit()]
    keys = [name for name in args.messages if not name.isdigit()]
    with Outbox(path) as outbox:
        try:
            retried = outbox.retry_parked() if args.all else outbox.retry_named(ids, keys)
        except (UnknownMessage, NotParked) as error:
            print(f"未重试 not retried: {error}", file=sys.stderr)
            return 1
    print(f"{retried} 条暂存消息重新排队 parked messages due again (a running gateway sends them)")
    return 0
