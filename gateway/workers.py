"""``jiayuan gateway run --workers N``: N gateway processes on one host, streets split.

A gateway process is one Python process and uses about one core (bench/README.md); a host
with more cores runs several.  Each worker is an ordinary ``jiayuan gateway run`` child
with the settings docs/scaling.md asks of every instance: its own streets (the named
streets dealt out in turn, so the same list always gives the same split), client id
``<id>-w<k>``, state directory ``<state_dir>/w<k>`` and API port ``api_port + k - 1``; the
estate registry is the supervisor's, shared (each worker scores its own streets' estates),
and so is the group robots' rate ledger: a company's robot hears from the workers of all
its estates' streets, and its limit is per robot, not per worker (docs/robots.md).

The supervisor passes SIGINT and SIGTERM on to the workers and waits for them to flush and
acknowledge.  When a worker ends on its own it stops the others and exits non-zero: a
partial set would leave streets nobody receives (their messages wait at the broker in the
dead worker's session), so the whole set is restarted, by the service manager.  When the
supervisor itself dies, even by SIGKILL, Linux sends each worker SIGTERM
(``PR_SET_PDEATHSIG``), so no worker outlives its set to hold its streets' sessions
against the next one.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from alerts.robot_ledger import robot_ledger_path
from gateway.transport.ingest import ALL_STREETS, owned_streets
from jiayuan.config import Config, ConfigError
from jiayuan.registry.store import registry_path

log = logging.getLogger(__name__)

POLL_S = 0.2
# A worker flushes its last batch and acknowledges it before exiting; past this it is killed
# (what it had not acknowledged is redelivered to its session at the next start).
STOP_WAIT_S = 60.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Worker:
    number: int  # 1..N
    streets: tuple[str, ...]
    client_id: str
    state_dir: str
    api_port: int
    registry_db: str  # shared: the supervisor's registry, not one per worker
    robot_ledger_db: str  # shared: what every robot sent, from whichever worker
    score_aggregate: bool  # writes the district and city grade rows (worker 1)

    @property
    def street_filter(self) -> str:
        return ",".join(self.streets)


def deal_streets(streets: Sequence[str], workers: int) -> list[tuple[str, ...]]:
    """The streets dealt out in turn: worker k gets streets k, k + N, k + 2N, …"""
    return [tuple(streets[first::workers]) for first in range(workers)]


def plan_workers(config: Config, workers: int) -> list[Worker]:
    """Each worker's settings; ConfigError when the streets cannot be split N ways."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more")
    streets = owned_streets(config.mqtt.street_filter)
    if streets == (ALL_STREETS,):
        raise ConfigError(
            f"--workers {workers}: '+' (every street) cannot be split between workers; "
            "name the streets with --streets or [mqtt] street_filter (docs/scaling.md)"
        )
    if len(streets) < workers:
        raise ConfigError(
            f"--workers {workers}: only {len(streets)} street(s) named "
            f"({','.join(streets)}); each worker needs at least one"
        )
    base = config.gateway
    return [
        Worker(
            number=number,
            streets=group,
            client_id=f"{config.mqtt.gateway_client_id}-w{number}",
            state_dir=str(Path(base.state_dir) / f"w{number}"),
            # Port 0 (any free port) stays 0 for every worker.
            api_port=base.api_port + number - 1 if base.api_port else 0,
            registry_db=str(registry_path(config)),
            robot_ledger_db=str(robot_ledger_path(config.alerts, base.state_dir)),
            score_aggregate=number == 1,
        )
        for number, group in enumerate(deal_streets(streets, workers), start=1)
    ]


def worker_command(
    worker: Worker, config_file: str | None, log_level: str, supervisor_pid: int
) -> list[str]:
    command = [sys.executable, "-m", "tools.cli"]
    if config_file:
        command += ["--config", config_file]
    streets, client_id = worker.street_filter, worker.client_id
    return [*command, "gateway", "run", "--streets", streets, "--client-id", client_id,
            "--log-level", log_level, "--supervisor-pid", str(supervisor_pid)]  # fmt: skip


def stop_with_supervisor(supervisor_pid: int) -> bool:
    """Have Linux send this worker SIGTERM when its supervisor dies, however it dies.

    False when the supervisor is gone already (it died before the request took effect):
    the caller stops at once.  Elsewhere than Linux nothing is asked and the worker keeps
    running until it is stopped."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("cannot ask to stop with the supervisor: errno %d", ctypes.get_errno())
    return os.getppid() == supervisor_pid


def worker_environment(worker: Worker) -> dict[str, str]:
    # The environment overrides the configuration file (jiayuan/config.py), so every other
    # setting, secrets included, reaches the worker as the supervisor loaded it.
    env = dict(os.environ)
    env["JIAYUAN_GATEWAY_STATE_DIR"] = worker.state_dir
    env["JIAYUAN_GATEWAY_API_PORT"] = str(worker.api_port)
    env["JIAYUAN_ALERTS_REGISTRY_DB"] = worker.registry_db
    env["JIAYUAN_ALERTS_ROBOT_LEDGER_DB"] = worker.robot_ledger_db
    env["JIAYUAN_ALERTS_SCORE_AGGREGATE"] = "true" if worker.score_aggregate else "false"
    return env


def run_workers(plan: Sequence[Worker], config_file: str | None, log_level: str) -> int:
    """Start the workers and supervise them until a signal or a worker's end."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes: list[subprocess.Popen[bytes]] = []
    failed = False
    try:
        for worker in plan:
            processes.append(
                subprocess.Popen(
                    worker_command(worker, config_file, log_level, os.getpid()),
                    env=worker_environment(worker),
                    # Its own process group: a Ctrl-C at the terminal reaches the
                    # supervisor alone, which then stops the workers in order.
                    start_new_session=True,
                )
            )
            print(
                f"工作进程 worker {worker.number}: pid {processes[-1].pid}, streets "
                f"{worker.street_filter}, client id {worker.client_id!r}, state "
                f"{worker.state_dir}, API port {worker.api_port}",
                flush=True,
            )
        while not stop.wait(POLL_S):
            ended = [
                (w, p.returncode)
                for w, p in zip(plan, processes, strict=True)
                if p.poll() is not None
            ]
            if ended:
                for worker, code in ended:
                    log.error(
                        "worker %d (streets %s) ended with exit %s; stopping the others so "
                        "the whole set restarts (its streets have no other receiver)",
                        worker.number,
                        worker.street_filter,
                        code,
                    )
                failed = True
                break
    finally:
        _stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [process.returncode for process in processes]
    print(f"已停止 workers stopped: exit codes {codes}", flush=True)
    return 1 if failed or any(codes) else 0


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error(
                "worker pid %d did not stop within %.0f s; killing it", process.pid, STOP_WAIT_S
            )
            process.kill()
            process.wait()
