"""One registry, in whatever form it was written, readable by every command.

``registry generate`` stores SQLite and exports CSV or YAML, ``simulate`` writes
registry.json; ``edge run`` runs an estate of any of them, by default the stored one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from edge.devices import registry_entries
from jiayuan.catalogue import Kind
from jiayuan.registry.files import export_csv, export_yaml
from jiayuan.registry.sources import read_registry
from jiayuan.registry.store import RegistryStore
from jiayuan.state import ENV_STATE_DIR
from simulators.product_registry import simulated_registry
from simulators.registry import Registry, build_registry
from tests.support.process_output import read_line_with
from tools import cli
from tools.edge_cli import add_parser
from tools.registry_generate import generate_registry
from tools.servers import RunningServers


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jiayuan")
    parser.add_argument("--config")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def simulated() -> Registry:
    return build_registry(3, 7)


def forms(simulated: Registry, folder: Path) -> dict[str, Path]:
    """The same registry written every way the commands write it."""
    product = generate_registry(simulated, 7, date(2026, 12, 1))
    paths = {
        "sqlite": folder / "registry.sqlite",
        "csv": folder / "csv",
        "yaml": folder / "registry.yaml",
        "json": folder / "registry.json",
    }
    with RegistryStore(paths["sqlite"]) as store:
        store.replace(product)
    export_csv(product, paths["csv"])
    export_yaml(product, paths["yaml"])
    paths["json"].write_text(simulated.to_json(), encoding="utf-8")
    return paths


@pytest.mark.parametrize("form", ["sqlite", "csv", "yaml", "json"])
def test_every_form_gives_the_same_estates_and_devices(
    simulated: Registry, tmp_path: Path, form: str
) -> None:
    read = simulated_registry(forms(simulated, tmp_path)[form])
    assert [e.id for e in read.estates] == [e.id for e in simulated.estates]
    for mine, theirs in zip(read.estates, simulated.estates, strict=True):
        assert (mine.district, mine.street, mine.edge_id) == (
            theirs.district,
            theirs.street,
            theirs.edge_id,
        )
        assert {(d.id, d.kind, d.building) for d in mine.devices} == {
            (d.id, d.kind, d.building) for d in theirs.devices
        }
        # What the simulated devices need from the registry comes back: lift shafts,
        # the fire panels' floors and the charging ports.
        for device in mine.devices:
            original = theirs.devices[[d.id for d in theirs.devices].index(device.id)]
            for key in ("top_floor", "floors", "ports"):
                if key in original.params:
                    assert device.params[key] == original.params[key], (device.id, key)
        assert any(d.kind is Kind.LIFT for d in mine.devices)


def test_something_else_is_named_for_what_it_is(tmp_path: Path) -> None:
    junk = tmp_path / "photo.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n\x9f\x00")
    with pytest.raises(ValueError, match=r"photo.png: not a registry"):
        simulated_registry(junk)
    with pytest.raises(ValueError, match=r"missing: no such file or directory"):
        simulated_registry(tmp_path / "missing")
    other = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(ValueError, match=r"other.sqlite: a SQLite database without the regis"):
        simulated_registry(other)
    with closing(sqlite3.connect(other)) as db:  # and left as it was
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


@pytest.mark.parametrize("form", ["sqlite", "csv", "yaml"])
def test_edge_run_takes_the_registry_files_registry_generate_writes(
    simulated: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    path = forms(simulated, tmp_path)[form]
    args = parse(["edge", "run", "--registry", str(path), "--estate", "no-such-estate"])
    assert args.func(args) == 2
    out = capsys.readouterr().out
    # The registry was read: only the estate is unknown (not "Is a directory", not a
    # UTF-8 error from reading SQLite as JSON).
    assert "no estate 'no-such-estate' in the registry" in out


def test_edge_run_without_a_registry_says_how_to_make_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(["edge", "run", "--estate", "x"])
    assert args.func(args) == 2
    out = capsys.readouterr().out
    assert os.environ[ENV_STATE_DIR] in out and "jiayuan registry generate" in out


@pytest.mark.servers
def test_edge_run_runs_an_estate_of_the_stored_registry(
    servers: RunningServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["registry", "generate", "--estates", "2", "--seed", "5"]) == 0
    estate = build_registry(2, 5).estates[1].id
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIAYUAN_")}
    env |= {ENV_STATE_DIR: os.environ[ENV_STATE_DIR], "JIAYUAN_MQTT_URL": servers.mqtt_url}
    command = [sys.executable, "-m", "tools.cli", "edge", "run", "--estate", estate,
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
    assert f"estate {estate}" in output and "$JIAYUAN_MQTT_URL" in output
    stopped = re.search(r"stopped: (\d+) read, (\d+) published", output)
    assert stopped is not None, output
    assert int(stopped.group(1)) > 0 and stopped.group(1) == stopped.group(2)


@pytest.mark.parametrize("form", ["csv", "yaml"])
def test_score_takes_an_exported_registry(
    simulated: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    path = forms(simulated, tmp_path)[form]
    assert cli.main(["score", "--registry", str(path), "--estate", simulated.estates[0].id]) == 0
    assert simulated.estates[0].id in capsys.readouterr().out


# One device of each connector, as an installer writes them into registry.json.
CONNECTS: dict[Kind, dict[str, Any]] = {
    Kind.WATER_TANK: {"profile": "water-tank-station", "address": "rtu+tcp://10.2.0.17:4196",
                      "unit": 3, "poll_s": 2.5},
    Kind.FIRE: {"protocol": "gb26875", "source": "0A0B0C0D0E0F", "system": 1,
                "analog": {"7": "sprinkler_pressure"}, "pump_components": [17]},
    Kind.EBIKE_CHARGER: {"protocol": "json", "mapping": "nb-smoke-detector-http",
                         "vendor_id": "868120123456789"},
}  # fmt: skip


def with_connects(simulated: Registry) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """registry.json of ``simulated`` with the first estate's first device of each kind of
    CONNECTS wired up, and device id → its connect entry."""
    data = json.loads(simulated.to_json())
    wired: dict[str, dict[str, Any]] = {}
    for device in data["estates"][0]["devices"]:
        kind = Kind(device["kind"])
        if kind in CONNECTS and kind not in {Kind(w["kind"]) for w in wired.values()}:
            device["connect"] = CONNECTS[kind]
            wired[device["id"]] = {**CONNECTS[kind], "kind": kind.value}
    return data, {
        device: {k: v for k, v in c.items() if k != "kind"} for device, c in wired.items()
    }


def test_registry_generate_from_registry_json_keeps_the_connect_entries(
    simulated: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, wired = with_connects(simulated)
    assert len(wired) == len(CONNECTS)
    source = tmp_path / "registry.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    # registry.json itself keeps them when read and written again.
    assert json.loads(Registry.from_json(source.read_text()).to_json()) == data
    store = tmp_path / "registry.sqlite"
    assert cli.main(["registry", "generate", "--from", str(source), "--db", str(store)]) == 0
    stored = {
        entry["id"]: entry["connect"]
        for entries in registry_entries(store).values()
        for entry in entries
        if "connect" in entry
    }
    # The same entries, as the registry writes them (the address in lower case).
    fire = next(d for d, c in wired.items() if c.get("protocol") == "gb26875")
    wired[fire] = {**wired[fire], "source": "0a0b0c0d0e0f"}
    assert stored == wired
    # And the edge runs the estate from the store with them.
    estate = simulated.estates[0]
    assert {
        d.id: d.connect for d in simulated_registry(store).estate(estate.id).devices if d.connect
    } == wired


def test_registry_generate_refuses_a_bad_connect_entry_and_stores_nothing(
    simulated: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, wired = with_connects(simulated)
    device = next(d for d in data["estates"][0]["devices"] if d["id"] in wired)
    device["connect"] = {"profile": "water-tank-station", "address": "tcp://10.2.0.17:502",
                         "unit": 300}  # fmt: skip
    source = tmp_path / "registry.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    store = tmp_path / "registry.sqlite"
    assert cli.main(["registry", "generate", "--from", str(source), "--db", str(store)]) == 1
    err = capsys.readouterr().err
    assert f"device {device['id']}" in err and "connect.unit" in err
    assert not store.exists()


def test_edge_run_reads_the_registry_once(
    simulated: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, _ = with_connects(simulated)
    source = tmp_path / "registry.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    store = tmp_path / "registry.sqlite"
    assert cli.main(["registry", "generate", "--from", str(source), "--db", str(store)]) == 0
    reads: list[Path] = []

    def counted(path: Path) -> Any:
        reads.append(path)
        return read_registry(path)

    monkeypatch.setattr("jiayuan.registry.sources.read_registry", counted)
    monkeypatch.setattr("simulators.product_registry.read_registry", counted)
    args = parse(["edge", "run", "--registry", str(store), "--estate", simulated.estates[0].id])
    # Its fire panel is wired to GB/T 26875.3, so it stops short of running: after reading
    # the registry for both its real and its simulated devices.
    assert args.func(args) == 2
    assert "give --fire-listen" in capsys.readouterr().out
    assert reads == [store]


@pytest.mark.parametrize("form", ["sqlite", "csv", "yaml", "json"])
def test_every_form_keeps_the_sites(simulated: Registry, tmp_path: Path, form: str) -> None:
    paths = forms(simulated, tmp_path)
    # registry.json as a product registry turned back into the simulators' one writes it.
    paths["json"].write_text(simulated_registry(paths["sqlite"]).to_json(), encoding="utf-8")
    read = simulated_registry(paths[form])
    sites = {d.id: d.site for d in read.devices()}
    assert {d for d, site in sites.items() if site} == {
        d.id for d in simulated.devices() if d.kind is Kind.WATER_TANK
    }
    assert set(sites.values()) == {"", "pumproom"}
    # And back into a product registry: the sites are the ones it was generated with.
    again = generate_registry(read, 7, date(2026, 12, 1))
    product = generate_registry(simulated, 7, date(2026, 12, 1))
    assert [(d.id, d.site) for d in again.devices] == [(d.id, d.site) for d in product.devices]
