"""``jiayuan simulate``: a registry, fault labels and every sample of a run, as files.

Writes ``registry.json`` (estates and devices), ``labels.json`` (the injected faults, see
``simulators.faults``) and ``samples.jsonl`` (one JSON object per line: estate, device,
kind, building, ts, values, event), then prints a summary by kind.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jiayuan.timezone import parse_start

if TYPE_CHECKING:
    from jiayuan.catalogue import Kind
    from simulators.faults import FaultPlan


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate estates with labelled faults and write the samples to files",
        description="Simulate N estates for S seconds of device time (as fast as the CPU "
        "allows) and write registry.json, labels.json and samples.jsonl to DIR. The same "
        "seed and start give the same files.",
    )
    parser.add_argument(
        "--estates",
        type=int,
        default=5,
        metavar="N",
        help="number of estates to simulate (default: 5)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of simulated time (default: 60)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="K",
        help="random seed for the registry, the faults and every device (default: 1)",
    )
    parser.add_argument(
        "--out",
        default="simulation",
        metavar="DIR",
        help="directory to write the files to, created if missing (default: ./simulation)",
    )
    parser.add_argument(
        "--start",
        default="now",
        metavar="TIME",
        help="simulated start: 'now', epoch milliseconds, or ISO 8601 "
        "(Shanghai time when no zone is given); fix it to reproduce a run "
        "(default: now)",
    )
    parser.add_argument(
        "--faults",
        default="all",
        metavar="LIST",
        help="fault types to inject: 'all', 'none', or a comma-separated "
        "list of kind:type such as lift:trapped,fire:offline (default: all)",
    )
    parser.set_defaults(func=run)


def parse_fault_types(text: str) -> dict[Kind, list[str]] | None:
    """``all`` → None (every type), ``none`` → {}, else ``kind:type,…``."""
    from jiayuan.catalogue import Kind
    from simulators.faults import FAULT_SPECS

    if text == "all":
        return None
    wanted: dict[Kind, list[str]] = {}
    if text == "none":
        return wanted
    for item in text.split(","):
        kind_text, _, fault_type = item.strip().partition(":")
        try:
            kind = Kind(kind_text)
        except ValueError:
            raise ValueError(f"unknown kind {kind_text!r} in --faults") from None
        if fault_type not in FAULT_SPECS[kind]:
            known = ", ".join(FAULT_SPECS[kind])
            raise ValueError(f"{kind.value} has no fault type {fault_type!r} (known: {known})")
        wanted.setdefault(kind, []).append(fault_type)
    return wanted


def run(args: argparse.Namespace) -> int:
    # Imported here: `jiayuan --help` must not wait for numpy (tests/tools/test_cli_startup.py).
    import msgspec

    from simulators.driver import generate
    from simulators.faults import plan_faults, write_labels
    from simulators.registry import build_registry

    try:
        start_ms = parse_start(args.start)
        types = parse_fault_types(args.faults)
    except ValueError as error:
        print(f"simulate: {error}")
        return 2
    if args.estates < 1 or args.duration <= 0:
        print("simulate: --estates must be ≥ 1 and --duration > 0")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    registry = build_registry(args.estates, args.seed)
    plan = plan_faults(registry, start_ms, args.duration, args.seed, types)
    (out / "registry.json").write_text(registry.to_json() + "\n", encoding="utf-8")
    write_labels(out / "labels.json", plan.faults)
    samples: Counter[Kind] = Counter()
    encoder = msgspec.json.Encoder()
    end_ms = start_ms + round(args.duration * 1000)
    with (out / "samples.jsonl").open("wb") as file:
        for estate, s in generate(registry, plan.faults, start_ms, end_ms, args.seed):
            line = {
                "estate": estate.id,
                "device": s.device,
                "kind": s.kind.value,
                "building": s.building,
                "ts": s.ts,
                "values": s.values,
                "event": s.event,
            }
            file.write(encoder.encode(line) + b"\n")
            samples[s.kind] += 1
    _print_summary(registry.devices(), samples, plan, time.perf_counter() - began, out)
    return 0


def _print_summary(
    devices: Any, samples: Counter[Kind], plan: FaultPlan, seconds: float, out: Path
) -> None:
    from jiayuan.catalogue import Kind

    device_counts = Counter(d.kind for d in devices)
    fault_counts = Counter(f.kind for f in plan.faults)
    print(f"{'kind':<15}{'devices':>9}{'samples':>10}{'faults':>8}")
    for kind in Kind:
        print(f"{kind.value:<15}{device_counts[kind]:>9}{samples[kind]:>10}{fault_counts[kind]:>8}")
    print(
        f"{'total':<15}{sum(device_counts.values()):>9}{sum(samples.values()):>10}"
        f"{len(plan.faults):>8}"
    )
    for skipped in plan.skipped:
        print(f"skipped {skipped.kind.value}:{skipped.fault_type}: {skipped.reason}")
    print(f"wrote {out}/registry.json, labels.json, samples.jsonl in {seconds:.2f} s")
