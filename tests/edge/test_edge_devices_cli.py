"""``jiayuan edge probe``, ``jiayuan edge profiles check`` and ``jiayuan edge run`` with real
Modbus devices (pymodbus's server, in a thread of the test)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.profile import SHIPPED_PROFILES
from tests.edge.test_edge_cli import parse, registry_module
from tests.edge.test_edge_gb26875 import SOURCE, frame, system_state
from tests.edge.test_edge_profiles import wire_words
from tests.support.modbus_support import FakeUnit, Mangler, start_server
from tests.support.process_output import read_line_with
from tools.servers import RunningServers, free_port


class ServerThread:
    """pymodbus's TCP server on its own event loop, so the CLI under test can run its own."""

    def __init__(self, units: list[FakeUnit], silent: tuple[int, ...] = ()) -> None:
        self.units = units
        self.silent = silent
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.server, server_port = await start_server(self.units)
        self.mangler = Mangler(server_port, rtu=False)
        self.mangler.faults.update({unit: "silent" for unit in self.silent})
        self.port = await self.mangler.start()

    async def _stop(self) -> None:
        await self.mangler.stop()
        await self.server.shutdown()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def water_quality() -> Iterator[ServerThread]:
    unit = FakeUnit(5)
    for address, value in ((0, 0.38), (2, 0.25), (4, 7.2)):
        unit.set(address, wire_words(value, "float32", "CDAB"))
    silent = FakeUnit(6)
    with ServerThread([unit, silent], silent=(6,)) as server:
        yield server


