"""``jiayuan gateway run``'s last lines say what waits for the next start: batches still in
the InfluxDB spool on disk (gateway/leftover.py)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from jiayuan.config import Config
from jiayuan.state import SPOOL_FILE
from tests.gateway.test_gateway_spool import message_readings
from tests.support.mqtt_publisher import Publisher
from tests.support.process_output import read_line_with
from tools.servers import free_port


def spooled_batches(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not made yet
            return 0


def test_the_stop_summary_names_what_is_still_spooled(
    config: Config, publisher: Publisher, tmp_path: Path
) -> None:
    state_dir = tmp_path / "gateway"
    spool = state_dir / SPOOL_FILE
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "JIAYUAN_MQTT_URL": config.mqtt.url,
        "JIAYUAN_MQTT_GATEWAY_CLIENT_ID": config.mqtt.gateway_client_id,
        # Nothing listens there: every batch goes to the spool.
        "JIAYUAN_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
        "JIAYUAN_INFLUX_TIMEOUT_S": "0.5",
        "JIAYUAN_GATEWAY_STATE_DIR": str(state_dir),
        "JIAYUAN_GATEWAY_API_PORT": str(free_port()),
        "JIAYUAN_GATEWAY_SPOOL_AFTER_S": "0.3",
        "JIAYUAN_ALERTS_ENABLED": "false",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "gateway", "run", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        read_line_with(process, "gateway running", timeout_s=60)
        for index in range(3):
            publisher.readings(message_readings(index))
        deadline = time.monotonic() + 30
        while spooled_batches(spool) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spooled_batches(spool) > 0, "nothing was spooled"
        time.sleep(1.0)  # the rest of the three messages
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    found = re.search(
        r"still spooled on disk: (\d+) batches, (\d+) lines, (\d+) bytes in (\S+)", out
    )
    assert found, out
    batches, lines, _, path = found.groups()
    assert int(batches) == spooled_batches(spool)
    assert int(lines) >= 90  # three messages of 30 readings
    assert Path(path) == spool


def test_nothing_left_is_said_too() -> None:
    from gateway.leftover import Leftover

    assert Leftover(Path("s")).describe() == [
        "无遗留 nothing left: InfluxDB spool empty, every message acknowledged"
    ]
    left = Leftover(Path("s"), unacknowledged=4, outbox={"pending": 2, "parked": 0})
    text = "\n".join(left.describe())
    assert "4 MQTT messages" in text and "2 pending" in text and "parked" not in text
