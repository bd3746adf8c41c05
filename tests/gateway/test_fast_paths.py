"""The fast paths of check_reading, telemetry_line, the piles' peer excess and the rules'
number reading give exactly what the old code gave.

The references below are the code as it was before the fast paths (issue 8), kept verbatim:
for random readings, valid and broken in every way the contract knows, the new
``check_reading`` must return the same text (or None), and ``telemetry_line`` the same
line or the same error.
"""

from __future__ import annotations

import enum
import math
import re
import statistics
import sys
import time

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.detection.rules.base import as_number, number
from gateway.detection.rules.ebike_charger import MIN_PEERS, _peer_excess
from gateway.storage.points import checked_telemetry_line, place_tags, telemetry_line
from jiayuan.catalogue import FAMILIES, MAX_PORTS, Kind, ValueType, family, port_field
from jiayuan.contract import (
    BATCH,
    INT64_MAX,
    INT64_MIN,
    MAX_STRING_CHARS,
    MAX_VALUES_PER_READING,
    Channel,
    Reading,
    TimeWindow,
    Topic,
    Value,
    _fast_bounds,
    _shown,
    check_fields,
    check_reading,
    check_values,
)
from jiayuan.influx import format_line
from jiayuan.places import Place

NOW = 1_764_000_000_000
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_VALUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EVENT = re.compile(r"[a-z_]{1,32}\.[a-z0-9_]{1,64}")


# --- the reference: check_reading and telemetry_line before the fast paths ------------------


def reference_check(
    reading: Reading, topic: Topic, now_ms: int | None, window: TimeWindow
) -> str | None:
    if topic.kind != BATCH and (reading.kind != topic.kind or reading.device != topic.device):
        return (
            f"reading for {_shown(reading.kind)}/{_shown(reading.device)} published on the "
            f"topic of {topic.kind}/{topic.device}"
        )
    try:
        fam = family(reading.kind)
    except KeyError:
        return f"unknown kind {_shown(reading.kind)}; known: {', '.join(k.value for k in Kind)}"
    if not _SEGMENT.fullmatch(reading.device):
        return f"device id {_shown(reading.device)} is not [A-Za-z0-9_.-]{{1,64}}"
    if reading.building and not _SEGMENT.fullmatch(reading.building):
        return f"building id {_shown(reading.building)} is not [A-Za-z0-9_.-]{{1,64}}"
    if not 1 <= reading.seq <= INT64_MAX:
        return f"seq {_shown(reading.seq)} is not an integer from 1 to {INT64_MAX}"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    late_or_early = window.problem(reading.ts, now)
    if late_or_early is not None:
        return late_or_early
    if reading.event is not None:
        if not _EVENT.fullmatch(reading.event) or not reading.event.startswith(reading.kind + "."):
            return f"event code {_shown(reading.event)} does not belong to kind {reading.kind}"
    elif topic.channel is Channel.EVENT:
        return "reading on the event channel has no event code"
    if not reading.values and reading.event is None:
        return "reading has neither values nor an event code"
    if len(reading.values) > MAX_VALUES_PER_READING:
        return f"reading has {len(reading.values)} values, more than {MAX_VALUES_PER_READING}"
    for name, value in reading.values.items():
        if not _VALUE_NAME.fullmatch(name):
            return f"value name {_shown(name)} is not [a-z][a-z0-9_]{{0,63}}"
        signal = fam.signal(name)
        if signal is None:
            return f"value {name!r} is not a signal of {fam.kind.value}"
        problem = reference_value(name, value, signal.type, signal.minimum, signal.maximum)
        if problem is not None:
            return problem
    return None


def reference_value(
    name: str, value: Value, value_type: ValueType, minimum: float | None, maximum: float | None
) -> str | None:
    if value_type is ValueType.STR:
        if not isinstance(value, str):
            return f"{name}={_shown(value)} is not a string"
        if len(value) > MAX_STRING_CHARS:
            return f"{name} is {len(value)} characters long, more than {MAX_STRING_CHARS}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name}={_shown(value)} is not a number"
    if value_type is ValueType.INT and not isinstance(value, int):
        return f"{name}={value!r} is not an integer"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"{name}={_shown(value)} is outside the 64-bit integer range"
    if not math.isfinite(value):
        return f"{name}={value!r} is not finite"
    if minimum is not None and value < minimum:
        return f"{name}={value!r} is below the plausible minimum {minimum}"
    if maximum is not None and value > maximum:
        return f"{name}={value!r} is above the plausible maximum {maximum}"
    return None