def test_profiles_check_passes_the_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["edge", "profiles", "check", str(SHIPPED_PROFILES)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ok ebike-pile-10-ports: ebike_charger, 43 signals, 2 request(s) per poll" in out
    assert re.search(r"\d+ profiles valid", out)


def test_profiles_check_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.toml").write_text(
        '[profile]\nname = "x"\nfamily = "fire"\nsource = "example"\n\n[modbus]\npoll_s = 1\n\n'
        '[[value]]\nsignal = "presure"\naddress = 0\ntype = "uint16"\n',
        encoding="utf-8",
    )
    args = parse(["edge", "profiles", "check", str(tmp_path)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad.toml'}:10: value[0].signal: 'presure' is not a signal of fire" in out


def test_probe_through_a_profile_prints_values_units_and_ranges(
    water_quality: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{water_quality.port}"
    args = parse(
        ["edge", "probe", "--address", address, "--unit", "5",
         "--profile", "water-quality-transmitter"]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"free_chlorine\s+0\.38\s+mg/L\s+0\.\.10 mg/L\s+@0: ", out), out
    assert re.search(r"ph\s+7\.2\s+pH\s+0\.\.14 pH", out), out
    assert "1 request(s)" in out


def test_probe_of_a_raw_range_decodes_a_float(
    water_quality: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{water_quality.port}"
    args = parse(
        ["edge", "probe", "--address", address, "--unit", "5", "--register", "4",
         "--count", "2", "--type", "float32", "--order", "CDAB"]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "as float32 CDAB: 7.19999" in out
    assert "    4: 0x" in out


def test_probe_of_a_silent_device_says_why_and_exits_1(
    water_quality: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{water_quality.port}"
    args = parse(
        ["edge", "probe", "--address", address, "--unit", "6", "--profile", "ph-probe-int16"]
    )
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "read failed: timeout: function 3 at 0+1: no answer within 0.5 s" in out
    assert "likely: no answer: wrong unit id" in out


def test_probe_needs_a_device(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["edge", "probe"])
    assert args.func(args) == 2
    assert "give --registry and --device, or --address" in capsys.readouterr().out


def _registry_with_connect(path: Path, port: int) -> tuple[str, str]:
    registry = registry_module.build_registry(1, 7)
    data = json.loads(registry.to_json())
    estate = data["estates"][0]
    tank = next(d for d in estate["devices"] if d["kind"] == "water_tank")
    tank["connect"] = {
        "profile": "water-quality-transmitter",
        "address": f"tcp://127.0.0.1:{port}",
        "unit": 5,
        "poll_s": 0.2,
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(estate["id"]), str(tank["id"])


def test_probe_of_a_registry_device(
    water_quality: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, device = _registry_with_connect(tmp_path / "registry.json", water_quality.port)
    args = parse(
        ["edge", "probe", "--registry", str(tmp_path / "registry.json"), "--device", device]
    )
    assert args.func(args) == 0
    assert f"{device}: profile water-quality-transmitter" in capsys.readouterr().out


@pytest.mark.servers
def test_run_reads_a_registry_device_over_modbus_and_publishes_it(
    servers: RunningServers, water_quality: ServerThread, tmp_path: Path
) -> None:
    estate, device = _registry_with_connect(tmp_path / "registry.json", water_quality.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env["JIAYUAN_MQTT_URL"] = servers.mqtt_url
    command = [sys.executable, "-m", "tools.cli", "edge", "run", "--registry",
               str(tmp_path / "registry.json"), "--estate", estate, "--no-simulated",
               "--spool", str(tmp_path / "spool.sqlite"), "--poll-interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running = read_line_with(process, "edge agent running", timeout_s=60)
    time.sleep(2.0)  # some polls published
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    output = running + output
    assert process.returncode == 0, output
    assert "(1 devices over Modbus, 0 over GB/T 26875.3, 0 by vendor JSON, 0 simulated)" in output
    stopped = re.search(r"stopped: (\d+) read, (\d+) published, (\d+) still spooled", output)
    assert stopped is not None, output
    read, published, spooled = map(int, stopped.groups())
    assert read >= 5 and published == read and spooled == 0, output
    assert re.search(rf"{device} \(unit 5 on tcp://127\.0\.0\.1:\d+\): online", output), output


@pytest.mark.servers
def test_run_takes_a_fire_link_and_vendor_pushes(servers: RunningServers, tmp_path: Path) -> None:
    registry = registry_module.build_registry(1, 7)
    data = json.loads(registry.to_json())
    estate = data["estates"][0]
    panel = next(d for d in estate["devices"] if d["kind"] == "fire")
    panel["connect"] = {"protocol": "gb26875", "source": SOURCE.hex(), "system": 1}
    charger = next(d for d in estate["devices"] if d["kind"] == "ebike_charger")
    charger["connect"] = {"protocol": "json", "mapping": "nb-smoke-detector-http",
                          "vendor_id": "86812"}  # fmt: skip
    (tmp_path / "registry.json").write_text(json.dumps(data), encoding="utf-8")
    fire_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env["JIAYUAN_MQTT_URL"] = servers.mqtt_url
    env["NB_SMOKE_PUSH_TOKEN"] = "t0ken"
    command = [sys.executable, "-m", "tools.cli", "edge", "run", "--registry",
               str(tmp_path / "registry.json"), "--estate", str(estate["id"]),
               "--no-simulated", "--spool", str(tmp_path / "spool.sqlite"),
               "--fire-listen", f"127.0.0.1:{fire_port}",
               "--vendor-http", f"127.0.0.1:{http_port}", "--poll-interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                link = socket.create_connection(("127.0.0.1", fire_port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the fire listener never opened"
                time.sleep(0.1)
        with link:
            link.sendall(frame(5, bytes([1, 1]) + system_state(1, 0b11)))
            assert link.recv(64)[26] == 3  # confirmed
        push = httpx.post(
            f"http://127.0.0.1:{http_port}/push/smoke",
            json={"imei": "86812", "time": int(time.time()), "data": {"smoke_alarm": 0}},
            headers={"Authorization": "Bearer t0ken"},
            timeout=5,
        )
        assert push.status_code == 200, push.text
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "(0 devices over Modbus, 1 over GB/T 26875.3, 1 by vendor JSON, 0 simulated)" in output
    stopped = re.search(r"stopped: (\d+) read, (\d+) published", output)
    assert stopped is not None and stopped.groups() == ("2", "2"), output
    assert "GB/T 26875.3: 1 frames, 1 confirmed, 0 denied" in output
    assert "vendor JSON: 1 messages, 1 readings" in output


def test_probe_of_a_device_that_is_not_modbus_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = registry_module.build_registry(1, 7)
    data = json.loads(registry.to_json())
    panel = next(d for d in data["estates"][0]["devices"] if d["kind"] == "fire")
    panel["connect"] = {"protocol": "gb26875", "source": SOURCE.hex(), "system": 1}
    (tmp_path / "registry.json").write_text(json.dumps(data), encoding="utf-8")
    args = parse(
        ["edge", "probe", "--registry", str(tmp_path / "registry.json"), "--device", panel["id"]]
    )
    assert args.func(args) == 2
    assert "is not a Modbus device (its connect protocol is 'gb26875')" in capsys.readouterr().out


@pytest.mark.servers
def test_run_says_when_the_fire_listeners_port_is_taken(
    servers: RunningServers, tmp_path: Path
) -> None:
    registry = registry_module.build_registry(1, 7)
    data = json.loads(registry.to_json())
    estate = data["estates"][0]
    panel = next(d for d in estate["devices"] if d["kind"] == "fire")
    panel["connect"] = {"protocol": "gb26875", "source": SOURCE.hex(), "system": 1}
    (tmp_path / "registry.json").write_text(json.dumps(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env["JIAYUAN_MQTT_URL"] = servers.mqtt_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tools.cli", "edge", "run", "--registry",
             str(tmp_path / "registry.json"), "--estate", str(estate["id"]), "--no-simulated",
             "--spool", str(tmp_path / "spool.sqlite"), "--fire-listen", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not run:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
