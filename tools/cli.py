"""The ``jiayuan`` console script: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from jiayuan import __version__, extras
from jiayuan.state import ENV_STATE_DIR

# Each module exposes ``add_parser(subparsers)``, which registers its subcommand and sets
# ``func`` (taking the parsed args, returning an exit code).  The modules keep their heavy
# imports inside ``func`` so that building the parser stays fast.
SUBCOMMAND_MODULES = (
    "tools.servers_cli",
    "tools.demo_cli",
    "gateway.cli",
    "gateway.detect_cli",
    "tools.edge_cli",
    "simulators.cli",
    "tools.evaluation_cli",
    "dashboards.cli",
    "tools.registry_cli",
    "score.cli",
    "tools.opscentre_cli",
    "alerts.outbox_cli",
    "jiayuan.api_token_cli",
    "tools.chaos_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jiayuan",
        description="家园 Jiayuan — IoT safety monitoring for residential estates "
        "(lifts, fire systems, water tanks, e-bike charging, waterlogging).",
    )
    parser.add_argument("--version", action="version", version=f"jiayuan {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $JIAYUAN_CONFIG, else ./jiayuan.toml if "
        "present); JIAYUAN_<SECTION>_<KEY> environment variables override it",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the state directory: servers of 'services up', gateway state, registry, edge "
        f"spools (default: ${ENV_STATE_DIR}, else [state] dir, else "
        "$XDG_STATE_HOME/jiayuan or ~/.local/state/jiayuan)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _state_dir(args.state_dir):
            code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as error:
        # A package of an optional group (pyproject.toml) this install does not have.
        message = extras.explain(error, f"jiayuan {args.command}")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`jiayuan score | head`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


@contextlib.contextmanager
def _state_dir(chosen: str | None) -> Iterator[None]:
    """--state-dir for this command: as $JIAYUAN_STATE_DIR, which every configuration load
    and every process the command starts (gateway workers, edge agents) then sees."""
    if chosen is None:
        yield
        return
    before = os.environ.get(ENV_STATE_DIR)
    os.environ[ENV_STATE_DIR] = str(Path(chosen).expanduser().absolute())
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV_STATE_DIR]
        else:
            os.environ[ENV_STATE_DIR] = before


if __name__ == "__main__":
    sys.exit(main())
