"""The registry over HTTP: estates, one estate with its buildings and devices, devices."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from jiayuan.api_auth import Caller, current_caller
from jiayuan.registry.model import EstateRecord
from jiayuan.registry.store import RegistryStore

CallerDep = Annotated[Caller, Depends(current_caller)]


class EstateSummary(BaseModel):
    id: str
    name_zh: str
    district: str
    district_zh: str
    street: str
    street_zh: str
    company: str
    company_zh: str
    category: str
    category_zh: str
    fee_band: str
    fee_band_zh: str
    lat: float
    lon: float
    buildings: int
    households: int
    devices: int


class BuildingOut(BaseModel):
    id: str
    floors: int
    households: int


class DeviceOut(BaseModel):
    id: str
    building: str
    kind: str
    model: str
    installed: date
    last_inspection: date | None
    last_assessment: date | None
    ports: int


class EstateDetail(EstateSummary):
    building_list: list[BuildingOut]
    device_list: list[DeviceOut]


def estate_summary(record: EstateRecord) -> EstateSummary:
    e = record.estate
    return EstateSummary(
        id=e.id,
        name_zh=e.name_zh,
        district=e.district,
        district_zh=record.district.name_zh,
        street=e.street,
        street_zh=record.street.name_zh,
        company=e.company,
        company_zh=record.company.name_zh,
        category=e.category.value,
        category_zh=e.category.zh,
        fee_band=e.fee_band.value,
        fee_band_zh=e.fee_band.zh,
        lat=e.lat,
        lon=e.lon,
        buildings=sum(1 for b in record.buildings if b.households),
        households=record.households,
        devices=len(record.devices),
    )


def devices_out(record: EstateRecord) -> list[DeviceOut]:
    return [
        DeviceOut(
            id=d.id,
            building=d.building,
            kind=d.kind.value,
            model=d.model,
            installed=d.installed,
            last_inspection=d.last_inspection,
            last_assessment=d.last_assessment,
            ports=d.ports,
        )
        for d in record.devices
    ]


def create_registry_router(store: RegistryStore) -> APIRouter:
    router = APIRouter(prefix="/registry", tags=["registry"])

    def record(estate_id: str, caller: Caller) -> EstateRecord:
        try:
            found = store.load().record(estate_id)
        except KeyError:
            raise HTTPException(404, f"no estate {estate_id!r} in the registry") from None
        caller.require_reach(found.estate.street, estate_id, "the estate")
        return found

    @router.get("/estates", response_model=list[EstateSummary])
    def list_estates(
        caller: CallerDep, district: str = "", street: str = "", company: str = ""
    ) -> list[EstateSummary]:
        """Every estate, optionally only those of one district, street or company."""
        return [
            estate_summary(r)
            for r in store.load().records()
            if (not district or r.estate.district == district)
            and (not street or r.estate.street == street)
            and (not company or r.estate.company == company)
            and caller.reaches(r.estate.street, r.estate.id)
        ]

    @router.get("/estates/{estate_id}", response_model=EstateDetail)
    def get_estate(estate_id: str, caller: CallerDep) -> EstateDetail:
        """One estate with its buildings and devices."""
        found = record(estate_id, caller)
        return EstateDetail(
            **estate_summary(found).model_dump(),
            building_list=[
                BuildingOut(id=b.id, floors=b.floors, households=b.households)
                for b in found.buildings
            ],
            device_list=devices_out(found),
        )

    @router.get("/estates/{estate_id}/devices", response_model=list[DeviceOut])
    def estate_devices(estate_id: str, caller: CallerDep, kind: str = "") -> list[DeviceOut]:
        """The estate's devices, optionally of one kind."""
        found = record(estate_id, caller)
        return [d for d in devices_out(found) if not kind or d.kind == kind]

    return router
