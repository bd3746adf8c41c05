"""The gateway's pipeline with its hot modules compiled (setup.py, Cython) against the same
modules interpreted, in one run on the same traffic.

Each measurement is a child process that imports the hot modules (jiayuan/compiled.py)
either as the extension modules built beside them or, with them ignored, from their
``.py`` files; the two kinds alternate.  The traffic is bench/throughput.py's batched
messages (simulated estates with faults, interleaved in time), run through
bench/pipeline.py's processor-like batches.

    .venv/bin/python bench/compiled.py [--rounds 3] [--estates 20] [--minutes 20]
    .venv/bin/python bench/compiled.py --instructions   # valgrind: repeatable counts
    .venv/bin/python bench/compiled.py --instructions --devices 100000
    .venv/bin/python bench/compiled.py --instructions --end-ms MS  # the same traffic again

``--devices N`` runs bench/pipeline.py's district traffic instead (N distinct devices,
one reading per device per batch) and counts only its second round (every device
already known): valgrind starts the child uninstrumented and the child switches
instrumentation on (``callgrind_control -i on``) once the first round is through.

``--instructions`` counts each kind's instructions once under ``valgrind --tool=callgrind``
(the same count run after run, whatever else the host is doing), less those of a child
that builds the same traffic and stops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("source", "compiled")
# Set for a --devices child under callgrind: instrumentation starts after the first round.
_COLLECT_LATER = "BENCH_COLLECT_LATER"
# The default traffic's end (epoch ms), the same for every child of a run.
_TRAFFIC_END = "BENCH_TRAFFIC_END_MS"


def district_child(mode: str, devices: int, repeats: int) -> None:
    """The district traffic's first round, then (repeats 1) the later ones, timed."""
    sys.path.insert(0, str(ROOT))
    from jiayuan import compiled

    if mode == "source":  # before any hot module is imported
        compiled.import_sources_first()
    from bench.pipeline import DistrictTraffic, stream_batches
    from gateway.collector import tune_collector
    from gateway.detection.detector import Detector
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline import Pipeline
    from jiayuan.config import GatewayConfig

    tune_collector()
    traffic = DistrictTraffic(devices, 2, int(time.time() * 1000) - 60_000)
    pipeline = Pipeline(Detector(), GatewayMetrics())
    size = GatewayConfig().batch_max_readings
    stream_batches(pipeline, traffic.rounds[0], size)
    if os.environ.get(_COLLECT_LATER):  # under callgrind: count from here on only
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True)
    started = time.perf_counter()
    if repeats:
        stream_batches(pipeline, traffic.rounds[1], size)
    elapsed = time.perf_counter() - started
    readings = traffic.readings[1]
    result = {"compiled": len(compiled.compiled()), "readings": readings}
    print(json.dumps({**result, "us": elapsed / readings * 1e6}))


def child(mode: str, estates: int, minutes: float, repeats: int) -> None:
    """One measurement: µs per reading, best of ``repeats`` (0: build the traffic only)."""
    if estates < 0:  # --devices: the district traffic
        district_child(mode, -estates, repeats)
        return
    sys.path.insert(0, str(ROOT))
    from jiayuan import compiled

    if mode == "source":  # before any hot module is imported
        compiled.import_sources_first()
    from bench.pipeline import run_batches
    from bench.throughput import build_traffic
    from gateway.collector import tune_collector
    from gateway.detection.detector import Detector
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline import Message, Pipeline
    from jiayuan.config import GatewayConfig

    tune_collector()
    traffic = build_traffic(estates, minutes, 100, 0, int(os.environ[_TRAFFIC_END]))
    messages = [Message(t, p, i + 1, 1, 0) for i, (t, p, _) in enumerate(traffic.batched)]
    readings = sum(wire[2] for wire in traffic.batched)
    best = float("inf")
    for _ in range(repeats):
        pipeline = Pipeline(Detector(), GatewayMetrics())
        started = time.perf_counter()
        run_batches(pipeline, messages, GatewayConfig().batch_max_readings)
        best = min(best, time.perf_counter() - started)
    print(
        json.dumps(
            {
                "compiled": len(compiled.compiled()),
                "readings": readings,
                "us": best / readings * 1e6,
            }
        )
    )


def _run(
    mode: str,
    args: argparse.Namespace,
    repeats: int,
    prefix: list[str],
    env: dict[str, str] | None = None,
) -> tuple[dict[str, float], str]:
    """The child's figures, and what it (or valgrind around it) wrote to stderr."""
    command = [
        *prefix,
        sys.executable,
        __file__,
        "--child",
        mode,
        str(-args.devices if args.devices else args.estates),
        str(args.minutes),
        str(repeats),
    ]
    env = {**(env if env is not None else os.environ), _TRAFFIC_END: str(args.end_ms)}
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, done.stderr


