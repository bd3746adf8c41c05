"""The Modbus connector's CPU per device poll, against a bare pymodbus client loop.

Ten pymodbus TCP servers (``--lines``), each with twenty unit ids (``--units``), run in a
child process so that their work is not counted.  Then, in this process and in the same
run:

1. the edge's ``ModbusDriver`` polls every device every ``--period`` seconds through its
   profile (a mix of the shipped profiles: float32 water quality, a lift status block, a
   ten-port charging pile), decoding every value, with the agent's once-a-second
   ``poll()`` drain beside it, for ``--periods`` periods;
2. a bare loop of pymodbus clients, one task per line, reads the same register blocks of
   the same units on the same schedule and turns each value into a number with pymodbus's
   ``convert_from_registers``: the least a hand-written poller does (no scaling, no
   range checks, no events, no bookkeeping).

It prints CPU seconds per device poll for both and their ratio (bare / connector: 1.0 means
the connector costs no more than the bare reads), the connector's overruns and the longest
time one line took to go round its devices.  The target of issue 27 is a ratio ≥ 0.8 with
no overrun.  Run: ``.venv/bin/python bench/edge_modbus.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import struct
import time
from dataclasses import replace
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.devices import ModbusDevice, parse_address
from edge.modbus import ModbusDriver
from edge.profile import SHIPPED_PROFILES, Profile, load_profiles
from edge.readplan import Block, plan_reads

PROFILES = SHIPPED_PROFILES
MIX = ("water-quality-transmitter", "lift-monitor-status-block", "ebike-pile-10-ports")


def _registers(profile: str) -> list[int]:
    """Plausible words for a unit read through ``profile`` (addresses 0-63)."""
    words = [0] * 64
    if profile == "water-quality-transmitter":
        for address, value in ((0, 0.4), (2, 0.3), (4, 7.2)):  # float32, CDAB
            high, low = struct.unpack(">HH", struct.pack(">f", value))
            words[address : address + 2] = [low, high]
    elif profile == "lift-monitor-status-block":
        words[:12] = [1, 1, 1, 5, 0, 1, 1, 1, 0, 150, 175, 0]
    else:
        words[:4] = [10, 0, 2400, 0]
        for port in range(10):
            words[10 + 4 * port : 14 + 4 * port] = [1, 240, 520, 315]
    return words


def _serve(lines: int, units: int, ports: Any) -> None:
    async def main() -> None:
        servers = []
        for line in range(lines):
            devices = [
                SimDevice(
                    unit,
                    simdata=[
                        SimData(
                            0,
                            values=_registers(MIX[(line + unit) % len(MIX)]),
                            datatype=DataType.REGISTERS,
                        )
                    ],
                )
                for unit in range(1, units + 1)
            ]
            server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
            await server.serve_forever(background=True)
            servers.append(server)
        bound = [s.transport.sockets[0].getsockname()[1] for s in servers]
        ports.put(bound)
        await asyncio.Event().wait()

    asyncio.run(main())


def _devices(ports: list[int], units: int, period: float) -> list[ModbusDevice]:
    profiles = load_profiles(PROFILES)
    out = []
    for line, port in enumerate(ports):
        endpoint = parse_address(f"tcp://127.0.0.1:{port}")
        for unit in range(1, units + 1):
            profile: Profile = replace(profiles[MIX[(line + unit) % len(MIX)]], timeout_s=1.0)
            out.append(
                ModbusDevice(f"d{line}-{unit}", profile.kind, "b", profile, endpoint, unit, period)
            )
    return out


async def _connector(devices: list[ModbusDevice], periods: int, period: float) -> dict[str, Any]:
    driver = ModbusDriver(devices, lambda: time.time_ns() // 1_000_000)
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    await asyncio.sleep(period)  # connect and settle into the schedule
    before = {h.device: h.good_polls for h in driver.health()}
    driver.poll(0)  # what the settling period read
    samples = 0
    cpu = time.process_time()
    wall = time.monotonic()
    for _ in range(int(periods * period)):
        await asyncio.sleep(1.0)
        samples += len(driver.poll(0))
    cpu = time.process_time() - cpu
    wall = time.monotonic() - wall
    stop.set()
    await task
    health = driver.health()
    polls = sum(h.good_polls - before[h.device] for h in health)
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "polls": polls,
        "samples": samples,
        "overruns": sum(h.overruns for h in health),
        "failed": sum(h.polls - h.good_polls for h in health),
        "requests": sum(line.stats.requests for line in driver.lines),
    }


_TYPES = {
    "int16": AsyncModbusTcpClient.DATATYPE.INT16,
    "uint16": AsyncModbusTcpClient.DATATYPE.UINT16,
    "int32": AsyncModbusTcpClient.DATATYPE.INT32,
    "uint32": AsyncModbusTcpClient.DATATYPE.UINT32,
    "float32": AsyncModbusTcpClient.DATATYPE.FLOAT32,
    "float64": AsyncModbusTcpClient.DATATYPE.FLOAT64,
}
# Per device: its unit, its read blocks, and per block (offset, count, type, word order)
# of each numeric value.
_Plan = tuple[int, tuple[Block, ...], tuple[tuple[tuple[int, int, Any, Any], ...], ...]]


def _bare_plan(device: ModbusDevice) -> _Plan:
    blocks = plan_reads(device.profile)
    per_block = []
    for block in blocks:
        per_block.append(
            tuple(
                (v.address - block.address, v.count, _TYPES[v.type], v.word_order)
                for v in device.profile.values
                if v.type in _TYPES and block.address <= v.address < block.end
            )
        )
    return device.unit, blocks, tuple(per_block)


async def _bare(devices: list[ModbusDevice], periods: int, period: float) -> dict[str, Any]:
    by_port: dict[int, list[_Plan]] = {}
    for device in devices:
        by_port.setdefault(device.endpoint.port, []).append(_bare_plan(device))
    polls = 0
    longest = 0.0

    async def line(port: int, members: list[_Plan]) -> None:
        nonlocal polls, longest
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
        await client.connect()
        start = asyncio.get_running_loop().time()
        for n in range(periods):
            began = asyncio.get_running_loop().time()
            for unit, blocks, values in members:
                for block, layout in zip(blocks, values, strict=True):
                    response = await client.read_holding_registers(
                        block.address, count=block.count, device_id=unit
                    )
                    registers = response.registers
                    for offset, count, data_type, word_order in layout:
                        client.convert_from_registers(
                            registers[offset : offset + count], data_type, word_order=word_order
                        )
                polls += 1
            longest = max(longest, asyncio.get_running_loop().time() - began)
            await asyncio.sleep(
                max(0.0, start + (n + 1) * period - asyncio.get_running_loop().time())
            )
        client.close()

    cpu = time.process_time()
    wall = time.monotonic()
    async with asyncio.TaskGroup() as tasks:
        for port, members in by_port.items():
            tasks.create_task(line(port, members))
    return {
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.monotonic() - wall,
        "polls": polls,
        "longest_round_s": longest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--periods", type=int, default=4)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ports_queue = context.Queue()
    server = context.Process(target=_serve, args=(args.lines, args.units, ports_queue), daemon=True)
    server.start()
    try:
        ports = ports_queue.get(timeout=60)
        devices = _devices(ports, args.units, args.period)
        connector = asyncio.run(_connector(devices, args.periods, args.period))
        bare = asyncio.run(_bare(devices, args.periods, args.period))
    finally:
        server.terminate()
        server.join(5)
    per_connector = connector["cpu_s"] / max(1, connector["polls"])
    per_bare = bare["cpu_s"] / max(1, bare["polls"])
    expected = len(devices) * args.periods
    print(
        f"{len(devices)} devices on {args.lines} lines, every {args.period:g} s, "
        f"{args.periods} periods"
    )
    print(
        f"connector: {connector['polls']} polls ({expected} due), {connector['samples']} "
        f"readings, {connector['requests']} requests, {connector['failed']} failed, "
        f"{connector['overruns']} overruns, CPU {connector['cpu_s']:.2f} s = "
        f"{per_connector * 1e3:.3f} ms per device poll"
    )
    print(
        f"bare pymodbus: {bare['polls']} polls, CPU {bare['cpu_s']:.2f} s = "
        f"{per_bare * 1e3:.3f} ms per device poll; longest round of a line "
        f"{bare['longest_round_s'] * 1e3:.0f} ms"
    )
    ratio = per_bare / per_connector if per_connector else float("nan")
    print(f"ratio bare / connector: {ratio:.2f} (target ≥ 0.8)")
    held = connector["overruns"] == 0 and connector["polls"] >= expected * 0.95
    print(f"poll period held: {'yes' if held else 'NO'}")
    return 0 if ratio >= 0.8 and held else 1


if __name__ == "__main__":
    raise SystemExit(main())
