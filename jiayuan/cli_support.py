"""Small pieces every subcommand shares: usage fallback and the log-level option."""

from __future__ import annotations

import argparse
import logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def print_usage(parser: argparse.ArgumentParser) -> int:
    """For a command group called without its action: show what it offers, exit 2."""
    parser.print_help()
    return 2


def add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level", default=default, choices=LOG_LEVELS, help=f"default: {default}"
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
