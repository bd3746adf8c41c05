"""What an edge agent reads its devices through.

A driver is polled with the current time and returns every sample its devices produced
since the last poll, in time order per device.  A driver that talks to real devices in
the background (``edge.modbus.ModbusDriver``) also has ``run``, which the agent runs beside
its own tasks; the simulators provide a driver for the demo and tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jiayuan.catalogue import Kind
from jiayuan.contract import Value


@dataclass(frozen=True, slots=True)
class DriverSample:
    device: str
    kind: Kind
    building: str
    ts: int  # epoch milliseconds, device time
    values: dict[str, Value]
    event: str | None = None


class Driver(Protocol):
    def poll(self, now_ms: int) -> list[DriverSample]:
        """Samples produced up to and including ``now_ms`` that were not returned before."""
        ...


@runtime_checkable
class BackgroundDriver(Protocol):
    """A driver whose devices are read by tasks of its own, run until ``stop`` is set."""

    def poll(self, now_ms: int) -> list[DriverSample]: ...

    async def run(self, stop: asyncio.Event) -> None: ...


class Drivers:
    """Several drivers as one: real devices beside simulated ones, say."""

    def __init__(self, *drivers: Driver) -> None:
        self.drivers = drivers

    def poll(self, now_ms: int) -> list[DriverSample]:
        out: list[DriverSample] = []
        for driver in self.drivers:
            out.extend(driver.poll(now_ms))
        return out

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            for driver in self.drivers:
                if isinstance(driver, BackgroundDriver):
                    tasks.create_task(driver.run(stop))