def _float_names(kind: str) -> frozenset[str]:
    names: set[str] = set()
    for signal in family(kind).signals:
        if signal.type is ValueType.FLOAT:
            if signal.per_port:
                names.update(port_field(port, signal.name) for port in range(1, MAX_PORTS + 1))
            else:
                names.add(signal.name)
    return frozenset(names)


_FLOAT_FIELDS = {kind.value: _float_names(kind.value) for kind in Kind}


def reference_line(place: Place, reading: Reading) -> str:
    floats = _FLOAT_FIELDS[reading.kind]
    fields: dict[str, Value] = {
        name: float(value) if type(value) is int and name in floats else value
        for name, value in reading.values.items()
    }
    fields["seq"] = reading.seq
    if reading.event is not None:
        fields["event"] = reading.event
    return format_line(reading.kind, place_tags(place), fields, reading.ts)


def outcome(call: object, *args: object) -> tuple[str, str]:
    """What a call returned, or which error it raised with what text."""
    try:
        return ("returned", repr(call(*args)))  # type: ignore[operator]
    except Exception as error:  # the error itself is compared
        return (type(error).__name__, str(error))


# --- what random readings are made of -------------------------------------------------------


def _known_names(kind: Kind) -> list[str]:
    names: list[str] = []
    for signal in FAMILIES[kind].signals:
        if signal.per_port:
            names += [port_field(port, signal.name) for port in range(1, MAX_PORTS + 1)]
        else:
            names.append(signal.name)
    return names


ALL_NAMES = sorted({name for kind in Kind for name in _known_names(kind)})
ODD_NAMES = [
    "seq",
    "event",
    "Speed",
    "1speed",
    "speed ",
    "s" * 64,
    "s" * 65,
    "",
    "p00_temp",
    "p13_temp",
    "p1_temp",
    "temp",
    "p01_car_status",
    "p01_port_count",
    "wat,er",
    "a=b",
    "new\nline",
    "back\\slash",
]


def _edges() -> list[float | int]:
    """Every catalogue bound, the numbers just beside it, and the limits of the types."""
    numbers: list[float | int] = [0, 0.0, -0.0, 1, -1, 0.5, 1e300, -1e300, sys.float_info.max]
    numbers += [INT64_MIN, INT64_MAX, INT64_MIN - 1, INT64_MAX + 1, 2**1023, 2**1024, -(2**1100)]
    numbers += [math.nan, math.inf, -math.inf, 2.0**63, -(2.0**63), 1e-320]
    for fam in FAMILIES.values():
        for signal in fam.signals:
            for bound in (signal.minimum, signal.maximum):
                if bound is not None:
                    numbers += [bound, float(bound), math.nextafter(bound, math.inf)]
                    numbers += [math.nextafter(bound, -math.inf), int(bound) + 1, int(bound) - 1]
    return numbers


SPECIALS: list[object] = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    0,
    INT64_MAX + 1,
    INT64_MIN - 1,
    2**1024,
    True,
    False,
    None,
    "",
    "x" * (MAX_STRING_CHARS + 1),
    'quote " back \\ 楼',
    [1.0],
]
values_st = st.one_of(
    st.sampled_from(SPECIALS),
    st.sampled_from(_edges()),
    st.floats(-1e4, 1e5).map(lambda x: round(x, 3)),
    st.floats(),
    st.integers(-50, 400),
    st.integers(),
    st.booleans(),
    st.text(max_size=8),
    st.text(alphabet='a"\\ ,=楼\n', min_size=MAX_STRING_CHARS - 1, max_size=MAX_STRING_CHARS + 1),
    st.none(),
)
ids_st = st.one_of(
    st.sampled_from(["sj-0001-L01", "pile.7", "B_2", "x" * 64, "x" * 65, "", "a b", "楼1"]),
    st.text(max_size=6),
)
events_st = st.one_of(
    st.none(),
    st.sampled_from(["lift.fault_code", "fire.alarm", "lift.", "lift", "lift.Bad", "x" * 40]),
    st.text(max_size=12),
    st.builds(lambda kind, tail: f"{kind}.{tail}", st.sampled_from(list(Kind)), st.text()),
)


