"""What an edge agent reads its devices through.

A driver is polled with the current time and returns every sample its devices produced
since the last poll, in time order per device.  Real deployments would wrap a Modbus,
vendor-SDK or GB/T 26875 link here; the simulators provide one for the demo and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
