"""A device's ``connect`` entry in every form of the product registry (SQLite, CSV, YAML):
validated at import, kept through export and import, and read by ``edge probe`` and
``edge run`` over Modbus (pymodbus's server, in a thread of the test)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import yaml

from edge.devices import RegistryEstate, connected_devices, device_entries
from edge.probe import probe_device
from edge.profile import SHIPPED_PROFILES, load_profiles
from jiayuan.catalogue import Kind
from jiayuan.registry.connect import parse_connect
from jiayuan.registry.files import export_csv, export_yaml, import_csv, import_yaml
from jiayuan.registry.model import Registry
from jiayuan.registry.store import RegistryStore
from jiayuan.registry.tables import RegistryInvalid
from tests.edge.test_edge_cli import parse, registry_module
from tests.edge.test_edge_devices_cli import ServerThread
from tests.edge.test_edge_profiles import wire_words
from tests.support.modbus_support import FakeUnit
from tests.support.process_output import read_line_with
from tools.registry_generate import generate_registry
from tools.servers import RunningServers

AS_OF = date(2026, 6, 1)
FORMS = ("sqlite", "csv", "yaml")


@pytest.fixture
def tank_server() -> Iterator[ServerThread]:
    """A water-quality transmitter at unit 5: free chlorine 0.38, turbidity 0.25, pH 7.2."""
    unit = FakeUnit(5)
    for address, value in ((0, 0.38), (2, 0.25), (4, 7.2)):
        unit.set(address, wire_words(value, "float32", "CDAB"))
    with ServerThread([unit]) as server:
        yield server


def _product_registry() -> Registry:
    return generate_registry(registry_module.build_registry(1, 7), seed=7, as_of=AS_OF)


def _connect(port: int) -> dict[str, object]:
    return {
        "profile": "water-quality-transmitter",
        "address": f"tcp://127.0.0.1:{port}",
        "unit": 5,
        "poll_s": 0.2,
    }


def _tank(registry: Registry) -> tuple[str, str]:
    tank = next(d for d in registry.devices if d.kind is Kind.WATER_TANK)
    return tank.estate, tank.id


def _write_csv(folder: Path, registry: Registry, device: str, connect: object) -> None:
    """The registry as CSV, with ``connect`` on one device as JSON text in its cell (text
    given is the cell as it is): as an installer fills in the column in a spreadsheet."""
    export_csv(registry, folder)
    path = folder / "devices.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0])
    if "connect" not in columns:
        columns.append("connect")
    for row in rows:
        cell = connect if isinstance(connect, str) else json.dumps(connect)
        row["connect"] = "" if row["id"] != device else cell
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_yaml(path: Path, registry: Registry, device: str, connect: object) -> None:
    export_yaml(registry, path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for item in document["devices"]:
        if item["id"] == device:
            item["connect"] = connect
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")


def _write(form: str, tmp_path: Path, registry: Registry, device: str, connect: object) -> Path:
    if form == "yaml":
        path = tmp_path / "registry.yaml"
        _write_yaml(path, registry, device, connect)
        return path
    _write_csv(tmp_path / "csv", registry, device, connect)
    if form == "csv":
        return tmp_path / "csv"
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(import_csv(tmp_path / "csv"))
    return path


@pytest.mark.parametrize("form", FORMS)
def test_a_connected_device_of_every_form_is_read_over_modbus(
    form: str, tank_server: ServerThread, tmp_path: Path
) -> None:
    registry = _product_registry()
    estate, device = _tank(registry)
    path = _write(form, tmp_path, registry, device, _connect(tank_server.port))
    entries = device_entries(path, estate)
    assert [e["id"] for e in entries if "connect" in e] == [device]
    (modbus,) = connected_devices(
        RegistryEstate(estate, "", "", "", entries), load_profiles(SHIPPED_PROFILES)
    )
    assert (modbus.id, modbus.unit, modbus.poll_s) == (device, 5, 0.2)
    result = asyncio.run(probe_device(modbus))
    assert result.ok, result.lines
    assert any(re.search(r"free_chlorine\s+0\.38\s+mg/L", line) for line in result.lines)


@pytest.mark.parametrize("form", FORMS)
def test_probe_reads_a_device_of_every_form(
    form: str, tank_server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _product_registry()
    _, device = _tank(registry)
    path = _write(form, tmp_path, registry, device, _connect(tank_server.port))
    args = parse(["edge", "probe", "--registry", str(path), "--device", device])
    assert args.func(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert f"{device}: profile water-quality-transmitter" in out
    assert re.search(r"ph\s+7\.2\s+pH", out), out


@pytest.mark.servers
@pytest.mark.parametrize("form", FORMS)
def test_run_reads_a_device_of_every_form_over_modbus(
    form: str, servers: RunningServers, tank_server: ServerThread, tmp_path: Path
) -> None:
    registry = _product_registry()
    estate, device = _tank(registry)
    path = _write(form, tmp_path, registry, device, _connect(tank_server.port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env["JIAYUAN_MQTT_URL"] = servers.mqtt_url
    command = [sys.executable, "-m", "tools.cli", "edge", "run", "--registry", str(path),
               "--estate", estate, "--no-simulated", "--spool", str(tmp_path / "spool.sqlite"),
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
    assert "(1 devices over Modbus, 0 over GB/T 26875.3, 0 by vendor JSON, 0 simulated)" in output
    stopped = re.search(r"stopped: (\d+) read, (\d+) published", output)
    assert stopped is not None, output
    assert int(stopped.group(1)) >= 5, output
    assert re.search(rf"{device} \(unit 5 on tcp://127\.0\.0\.1:\d+\): online", output), output


FIRE_LINK = {
    "protocol": "gb26875",
    "source": "0A0B0C0D0E0F",
    "system": 2,
    "analog": {"3": "sprinkler_pressure"},
    "pump_components": [17],
}
VENDOR_JSON = {"protocol": "json", "mapping": "nb-smoke-detector-http", "vendor_id": "8681201"}


def _connected_registry() -> Registry:
    """A registry whose tank is on Modbus, a fire panel on a GB/T 26875.3 link and a
    charger on vendor JSON: every shape of ``connect`` (written as an installer would)."""
    registry = _product_registry()
    _, tank = _tank(registry)
    fire = next(d for d in registry.devices if d.kind is Kind.FIRE)
    charger = next(d for d in registry.devices if d.kind is Kind.EBIKE_CHARGER)
    entries = {tank: _connect(1502), fire.id: FIRE_LINK, charger.id: VENDOR_JSON}
    devices = tuple(
        dataclasses.replace(d, connect=parse_connect(entries[d.id], d.kind))
        if d.id in entries
        else d
        for d in registry.devices
    )
    return dataclasses.replace(registry, devices=devices)


def test_export_and_import_keep_every_connect_form(tmp_path: Path) -> None:
    registry = _connected_registry()
    assert sum(d.connect is not None for d in registry.devices) == 3
    export_csv(registry, tmp_path / "csv")
    assert import_csv(tmp_path / "csv") == registry
    export_yaml(registry, tmp_path / "registry.yaml")
    assert import_yaml(tmp_path / "registry.yaml") == registry
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        store.replace(registry)
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        assert store.load() == registry
    fire = next(d for d in registry.devices if d.kind is Kind.FIRE)
    (item,) = [
        i
        for i in yaml.safe_load((tmp_path / "registry.yaml").read_text("utf-8"))["devices"]
        if i["id"] == fire.id
    ]
    # YAML holds the entry as a mapping, the same object registry.json holds.
    assert item["connect"] == {**FIRE_LINK, "source": "0a0b0c0d0e0f"}


def test_an_old_store_without_the_column_is_opened_and_migrated(tmp_path: Path) -> None:
    registry = _product_registry()
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(registry)
    with sqlite3.connect(path) as db:  # as a store written before 'connect' existed
        db.execute("ALTER TABLE devices DROP COLUMN connect")
    with RegistryStore(path) as store:
        assert store.load() == registry
        connected = _connected_registry()
        store.replace(connected)
        assert store.load() == connected


@pytest.mark.parametrize(
    ("connect", "field", "message"),
    [
        ({"profile": "p", "address": "ftp://h:1", "unit": 3}, "connect.address", "scheme"),
        ({"profile": "p", "address": "tcp://h:502", "unit": 300}, "connect.unit", "0-247"),
        ({"address": "tcp://h:502"}, "connect.profile", "is missing"),
        ({"profile": "p", "address": "tcp://h:502", "baud": 1}, "connect", "unknown field"),
        ({"protocol": "gb26875", "source": "xyz"}, "connect.source", "12 hex digits"),
        ({"protocol": "json", "mapping": "m"}, "connect.vendor_id", "is missing"),
        ({"protocol": "bacnet"}, "connect.protocol", "'bacnet'"),
        ("{profile: p}", "connect", "not JSON"),
        ([1, 2], "connect", "not an object"),
    ],
)
def test_import_names_file_row_and_field_of_a_bad_connect(
    tmp_path: Path, connect: object, field: str, message: str
) -> None:
    registry = _product_registry()
    fire_link = isinstance(connect, dict) and connect.get("protocol") == "gb26875"
    kind = Kind.FIRE if fire_link else Kind.WATER_TANK
    device = next(d.id for d in registry.devices if d.kind is kind)
    _write_csv(tmp_path / "csv", registry, device, connect)
    path = tmp_path / "csv" / "devices.csv"
    with pytest.raises(RegistryInvalid) as raised:
        import_csv(tmp_path / "csv")
    (problem,) = raised.value.problems
    assert problem.file == str(path)
    assert problem.row >= 2
    assert problem.field == field
    assert message in problem.message, problem
    assert f"devices.csv: row {problem.row}: {field}: " in str(raised.value)


def test_yaml_import_names_the_item_line_of_a_bad_connect(tmp_path: Path) -> None:
    registry = _product_registry()
    _, device = _tank(registry)
    path = tmp_path / "registry.yaml"
    _write_yaml(path, registry, device, {"profile": "p", "address": "tcp://h:502", "unit": -1})
    with pytest.raises(RegistryInvalid, match=r"\[devices\]: row \d+ \(line \d+\): connect\.unit"):
        import_yaml(path)


def test_a_fire_link_on_a_device_that_is_not_a_fire_system_is_refused(tmp_path: Path) -> None:
    registry = _product_registry()
    _, tank = _tank(registry)
    _write_csv(tmp_path / "csv", registry, tank, FIRE_LINK)
    with pytest.raises(RegistryInvalid, match=r"connect\.protocol: a GB/T 26875\.3 link carries"):
        import_csv(tmp_path / "csv")
