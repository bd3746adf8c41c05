"""Registry records and the vocabulary of the Songjiang grading scheme's layers."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from jiayuan.catalogue import Kind
from jiayuan.registry.connect import Connect


class HousingCategory(StrEnum):
    """The five housing categories (分类) the Songjiang scheme grades separately."""

    COMMERCIAL = "commercial"
    MIXED = "mixed"
    RELOCATION = "relocation"
    AFFORDABLE = "affordable"
    SCATTERED_PUBLIC = "scattered_public"

    @property
    def zh(self) -> str:
        return _CATEGORY_ZH[self]


_CATEGORY_ZH: Mapping[HousingCategory, str] = {
    HousingCategory.COMMERCIAL: "商品房",
    HousingCategory.MIXED: "混合",
    HousingCategory.RELOCATION: "动迁",
    HousingCategory.AFFORDABLE: "保障房",
    HousingCategory.SCATTERED_PUBLIC: "零星公房",
}


class FeeBand(StrEnum):
    """The scheme's layers (分层) by property-service fee per m² and month."""

    CLOSED_FROM_2_5 = "closed_ge_2.5"
    CLOSED_BELOW_2_5 = "closed_lt_2.5"
    SCATTERED_BELOW_2_5 = "scattered_lt_2.5"

    @property
    def zh(self) -> str:
        return _FEE_BAND_ZH[self]


_FEE_BAND_ZH: Mapping[FeeBand, str] = {
    FeeBand.CLOSED_FROM_2_5: "2.5元及以上封闭小区",
    FeeBand.CLOSED_BELOW_2_5: "2.5元以下封闭小区",
    FeeBand.SCATTERED_BELOW_2_5: "2.5元以下零星小区",
}


@dataclass(frozen=True)
class District:
    id: str
    name_zh: str


@dataclass(frozen=True)
class Street:
    id: str
    district: str
    name_zh: str


@dataclass(frozen=True)
class Company:
    """A property-service company (物业服务企业); it manages one or more estates."""

    id: str
    name_zh: str


@dataclass(frozen=True)
class Estate:
    id: str
    name_zh: str
    district: str
    street: str
    company: str
    category: HousingCategory
    fee_band: FeeBand
    lat: float
    lon: float


@dataclass(frozen=True)
class Building:
    estate: str
    id: str  # unique within its estate
    floors: int
    households: int


@dataclass(frozen=True)
class Device:
    id: str
    estate: str
    building: str
    kind: Kind
    model: str
    installed: date
    last_inspection: date | None  # last annual (periodic) inspection; None = never
    last_assessment: date | None = None  # lifts: last 15-year safety assessment
    ports: int = 0  # e-bike chargers: charging ports
    connect: Connect | None = None  # how the edge reads it; None = not wired up (simulated)
    # The site (a pump room, a fire-pump room…) whose devices are judged together, named
    # within the estate; None = judged alone.
    site: str | None = None


@dataclass(frozen=True)
class SiteDevice:
    """A device of a site, as the site models need it."""

    id: str
    building: str
    kind: Kind


@dataclass(frozen=True)
class SiteMembers:
    """One site of an estate and its devices in registry order."""

    district: str
    street: str
    estate: str
    name: str
    devices: tuple[SiteDevice, ...]


@dataclass(frozen=True)
class EstateRecord:
    """One estate with everything the registry knows about it."""

    estate: Estate
    buildings: tuple[Building, ...]
    devices: tuple[Device, ...]
    district: District
    street: Street
    company: Company

    @property
    def households(self) -> int:
        return sum(b.households for b in self.buildings)

    def of_kind(self, kind: Kind) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.kind is kind)

    def sites(self) -> dict[str, tuple[Device, ...]]:
        """The estate's sites by name, each with its devices in registry order."""
        found: dict[str, list[Device]] = {}
        for device in self.devices:
            if device.site is not None:
                found.setdefault(device.site, []).append(device)
        return {site: tuple(devices) for site, devices in found.items()}


@dataclass(frozen=True)
class Registry:
    """A validated registry (build one with ``jiayuan.registry.tables.from_rows`` or the
    generator; both check every reference)."""

    districts: tuple[District, ...]
    streets: tuple[Street, ...]
    companies: tuple[Company, ...]
    estates: tuple[Estate, ...]
    buildings: tuple[Building, ...]
    devices: tuple[Device, ...]
    _records: dict[str, EstateRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        districts = {d.id: d for d in self.districts}
        streets = {(s.district, s.id): s for s in self.streets}
        companies = {c.id: c for c in self.companies}
        buildings: dict[str, list[Building]] = {e.id: [] for e in self.estates}
        devices: dict[str, list[Device]] = {e.id: [] for e in self.estates}
        for building in self.buildings:
            buildings[building.estate].append(building)
        for device in self.devices:
            devices[device.estate].append(device)
        records = {
            e.id: EstateRecord(
                estate=e,
                buildings=tuple(buildings[e.id]),
                devices=tuple(devices[e.id]),
                district=districts[e.district],
                street=streets[(e.district, e.street)],
                company=companies[e.company],
            )
            for e in self.estates
        }
        object.__setattr__(self, "_records", records)

    def record(self, estate_id: str) -> EstateRecord:
        try:
            return self._records[estate_id]
        except KeyError:
            raise KeyError(f"no estate {estate_id!r} in the registry") from None

    def records(self) -> tuple[EstateRecord, ...]:
        return tuple(self._records.values())

    def site_members(self) -> list[SiteMembers]:
        """Every estate's sites, estates and sites in registry order."""
        return [
            SiteMembers(
                record.estate.district,
                record.estate.street,
                record.estate.id,
                name,
                tuple(SiteDevice(d.id, d.building, d.kind) for d in devices),
            )
            for record in self.records()
            for name, devices in record.sites().items()
        ]

    def company_names(self) -> dict[str, str]:
        return {c.id: c.name_zh for c in self.companies}

    def on_streets(self, streets: Collection[str]) -> Registry:
        """The estates on these streets (by street id, as topics carry it), with their
        buildings and devices; every district, street and company stays."""
        estates = tuple(e for e in self.estates if e.street in streets)
        kept = {e.id for e in estates}
        return Registry(
            districts=self.districts,
            streets=self.streets,
            companies=self.companies,
            estates=estates,
            buildings=tuple(b for b in self.buildings if b.estate in kept),
            devices=tuple(d for d in self.devices if d.estate in kept),
        )


def years_after(day: date, years: int) -> date:
    """The same day ``years`` later (29 February becomes 28 February in other years)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
