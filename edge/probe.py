"""``jiayuan edge probe``: read one device once, as an installer on a ladder needs it.

Through its profile, every value is shown decoded with its unit beside the catalogue's
plausible range and the raw number the device sent; without a profile, a raw register
range is shown as words (and decoded as one type when asked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge.decode import DecodeProblem, plausible_range, registers_to_raw
from edge.devices import Endpoint, ModbusDevice
from edge.modbus import FAILURE_MEANINGS, ModbusLine, ReadFailure
from edge.profile import BIT_FUNCTIONS, ORDER_NAMES
from edge.readplan import Block, decode_reading, plan_reads


@dataclass
class ProbeResult:
    ok: bool
    lines: list[str] = field(default_factory=list)


def _ignore(_samples: object) -> None:
    return None


def _clock() -> int:
    return time.time_ns() // 1_000_000


async def _open(endpoint: Endpoint, devices: list[ModbusDevice]) -> ModbusLine | str:
    line = ModbusLine(endpoint, devices, _ignore, _clock)
    if not await line.open():
        return f"连接失败 cannot connect to {endpoint}"
    return line


async def probe_device(device: ModbusDevice) -> ProbeResult:
    profile = device.profile
    line = await _open(device.endpoint, [device])
    if isinstance(line, str):
        return ProbeResult(False, [line])
    blocks = plan_reads(profile)
    started = time.monotonic()
    try:
        table = await line.read_blocks(device.unit, blocks, profile.timeout_s)
    except ReadFailure as failure:
        return _failed(failure)
    finally:
        line.close()
    took_ms = (time.monotonic() - started) * 1000
    reading = decode_reading(profile, table)
    fam = profile.family
    out = [
        f"{device.id}: profile {profile.name} ({fam.title}), unit {device.unit} on "
        f"{device.endpoint}: {len(blocks)} request(s) in {took_ms:.0f} ms",
        f"  {'signal':<18} {'value':>12}  {'unit':<6} {'plausible':<18} raw",
    ]
    raws = _raw_texts(device, table)
    for name, value in reading.values.items():
        signal = fam.signal(name)
        unit = signal.unit if signal is not None else ""
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        out.append(
            f"  {name:<18} {shown:>12}  {unit:<6} {plausible_range(fam, name):<18} "
            f"{raws.get(name, '')}"
        )
    for problem in reading.problems:
        out.append(f"  ! {problem.detail}  [{problem.reason}]")
    for code in sorted(reading.active_events):
        out.append(f"  事件 event active: {code} {fam.event(code).title}")
    return ProbeResult(True, out)


def _raw_texts(device: ModbusDevice, table: dict[tuple[int, int], int]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in device.profile.values:
        words = [table.get((spec.function, spec.address + i)) for i in range(spec.count)]
        if spec.function in BIT_FUNCTIONS:
            out[spec.field] = f"input {spec.address} = {words[0]}"
        else:
            out[spec.field] = f"@{spec.address}: " + " ".join(
                f"{w:04x}" for w in words if w is not None
            )
    return out


async def probe_raw(
    endpoint: Endpoint,
    unit: int,
    function: int,
    address: int,
    count: int,
    timeout_s: float,
    value_type: str | None = None,
    order: str = "ABCD",
) -> ProbeResult:
    line = await _open(endpoint, [])
    if isinstance(line, str):
        return ProbeResult(False, [line])
    try:
        table = await line.read_blocks(unit, [Block(function, address, count)], timeout_s)
    except ReadFailure as failure:
        return _failed(failure)
    finally:
        line.close()
    words = [table[(function, address + i)] for i in range(count)]
    out = [f"unit {unit} on {endpoint}, function {function}, {count} from address {address}:"]
    if function in BIT_FUNCTIONS:
        out.append("  " + " ".join(str(w) for w in words))
        return ProbeResult(True, out)
    for offset, word in enumerate(words):
        signed = word - 0x10000 if word & 0x8000 else word
        out.append(f"  {address + offset:>5}: 0x{word:04x} {word:>6} {signed:>7}")
    if value_type is not None:
        byte_order, word_order = ORDER_NAMES[order]
        try:
            value = registers_to_raw(words, value_type, byte_order, word_order)
        except (DecodeProblem, ValueError) as error:
            out.append(f"  as {value_type} {order}: cannot decode: {error}")
        else:
            out.append(f"  as {value_type} {order}: {value!r}")
    return ProbeResult(True, out)


def _failed(failure: ReadFailure) -> ProbeResult:
    meaning = FAILURE_MEANINGS.get(failure.reason)
    if meaning is None and failure.reason.startswith("exception_"):
        meaning = FAILURE_MEANINGS["exception"]
    lines = [f"读取失败 read failed: {failure}"]
    if meaning:
        lines.append(f"  likely: {meaning}")
    return ProbeResult(False, lines)
