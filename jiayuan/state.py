"""Where Jiayuan keeps its state on this machine: one directory, and the names in it.

Every command finds the same directory, wherever it runs from: ``--state-dir DIR`` (the
``jiayuan`` option), else ``$JIAYUAN_STATE_DIR``, else ``[state] dir`` of the
configuration, else ``$XDG_STATE_HOME/jiayuan`` (``~/.local/state/jiayuan``).  The service
units of docs/operations.md use ``/var/lib/jiayuan``.  In it:

- ``services.json``: the servers ``jiayuan services up`` started, which the other commands
  use unless the configuration names servers of its own;
- ``gateway/``: the gateway's SQLite stores (``gateway.state_dir``), among them the
  registry ``registry.sqlite`` unless ``[alerts] registry_db`` names another;
- ``edge/``: the edge agents' spools (``edge.spool_dir``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jiayuan.pids import pid_runs

ENV_STATE_DIR = "JIAYUAN_STATE_DIR"
SERVICES_FILE = "services.json"
GATEWAY_DIR = "gateway"
EDGE_DIR = "edge"
REGISTRY_FILE = "registry.sqlite"
# The files in ``gateway/`` (``gateway.state_dir``); SNAPSHOT_FILE is the detection snapshot
# a clean stop leaves (gateway/detection/snapshot.py).
ALERTS_FILE = "alerts.sqlite"
DEAD_LETTER_FILE = "dead_letters.sqlite"
SNAPSHOT_FILE = "detector_state.sqlite"
SPOOL_FILE = "influx_spool.sqlite"
CALLBACK_LEDGER_FILE = "callbacks.sqlite"
OUTBOX_FILE = "outbox.sqlite"
# Beside the outbox: what each group robot sent when (its rate limits survive restarts;
# unless [alerts] robot_ledger_db names one shared by several instances), and the signed
# alert-page links handed out.
ROBOT_LEDGER_FILE = "robot_sends.sqlite"
LINKS_FILE = "links.sqlite"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user state directory: $XDG_STATE_HOME/jiayuan, else ~/.local/state/jiayuan."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_STATE_HOME", "")
    # The XDG spec ignores a relative value.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "jiayuan"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "jiayuan"


@dataclass(frozen=True)
class RecordedServers:
    """The servers a ``jiayuan services up`` recorded, as the other commands reach them."""

    state_file: Path
    mqtt_url: str
    influx_url: str
    # A secured broker (`services up --secure`): the gateway's account.
    mqtt_username: str = ""
    mqtt_password_file: str = ""


def recorded_servers(state_file: Path) -> RecordedServers | None:
    """The servers recorded in ``state_file`` if both still run, else None.

    A file left by servers that are gone (a reboot, a kill) is ignored rather than
    followed to ports where nothing listens.
    """
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
        running = pid_runs(
            int(data["mosquitto_pid"]), Path(str(data["mosquitto_conf"]))
        ) and pid_runs(int(data["influxd_pid"]), Path(str(data["influxdb_conf"])))
        if not running:
            return None
        return RecordedServers(
            state_file=state_file,
            mqtt_url=str(data["mqtt_url"]),
            influx_url=str(data["influx_url"]),
            mqtt_username=str(data.get("gateway_username", "")),
            mqtt_password_file=str(data.get("gateway_password_file", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or unreadable: `jiayuan services status` says what is wrong with it.
        return None
