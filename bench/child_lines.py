"""The JSON-lines exchange between a benchmark and the child processes it starts: a child
says one JSON object a line on its standard output, the parent reads the next one."""

from __future__ import annotations

import json
import subprocess
from typing import IO, Any


def say(stream: IO[str], **fields: Any) -> None:
    stream.write(json.dumps(fields) + "\n")
    stream.flush()


def expect(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    """The child's next JSON line; a dead child is an error naming the mode."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the {what} process ended early (exit {process.wait()})")
    result: dict[str, Any] = json.loads(line)
    return result