@st.composite
def readings(draw: st.DrawFn) -> tuple[Reading, Topic, TimeWindow]:
    kind = draw(st.sampled_from([*(k.value for k in Kind), Kind.FIRE, "boat", "Lift", ""]))
    known_kind = kind in {k.value for k in Kind}
    names = _known_names(Kind(kind)) if known_kind else ALL_NAMES
    name_st = st.one_of(
        st.sampled_from(names),
        st.sampled_from(names),
        st.sampled_from(ALL_NAMES + ODD_NAMES),
        st.text(max_size=10),
    )
    if draw(st.integers(0, 19)) == 0:  # now and then a reading with too many values
        values: dict[str, Value] = {f"v{n}": 1.0 for n in range(MAX_VALUES_PER_READING + 1)}
    elif known_kind and draw(st.booleans()):  # a good reading, maybe one value changed
        values = {name: _plausible(kind, name) for name in draw(st.sets(st.sampled_from(names)))}
        change = draw(st.booleans())
        if values and change:
            values[draw(st.sampled_from(sorted(values)))] = draw(values_st)
    else:
        values = draw(st.dictionaries(name_st, values_st, max_size=12))
    if draw(st.integers(0, 3)):  # mostly a good header, so that the values are judged
        reading = Reading("sj-0001-L01", kind, 1, NOW, values)
    else:
        reading = Reading(
            device=draw(ids_st),
            kind=kind,
            seq=draw(st.sampled_from([1, 7, 0, -1, INT64_MAX, INT64_MAX + 1])),
            ts=NOW + draw(st.sampled_from([0, -3_600_001, 300_000, 300_001, -(10**9), 10**20])),
            values=values,
            building=draw(st.one_of(st.just(""), ids_st)),
            event=draw(events_st),
        )
    device = reading.device
    window = TimeWindow(draw(st.sampled_from([3_600_000, 86_400_000])), 300_000)
    topic_kind, topic_device = draw(
        st.sampled_from(
            [(BATCH, "edge-1"), (BATCH, "edge-1"), (kind, device), ("lift", device), (kind, "x")]
        )
    )
    channel = draw(st.sampled_from([Channel.TELEMETRY, Channel.TELEMETRY, Channel.EVENT]))
    topic = Topic("songjiang", "yongfeng", "sj-0001", topic_kind, topic_device, channel)
    return reading, topic, window


def _plausible(kind: str, name: str) -> Value:
    signal = family(kind).signal(name)
    assert signal is not None
    low = signal.minimum if signal.minimum is not None else -1000
    high = signal.maximum if signal.maximum is not None else 1000
    if signal.type is ValueType.INT:
        return int((low + high) // 2)
    return round((low + high) / 3, 3)


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings())
def test_check_reading_matches_the_reference(case: tuple[Reading, Topic, TimeWindow]) -> None:
    reading, topic, window = case
    expected = reference_check(reading, topic, NOW, window)
    assert check_reading(reading, topic, NOW, window) == expected
    # Again: ids found valid the first time are remembered, and must not change the answer.
    assert check_reading(reading, topic, NOW, window) == expected


def pipeline_check_and_line(
    reading: Reading, topic: Topic, window: TimeWindow
) -> tuple[str | None, str | None]:
    """What the pipeline makes of a reading: the contract's problem, or the line (the
    values checked while their line is written, on their own only when that cannot vouch
    for them)."""
    fields = msgspec.structs.astuple(reading)
    problem = check_fields(fields, topic, NOW, window, False)
    assert problem == check_reading(reading, topic, NOW, window, False)
    if problem is not None:
        return problem, None
    place = Place(
        topic.district, topic.street, topic.estate, reading.building, reading.kind, reading.device
    )
    line = checked_telemetry_line(place, fields)
    if line is None:
        problem = check_values(reading.kind, reading.values)
        if problem is not None:
            return problem, None
        line = telemetry_line(place, reading, plain_ids=True)
    return None, line


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings())
def test_checked_line_refuses_and_writes_what_check_and_line_do(
    case: tuple[Reading, Topic, TimeWindow],
) -> None:
    reading, topic, window = case
    expected = reference_check(reading, topic, NOW, window)
    for _ in range(2):  # again, with the ids and the value texts remembered
        problem, line = pipeline_check_and_line(reading, topic, window)
        assert problem == expected
        if expected is None:
            place = Place(
                topic.district,
                topic.street,
                topic.estate,
                reading.building,
                reading.kind,
                reading.device,
            )
            assert line == reference_line(place, reading)


def test_check_reading_accepts_good_readings_of_every_kind() -> None:
    """The generated readings above are mostly refused; good ones must pass, per port too."""
    topic = Topic("songjiang", "yongfeng", "sj-0001", BATCH, "edge-1", Channel.TELEMETRY)
    for kind in Kind:
        values = {name: _plausible(kind.value, name) for name in _known_names(kind)}
        reading = Reading("dev-1", kind.value, 1, NOW, values, building="B1")
        assert reference_check(reading, topic, NOW, TimeWindow()) is None
        assert check_reading(reading, topic, NOW) is None


