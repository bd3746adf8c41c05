"""Helpers for the alert lifecycle tests: a controllable clock and anomaly records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from alerts.engine import AlertEngine, AlertEvent, Sink
from alerts.grouping import DeviceCount
from alerts.policy import AlertPolicy, NoisePolicy
from alerts.store import AlertStore
from jiayuan.anomaly import CLOSED, OPEN, Anomaly
from jiayuan.catalogue import family

T0 = 1_700_000_000_000  # a wall-clock start, epoch ms
MINUTE = 60_000


class FakeClock:
    """Wall-clock milliseconds that move only when the test says so."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms


def anomaly(
    code: str = "lift.trapped",
    *,
    device: str = "L1",
    building: str = "b01",
    estate: str = "songjiang-e01",
    start_ms: int = T0,
    detail: str = "",
) -> Anomaly:
    """An open anomaly as the gateway's anomaly book makes it (titles from the catalogue)."""
    kind = code.split(".")[0]
    event = family(kind).event(code)
    return Anomaly(
        district="songjiang",
        street="yongfeng",
        estate=estate,
        building=building,
        device=device,
        kind=kind,
        code=code,
        severity=event.severity.value,
        title_zh=event.title_zh,
        title_en=event.title_en,
        value=1.0,
        threshold=0.5,
        start_ms=start_ms,
        end_ms=0,
        state=OPEN,
        detail=detail,
    )


def closed(opened: Anomaly, end_ms: int) -> Anomaly:
    return replace(opened, end_ms=end_ms, state=CLOSED)


class Recorder:
    """A sink that keeps every event it hears."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def __call__(self, event: AlertEvent) -> None:
        self.events.append(event)


def make_engine(
    path: Path,
    clock: FakeClock,
    *,
    noise: NoisePolicy | None = None,
    policy: AlertPolicy | None = None,
    sinks: Sequence[Sink] = (),
    population: DeviceCount | None = None,
) -> tuple[AlertEngine, AlertStore]:
    store = AlertStore(path)
    chosen = policy or AlertPolicy(noise=noise)
    engine = AlertEngine(store, chosen, clock=clock, sinks=sinks, population=population)
    return engine, store
