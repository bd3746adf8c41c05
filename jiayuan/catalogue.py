"""The one catalogue of sensor families.

Each family (lift, fire, water_tank, ebike_charger, waterlogging) is declared here once:
its signals with units, types and plausible ranges, its event codes with severity and
bilingual titles (Chinese first), and its rule thresholds with their sources.  The
simulators, the wire contract's validation, the gateway rules, the docs and the
dashboards all read from this module, so adding a family starts with one entry here.

Sources are tagged as in ``shared/DOMAIN.md``: STD (a standard's text), STD~ (a standard's
number not yet checked against its text), PROD (real products), INF (our suggestion).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Kind(StrEnum):
    LIFT = "lift"
    FIRE = "fire"
    WATER_TANK = "water_tank"
    EBIKE_CHARGER = "ebike_charger"
    WATERLOGGING = "waterlogging"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


class ValueType(StrEnum):
    FLOAT = "float"
    INT = "int"
    STR = "str"


@dataclass(frozen=True)
class Signal:
    name: str
    unit: str
    type: ValueType
    minimum: float | None
    maximum: float | None
    description: str
    # Per-port signals of a charging pile travel as ``p01_<name>`` … ``p12_<name>``.
    per_port: bool = False
    # What operations staff call it, for texts they read (measurements only).
    name_zh: str = ""


@dataclass(frozen=True)
class EventCode:
    code: str
    severity: Severity
    title_zh: str
    title_en: str
    source: str

    @property
    def title(self) -> str:
        """Chinese first, English beside it, as operations staff read it."""
        return f"{self.title_zh} {self.title_en}"


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Family:
    kind: Kind
    title_zh: str
    title_en: str
    signals: tuple[Signal, ...]
    events: tuple[EventCode, ...]
    thresholds: tuple[Threshold, ...]
    # How often a healthy device reports at the latest (heartbeat), and how long a silence
    # means the device is offline.  Real products report every 1-5 min; the defaults here
    # suit the simulators and are configurable per deployment.
    heartbeat_s: float
    offline_after_s: float
    _signals_by_name: dict[str, Signal] = field(init=False, repr=False, compare=False)
    _events_by_code: dict[str, EventCode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_signals_by_name", {s.name: s for s in self.signals})
        object.__setattr__(self, "_events_by_code", {e.code: e for e in self.events})

    @property
    def title(self) -> str:
        return f"{self.title_zh} {self.title_en}"

    def signal(self, field_name: str) -> Signal | None:
        """The signal a payload field name stands for (``p03_temp`` → ``temp``), or None."""
        found = self._signals_by_name.get(field_name)
        if found is not None:
            return None if found.per_port else found
        match = PORT_FIELD.fullmatch(field_name)
        if match is None:
            return None
        found = self._signals_by_name.get(match.group(2))
        return found if found is not None and found.per_port else None

    def event(self, code: str) -> EventCode:
        return self._events_by_code[code]

    def threshold(self, name: str) -> float:
        for threshold in self.thresholds:
            if threshold.name == name:
                return threshold.value
        raise KeyError(f"{self.kind}: no threshold named {name!r}")


MAX_PORTS = 12
PORT_FIELD = re.compile(r"p(0[1-9]|1[0-2])_([a-z_]+)")


def port_field(port: int, name: str) -> str:
    """Payload field name of a per-port signal, ports counted from 1."""
    if not 1 <= port <= MAX_PORTS:
        raise ValueError(f"port {port} outside 1..{MAX_PORTS}")
    return f"p{port:02d}_{name}"


F, I = ValueType.FLOAT, ValueType.INT  # noqa: E741 (I for integer, as in the tables)
C, H, W, INFO = Severity.CRITICAL, Severity.HIGH, Severity.WARNING, Severity.INFO

LIFT = Family(
    kind=Kind.LIFT,
    title_zh="电梯",
    title_en="Lift",
    signals=(
        Signal("car_status", "", I, 0, 1, "0 stopped, 1 running"),
        Signal("car_direction", "", I, 0, 2, "0 none, 1 up, 2 down"),
        Signal("door_zone", "", I, 1, 2, "1 inside the door (levelling) zone, 2 outside"),
        Signal("car_position", "floor", I, -10, 200, "current floor"),
        Signal("door_status", "", I, 0, 3, "0 closed, 1 open, 2 closing, 3 opening"),
        Signal("passenger_status", "", I, 1, 2, "1 someone in the car, 2 nobody"),
        Signal(
            "service_mode",
            "",
            I,
            0,
            7,
            "0 out of service, 1 normal, 2 inspection, "
            "3 fire return, 4 firefighter, 5 emergency power, 6 earthquake, 7 unknown",
        ),
        Signal("up_limit", "", I, 0, 1, "1 = top limit switch hit"),
        Signal("down_limit", "", I, 0, 1, "1 = bottom limit switch hit"),
        Signal("power_status", "", I, 1, 2, "1 mains normal, 2 mains cut"),
        Signal("speed", "m/s", F, 0.0, 12.0, "car speed", name_zh="轿厢速度"),
        Signal("rated_speed", "m/s", F, 0.1, 12.0, "the lift's rated speed"),
        Signal("fault_code", "", I, 0, 99, "controller fault code, GB/T 24476-2017; 0 none"),
    ),
    events=(
        EventCode(
            "lift.trapped",
            C,
            "困人",
            "Passenger trapped",
            "PROD: someone inside, door closed, stopped ≥ 20 s in zone / 45 s out",
        ),
        EventCode(
            "lift.door_open_moving",
            C,
            "开门走车",
            "Moving with door open",
            "GB/T 24476-2017 §11; EN 81-20 5.12.1.4",
        ),
        EventCode("lift.overtravel_top", C, "冲顶", "Overtravel at top", "GB/T 24476-2017"),
        EventCode("lift.overtravel_bottom", C, "蹲底", "Overtravel at bottom", "GB/T 24476-2017"),
        EventCode(
            "lift.overspeed",
            C,
            "超速",
            "Overspeed",
            "EN 81-20 5.6.2.2.1: governor trips at ≥ 115 % of rated speed",
        ),
        EventCode(
            "lift.stop_out_of_zone",
            H,
            "门区外停梯",
            "Stopped outside door zone",
            "GB/T 24476-2017 fault 04",
        ),
        EventCode("lift.power_loss", H, "停电", "Mains power lost", "GB/T 24476-2017 code 41"),
        EventCode(
            "lift.fault_code",
            H,
            "电梯故障",
            "Lift controller fault",
            "GB/T 24476-2017 fault codes 01-08",
        ),
        EventCode("lift.offline", H, "设备离线", "Device offline", "INF: heartbeat silence"),
    ),
    thresholds=(
        Threshold("trapped_in_zone_s", 20.0, "s", "PROD"),
        Threshold("trapped_out_of_zone_s", 45.0, "s", "PROD"),
        Threshold("overspeed_ratio", 1.15, "×rated", "EN 81-20 5.6.2.2.1 (STD~)"),
        Threshold("stop_out_of_zone_s", 10.0, "s", "INF"),
        Threshold("overspeed_hold_s", 2.0, "s", "INF: a speed spike shorter than this is noise"),
    ),
    heartbeat_s=5.0,
    offline_after_s=15.0,
)

FIRE = Family(
    kind=Kind.FIRE,
    title_zh="消防",
    title_en="Fire system",
    signals=(
        Signal("fire_alarm", "", I, 0, 1, "panel state bit 火警 fire alarm"),
        Signal("fault", "", I, 0, 1, "panel state bit 故障 fault"),
        Signal("supervisory", "", I, 0, 1, "panel state bit 监管 supervisory"),
        Signal("isolated", "", I, 0, 1, "panel state bit 屏蔽 isolated"),
        Signal(
            "sprinkler_pressure",
            "MPa",
            F,
            0.0,
            2.5,
            "sprinkler pipe static pressure",
            name_zh="喷淋管网压力",
        ),
        Signal(
            "hydrant_pressure",
            "MPa",
            F,
            0.0,
            2.5,
            "hydrant pipe pressure",
            name_zh="消火栓管网压力",
        ),
        Signal("tank_level", "m", F, 0.0, 20.0, "fire water tank level", name_zh="消防水箱液位"),
        Signal("pump_commanded", "", I, 0, 1, "1 = pump start commanded"),
        Signal("pump_running", "", I, 0, 1, "1 = pump running (feedback)"),
    ),
    events=(
        EventCode("fire.alarm", C, "火警", "Fire alarm", "GB/T 26875.3 §8.2.1.1"),
        EventCode("fire.fault", H, "消防设施故障", "Fire panel fault", "GB/T 26875.3 §8.2.1.1"),
        EventCode("fire.supervisory", H, "监管报警", "Supervisory alarm", "GB/T 26875.3"),
        EventCode("fire.isolated", W, "设备屏蔽", "Component isolated", "GB/T 26875.3"),
        EventCode(
            "fire.sprinkler_pressure_low",
            H,
            "喷淋管网压力低",
            "Sprinkler pipe pressure low",
            "GB 50974-2014 §5.2.2: ≥ 0.10 MPa",
        ),
        EventCode(
            "fire.hydrant_pressure_low",
            H,
            "消火栓管网压力低",
            "Hydrant pipe pressure low",
            "GB 50974-2014 §5.2.2: high-rise ≥ 0.07 MPa",
        ),
        EventCode(
            "fire.tank_level_low",
            H,
            "消防水箱水位低",
            "Fire tank level low",
            "GB 50974 §4.3.9 (site-specific)",
        ),
        EventCode("fire.pump_not_started", H, "消防泵未启动", "Pump failed to start", "PROD"),
        EventCode(
            "fire.sprinkler_pressure_sagging",
            W,
            "喷淋管网压力持续下降",
            "Sprinkler pressure sagging, jockey pump idle",
            "INF: fell further than the jockey pump's band without the pump running",
        ),
        EventCode("fire.offline", H, "设备离线", "Device offline", "INF: heartbeat silence"),
    ),
    thresholds=(
        Threshold("sprinkler_pressure_min", 0.10, "MPa", "GB 50974-2014 §5.2.2 (STD)"),
        Threshold("hydrant_pressure_min", 0.07, "MPa", "GB 50974-2014 §5.2.2 (STD)"),
        Threshold("tank_level_min", 1.0, "m", "INF: site-specific reserved volume"),
        Threshold("pressure_low_s", 15.0, "s", "INF: hold time before alarm"),
        Threshold("pump_start_s", 30.0, "s", "INF"),
        Threshold(
            "sprinkler_sag_max_mpa", 0.09, "MPa", "INF: jockey pump band (0.07) + 0.02 margin"
        ),
        Threshold("pressure_sag_s", 60.0, "s", "INF: hold time before alarm"),
        Threshold(
            "pressure_sag_learned_s", 30.0, "s", "INF: hold below a learned pump-start pressure"
        ),
        Threshold(
            "pump_start_margin_mpa",
            0.012,
            "MPa",
            "INF: 6 σ of the pressure sensor's noise (0.002 MPa) below the learned start",
        ),
        Threshold(
            "pump_start_learning",
            0.25,
            "weight",
            "INF: each pump start moves the learned start pressure this share of the way",
        ),
        Threshold(
            "pressure_clear_margin_mpa", 0.01, "MPa", "INF: clear margin, so it does not flap"
        ),
        Threshold("tank_level_clear_margin_m", 0.1, "m", "INF: clear margin"),
    ),
    heartbeat_s=10.0,
    offline_after_s=30.0,
)

WATER_TANK = Family(
    kind=Kind.WATER_TANK,
    title_zh="二次供水",
    title_en="Secondary water supply",
    signals=(
        Signal("free_chlorine", "mg/L", F, 0.0, 10.0, "residual free chlorine", name_zh="余氯"),
        Signal("turbidity", "NTU", F, 0.0, 100.0, "turbidity", name_zh="浊度"),
        Signal("ph", "pH", F, 0.0, 14.0, "pH", name_zh="pH值"),
        Signal("level_pct", "%", F, 0.0, 100.0, "tank level, percent of full", name_zh="水箱液位"),
        Signal("supply_pressure", "MPa", F, 0.0, 2.0, "outlet supply pressure", name_zh="出水压力"),
        Signal("pump_running", "", I, 0, 1, "1 = supply pump running"),
        Signal("lid_open", "", I, 0, 1, "1 = tank lid or pump-room door open"),
    ),
    events=(
        EventCode(
            "water_tank.chlorine_low",
            C,
            "余氯过低",
            "Residual chlorine low",
            "GB 5749: free chlorine at the tap ≥ 0.05 mg/L",
        ),
        EventCode(
            "water_tank.turbidity_high", C, "浑浊度超标", "Turbidity high", "GB 5749: ≤ 1 NTU"
        ),
        EventCode("water_tank.ph_out_of_range", W, "pH超标", "pH out of range", "GB 5749: 6.5-8.5"),
        EventCode("water_tank.level_low", H, "水箱水位低", "Tank level low", "GB 50015 / CJJ 140"),
        EventCode("water_tank.overflow", W, "水箱溢流", "Tank overflowing", "GB 50015 / CJJ 140"),
        EventCode(
            "water_tank.lid_open",
            H,
            "水箱盖/泵房门开启",
            "Tank lid or door open",
            "GB 17051: lockable covers",
        ),
        EventCode("water_tank.offline", H, "设备离线", "Device offline", "INF: heartbeat silence"),
    ),
    thresholds=(
        Threshold("free_chlorine_min", 0.05, "mg/L", "GB 5749-2022 (STD)"),
        Threshold("turbidity_max", 1.0, "NTU", "GB 5749-2022 (STD)"),
        Threshold("ph_min", 6.5, "pH", "GB 5749-2022 (STD)"),
        Threshold("ph_max", 8.5, "pH", "GB 5749-2022 (STD)"),
        Threshold("level_low_pct", 20.0, "%", "INF"),
        Threshold("level_overflow_pct", 98.0, "%", "INF"),
        Threshold("quality_hold_s", 15.0, "s", "INF: hold time before alarm"),
        Threshold("lid_open_s", 20.0, "s", "INF"),
        Threshold("chlorine_clear_margin_mg_l", 0.02, "mg/L", "INF: clear margin"),
        Threshold("turbidity_clear_margin_ntu", 0.1, "NTU", "INF: clear margin"),
        Threshold("level_clear_margin_pct", 2.0, "%", "INF: clear margin"),
        Threshold("ph_clear_margin", 0.1, "pH", "INF: clear margin"),
    ),
    heartbeat_s=10.0,
    offline_after_s=30.0,
)

EBIKE_CHARGER = Family(
    kind=Kind.EBIKE_CHARGER,
    title_zh="电动自行车充电",
    title_en="E-bike charging",
    signals=(
        Signal("port_count", "", I, 1, MAX_PORTS, "number of ports on this pile"),
        Signal("smoke", "", I, 0, 1, "1 = smoke detector at the site in alarm"),
        Signal("total_power", "W", F, 0.0, 30000.0, "whole-pile power", name_zh="充电桩总功率"),
        Signal("plugged", "", I, 0, 1, "1 = a bike is plugged into the port", per_port=True),
        Signal("current", "A", F, 0.0, 40.0, "port current", per_port=True, name_zh="充电口电流"),
        Signal("power", "W", F, 0.0, 5000.0, "port power", per_port=True, name_zh="充电口功率"),
        Signal(
            "temp", "°C", F, -30.0, 200.0, "port temperature", per_port=True, name_zh="充电口温度"
        ),
    ),
    events=(
        EventCode(
            "ebike_charger.over_temperature",
            C,
            "充电口过温",
            "Port over-temperature",
            "PROD: cut-off configurable 50-100 °C",
        ),
        EventCode("ebike_charger.over_current", H, "充电口过流", "Port over-current", "PROD"),
        EventCode(
            "ebike_charger.over_power", H, "充电口过载", "Port over-power", "PROD: tiers 800-1200 W"
        ),
        EventCode("ebike_charger.smoke", C, "充电区烟感报警", "Smoke at charging site", "INF"),
        EventCode(
            "ebike_charger.port_hotter_than_peers",
            H,
            "充电口温度高于相邻口",
            "Port hotter than its peers",
            "INF: a bad contact heats one port more than its power explains",
        ),
        EventCode(
            "ebike_charger.offline", H, "设备离线", "Device offline", "INF: heartbeat silence"
        ),
    ),
    thresholds=(
        Threshold("port_temp_max", 65.0, "°C", "PROD: configurable 50-100 °C"),
        Threshold("port_current_max", 8.0, "A", "PROD"),
        Threshold("port_power_max", 1000.0, "W", "PROD: tiers 800-1200 W"),
        Threshold("over_hold_s", 5.0, "s", "INF"),
        Threshold("port_peer_excess_c", 10.0, "°C", "INF: above the pile's other ports"),
        Threshold("port_peer_hold_s", 60.0, "s", "INF: hold time before alarm"),
        Threshold("port_temp_rise_per_w", 0.07, "°C/W", "INF: port heating at equilibrium"),
        Threshold("port_thermal_tau_s", 600.0, "s", "INF: port temperature lag"),
        Threshold("temp_clear_margin_c", 3.0, "°C", "INF: clear margin"),
        Threshold("current_clear_margin_a", 0.5, "A", "INF: clear margin"),
        Threshold("power_clear_margin_w", 50.0, "W", "INF: clear margin"),
        Threshold("port_peer_clear_margin_c", 3.0, "°C", "INF: clear margin"),
    ),
    heartbeat_s=10.0,
    offline_after_s=30.0,
)

WATERLOGGING = Family(
    kind=Kind.WATERLOGGING,
    title_zh="积水",
    title_en="Waterlogging",
    signals=(
        Signal(
            "depth", "cm", F, 0.0, 500.0, "water depth above the road or floor", name_zh="积水深度"
        ),
        Signal(
            "rain_rate", "mm/h", F, 0.0, 300.0, "rain intensity at the gauge", name_zh="降雨强度"
        ),
    ),
    events=(
        EventCode(
            "waterlogging.depth_15",
            W,
            "一般积水",
            "Water depth over 15 cm",
            "GB 50014: one lane > 15 cm; Shanghai 15-30 cm 一般积水",
        ),
        EventCode(
            "waterlogging.depth_30",
            H,
            "轻度积水",
            "Water depth over 30 cm",
            "Shanghai notices: > 30 cm 轻度积水",
        ),
        EventCode(
            "waterlogging.offline", H, "设备离线", "Device offline", "INF: heartbeat silence"
        ),
    ),
    thresholds=(
        Threshold("depth_warning_cm", 15.0, "cm", "GB 50014 (STD)"),
        Threshold("depth_high_cm", 30.0, "cm", "Shanghai wording (STD)"),
        Threshold("depth_clear_margin_cm", 2.0, "cm", "INF: hysteresis"),
    ),
    heartbeat_s=10.0,
    offline_after_s=30.0,
)

# Statistical detectors judge a device's numeric signals against its own baseline, so every
# family carries the same four codes; the anomaly's detail names the signal.
STATISTICAL_EVENTS = (
    ("level_shift", "数值异常偏移", "Level shift from baseline"),
    ("rate_of_change", "变化过快", "Abnormal rate of change"),
    ("stuck", "传感器卡滞", "Sensor stuck (flat-lined)"),
    ("drift", "缓慢漂移", "Slow drift from baseline"),
)


# A site model judges the signals of several devices of one site (the registry says which)
# together; its anomaly hangs on the site's first device, so it carries that device's kind.
SITE_EVENT = ("relation_broken", "多信号关系异常", "Broken relation between a site's signals")


def _with_statistical_events(fam: Family) -> Family:
    extra = tuple(
        EventCode(f"{fam.kind.value}.{name}", W, zh, en, "INF: statistical detector")
        for name, zh, en in STATISTICAL_EVENTS
    )
    name, zh, en = SITE_EVENT
    site = EventCode(
        f"{fam.kind.value}.{name}", W, zh, en, "INF: site model of the registry's site"
    )
    return replace(fam, events=(*fam.events, *extra, site))


FAMILIES: Mapping[Kind, Family] = {
    fam.kind: _with_statistical_events(fam)
    for fam in (LIFT, FIRE, WATER_TANK, EBIKE_CHARGER, WATERLOGGING)
}
# The module-level names stand for the complete entries, statistical codes included.
LIFT, FIRE, WATER_TANK = FAMILIES[Kind.LIFT], FAMILIES[Kind.FIRE], FAMILIES[Kind.WATER_TANK]
EBIKE_CHARGER, WATERLOGGING = FAMILIES[Kind.EBIKE_CHARGER], FAMILIES[Kind.WATERLOGGING]


def family(kind: str | Kind) -> Family:
    """The family of a kind, raising KeyError with the known kinds for an unknown one."""
    try:
        return FAMILIES[Kind(kind)]
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        raise KeyError(f"unknown kind {kind!r}; known kinds: {known}") from None


# One string per code: every open anomaly keeps its code, and at 100,000 devices offline a
# copy each was 6 MB.
_OFFLINE_CODES = {kind: f"{kind.value}.offline" for kind in Kind}
_STATISTICAL_CODES = {
    (kind, name): f"{kind.value}.{name}" for kind in Kind for name, _, _ in STATISTICAL_EVENTS
}


_SITE_CODES = {kind: f"{kind.value}.{SITE_EVENT[0]}" for kind in Kind}
# The Chinese names of the numeric signals, as the staff of a pump room or a control room
# call them.
SIGNAL_TITLES_ZH: Mapping[tuple[Kind, str], str] = {
    (Kind.LIFT, "speed"): "轿厢速度",
    (Kind.LIFT, "rated_speed"): "额定速度",
    (Kind.FIRE, "sprinkler_pressure"): "喷淋管网压力",
    (Kind.FIRE, "hydrant_pressure"): "消火栓管网压力",
    (Kind.FIRE, "tank_level"): "消防水箱水位",
    (Kind.WATER_TANK, "free_chlorine"): "余氯",
    (Kind.WATER_TANK, "turbidity"): "浑浊度",
    (Kind.WATER_TANK, "ph"): "pH值",
    (Kind.WATER_TANK, "level_pct"): "水箱水位",
    (Kind.WATER_TANK, "supply_pressure"): "出水压力",
    (Kind.EBIKE_CHARGER, "total_power"): "总功率",
    (Kind.WATERLOGGING, "depth"): "积水深度",
    (Kind.WATERLOGGING, "rain_rate"): "降雨强度",
}


def offline_code(kind: Kind) -> str:
    return _OFFLINE_CODES[kind]


def site_code(kind: Kind) -> str:
    """``water_tank.relation_broken`` and the like: a site model's anomaly."""
    return _SITE_CODES[kind]


def signal_title(kind: Kind, field_name: str) -> str:
    """A signal as operators read it, Chinese first: "出水压力 supply_pressure"."""
    zh = SIGNAL_TITLES_ZH.get((kind, field_name))
    return f"{zh} {field_name}" if zh else field_name


def statistical_code(kind: Kind, detector: str) -> str:
    """``lift.stuck`` and the like; ``detector`` is one of STATISTICAL_EVENTS' names."""
    code = _STATISTICAL_CODES.get((kind, detector))
    if code is None:
        raise KeyError(f"unknown statistical detector {detector!r}")
    return code
