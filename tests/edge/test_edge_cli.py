"""``jiayuan edge run`` on simulated devices (needs the simulators package)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.spool import Spool
from tests.support.process_output import read_line_with
from tools.edge_cli import add_parser
from tools.servers import RunningServers

registry_module = pytest.importorskip("simulators.registry")
pytest.importorskip("simulators.driver")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jiayuan")
    parser.add_argument("--config")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def write_registry(path: Path) -> str:
    registry = registry_module.build_registry(1, 7)
    path.write_text(registry.to_json(), encoding="utf-8")
    estate_id: str = registry.estates[0].id
    return estate_id


def test_unknown_estate_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_registry(tmp_path / "registry.json")
    args = parse(["edge", "run", "--registry", str(tmp_path / "registry.json"), "--estate", "x"])
    assert args.func(args) == 2
    assert "input error" in capsys.readouterr().out


def test_edge_without_action_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["edge"])
    assert args.func(args) == 2
    assert "run" in capsys.readouterr().out


@pytest.mark.servers
def test_run_publishes_until_sigterm_then_drains(servers: RunningServers, tmp_path: Path) -> None:
    estate = write_registry(tmp_path / "registry.json")
    spool = tmp_path / "spool.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env["JIAYUAN_MQTT_URL"] = servers.mqtt_url
    command = [sys.executable, "-m", "tools.cli", "edge", "run", "--registry",
               str(tmp_path / "registry.json"), "--estate", estate, "--spool", str(spool),
               "--poll-interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running = read_line_with(process, "edge agent running", timeout_s=60)
    time.sleep(2.0)  # some polls published
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    output = running + output
    assert process.returncode == 0, output
    assert "edge agent running" in output
    stopped = re.search(r"stopped: (\d+) read, (\d+) published, (\d+) still spooled", output)
    assert stopped is not None, output
    read, published, spooled = map(int, stopped.groups())
    assert read > 0 and published == read and spooled == 0
    reopened = Spool(spool)
    assert reopened.pending() == 0
    reopened.close()
