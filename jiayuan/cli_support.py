"""Small pieces every subcommand shares: usage fallback and the log-level option."""

from __future__ import annotations

import argparse
import logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def print_usage(parser: argparse.ArgumentParser) -> int:
    """For a command group called without its action: show what it offers, exit 2."""
    parser.print_help()
    return 2


# Libraries that log each request or connection at INFO: httpx a line per InfluxDB write,
# nearly all of a busy gateway's log.  Kept at WARNING unless the level asked for is DEBUG.
CHATTY_LIBRARIES = (
    "httpx",
    "httpcore",
    "urllib3",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "paho",
    "aiomqtt",
    "asyncio",
    "multipart",
    "python_multipart",
)


def add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        choices=LOG_LEVELS,
        help=f"default: {default}; the libraries' own logs (httpx, uvicorn, paho) show "
        "from WARNING unless DEBUG",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(
                max(logging.WARNING, logging.getLevelNamesMapping()[level])
            )
