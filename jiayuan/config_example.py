"""Write ``jiayuan.example.toml``: every section and key of the configuration, its default
and its comment, generated from ``jiayuan.config`` so the example cannot drift from it.

The comments are the ones above each field in ``jiayuan/config.py`` (a field without one
stops the generator), the section headings the classes' docstrings.  Every key is
commented out, so a copy of the file changes nothing until a line is uncommented; a test
uncomments them all and checks the result loads, without warnings, to the defaults.
Regenerate with ``python -m jiayuan.config_example --write jiayuan.example.toml``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from jiayuan import config, state

EXAMPLE_FILE = "jiayuan.example.toml"
# A state directory to show the keys whose default lies under it.
SHOWN_STATE_DIR = "/var/lib/jiayuan"

HEADER = f"""\
# 家园 Jiayuan: every configuration key with its default (generated from jiayuan/config.py
# by `python -m jiayuan.config_example --write {EXAMPLE_FILE}`; do not edit by hand).
#
# Copy it to ./jiayuan.toml, or name it with --config FILE or $JIAYUAN_CONFIG, and
# uncomment what you change.  Environment variables JIAYUAN_<SECTION>_<KEY> override the
# file (JIAYUAN_INFLUX_URL).  Any key may be read from a file instead: <key>_file
# (password_file = "/run/secrets/mqtt"), which keeps secrets out of this one.
"""


def field_comments(section: type[Any]) -> dict[str, list[str]]:
    """The comment lines directly above each field of a section's class, without ``#``."""
    source = textwrap.dedent(inspect.getsource(section))
    lines = source.splitlines()
    (cls,) = ast.parse(source).body
    assert isinstance(cls, ast.ClassDef)
    comments: dict[str, list[str]] = {}
    for statement in cls.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above: list[str] = []
        row = statement.lineno - 2  # the line above, 0-based
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row].strip().removeprefix("#").strip())
            row -= 1
        comments[statement.target.id] = above
    return comments


def toml_value(value: Any) -> str:
    """A default as TOML: strings in JSON's escapes, which TOML's basic strings share."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"no TOML form for a default of type {type(value).__name__}")


def _default(item: dataclasses.Field[Any]) -> tuple[Any, bool]:
    """The field's default, and whether it is derived from the state directory."""
    if item.default is not dataclasses.MISSING:
        return item.default, False
    if item.default_factory is dataclasses.MISSING:
        raise ValueError(f"{item.name} has no default")
    return item.default_factory(), True


def render_section(name: str, section: type[Any]) -> str:
    doc = inspect.getdoc(section)
    if not doc:
        raise ValueError(f"[{name}] ({section.__name__}) has no docstring to head it")
    comments = field_comments(section)
    out = [*(f"# {line}".rstrip() for line in doc.splitlines()), f"[{name}]"]
    for item in dataclasses.fields(section):
        lines = comments.get(item.name)
        if not lines:
            raise ValueError(f"{name}.{item.name} has no comment in jiayuan/config.py")
        out.append("")
        out += [f"# {line}".rstrip() for line in lines]
        value, under_state_dir = _default(item)
        shown = f"# {item.name} = {toml_value(value)}"
        if under_state_dir:
            shown += f"  # with [state] dir = {toml_value(SHOWN_STATE_DIR)}"
        out.append(shown)
    return "\n".join(out)


def render() -> str:
    """The example file's text."""
    previous = os.environ.get(state.ENV_STATE_DIR)
    # Defaults under the state directory are shown for one fixed directory, so the file is
    # the same on every machine.
    os.environ[state.ENV_STATE_DIR] = SHOWN_STATE_DIR
    try:
        sections = [render_section(name, cls) for name, cls in config._SECTIONS.items()]
    finally:
        if previous is None:
            del os.environ[state.ENV_STATE_DIR]
        else:
            os.environ[state.ENV_STATE_DIR] = previous
    return HEADER + "\n" + "\n\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", metavar="FILE", help="write the example to FILE")
    args = parser.parse_args(argv)
    if args.write:
        Path(args.write).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
