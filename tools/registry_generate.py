"""A realistic product registry made from the simulators' registry.

Same estates, buildings and device ids as ``simulators.registry.build_registry`` (so the
alerts of a simulated run belong to registry devices), plus what the simulators do not
model: property companies (each manages several estates, a few work city-wide), housing
category and fee band (older walk-up estates are mostly relocation, mixed or scattered
public housing), location, households, device models and dates.  How well an estate's
equipment is kept depends on its company and category, so some lifts are past 15 years
without their safety assessment, some inspections are overdue and some estates have too
few charging ports: the scores spread.  The same simulators registry, seed and ``as_of``
give the same result.  Each estate's water tanks form one site, its pump room (``SITES``).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, timedelta

from jiayuan.catalogue import Kind
from jiayuan.registry.connect import Connect, ConnectInvalid, parse_connect
from jiayuan.registry.model import (
    Building,
    Company,
    Device,
    District,
    Estate,
    FeeBand,
    HousingCategory,
    Registry,
    Street,
    years_after,
)
from simulators import registry as sim

# Approximate centres of the simulators' districts (WGS-84), for the map.
DISTRICT_CENTRES: Mapping[str, tuple[float, float]] = {
    "songjiang": (31.032, 121.228),
    "minhang": (31.112, 121.382),
    "pudong": (31.221, 121.544),
    "xuhui": (31.188, 121.437),
    "yangpu": (31.260, 121.526),
    "baoshan": (31.405, 121.489),
    "putuo": (31.250, 121.397),
    "jiading": (31.375, 121.265),
}
# Companies that work across the city; the rest are local to one district.
_CITY_COMPANIES: tuple[tuple[str, str], ...] = (
    ("wanke", "万科物业"),
    ("lvcheng", "绿城物业"),
    ("baoli", "保利物业"),
    ("zhonghai", "中海物业"),
    ("shangfang", "上房物业"),
)
_LOCAL_STEMS: tuple[tuple[str, str], ...] = (
    ("anju", "安居"),
    ("xinyuan", "新苑"),
    ("hexie", "和谐"),
    ("huaxin", "华欣"),
    ("minsheng", "民生"),
    ("jiahe", "佳和"),
    ("ruifeng", "瑞丰"),
    ("yongan", "永安"),
    ("kangcheng", "康城"),
    ("fuhua", "福华"),
    ("tianyi", "天怡"),
    ("huijia", "惠佳"),
)
MODELS: Mapping[Kind, tuple[str, ...]] = {
    Kind.LIFT: ("三菱 LEHY-III", "日立 MCA", "奥的斯 GeN2", "通力 MonoSpace", "迅达 3300"),
    Kind.FIRE: ("海湾 GST200", "泛海三江 JB-QB-9000", "利达 LD128E"),
    Kind.WATER_TANK: ("不锈钢组合水箱 SUS304", "二次供水监测终端 WQ-5"),
    Kind.EBIKE_CHARGER: ("智能充电桩 CD-10", "智能充电桩 CD-12"),
    Kind.WATERLOGGING: ("雷达水位计 RLG-1", "积水监测仪 JS-2"),
}
# How often each kind is inspected in practice: yearly, and secondary-water tanks cleaned
# and tested twice a year (the score's defaults, score/config.py, use the same).
INSPECTION_INTERVAL_DAYS: Mapping[Kind, int] = {
    Kind.LIFT: 365,
    Kind.FIRE: 365,
    Kind.WATER_TANK: 183,
    Kind.EBIKE_CHARGER: 365,
    Kind.WATERLOGGING: 365,
}
# The site each kind's devices form in every estate (unless the simulators' registry names
# one): the secondary water-supply plant (二次供水泵房), whose tanks' level, quality and
# outlet pressure are judged together.
SITES: Mapping[Kind, str] = {Kind.WATER_TANK: "pumproom"}
_QUALITY_BY_CATEGORY: Mapping[HousingCategory, float] = {
    HousingCategory.COMMERCIAL: 0.1,
    HousingCategory.AFFORDABLE: 0.0,
    HousingCategory.MIXED: -0.05,
    HousingCategory.RELOCATION: -0.1,
    HousingCategory.SCATTERED_PUBLIC: -0.2,
}


def generate_registry(simulated: sim.Registry, seed: int, as_of: date) -> Registry:
    """The product registry for ``simulated``'s estates, dates relative to ``as_of``; the
    devices keep their ``connect`` entries.

    Raises ValueError naming the device whose ``connect`` entry is invalid.
    """
    rng = random.Random(f"jiayuan/product-registry/{seed}")
    districts: dict[str, District] = {}
    streets: dict[tuple[str, str], Street] = {}
    for estate in simulated.estates:
        districts.setdefault(estate.district, District(estate.district, estate.district_zh))
        key = (estate.district, estate.street)
        streets.setdefault(key, Street(estate.street, estate.district, estate.street_zh))
    companies, quality, owner = _companies(rng, simulated, districts)
    estates: list[Estate] = []
    buildings: list[Building] = []
    devices: list[Device] = []
    for estate in simulated.estates:
        floors = _floors(estate)
        walk_ups = sum(1 for b in estate.buildings if floors.get(b, 0) < 11)
        old = walk_ups * 2 > len(estate.buildings)
        category = _category(rng, old)
        company = owner[estate.id]
        care = min(1.0, max(0.0, quality[company] + _QUALITY_BY_CATEGORY[category]))
        centre = DISTRICT_CENTRES.get(estate.district, (31.23, 121.47))
        estates.append(
            Estate(
                id=estate.id,
                name_zh=estate.name_zh,
                district=estate.district,
                street=estate.street,
                company=company,
                category=category,
                fee_band=_fee_band(rng, category),
                lat=round(centre[0] + rng.gauss(0, 0.02), 5),
                lon=round(centre[1] + rng.gauss(0, 0.02), 5),
            )
        )
        built = years_after(as_of, -(rng.randint(16, 38) if old else rng.randint(2, 25)))
        for building in estate.buildings:
            n_floors = floors.get(building) or (6 if old else rng.choice((3, 4, 6)))
            # Two to four flats per floor and stairwell, two or three stairwells per block.
            per_floor = rng.randint(4, 8) if n_floors < 11 else rng.randint(4, 6)
            buildings.append(Building(estate.id, building, n_floors, n_floors * per_floor))
        places = sorted({d.building for d in estate.devices} - set(estate.buildings))
        buildings.extend(Building(estate.id, place, 0, 0) for place in places)
        # Neglect is an estate's habit, not a coin toss per device: an estate that lets
        # inspections slip lets many slip.
        slipping = rng.random() < 0.25 + 0.5 * (1 - care)
        if slipping:
            overdue_share = rng.uniform(0.2, 0.9)
        elif care > 0.8 and rng.random() < 0.35:
            overdue_share = rng.uniform(0.0, 0.05)  # the few estates that keep up with all
        else:
            overdue_share = rng.uniform(0.08, 0.45)
        assessed_share = min(1.0, 0.2 + care) if rng.random() < 0.8 else 0.0
        devices.extend(
            _device(rng, d, built, overdue_share, assessed_share, as_of) for d in estate.devices
        )
    return Registry(
        districts=tuple(districts.values()),
        streets=tuple(streets.values()),
        companies=tuple(companies),
        estates=tuple(estates),
        buildings=tuple(buildings),
        devices=tuple(devices),
    )


def _floors(estate: sim.Estate) -> dict[str, int]:
    floors: dict[str, int] = {}
    for device in estate.devices:
        top = device.params.get("top_floor") or device.params.get("floors")
        if isinstance(top, int):
            floors[device.building] = max(floors.get(device.building, 0), top)
    return floors


def _companies(
    rng: random.Random, simulated: sim.Registry, districts: Mapping[str, District]
) -> tuple[list[Company], dict[str, float], dict[str, str]]:
    """Companies, how well each keeps its equipment (0..1), and who manages which estate."""
    by_district: dict[str, list[str]] = defaultdict(list)
    for estate in simulated.estates:
        by_district[estate.district].append(estate.id)
    companies: list[Company] = []
    quality: dict[str, float] = {}
    owner: dict[str, str] = {}
    n_city = min(len(_CITY_COMPANIES), max(1, len(simulated.estates) // 25))
    for company_id, name in _CITY_COMPANIES[:n_city]:
        companies.append(Company(company_id, f"{name}服务有限公司"))
        quality[company_id] = rng.uniform(0.6, 1.0)  # the large brands keep up better
    for district_id, estate_ids in by_district.items():
        # A local company manages four to eight estates of its district.
        n_local = max(1, math.ceil(len(estate_ids) / 6))
        stems = rng.sample(_LOCAL_STEMS, min(n_local, len(_LOCAL_STEMS)))
        local = []
        prefix = districts[district_id].name_zh.removesuffix("新区").removesuffix("区")
        for stem_py, stem_zh in stems:
            company_id = f"{district_id}-{stem_py}"
            companies.append(Company(company_id, f"上海{prefix}{stem_zh}物业管理有限公司"))
            quality[company_id] = rng.betavariate(3, 2)
            local.append(company_id)
        for estate_id in estate_ids:
            city_wide = n_city and rng.random() < 0.3
            pick = _CITY_COMPANIES[rng.randrange(n_city)][0] if city_wide else rng.choice(local)
            owner[estate_id] = pick
    used = set(owner.values())
    return [c for c in companies if c.id in used], quality, owner


def _category(rng: random.Random, old: bool) -> HousingCategory:
    c = HousingCategory
    if old:
        options = (c.RELOCATION, c.MIXED, c.SCATTERED_PUBLIC, c.AFFORDABLE)
        return rng.choices(options, weights=(35, 30, 20, 15))[0]
    options = (c.COMMERCIAL, c.AFFORDABLE, c.MIXED, c.RELOCATION)
    return rng.choices(options, weights=(70, 15, 10, 5))[0]


def _fee_band(rng: random.Random, category: HousingCategory) -> FeeBand:
    if category is HousingCategory.SCATTERED_PUBLIC:
        return FeeBand.SCATTERED_BELOW_2_5
    if category is HousingCategory.COMMERCIAL:
        return FeeBand.CLOSED_FROM_2_5 if rng.random() < 0.75 else FeeBand.CLOSED_BELOW_2_5
    return FeeBand.CLOSED_BELOW_2_5 if rng.random() < 0.85 else FeeBand.SCATTERED_BELOW_2_5


def _device(
    rng: random.Random,
    device: sim.Device,
    built: date,
    overdue_share: float,
    assessed_share: float,
    as_of: date,
) -> Device:
    installed = built
    if device.kind is not Kind.LIFT or rng.random() < 0.25:
        # Monitors and most non-lift equipment are recent retrofits; some lifts were replaced.
        years = (as_of - built).days / 365.25
        installed = as_of - timedelta(days=int(rng.uniform(0.5, max(1.0, min(years, 12))) * 365))
    # Inspection: done within the year, unless the estate lets it slip.
    inspected: date | None
    interval = INSPECTION_INTERVAL_DAYS[device.kind]
    if rng.random() < overdue_share:
        inspected = as_of - timedelta(days=rng.randint(interval + 15, interval * 2 + 200))
    else:
        inspected = as_of - timedelta(days=rng.randint(5, interval - 15))
    if inspected < installed:
        inspected = None  # not yet due for its first inspection
    assessed = None
    turned_15 = years_after(installed, 15)
    if device.kind is Kind.LIFT and turned_15 <= as_of and rng.random() < assessed_share:
        assessed = turned_15 + timedelta(days=rng.randint(0, max(0, (as_of - turned_15).days)))
    ports = int(device.params.get("ports", 0)) if device.kind is Kind.EBIKE_CHARGER else 0
    return Device(
        id=device.id,
        estate=device.estate,
        building=device.building,
        kind=device.kind,
        model=rng.choice(MODELS[device.kind]),
        installed=installed,
        last_inspection=inspected,
        last_assessment=assessed,
        ports=ports,
        connect=_connect(device),
        site=device.site or SITES.get(device.kind),
    )


def _connect(device: sim.Device) -> Connect | None:
    if device.connect is None:
        return None
    try:
        return parse_connect(device.connect, device.kind)
    except ConnectInvalid as error:
        raise ValueError(f"device {device.id}: {error}") from None