@pytest.mark.slow
def test_every_known_name_with_every_edge_value() -> None:
    """Each signal of each kind with every catalogue bound, its neighbours and odd values,
    alone and after a good value (a refusal in the middle of a reading), and with a good
    value after it; both the check and the line must match the reference."""
    topic = Topic("songjiang", "yongfeng", "sj-0001", BATCH, "edge-1", Channel.TELEMETRY)
    place = Place("songjiang", "yongfeng", "sj-0001", "", "lift", "sj-0001-L01")
    for kind in Kind:
        names = _known_names(kind)
        good = names[0], _plausible(kind.value, names[0])
        for name in names:
            for value in [*SPECIALS, *_edges()]:
                for values in ({name: value}, dict([good, (name, value)]), {name: value, "x": 1}):
                    reading = Reading("sj-0001-L01", kind.value, 1, NOW, values)  # type: ignore[arg-type]
                    expected = reference_check(reading, topic, NOW, TimeWindow())
                    assert check_reading(reading, topic, NOW) == expected, values
                    line = outcome(telemetry_line, place, reading)
                    assert line == outcome(reference_line, place, reading), values
                    checked = pipeline_check_and_line(reading, topic, TimeWindow())
                    assert checked[0] == expected, values


@given(
    st.sampled_from([ValueType.INT, ValueType.FLOAT]),
    st.sampled_from([None, 0, -10, 0.1, -1e30, 2**70]),
    st.sampled_from([None, 1, 12.0, 99, 1e30, -(2**70)]),
    st.one_of(st.sampled_from([*SPECIALS, *_edges()]), st.integers(), st.floats()),
)
def test_fast_bounds_accept_only_what_the_slow_path_accepts(
    value_type: ValueType, minimum: float | None, maximum: float | None, value: object
) -> None:
    """Bounds the catalogue does not use yet too: missing ones, huge ones, empty ranges."""
    bounds = _fast_bounds(value_type, minimum, maximum)
    assert bounds is not None
    if type(value) is int:
        fast = bounds[0] <= value <= bounds[1]
    elif type(value) is float:
        fast = bounds[2] <= value <= bounds[3]
    else:
        fast = False
    slow = reference_value("x", value, value_type, minimum, maximum)  # type: ignore[arg-type]
    assert fast == (slow is None), slow


# Values equal across types or signs (1, 1.0 and True; 0.0 and -0.0), repeated, or outside
# every bound: a value's text is kept for the next equal value at its place in its kind's
# readings, and must never be taken for one of these.
_LOOKALIKES: list[Value] = [0, 1, 2, 0.0, -0.0, 1.0, 2.5, True, False, 100, 5000.5, -1, 1e300]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Kind)).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.lists(st.sampled_from(_known_names(kind)), min_size=1, max_size=4, unique=True),
        )
    ),
    st.lists(
        st.lists(st.sampled_from(_LOOKALIKES), min_size=4, max_size=4), min_size=2, max_size=6
    ),
)
def test_values_repeated_at_their_place_in_a_kinds_readings_keep_their_own_text(
    kind_and_names: tuple[Kind, list[str]], rows: list[list[Value]]
) -> None:
    kind, names = kind_and_names
    topic = Topic("songjiang", "yongfeng", "sj-0001", BATCH, "edge-1", Channel.TELEMETRY)
    place = Place("songjiang", "yongfeng", "sj-0001", "", kind.value, "d1")
    for row in rows:
        reading = Reading("d1", kind.value, 1, NOW, dict(zip(names, row, strict=False)))
        expected = reference_check(reading, topic, NOW, TimeWindow())
        problem, line = pipeline_check_and_line(reading, topic, TimeWindow())
        assert problem == expected
        if expected is None:
            assert line == reference_line(place, reading)
        # Unchecked too (as after a reading's values were checked on their own).
        assert outcome(telemetry_line, place, reading) == outcome(reference_line, place, reading)


