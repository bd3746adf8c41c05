"""A district's traffic: N distinct devices, each on its family's period, batched per estate.

The devices are those of an estate registry (``simulators.registry.build_registry``, cut to
exactly N devices), so the family mix is what a registry holds: lifts and a fire panel in
every high-rise, water tanks, e-bike piles and waterlogging gauges in every estate, on the
registry's districts and streets.  Each device reports a full snapshot of its signals every
``heartbeat_s`` of its family (``jiayuan.catalogue``) with ±10 % jitter, on a phase of its
own.  Its values are healthy (noise around levels of its own: no rule or statistical
detector fires) and valid under the wire contract.  Each estate's edge publishes what its
devices read in a ``flush_ms`` window as batch messages of at most ``batch_max`` readings
and ``MAX_PAYLOAD_BYTES`` (``edge.agent``'s envelope).  The edge agent polls its driver
once a second and publishes what it read, so live traffic is ``flush_ms = 1000``; a window
as long as the whole span is a spool replayed after an outage.

The schedule is fixed on absolute time: reading k of a device is due at its phase plus k
periods, and its jitter, seq and values follow from (seed, device, k).  So a time window
yields the readings of a longer window that fall in it, and seqs continue from one window
to the next (an hour of backlog, then live traffic, numbered as one edge numbers them).
A reading is spliced from bytes made once per device (its identity and a few snapshots of
its values): no Python object per reading but its bytes, so a district's minutes of traffic
take seconds to build.

Public API (the benchmarks build on it; it stays small and stable):

``build_district(devices, seed=1) -> District``
    ``District.estates`` (registry estates, the last one cut), ``.registry`` (of those),
    ``.devices`` (the count, exactly ``devices``).
``District.traffic(start_ms, end_ms, *, flush_ms=1000, batch_max=500, single=False,
alarms=0, estates=None) -> Traffic``
    every reading with ``start_ms <= ts < end_ms``.  ``Traffic.wires`` holds (topic,
    payload, readings in it) in publish order, ``.publish_ms`` when the edge publishes
    each (its window's end), ``.readings`` the total.  ``single``: one reading per message
    on the device's own topic instead (a vendor device without an edge).  ``alarms``: that
    many distinct fire panels each send one fire alarm (``fire_alarm`` 1, event
    ``fire.alarm``) spread evenly over the window; ``Traffic.alarms`` says which wire
    carries each.  ``estates``: only the estates at these indices of ``District.estates``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from edge.agent import envelope_payload
from jiayuan.catalogue import MAX_PORTS, Kind, family, port_field
from jiayuan.config import EdgeConfig
from jiayuan.contract import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    Channel,
    batch_topic,
    device_topic,
)
from simulators.registry import Device, Estate, Registry, build_registry

# One message: (topic, payload, readings in it), as the benchmarks publish it.
Wire = tuple[str, bytes, int]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

LIVE_FLUSH_MS = 1000  # the edge agent's poll interval: it publishes what each poll read
JITTER_SHARE = 0.1  # a reading comes up to this share of its period early or late
VARIANTS = 4  # value snapshots per device; each reading takes one of them at random
# Seqs count periods since this instant (2023-11-14), so they are ≥ 1 in any later window.
EPOCH_MS = 1_700_000_000_000
_ENVELOPE_ROOM = 200  # as edge.agent: room for the envelope around the readings
_KINDS = tuple(Kind)
_FIRE = _KINDS.index(Kind.FIRE)
_AVERAGE_DEVICES_PER_ESTATE = 17  # build_registry's estates hold about 17.7


class Alarm(NamedTuple):
    wire: int  # index in Traffic.wires of the message carrying it
    device: str
    ts: int


@dataclass(frozen=True)
class Traffic:
    wires: list[Wire]
    publish_ms: list[int]  # per wire: when its edge publishes it
    readings: int
    alarms: list[Alarm]


class District:
    """The layout of a district's devices and their bytes; ``traffic`` makes messages."""

    def __init__(self, estates: Sequence[Estate], seed: int) -> None:
        self.estates = tuple(estates)
        self.registry = Registry(self.estates)
        self.seed = seed
        devices = self.registry.devices()
        self._devices = devices
        estate_index = {estate.id: n for n, estate in enumerate(self.estates)}
        self._estate = np.array([estate_index[d.estate] for d in devices], dtype=np.int64)
        self._kind = np.array([_KINDS.index(d.kind) for d in devices], dtype=np.int64)
        periods = {kind: int(family(kind).heartbeat_s * 1000) for kind in Kind}
        self._period = np.array([periods[d.kind] for d in devices], dtype=np.int64)
        index = np.arange(len(devices), dtype=np.int64)
        self._phase = (
            _mix(seed, index, np.zeros_like(index), 0) % self._period.astype(np.uint64)
        ).astype(np.int64)
        self._prefix = [_prefix(d) for d in devices]
        rng = np.random.default_rng(seed)
        self._values: list[tuple[bytes, ...]] = [()] * len(devices)
        for kind, make in _VALUES.items():
            mine = [n for n, d in enumerate(devices) if d.kind is kind]
            for n, made in zip(mine, make([devices[n] for n in mine], rng), strict=True):
                self._values[n] = made

    @property
    def devices(self) -> int:
        return len(self._devices)

    def traffic(
        self,
        start_ms: int,
        end_ms: int,
        *,
        flush_ms: int = LIVE_FLUSH_MS,
        batch_max: int = EdgeConfig().batch_max_readings,
        single: bool = False,
        alarms: int = 0,
        estates: Sequence[int] | None = None,
    ) -> Traffic:
        """Every reading with start_ms ≤ ts < end_ms as messages (the module docstring
        says what each argument does)."""
        if start_ms < EPOCH_MS or end_ms <= start_ms:
            raise ValueError(f"window {start_ms}..{end_ms} is empty or before {EPOCH_MS}")
        if flush_ms < 1 or not 1 <= batch_max <= MAX_READINGS_PER_MESSAGE:
            raise ValueError(
                f"flush_ms must be ≥ 1 and batch_max 1..{MAX_READINGS_PER_MESSAGE}, "
                f"not {flush_ms} and {batch_max}"
            )
        chosen = np.arange(self.devices, dtype=np.int64)
        if estates is not None:
            chosen = chosen[np.isin(self._estate, np.asarray(estates, dtype=np.int64))]
        device, k, ts = self._schedule(chosen, start_ms, end_ms)
        variant = (_mix(self.seed, device, k, 2) % np.uint64(VARIANTS)).astype(np.int64)
        self._mark_alarms(alarms, device, ts, variant, start_ms, end_ms)
        if single:
            order = np.lexsort((device, ts))
            publish = ts[order]
        else:
            window = ts // flush_ms
            order = np.lexsort((ts, self._estate[device], window))
            publish = (window[order] + 1) * flush_ms
        device, k, ts, variant = device[order], k[order], ts[order], variant[order]
        seq = k - (EPOCH_MS - self._phase[device]) // self._period[device]
        prefix, values = self._prefix, self._values
        bodies = [
            b'%s%d,"ts":%d,%s}' % (prefix[d], s, t, values[d][v])
            for d, s, t, v in zip(
                device.tolist(), seq.tolist(), ts.tolist(), variant.tolist(), strict=True
            )
        ]
        if single:
            wires = self._single(device, variant, bodies)
            publish_ms = publish.tolist()
            carried = np.arange(len(bodies))
        else:
            wires, publish_ms, carried = self._batched(device, publish, bodies, batch_max)
        found = [
            Alarm(int(carried[at]), self._devices[int(device[at])].id, int(ts[at]))
            for at in np.flatnonzero(variant == _ALARM).tolist()
        ]
        return Traffic(wires, publish_ms, len(bodies), found)

    # --- the schedule ------------------------------------------------------------------

    def _schedule(self, chosen: I64, start_ms: int, end_ms: int) -> tuple[I64, I64, I64]:
        """(device, k, ts) of every reading of these devices with start ≤ ts < end."""
        devices, ks, stamps = [], [], []
        for period in np.unique(self._period[chosen]).tolist():
            group = chosen[self._period[chosen] == period]
            phase = self._phase[group]
            jitter = int(period * JITTER_SHARE)
            first = (start_ms - jitter - phase) // period
            count = (end_ms - start_ms + 2 * jitter) // period + 2
            k = first[:, None] + np.arange(count, dtype=np.int64)[None, :]
            device = np.broadcast_to(group[:, None], k.shape)
            spread = (_mix(self.seed, device, k, 1) % np.uint64(2 * jitter + 1)).astype(np.int64)
            ts = phase[:, None] + k * period + spread - jitter
            inside = (ts >= start_ms) & (ts < end_ms)
            devices.append(device[inside])
            ks.append(k[inside])
            stamps.append(ts[inside])
        if not devices:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(devices), np.concatenate(ks), np.concatenate(stamps)

    def _mark_alarms(
        self, alarms: int, device: I64, ts: I64, variant: I64, start_ms: int, end_ms: int
    ) -> None:
        """Make ``alarms`` readings of distinct fire panels fire alarms, evenly in time."""
        if alarms <= 0:
            return
        fire = np.flatnonzero(self._kind[device] == _FIRE)
        panels = np.unique(device[fire])
        if len(panels) < alarms:
            raise ValueError(f"{alarms} alarms asked of {len(panels)} fire panels")
        step = (end_ms - start_ms) / alarms
        for index in range(alarms):
            panel = panels[(index * len(panels)) // alarms]
            own = fire[device[fire] == panel]
            target = start_ms + (index + 0.5) * step
            variant[own[np.argmin(np.abs(ts[own] - target))]] = _ALARM

    # --- the messages ------------------------------------------------------------------

    def _single(self, device: I64, variant: I64, bodies: list[bytes]) -> list[Wire]:
        wires: list[Wire] = []
        for d, v, body in zip(device.tolist(), variant.tolist(), bodies, strict=True):
            dev = self._devices[d]
            estate = self.estates[int(self._estate[d])]
            channel = Channel.EVENT if v == _ALARM else Channel.TELEMETRY
            topic = device_topic(
                estate.district, estate.street, estate.id, dev.kind, dev.id, channel
            )
            wires.append((topic, envelope_payload(estate.edge_id, [body]), 1))
        return wires

    def _batched(
        self, device: I64, publish: I64, bodies: list[bytes], batch_max: int
    ) -> tuple[list[Wire], list[int], I64]:
        """Each estate's readings of each window as messages: (wires, publish times, the
        wire that carries each reading)."""
        estate = self._estate[device]
        cut = np.flatnonzero((np.diff(publish) != 0) | (np.diff(estate) != 0)) + 1
        starts = [0, *cut.tolist()]
        ends = [*cut.tolist(), len(bodies)]
        total = np.concatenate(([0], np.cumsum(np.array(list(map(len, bodies))) + 1))).tolist()
        heads = [envelope_payload(e.edge_id, [])[:-2] for e in self.estates]
        topics = [batch_topic(e.district, e.street, e.id, e.edge_id) for e in self.estates]
        rooms = [MAX_PAYLOAD_BYTES - _ENVELOPE_ROOM - len(e.edge_id) for e in self.estates]
        wires: list[Wire] = []
        publish_ms: list[int] = []
        firsts: list[int] = []  # per wire, the position of its first reading
        estate_of = estate.tolist()
        publish_of = publish.tolist()
        for first, last in zip(starts, ends, strict=True):
            owner = estate_of[first]
            if last - first <= batch_max and total[last] - total[first] <= rooms[owner]:
                pieces = [(first, last)]  # the usual case: the window fits one message
            else:
                pieces = _split(total, first, last, batch_max, rooms[owner])
            head, topic, at = heads[owner], topics[owner], publish_of[first]
            for low, high in pieces:
                # envelope_payload's bytes, its head made once per estate
                wires.append((topic, b"%s%s]}" % (head, b",".join(bodies[low:high])), high - low))
                publish_ms.append(at)
                firsts.append(low)
        carried = np.searchsorted(np.array(firsts), np.arange(len(bodies)), side="right") - 1
        return wires, publish_ms, carried


def build_district(devices: int, seed: int = 1) -> District:
    """The first ``devices`` devices of ``build_registry``'s estates for ``seed``."""
    if devices < 1:
        raise ValueError("a district needs at least one device")
    estates = max(1, math.ceil(devices / _AVERAGE_DEVICES_PER_ESTATE))
    while True:
        built = build_registry(estates, seed).estates
        if sum(len(estate.devices) for estate in built) >= devices:
            break
        estates = estates * 11 // 10 + 1
    kept: list[Estate] = []
    left = devices
    for estate in built:
        if left <= 0:
            break
        if len(estate.devices) > left:
            estate = replace(estate, devices=estate.devices[:left])
        kept.append(estate)
        left -= len(estate.devices)
    return District(kept, seed)


def _split(
    total: list[int], first: int, last: int, batch_max: int, room: int
) -> list[tuple[int, int]]:
    """first..last in consecutive pieces of at most batch_max readings and room bytes
    (``total``: the bytes of the readings before each position, a comma each)."""
    pieces = []
    low = first
    for at in range(first + 1, last):
        if at - low >= batch_max or total[at + 1] - total[low] > room:
            pieces.append((low, at))
            low = at
    pieces.append((low, last))
    return pieces


def _mix(seed: int, device: npt.ArrayLike, k: npt.ArrayLike, purpose: int) -> U64:
    """A well-mixed 64-bit hash of (seed, device, k, purpose) per element (splitmix64)."""
    with np.errstate(over="ignore"):
        x = (
            np.asarray(device, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            + np.asarray(k, dtype=np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            + np.uint64((seed * 4 + purpose) & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


# --- healthy values ------------------------------------------------------------------------
# Per device, VARIANTS snapshots of '"values":{...}' (a fire panel's also its alarm after
# them, at index _ALARM).  Levels are the device's own (its registry parameters where it
# has them); the snapshots differ by sensor noise, so a series changes on most readings
# without a step, a trend or a rule's condition.

_ALARM = VARIANTS
Rng = np.random.Generator
ValueMaker = Callable[[list[Device], Rng], list[tuple[bytes, ...]]]


def _prefix(device: Device) -> bytes:
    return b'{"device":"%s","kind":"%s","building":"%s","seq":' % (
        device.id.encode(),
        device.kind.value.encode(),
        device.building.encode(),
    )


def _noise(rng: Rng, scale: float, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Zero-mean noise of standard deviation ``scale`` within ±2.45 σ (as simulators.base)."""
    return (rng.random(shape) + rng.random(shape) - 1.0) * scale * 2.449


def _param(devices: list[Device], name: str, default: float) -> npt.NDArray[np.float64]:
    return np.array([float(d.params.get(name, default)) for d in devices])


_LIFT_VALUES = (
    b'"values":{"car_status":%d,"car_direction":%d,"door_zone":%d,"car_position":%d,'
    b'"door_status":%d,"passenger_status":%d,"service_mode":1,"up_limit":0,"down_limit":0,'
    b'"power_status":1,"speed":%r,"rated_speed":%r,"fault_code":0}'
)
# (car_status, car_direction up/down, door_zone, door_status, passenger_status) of a lift
# parked closed and empty, parked open with someone stepping in, travelling.
_PARKED, _BOARDING, _TRAVELLING = (0, 0, 1, 0, 2), (0, 0, 1, 1, 1), (1, 1, 2, 0, 1)


def _lift_values(devices: list[Device], rng: Rng) -> list[tuple[bytes, ...]]:
    """Parked at a floor with the door closed and nobody inside, parked with the door open
    and someone stepping in, or travelling at up to its rated speed with the door closed:
    none of these is a fault however long it lasts."""
    n = len(devices)
    lowest = _param(devices, "lowest_floor", 1).astype(np.int64)[:, None]
    top = _param(devices, "top_floor", 18).astype(np.int64)[:, None]
    rated = _param(devices, "rated_speed", 1.0)
    # A floor among lowest..top, which has no floor 0 (B1 is -1, the ground floor 1).
    floor = lowest + np.floor(rng.random((n, VARIANTS)) * (top - lowest)).astype(np.int64)
    floor = np.where(floor >= 0, floor + (lowest < 0), floor).tolist()
    speed = np.round(rated[:, None] * (0.9 + 0.1 * rng.random((n, VARIANTS))), 3).tolist()
    roll = rng.random((n, VARIANTS)).tolist()
    down = (rng.random((n, VARIANTS)) < 0.5).tolist()
    made = []
    for d, nameplate in enumerate(rated.tolist()):
        snapshots = []
        for v in range(VARIANTS):
            state = _PARKED if roll[d][v] < 0.5 else _BOARDING if roll[d][v] < 0.65 else None
            if state is None:
                moving, direction, zone, door, passenger = _TRAVELLING
                direction += down[d][v]
                now = speed[d][v]
            else:
                moving, direction, zone, door, passenger = state
                now = 0.0
            snapshots.append(
                _LIFT_VALUES
                % (moving, direction, zone, floor[d][v], door, passenger, now, nameplate)
            )
        made.append(tuple(snapshots))
    return made


_FIRE_VALUES = (
    b'"values":{"fire_alarm":%d,"fault":0,"supervisory":0,"isolated":0,'
    b'"sprinkler_pressure":%r,"hydrant_pressure":%r,"tank_level":%r,'
    b'"pump_commanded":0,"pump_running":0}'
)


def _fire_values(devices: list[Device], rng: Rng) -> list[tuple[bytes, ...]]:
    """The panel quiet; the sprinkler pipe inside its jockey pump's band (the pump idle),
    the hydrant pipe and the tank at their levels with noise.  After the snapshots: the
    first one with the fire-alarm bit set, flagged ``fire.alarm``."""
    n = len(devices)
    shape = (n, VARIANTS)
    setpoint = _param(devices, "sprinkler_setpoint", 0.35)[:, None]
    sprinkler = np.round(setpoint + rng.uniform(-0.04, 0.01, shape), 3).tolist()
    hydrant = _param(devices, "hydrant_setpoint", 0.45)[:, None] + _noise(rng, 0.003, shape)
    tank = _param(devices, "tank_level_m", 4.0)[:, None] + _noise(rng, 0.005, shape)
    hydrant, tank = np.round(hydrant, 3).tolist(), np.round(tank, 3).tolist()
    made = []
    for d in range(n):
        snapshots = [
            _FIRE_VALUES % (0, sprinkler[d][v], hydrant[d][v], tank[d][v]) for v in range(VARIANTS)
        ]
        alarm = _FIRE_VALUES % (1, sprinkler[d][0], hydrant[d][0], tank[d][0])
        made.append((*snapshots, alarm + b',"event":"fire.alarm"'))
    return made


def _water_tank_values(devices: list[Device], rng: Rng) -> list[tuple[bytes, ...]]:
    """Drinking water within GB 5749 (chlorine, turbidity, pH), the tank between a third
    and nine tenths full, the supply pressure steady, the lid shut."""
    n = len(devices)
    shape = (n, VARIANTS)
    chlorine = np.round(rng.uniform(0.3, 0.6, (n, 1)) + _noise(rng, 0.003, shape), 3)
    turbid = rng.uniform(0.1, 0.5, (n, 1)) + _noise(rng, 0.02, shape)
    turbidity = np.round(np.maximum(0.05, turbid), 3)
    ph = np.round(rng.uniform(7.0, 7.8, (n, 1)) + _noise(rng, 0.03, shape), 2)
    level = np.round(rng.uniform(35.0, 90.0, (n, 1)) + _noise(rng, 0.1, shape), 2)
    pressure = np.round(rng.uniform(0.25, 0.45, (n, 1)) + _noise(rng, 0.003, shape), 3)
    pump = (rng.random(n) < 0.3).tolist()
    columns = [a.tolist() for a in (chlorine, turbidity, ph, level, pressure)]
    return [
        tuple(
            b'"values":{"free_chlorine":%r,"turbidity":%r,"ph":%r,"level_pct":%r,'
            b'"supply_pressure":%r,"pump_running":%d,"lid_open":0}'
            % (*(column[d][v] for column in columns), pump[d])
            for v in range(VARIANTS)
        )
        for d in range(n)
    ]


def _ebike_template(ports: int) -> bytes:
    fields = b",".join(
        b'"%s":%%d,"%s":%%r,"%s":%%r,"%s":%%r' % _PORT_NAMES[port] for port in range(ports)
    )
    return b'"values":{"port_count":%d,"smoke":0,"total_power":%r,' + fields + b"}"


def _ebike_charger_values(devices: list[Device], rng: Rng) -> list[tuple[bytes, ...]]:
    """A pile with about a third of its ports charging at 2-4 A from a 48 V or 60 V pack,
    some bikes plugged in and full, the rest free.  Each port's temperature is the pile's
    ambient plus the heat its power explains (0.07 °C a watt): no port runs hotter than
    its peers, and none is near a cut-off."""
    n, width = len(devices), MAX_PORTS
    ports = np.array([int(d.params.get("ports", 10)) for d in devices])
    ambient = rng.uniform(22.0, 28.0, (n, 1, 1))
    roll = rng.random((n, 1, width))
    amps = np.where(roll < 0.35, rng.uniform(2.0, 4.0, (n, 1, width)), 0.0)
    plugged = np.broadcast_to(roll < 0.5, (n, VARIANTS, width)).astype(np.int64)
    volts = rng.choice((48.0, 60.0), (n, 1, width)) * rng.uniform(1.0, 1.12, (n, 1, width))
    shape = (n, VARIANTS, width)
    current = np.where(amps > 0, np.round(amps + _noise(rng, 0.02, shape), 2), 0.0)
    power = np.round(current * volts, 1)
    temp = np.round(ambient + 0.07 * power + _noise(rng, 0.15, shape), 1)
    # Per port: plugged, current, power, temp, in the order of the template's fields.
    per_port = np.stack((plugged, current, power, temp), axis=-1).tolist()
    templates = {count: _ebike_template(count) for count in range(1, MAX_PORTS + 1)}
    made = []
    for d, count in enumerate(ports.tolist()):
        totals = np.round(power[d, :, :count].sum(axis=1), 1).tolist()
        snapshots = []
        for v in range(VARIANTS):
            flat = [x for port in per_port[d][v][:count] for x in port]
            flat[0::4] = [int(x) for x in flat[0::4]]
            snapshots.append(templates[count] % (count, totals[v], *flat))
        made.append(tuple(snapshots))
    return made


_PORT_NAMES = [
    tuple(port_field(port, name).encode() for name in ("plugged", "current", "power", "temp"))
    for port in range(1, MAX_PORTS + 1)
]


def _waterlogging_values(devices: list[Device], rng: Rng) -> list[tuple[bytes, ...]]:
    """A dry road and no rain: what a gauge reads on most days."""
    dry = b'"values":{"depth":0.0,"rain_rate":0.0}'
    return [(dry,) * VARIANTS for _ in devices]


_VALUES: dict[Kind, ValueMaker] = {
    Kind.LIFT: _lift_values,
    Kind.FIRE: _fire_values,
    Kind.WATER_TANK: _water_tank_values,
    Kind.EBIKE_CHARGER: _ebike_charger_values,
    Kind.WATERLOGGING: _waterlogging_values,
}
