"""The simulators' registry from the product registry, for ``jiayuan edge run``.

The product registry (SQLite, CSV or YAML) holds estates, buildings and devices but not
the simulated devices' physics; what they need of it is taken from the registry (a
lift's top floor and a fire panel's floors from its building, a charger's ports) and
the rest is left to each model's defaults.  The simulators' own registry.json is read
as it is.  Either way each device keeps its ``connect`` entry, so the edge reads the
registry once for its real and its simulated devices.
"""

from __future__ import annotations

from pathlib import Path

from jiayuan.catalogue import Kind
from jiayuan.registry.model import EstateRecord
from jiayuan.registry.sources import form_of, read_registry
from simulators.registry import Device, Estate, ParamValue, Registry, edge_id_of


def simulated_registry(path: Path) -> Registry:
    """The simulators' registry of whatever registry ``path`` holds.

    Raises ValueError (NotARegistry, RegistryInvalid) naming the path and the problem.
    """
    if form_of(path) == "json":
        try:
            return Registry.from_json(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a simulators' registry.json: {error}") from None
    return Registry(tuple(_estate(record) for record in read_registry(path).records()))


def _estate(record: EstateRecord) -> Estate:
    floors = {b.id: b.floors for b in record.buildings}
    estate = record.estate
    return Estate(
        id=estate.id,
        name_zh=estate.name_zh,
        district=estate.district,
        street=estate.street,
        edge_id=edge_id_of(estate.id),
        # Buildings people live in; pump rooms, bike sheds and roads have no floors.
        buildings=tuple(b.id for b in record.buildings if b.floors > 0),
        devices=tuple(
            Device(
                d.id,
                d.kind,
                estate.id,
                d.building,
                _params(d.kind, floors.get(d.building, 0), d.ports, d.building),
                site=d.site or "",
                connect=None if d.connect is None else d.connect.as_json(),
            )
            for d in record.devices
        ),
        district_zh=record.district.name_zh,
        street_zh=record.street.name_zh,
    )


def _params(kind: Kind, floors: int, ports: int, building: str) -> dict[str, ParamValue]:
    if kind is Kind.LIFT and floors > 1:
        return {"top_floor": floors, "rated_speed": _rated_speed(floors)}
    if kind is Kind.FIRE and floors > 0:
        return {"floors": floors}
    if kind is Kind.EBIKE_CHARGER and ports > 0:
        return {"ports": ports}
    if kind is Kind.WATERLOGGING:
        return {"location": building}
    return {}


def _rated_speed(floors: int) -> float:
    # Usual Chinese residential practice: faster cars for taller buildings.
    if floors <= 11:
        return 1.0
    if floors <= 18:
        return 1.5
    return 2.0 if floors <= 25 else 2.5