places_st = st.builds(
    Place,
    st.sampled_from(["songjiang", "a,b", "a b=c"]),
    st.sampled_from(["yongfeng", "x"]),
    st.sampled_from(["sj-0001", "e 1", "bad\\", "new\nline"]),
    st.sampled_from(["", "B1", "楼 1"]),
    st.just("lift"),
    st.sampled_from(["d1", "d,2"]),
)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings(), places_st)
def test_telemetry_line_matches_format_line(
    case: tuple[Reading, Topic, TimeWindow], place: Place
) -> None:
    reading = case[0]
    expected = outcome(reference_line, place, reading)
    assert outcome(telemetry_line, place, reading) == expected
    # Again, with the tag set and the value texts cached by the first call.
    assert outcome(telemetry_line, place, reading) == expected


def test_telemetry_line_escapes_what_the_estate_or_ids_need() -> None:
    """The tags are composed per estate and device: names needing escape still get it,
    and two estates of one name in different districts keep their own tags."""
    reading = Reading("d1", "lift", 1, NOW, {"speed": 1.0})
    for place in (
        Place("songjiang", "yongfeng", "e 1", "B1", "lift", "d1"),
        Place("a,b", "yongfeng", "sj-0001", "", "lift", "d1"),
        Place("songjiang", "yongfeng", "sj-0001", "楼 1", "lift", "d,2"),
        Place("songjiang", "yongfeng", "sj-0001", "B1", "lift", "d1"),
        Place("minhang", "yongfeng", "sj-0001", "B1", "lift", "d1"),
    ):
        assert telemetry_line(place, reading) == reference_line(place, reading)


def test_telemetry_line_of_good_readings() -> None:
    place = Place("songjiang", "yongfeng", "sj-0001", "", "ebike_charger", "pile-1")
    for kind in Kind:
        values = {name: _plausible(kind.value, name) for name in _known_names(kind)}
        values.update(
            {name: 1 for name in _float_names(kind.value)} if kind.value == "fire" else {}
        )
        reading = Reading("pile-1", kind.value, 3, NOW, values, event=f"{kind.value}.offline")
        line = telemetry_line(place, reading)
        assert line == reference_line(place, reading)
        # As the pipeline calls it, the ids checked by check_reading: the same line.
        assert telemetry_line(place, reading, plain_ids=True) == line
        assert line.startswith(f"{kind.value},building=_,device=pile-1,")
        assert line.endswith(f',seq=3i,event="{kind.value}.offline" {NOW}')


def _peer_excess_reference(residual: dict[int, float]) -> dict[int, float]:
    """gateway/detection/rules/ebike_charger.py before the leave-one-out median was read off the
    sorted list (issue 8), verbatim."""
    if len(residual) <= MIN_PEERS:
        return {port: math.nan for port in residual}
    ordered = sorted(residual.values())
    if not all(math.isfinite(r) for r in ordered):  # no total order: as statistics does
        return {
            port: own - statistics.median([r for p, r in residual.items() if p != port])
            for port, own in residual.items()
        }
    excess: dict[int, float] = {}
    for port, own in residual.items():
        others = ordered.copy()
        others.remove(own)  # an equal value: the same median either way
        excess[port] = own - statistics.median(others)
    return excess


_RESIDUALS = st.lists(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1.0, 25.5]),  # ties
    ),
    max_size=MAX_PORTS,
).map(lambda values: {port: value for port, value in enumerate(values, start=1)})


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(_RESIDUALS)
def test_peer_excess_matches_the_reference(residual: dict[int, float]) -> None:
    fast, reference = _peer_excess(residual), _peer_excess_reference(residual)
    assert fast.keys() == reference.keys()
    for port, value in fast.items():
        assert value == reference[port] or (math.isnan(value) and math.isnan(reference[port]))


def _as_number_reference(value: object, default: float = math.nan) -> float:
    """gateway/detection/rules/base.py ``number`` before the type() fast path (issue 8), verbatim
    but for the look-up."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


class _Level(enum.IntEnum):
    HIGH = 3


class _Reading(float):
    """A float subclass (numpy's float64 is one): still a number."""


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.floats(allow_nan=False).map(_Reading),
    st.just(_Level.HIGH),
    st.just(np.float64(2.5)),
    st.just(np.int64(7)),
)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(_ANY_VALUE, st.sampled_from([math.nan, 0.0, -1.0]))
def test_as_number_matches_the_reference(value: object, default: float) -> None:
    fast, reference = as_number(value, default), _as_number_reference(value, default)
    assert type(fast) is float
    assert fast == reference or (math.isnan(fast) and math.isnan(reference))
    looked_up = number({"x": value}, "x", default)  # type: ignore[dict-item]
    assert looked_up == fast or (math.isnan(looked_up) and math.isnan(fast))
    absent = number({}, "x", default)
    assert absent == default or (math.isnan(absent) and math.isnan(default))
