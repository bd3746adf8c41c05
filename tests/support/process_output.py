"""Reading a child process's output while it runs."""

from __future__ import annotations

import select
import subprocess
import time


def read_line_with(process: subprocess.Popen[str], text: str, timeout_s: float) -> str:
    """The first line of the child's stdout holding ``text`` (lines before it are read and
    dropped); AssertionError when none comes within ``timeout_s`` or the child ends."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if text in line:
                return line
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"no line with {text!r} in time")
