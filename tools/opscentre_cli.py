"""``jiayuan opscentre``: the reference operations centre in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from jiayuan.cli_support import add_log_level, setup_logging


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "opscentre",
        help="参考运营中心 reference operations centre: receives work orders, calls back",
        description="参考运营中心 Reference operations centre, standing in for the street "
        "网格化 platform: verifies each work order's signature (X-Jiayuan-Signature) and "
        "schema, stores it once per Idempotency-Key (POST /workorders; GET /workorders "
        "lists them, GET /tickets shows callbacks), and with --accept-after calls the "
        "gateway's callback URL to accept, then (--complete-after) complete each order.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="listen port (0: any free one)")
    parser.add_argument(
        "--secret-file",
        type=Path,
        required=True,
        help="file holding the HMAC secret shared with the gateway ([alerts] webhook_secret)",
    )
    parser.add_argument(
        "--db", type=Path, required=True, help="SQLite file for received work orders"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the gateway's callback bearer token ([alerts] callback_token); "
        "needed with --accept-after",
    )
    parser.add_argument(
        "--accept-after",
        type=float,
        metavar="S",
        help="call back 'accepted' S seconds after a work order arrives (default: never)",
    )
    parser.add_argument(
        "--complete-after",
        type=float,
        metavar="S",
        help="call back 'completed' S seconds after accepting (default: never)",
    )
    add_log_level(parser, "INFO")
    parser.set_defaults(func=_run)


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SystemExit(f"{what} {path}: cannot read: {error.strerror}") from None
    if not text:
        raise SystemExit(f"{what} {path} is empty")
    return text


def _run(args: argparse.Namespace) -> int:
    from tools.opscentre import ReferenceOpsCentre  # heavy imports only when running

    setup_logging(args.log_level)
    if args.complete_after is not None and args.accept_after is None:
        print("--complete-after needs --accept-after (an order is completed once accepted)")
        return 2
    for name in ("accept_after", "complete_after"):
        if (getattr(args, name) or 0) < 0:
            print(f"--{name.replace('_', '-')} must not be negative")
            return 2
    if args.accept_after is not None and args.token_file is None:
        print("--accept-after needs --token-file (the gateway's callback token)")
        return 2
    secret = _read(args.secret_file, "--secret-file")
    token = _read(args.token_file, "--token-file") if args.token_file else ""
    centre = ReferenceOpsCentre(
        args.db,
        secret,
        token=token,
        accept_after_s=args.accept_after,
        complete_after_s=args.complete_after,
        host=args.host,
        port=args.port,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        centre.start()
        print(
            f"参考运营中心已启动 reference operations centre: POST {centre.workorders_url}, "
            f"GET {centre.workorders_url}, GET {centre.url}/tickets",
            flush=True,
        )
        stop.wait()
    finally:
        centre.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"已停止 stopped; work orders kept in {args.db}", flush=True)
    return 0
