"""``jiayuan simulate``: files, summary, options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from jiayuan.catalogue import Kind
from simulators import cli
from simulators.faults import read_labels
from simulators.registry import Registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jiayuan")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _simulate(*argv: str) -> int:
    args = _parser().parse_args(["simulate", *argv])
    code: int = args.func(args)
    return code


def test_simulate_writes_registry_labels_and_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = (
        "--estates",
        "3",
        "--duration",
        "60",
        "--seed",
        "4",
        "--out",
        str(out),
        "--start",
        "2025-06-02T08:00:00",
    )
    assert _simulate(*argv) == 0
    printed = capsys.readouterr().out
    for kind in Kind:
        assert kind.value in printed
    registry = Registry.from_json((out / "registry.json").read_text(encoding="utf-8"))
    assert len(registry.estates) == 3
    labels = read_labels(out / "labels.json")
    assert {f.kind for f in labels} == set(Kind)
    lines = (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"estate", "device", "kind", "building", "ts", "values", "event"}
    assert {json.loads(line)["device"] for line in lines} == {d.id for d in registry.devices()}
    total = next(line for line in printed.splitlines() if line.startswith("total"))
    assert total.split()[:3] == ["total", str(sum(1 for _ in registry.devices())), str(len(lines))]
    # The same seed and start give the same files.
    again = tmp_path / "again"
    assert _simulate(*argv[:-3], str(again), *argv[-2:]) == 0
    assert (again / "samples.jsonl").read_bytes() == (out / "samples.jsonl").read_bytes()


def test_simulate_fault_selection_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "few"
    assert (
        _simulate(
            "--estates",
            "2",
            "--duration",
            "30",
            "--out",
            str(out),
            "--start",
            "0",
            "--faults",
            "lift:power_loss,water_tank:offline",
        )
        == 0
    )
    labels = read_labels(out / "labels.json")
    assert [(f.kind, f.fault_type) for f in labels] == [(Kind.LIFT, "power_loss")]
    assert "skipped water_tank:offline: needs a run of" in capsys.readouterr().out
    assert _simulate("--out", str(out), "--start", "0", "--faults", "none", "--duration", "5") == 0
    assert read_labels(out / "labels.json") == []
    assert _simulate("--out", str(out), "--faults", "lift:melted") == 2
    assert _simulate("--out", str(out), "--start", "yesterday") == 2


def test_every_option_has_help() -> None:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "simulate"
    ]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {"estates", "duration", "seed", "out", "start", "faults"}
    assert all(a.help for a in options)
