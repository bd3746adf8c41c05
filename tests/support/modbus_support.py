"""Modbus devices for tests: pymodbus's own server, and lines that spoil chosen answers.

``FakeUnit`` (``tools.modbus_units.ServedUnit``, the demo's too) is one unit id's
registers on a pymodbus server; a test changes its words, or makes it answer with an
exception code, while the server runs.  ``Mangler`` (TCP) and
``PtyLine`` (a serial line made of two pseudo-terminal pairs) carry the bytes between the
client and the server and, for chosen unit ids, answer with the wrong unit id, a broken
CRC, garbage, or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Iterable

from pymodbus.framer import FramerRTU, FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from tools.modbus_units import ServedUnit as FakeUnit
from tools.servers import free_port

GARBAGE = bytes.fromhex("13 37 ca fe ba be 00 ff 42")


async def start_server(
    units: Iterable[FakeUnit], framer: FramerType = FramerType.SOCKET, port: int | None = None
) -> tuple[ModbusTcpServer, int]:
    """A pymodbus TCP server (socket or RTU framing) for the units; unknown ids stay silent."""
    port = port or free_port()
    server = ModbusTcpServer(
        [u.sim() for u in units],
        framer=framer,
        address=("127.0.0.1", port),
        ignore_missing_devices=True,
    )
    await server.serve_forever(background=True)
    return server, port


async def start_serial_server(units: Iterable[FakeUnit], port: str) -> ModbusSerialServer:
    server = ModbusSerialServer(
        [u.sim() for u in units],
        framer=FramerType.RTU,
        port=port,
        baudrate=115200,
        ignore_missing_devices=True,
    )
    await server.serve_forever(background=True)
    return server


# ---- spoiling answers ----------------------------------------------------------------------


def rtu_frame_size(data: bytes) -> int | None:
    """Length of the RTU answer at the start of ``data`` (function 1-4 or an exception)."""
    if len(data) < 3:
        return None
    if data[1] & 0x80:
        return 5
    return 5 + data[2]


def spoil(answer: bytes, fault: str, rtu: bool) -> bytes | None:
    """The answer as a faulty device or line would send it; None for silence."""
    if fault == "silent":
        return None
    if fault == "garbage":
        return GARBAGE
    if fault == "crc":
        return answer[:-1] + bytes([answer[-1] ^ 0xFF])
    if fault == "truncated":
        return answer[:-3]
    if fault == "wrong_unit":
        if rtu:
            frame = bytes([(answer[0] % 247) + 1]) + answer[1:-2]
            return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")
        return answer[:6] + bytes([(answer[6] % 247) + 1]) + answer[7:]
    raise ValueError(fault)


class Mangler:
    """A TCP proxy in front of a server that spoils the answers for ``faults``' unit ids."""

    def __init__(self, server_port: int, rtu: bool) -> None:
        self.server_port = server_port
        self.rtu = rtu
        self.faults: dict[int, str] = {}
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        unit = [0]  # of the last request: the client sends one at a time
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(self._requests(reader, up_writer, unit))
                pumps.create_task(self._answers(up_reader, writer, unit))
        except* (ConnectionError, asyncio.IncompleteReadError, EOFError):
            pass
        finally:
            writer.close()
            up_writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, unit: list[int]
    ) -> None:
        while True:
            request = await reader.read(260)
            if not request:
                raise EOFError
            unit[0] = request[0] if self.rtu else request[6]
            up_writer.write(request)
            await up_writer.drain()

    async def _answers(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, unit: list[int]
    ) -> None:
        while True:
            answer = await self._answer(up_reader)
            fault = self.faults.get(unit[0])
            spoiled = answer if fault is None else spoil(answer, fault, self.rtu)
            if spoiled:
                writer.write(spoiled)
                await writer.drain()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        if not self.rtu:
            head = await reader.readexactly(6)
            return head + await reader.readexactly(int.from_bytes(head[4:6], "big"))
        data = await reader.readexactly(3)
        size = rtu_frame_size(data)
        assert size is not None
        return data + await reader.readexactly(size - 3)


class PtyLine:
    """An RS-485 line of two pseudo-terminal pairs: the client opens ``client_port``, the
    server ``server_port``, and the line between the masters spoils chosen answers."""

    def __init__(self) -> None:
        self._client_master, self._client_slave = os.openpty()
        self._server_master, self._server_slave = os.openpty()
        for fd in (self._client_slave, self._server_slave):
            tty.setraw(fd)
        self.client_port = os.ttyname(self._client_slave)
        self.server_port = os.ttyname(self._server_slave)
        self.faults: dict[int, str] = {}
        self._unit = 0
        self._answer = b""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._client_master, self._request)
        loop.add_reader(self._server_master, self._reply)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._client_master, self._server_master):
            loop.remove_reader(fd)
        for fd in (
            self._client_master,
            self._server_master,
            self._client_slave,
            self._server_slave,
        ):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _request(self) -> None:
        with contextlib.suppress(OSError):
            data = os.read(self._client_master, 512)
            if data:
                self._unit = data[0]
                self._answer = b""
                os.write(self._server_master, data)

    def _reply(self) -> None:
        with contextlib.suppress(OSError):
            self._answer += os.read(self._server_master, 512)
        size = rtu_frame_size(self._answer)
        if size is None or len(self._answer) < size:
            return
        answer, self._answer = self._answer[:size], b""
        fault = self.faults.get(self._unit)
        spoiled = answer if fault is None else spoil(answer, fault, rtu=True)
        if spoiled:
            os.write(self._client_master, spoiled)
