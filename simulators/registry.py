"""The estate and device registry: Shanghai estates with their buildings and monitors.

``build_registry(estates, seed)`` makes a plausible registry: districts and streets of
Shanghai with pinyin ids, estates with Chinese names (某某花园, 新村, 苑…), 3-12 buildings of
which at least one is a high-rise, lifts and a fire panel in every high-rise, water tanks,
e-bike charging piles and waterlogging gauges.  Every estate holds every kind of device,
so tests and the demo can rely on one estate to show every family.

The registry travels as JSON (``to_json`` / ``from_json``): the edge agents, the gateway
and the demo all read the same file.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jiayuan.catalogue import MAX_PORTS, Kind

REGISTRY_VERSION = 1
ParamValue = float | int | str
_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Device id suffix letters per kind: {estate}-L01 is the estate's first lift.
ID_LETTER: Mapping[Kind, str] = {
    Kind.LIFT: "L",
    Kind.FIRE: "F",
    Kind.WATER_TANK: "W",
    Kind.EBIKE_CHARGER: "C",
    Kind.WATERLOGGING: "G",
}


@dataclass(frozen=True)
class Device:
    id: str
    kind: Kind
    estate: str
    building: str
    # Static configuration of the device (floors, rated speed, ports…); a dict is not
    # hashable, so hashing a Device uses the other fields only.
    params: Mapping[str, ParamValue] = field(default_factory=dict, hash=False)
    site: str = ""  # the site whose devices are judged together ("": none)
    # Where the edge reads the real device, as the registry holds it (``docs/devices.md``,
    # checked by ``jiayuan.registry.connect``); None: simulated.
    connect: Mapping[str, Any] | None = field(default=None, hash=False)

    def edge_entry(self) -> dict[str, Any]:
        """The device as the edge reads the registry (``edge.devices``)."""
        entry: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "building": self.building}
        if self.connect is not None:
            entry["connect"] = self.connect
        return entry


@dataclass(frozen=True)
class Estate:
    id: str
    name_zh: str
    district: str
    street: str
    edge_id: str
    buildings: tuple[str, ...]
    devices: tuple[Device, ...]
    district_zh: str = ""
    street_zh: str = ""

    def of_kind(self, kind: Kind) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.kind is kind)


@dataclass(frozen=True)
class Registry:
    estates: tuple[Estate, ...]
    _estates: dict[str, Estate] = field(init=False, repr=False, compare=False, hash=False)
    _devices: dict[str, Device] = field(init=False, repr=False, compare=False, hash=False)
    _all: tuple[Device, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        estates: dict[str, Estate] = {}
        devices: dict[str, Device] = {}
        for estate in self.estates:
            _check_id("estate", estate.id)
            _check_id("edge", estate.edge_id)
            _check_id("district", estate.district)
            _check_id("street", estate.street)
            if estate.id in estates:
                raise ValueError(f"estate id {estate.id!r} appears twice")
            estates[estate.id] = estate
            for device in estate.devices:
                _check_id("device", device.id)
                _check_id("building", device.building)
                if device.id in devices:
                    raise ValueError(f"device id {device.id!r} appears twice")
                if device.estate != estate.id:
                    raise ValueError(f"device {device.id} names estate {device.estate!r}")
                devices[device.id] = device
        object.__setattr__(self, "_estates", estates)
        object.__setattr__(self, "_devices", devices)
        object.__setattr__(self, "_all", tuple(devices.values()))

    def estate(self, estate_id: str) -> Estate:
        try:
            return self._estates[estate_id]
        except KeyError:
            raise KeyError(f"no estate {estate_id!r} in the registry") from None

    def device(self, device_id: str) -> Device:
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r} in the registry") from None

    def devices(self) -> tuple[Device, ...]:
        """Every device, estate by estate."""
        return self._all

    def to_json(self) -> str:
        return json.dumps(
            {"version": REGISTRY_VERSION, "estates": [_estate_json(e) for e in self.estates]},
            ensure_ascii=False,
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Registry:
        data = json.loads(text)
        if data.get("version") != REGISTRY_VERSION:
            raise ValueError(f"registry version {data.get('version')!r} is not supported")
        return cls(tuple(_estate_from_json(e) for e in data["estates"]))


def _check_id(what: str, value: str) -> None:
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} id {value!r} is not [A-Za-z0-9_.-]{{1,64}}")


def _estate_json(estate: Estate) -> dict[str, Any]:
    return {
        "id": estate.id,
        "name_zh": estate.name_zh,
        "district": estate.district,
        "district_zh": estate.district_zh,
        "street": estate.street,
        "street_zh": estate.street_zh,
        "edge_id": estate.edge_id,
        "buildings": list(estate.buildings),
        "devices": [
            {**d.edge_entry(), "params": dict(d.params)} | ({"site": d.site} if d.site else {})
            for d in estate.devices
        ],
    }


def _estate_from_json(data: Mapping[str, Any]) -> Estate:
    estate_id = str(data["id"])
    return Estate(
        id=estate_id,
        name_zh=str(data["name_zh"]),
        district=str(data["district"]),
        street=str(data["street"]),
        edge_id=str(data["edge_id"]),
        buildings=tuple(str(b) for b in data["buildings"]),
        devices=tuple(
            Device(
                id=str(d["id"]),
                kind=Kind(d["kind"]),
                estate=estate_id,
                building=str(d["building"]),
                params=dict(d.get("params", {})),
                connect=d.get("connect"),
                site=str(d.get("site", "")),
            )
            for d in data["devices"]
        ),
        district_zh=str(data.get("district_zh", "")),
        street_zh=str(data.get("street_zh", "")),
    )


# fmt: off
# Districts with some of their streets (街道) and towns (镇): (id, Chinese name).
DISTRICTS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("songjiang", "松江区", (("yongfeng", "永丰街道"), ("fangsong", "方松街道"),
                             ("zhongshan", "中山街道"), ("yueyang", "岳阳街道"),
                             ("sijing", "泗泾镇"), ("jiuting", "九亭镇"))),
    ("minhang", "闵行区", (("jiangchuan", "江川路街道"), ("gumei", "古美路街道"),
                           ("xinhong", "新虹街道"), ("pujin", "浦锦街道"),
                           ("meilong", "梅陇镇"), ("qibao", "七宝镇"))),
    ("pudong", "浦东新区", (("huamu", "花木街道"), ("zhoujiadu", "周家渡街道"),
                            ("tangqiao", "塘桥街道"), ("sanlin", "三林镇"),
                            ("zhangjiang", "张江镇"))),
    ("xuhui", "徐汇区", (("tianping", "天平路街道"), ("kangjian", "康健新村街道"),
                         ("tianlin", "田林街道"), ("longhua", "龙华街道"),
                         ("huajing", "华泾镇"))),
    ("yangpu", "杨浦区", (("wujiaochang", "五角场街道"), ("kongjiang", "控江路街道"),
                          ("yinhang", "殷行街道"), ("changbai", "长白新村街道"))),
    ("baoshan", "宝山区", (("youyi", "友谊路街道"), ("songnan", "淞南镇"),
                           ("gucun", "顾村镇"), ("dachang", "大场镇"))),
    ("putuo", "普陀区", (("changfeng", "长风新村街道"), ("ganquan", "甘泉路街道"),
                         ("zhenru", "真如镇街道"))),
    ("jiading", "嘉定区", (("xincheng", "新成路街道"), ("zhenxin", "真新街道"),
                           ("jiangqiao", "江桥镇"), ("nanxiang", "南翔镇"))),
)

_NAME_STEMS: tuple[tuple[str, str], ...] = (
    ("锦绣", "jinxiu"), ("春申", "chunshen"), ("景城", "jingcheng"), ("梅园", "meiyuan"),
    ("康乐", "kangle"), ("明珠", "mingzhu"), ("阳光", "yangguang"), ("丽水", "lishui"),
    ("银杏", "yinxing"), ("紫藤", "ziteng"), ("桂林", "guilin"), ("龙柏", "longbai"),
    ("华庭", "huating"), ("和平", "heping"), ("东方", "dongfang"), ("新泾", "xinjing"),
    ("虹桥", "hongqiao"), ("翠湖", "cuihu"), ("枫林", "fenglin"), ("书香", "shuxiang"),
    ("滨江", "binjiang"), ("金桥", "jinqiao"), ("玉兰", "yulan"), ("长青", "changqing"),
    ("永乐", "yongle"), ("嘉和", "jiahe"), ("博园", "boyuan"), ("文化", "wenhua"),
)
# Suffix, pinyin, and whether such an estate is an older walk-up estate (新村, 小区):
# mostly 6-storey buildings with a few high-rises, versus newer high-rise compounds.
_NAME_SUFFIXES: tuple[tuple[str, str, bool], ...] = (
    ("花园", "huayuan", False), ("新村", "xincun", True), ("苑", "yuan", False),
    ("小区", "xiaoqu", True), ("家园", "jiayuan", False), ("公寓", "gongyu", False),
    ("名邸", "mingdi", False), ("一村", "yicun", True), ("二村", "ercun", True),
    ("城", "cheng", False),
)
# fmt: on
_PHASES_ZH = "一二三四五六七八九十"


def build_registry(estates: int, seed: int) -> Registry:
    """A registry of ``estates`` estates, the same for the same seed."""
    if estates < 1:
        raise ValueError("a registry needs at least one estate")
    rng = random.Random(f"jiayuan/registry/{seed}")
    used_names: dict[str, int] = {}
    built: list[Estate] = []
    for _ in range(estates):
        district, district_zh, streets = rng.choice(DISTRICTS)
        street, street_zh = rng.choice(streets)
        stem_zh, stem_py = rng.choice(_NAME_STEMS)
        suffix_zh, suffix_py, old = rng.choice(_NAME_SUFFIXES)
        base_id = f"{stem_py}-{suffix_py}"
        phase = used_names.get(base_id, 0) + 1
        used_names[base_id] = phase
        # A second estate of the same name is a later phase (二期) of it.
        estate_id = base_id if phase == 1 else f"{base_id}-{phase}"
        name_zh = stem_zh + suffix_zh
        if phase > 1:
            name_zh += f"{_PHASES_ZH[(phase - 1) % 10]}期" if phase <= 10 else f"{phase}期"
        built.append(
            _build_estate(rng, estate_id, name_zh, district, district_zh, street, street_zh, old)
        )
    return Registry(tuple(built))


def _build_estate(
    rng: random.Random,
    estate_id: str,
    name_zh: str,
    district: str,
    district_zh: str,
    street: str,
    street_zh: str,
    old: bool,
) -> Estate:
    n_buildings = rng.randint(3, 12)
    buildings = tuple(f"b{n:02d}" for n in range(1, n_buildings + 1))
    floors = [_floors(rng, old) for _ in buildings]
    if max(floors) < 11:  # every estate holds at least one high-rise
        floors[rng.randrange(n_buildings)] = rng.randint(11, 18)
    basement = not old and rng.random() < 0.7  # newer estates have an underground garage
    devices: list[Device] = []
    counters = dict.fromkeys(Kind, 0)

    def add(kind: Kind, building: str, **params: ParamValue) -> None:
        counters[kind] += 1
        device_id = f"{estate_id}-{ID_LETTER[kind]}{counters[kind]:02d}"
        devices.append(Device(device_id, kind, estate_id, building, params))

    for building, n_floors in zip(buildings, floors, strict=True):
        if n_floors < 11:  # walk-ups: no lift, no building fire panel
            continue
        for _ in range(1 if n_floors < 12 or rng.random() < 0.2 else 2):
            add(
                Kind.LIFT,
                building,
                lowest_floor=-1 if basement else 1,
                top_floor=n_floors,
                floor_height=round(rng.uniform(2.8, 3.0), 2),
                rated_speed=_rated_speed(rng, n_floors),
            )
        add(
            Kind.FIRE,
            building,
            floors=n_floors,
            sprinkler_setpoint=round(rng.uniform(0.30, 0.40), 3),
            hydrant_setpoint=round(rng.uniform(0.40, 0.50), 3),
            tank_level_m=round(rng.uniform(3.2, 4.8), 2),
        )
    for _ in range(rng.randint(1, 2)):
        add(Kind.WATER_TANK, "pumproom", capacity_m3=rng.choice((18, 24, 36, 48, 60)))
    for _ in range(rng.randint(1, 3)):
        add(Kind.EBIKE_CHARGER, "bikeshed", ports=rng.randint(8, min(12, MAX_PORTS)))
    locations = ["garage-ramp", "main-road"] if basement else ["main-road", "low-lane"]
    for n in range(rng.randint(1, 2)):
        add(Kind.WATERLOGGING, locations[n], location=locations[n])
    return Estate(
        id=estate_id,
        name_zh=name_zh,
        district=district,
        street=street,
        edge_id=edge_id_of(estate_id),
        buildings=buildings,
        devices=tuple(devices),
        district_zh=district_zh,
        street_zh=street_zh,
    )


def edge_id_of(estate_id: str) -> str:
    """The id of an estate's edge agent (its MQTT topics and client id carry it)."""
    return f"edge-{estate_id}"


def _floors(rng: random.Random, old: bool) -> int:
    if old:  # 新村: 6-storey walk-ups with an occasional tower
        return 6 if rng.random() < 0.75 else rng.randint(11, 18)
    roll = rng.random()
    if roll < 0.15:
        return rng.choice((3, 4, 6))  # low-rise houses inside a compound
    if roll < 0.6:
        return rng.randint(11, 18)
    return rng.randint(19, 33)  # residential towers stop near 100 m (about 33 floors)


def _rated_speed(rng: random.Random, floors: int) -> float:
    # Usual Chinese residential practice: faster cars for taller buildings.
    if floors <= 11:
        return 1.0
    if floors <= 18:
        return rng.choice((1.0, 1.5))
    if floors <= 25:
        return rng.choice((1.75, 2.0))
    return rng.choice((2.0, 2.5))
