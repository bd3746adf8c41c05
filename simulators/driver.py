"""Simulated devices behind the edge agent's driver interface, and batch generation.

``SimulatedDriver`` is what an edge agent polls in real time for one estate;
``generate`` produces the same samples for many estates as fast as the CPU allows, in
global time order, for tests, benchmarks and ``jiayuan simulate``.  Both build the models
the same way, so for the same registry, faults, start and seed they yield the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from edge.drivers import DriverSample
from jiayuan.catalogue import Kind
from simulators.base import DeviceModel
from simulators.ebike_charger import EbikeChargerModel
from simulators.faults import Fault
from simulators.fire import FireModel
from simulators.lift import LiftModel
from simulators.registry import Device, Estate, Registry
from simulators.water_tank import WaterTankModel
from simulators.waterlogging import WaterloggingModel

MODELS: Mapping[Kind, type[DeviceModel]] = {
    Kind.LIFT: LiftModel,
    Kind.FIRE: FireModel,
    Kind.WATER_TANK: WaterTankModel,
    Kind.EBIKE_CHARGER: EbikeChargerModel,
    Kind.WATERLOGGING: WaterloggingModel,
}
GENERATE_WINDOW_MS = 10_000


def build_model(
    device: Device, start_ms: int, seed: int, faults: Sequence[Fault] = ()
) -> DeviceModel:
    """The model of one device, applying those of ``faults`` that name it."""
    return MODELS[device.kind](device, start_ms, seed, [f for f in faults if f.device == device.id])


class SimulatedDriver:
    """Every device of one estate, as an ``edge.drivers.Driver``."""

    def __init__(
        self,
        registry: Registry,
        estate_id: str,
        faults: Iterable[Fault],
        start_ms: int,
        seed: int,
    ) -> None:
        self.estate: Estate = registry.estate(estate_id)
        ids = {d.id for d in self.estate.devices}
        mine = [f for f in faults if f.device in ids]
        self._models = [(d, build_model(d, start_ms, seed, mine)) for d in self.estate.devices]

    def poll(self, now_ms: int) -> list[DriverSample]:
        """Samples up to and including ``now_ms`` not returned before, in time order
        (ties in device order)."""
        out = self.collect(now_ms)
        out.sort(key=_ts)
        return out

    def collect(self, now_ms: int) -> list[DriverSample]:
        """Like ``poll``, in device order rather than time order."""
        out: list[DriverSample] = []
        for device, model in self._models:
            kind, building, device_id = device.kind, device.building, device.id
            for ts, values, event in model.advance(now_ms):
                out.append(DriverSample(device_id, kind, building, ts, values, event))
        return out


def _ts(sample: DriverSample) -> int:
    return sample.ts


def generate(
    registry: Registry,
    faults: Iterable[Fault],
    start_ms: int,
    end_ms: int,
    seed: int,
    estates: Iterable[str] | None = None,
) -> Iterator[tuple[Estate, DriverSample]]:
    """Every sample with start_ms ≤ ts < end_ms of the given estates (default all),
    in time order across estates."""
    fault_list = list(faults)
    chosen = [registry.estate(e) for e in estates] if estates is not None else registry.estates
    drivers = [(e, SimulatedDriver(registry, e.id, fault_list, start_ms, seed)) for e in chosen]
    window_start = start_ms
    while window_start < end_ms:
        until = min(window_start + GENERATE_WINDOW_MS, end_ms) - 1
        batch = [(estate, sample) for estate, driver in drivers for sample in driver.collect(until)]
        batch.sort(key=_batch_ts)
        yield from batch
        window_start = until + 1


def _batch_ts(item: tuple[Estate, DriverSample]) -> int:
    return item[1].ts