def timed(args: argparse.Namespace) -> None:
    per_mode: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode in MODES if round_ % 2 == 0 else reversed(MODES):
            result, _ = _run(mode, args, 3, [])
            if (mode == "compiled") != (result["compiled"] > 0):
                raise SystemExit(f"{mode}: {result['compiled']:.0f} modules ran compiled")
            per_mode[mode].append(result["us"])
            print(f"  round {round_ + 1} {mode:9}: {result['us']:.2f} µs a reading", flush=True)
    readings = int(result["readings"])
    print(f"{readings:,} readings ({_traffic(args)})")
    medians = {mode: statistics.median(values) for mode, values in per_mode.items()}
    for mode in MODES:
        print(f"{mode:9}: median {medians[mode]:.2f} µs a reading, {1e6 / medians[mode]:,.0f}/s")
    print(f"compiled / interpreted time: {medians['compiled'] / medians['source']:.3f}")


def _traffic(args: argparse.Namespace) -> str:
    if args.devices:
        return f"{args.devices:,} devices, one reading each, every device known"
    return f"{args.estates} estates, {args.minutes:g} simulated minutes to --end-ms {args.end_ms}"


def district_instructions(args: argparse.Namespace) -> None:
    """One child a kind, instrumented only once the first round is through."""
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.keep or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            out = Path(workdir) / f"callgrind.{mode}.devices"
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
            ]
            result, stderr = _run(mode, args, 1, command, {**os.environ, _COLLECT_LATER: "1"})
            found = re.search(r"Collected : (\d+)", stderr)
            if found is None:
                raise SystemExit(f"no instruction count from valgrind:\n{stderr}")
            readings = int(result["readings"])
            print(f"{readings:,} readings ({_traffic(args)})")
            print(f"{mode:9}: {int(found.group(1)) / readings:,.0f} instructions a reading")


def instructions(args: argparse.Namespace) -> None:
    if args.devices:
        district_instructions(args)
        return
    counts: dict[str, int] = {}
    readings = 0
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.keep or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        for mode, repeats in (("source", 0), ("source", 1), ("compiled", 0), ("compiled", 1)):
            if mode not in args.modes:
                continue
            out = Path(workdir) / f"callgrind.{mode}.{repeats}"
            result, stderr = _run(
                mode,
                args,
                repeats,
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"],
            )
            found = re.search(r"Collected : (\d+)", stderr)
            if found is None:
                raise SystemExit(f"no instruction count from valgrind:\n{stderr}")
            counts[f"{mode}.{repeats}"] = int(found.group(1))
            readings = int(result["readings"])
            print(
                f"  {mode:9} {'pipeline' if repeats else 'traffic only'}: {int(found.group(1)):,}"
            )
    per_reading = {
        mode: (counts[f"{mode}.1"] - counts[f"{mode}.0"]) / readings for mode in args.modes
    }
    print(f"{readings:,} readings ({_traffic(args)})")
    for mode in args.modes:
        print(f"{mode:9}: {per_reading[mode]:,.0f} instructions a reading")
    if len(args.modes) < len(MODES):
        return
    ratio = per_reading["compiled"] / per_reading["source"]
    print(f"compiled / interpreted instructions: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated pairs of children")
    parser.add_argument("--estates", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=20.0, help="simulated minutes")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under valgrind instead"
    )
    parser.add_argument(
        "--only", dest="modes", choices=MODES, action="append", help="one kind (--instructions)"
    )
    parser.add_argument(
        "--devices", type=int, metavar="N", help="N distinct devices, one reading per batch"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the callgrind files here (--instructions)"
    )
    parser.add_argument(
        "--end-ms",
        type=int,
        help="the default traffic ends here (epoch ms; default a minute ago): the same "
        "traffic in another run",
    )
    parser.add_argument("--child", nargs=4, metavar=("MODE", "ESTATES", "MINUTES", "REPEATS"))
    args = parser.parse_args()
    args.modes = tuple(args.modes or MODES)
    if args.end_ms is None:  # one traffic for every child: "traffic only" is subtracted
        args.end_ms = int(time.time() * 1000) - 60_000
    if args.child:
        mode, estates, minutes, repeats = args.child
        child(mode, int(estates), float(minutes), int(repeats))
    elif args.instructions:
        if args.estates == 20 and args.minutes == 20.0:  # 6 minutes of valgrind, not 20
            args.estates, args.minutes = 10, 10.0
        instructions(args)
    else:
        timed(args)


if __name__ == "__main__":
    main()
