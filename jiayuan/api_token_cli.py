"""``jiayuan api token create|list|revoke``: API tokens for the gateway's HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jiayuan.cli_support import print_usage

ROLES = ("ops_centre", "property_manager", "viewer")


def add_parser(subparsers: Any) -> None:
    api = subparsers.add_parser(
        "api",
        help="HTTP API: tokens with roles and reach",
        description="The gateway's HTTP API (docs/security_api.md).",
    )
    api.set_defaults(func=lambda _args: print_usage(api))
    groups = api.add_subparsers(dest="group", metavar="GROUP")
    token = groups.add_parser(
        "token",
        help="make, list and revoke API tokens",
        description="API tokens, kept as SHA-256 hashes in the tokens file the gateway reads "
        "([api] tokens_file or $JIAYUAN_API_TOKENS_FILE, unless --tokens-file). The gateway "
        "reads the file at start: restart it after a change.",
    )
    token.set_defaults(func=lambda _args: print_usage(token))
    actions = token.add_subparsers(dest="action", metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="make a token: printed once on stdout, its hash stored",
        description="Make a token for one holder. The token is printed once on stdout (and "
        "stored nowhere); its SHA-256 goes into the tokens file. ops_centre needs --streets, "
        "property_manager --estates (and no streets), viewer either.",
    )
    create.add_argument("--name", required=True, help="holder, shown in logs and history")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument(
        "--streets", nargs="+", default=[], metavar="STREET", help='street ids, or "*" for all'
    )
    create.add_argument("--estates", nargs="+", default=[], metavar="ESTATE", help="estate ids")
    _tokens_file(create)
    create.set_defaults(func=_create)

    listing = actions.add_parser(
        "list", help="names, roles and reach (no hashes)", description="List the tokens."
    )
    _tokens_file(listing)
    listing.set_defaults(func=_list)

    revoke = actions.add_parser(
        "revoke", help="remove a token by name", description="Remove a token by its name."
    )
    revoke.add_argument("name", help="the token's name")
    _tokens_file(revoke)
    revoke.set_defaults(func=_revoke)


def _tokens_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="default: [api] tokens_file of the configuration ($JIAYUAN_API_TOKENS_FILE)",
    )


def _split(values: list[str]) -> list[str]:
    """``--streets a b`` and ``--streets a,b`` alike."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _path(args: argparse.Namespace) -> str | None:
    from jiayuan.config import ConfigError, load

    try:
        configured = load(getattr(args, "config", None)).api.tokens_file
    except ConfigError as error:
        print(f"配置错误 configuration error: {error}", file=sys.stderr)
        return None
    chosen: str = args.tokens_file or configured
    if not chosen:
        print(
            "没有令牌文件 no tokens file: set [api] tokens_file (or $JIAYUAN_API_TOKENS_FILE), "
            "which the gateway reads, or give --tokens-file",
            file=sys.stderr,
        )
        return None
    if configured and args.tokens_file and args.tokens_file != configured:
        print(f"note: the gateway configured here reads {configured}", file=sys.stderr)
    return chosen


def _create(args: argparse.Namespace) -> int:
    from jiayuan.api_auth import AuthFileError, Role
    from jiayuan.api_tokens import create_token

    path = _path(args)
    if path is None:
        return 1
    streets, estates = _split(args.streets), _split(args.estates)
    try:
        token = create_token(path, args.name, Role(args.role), streets, estates)
    except AuthFileError as error:
        print(f"未创建 not created: {error}", file=sys.stderr)
        return 1
    reach = ", ".join([*(f"street {s}" for s in streets), *(f"estate {e}" for e in estates)])
    print(
        f"token {args.name!r} ({args.role}; {reach}): its SHA-256 is in {path}. The token "
        "below is shown this once: give it to its holder. Restart the gateway to load it.",
        file=sys.stderr,
    )
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    from jiayuan.api_auth import AuthFileError
    from jiayuan.api_tokens import list_tokens

    path = _path(args)
    if path is None:
        return 1
    try:
        entries = list_tokens(path)
    except AuthFileError as error:
        print(str(error), file=sys.stderr)
        return 1
    for entry in entries:
        reach = [*(f"street {s}" for s in entry.streets), *(f"estate {e}" for e in entry.estates)]
        print(f"{entry.name}\t{entry.role}\t{', '.join(reach)}")
    print(f"{len(entries)} tokens in {path}", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from jiayuan.api_auth import AuthFileError
    from jiayuan.api_tokens import revoke_token

    path = _path(args)
    if path is None:
        return 1
    try:
        revoke_token(path, args.name)
    except (AuthFileError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f"未撤销 not revoked: {message}", file=sys.stderr)
        return 1
    print(
        f"token {args.name!r} removed from {path}; restart the gateway to refuse it",
        file=sys.stderr,
    )
    return 0
