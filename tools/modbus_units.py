"""Modbus units served by pymodbus from words held here: the demo's site equipment, and
the tests' devices.

A ``ServedUnit`` is one unit id's holding registers from address 0.  Whoever owns it
writes ``words`` while the server runs; with ``exception`` set it answers every request
with that exception code instead (a device still busy, a faulty one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

REGISTERS = 64


@dataclass
class ServedUnit:
    unit: int
    words: list[int] = field(default_factory=lambda: [0] * REGISTERS)
    exception: int | None = None  # answer every request with this exception code
    requests: int = 0  # requests answered, exceptions included

    def set(self, address: int, words: Iterable[int]) -> None:
        for offset, word in enumerate(words):
            self.words[address + offset] = word

    def sim(self) -> SimDevice:
        """The unit for a pymodbus server."""
        return SimDevice(
            self.unit,
            simdata=[SimData(0, values=[0] * len(self.words), datatype=DataType.REGISTERS)],
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        registers[: len(self.words)] = self.words
        return ExcCodes(self.exception) if self.exception is not None else None
