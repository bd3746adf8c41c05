"""The InfluxDB points the gateway writes: telemetry, anomalies, edge status.

Each measurement keeps one fixed tag set forever (InfluxDB 3.x refuses a change), so a
missing building is written as ``_`` rather than left out; values, ids and free text are
fields, never tags, to keep cardinality bounded.
"""

from __future__ import annotations

import math
import re

import msgspec

from jiayuan.anomaly import Anomaly
from jiayuan.catalogue import FAMILIES, MAX_PORTS, ValueType, port_field
from jiayuan.contract import (
    SEGMENT_PATTERN,
    EdgeStatus,
    Reading,
    ReadingFields,
    Topic,
    Value,
    fast_bounds,
)
from jiayuan.influx import (
    cached_tag_set,
    escaped_field_key,
    escaped_measurement,
    escaped_string,
    format_line,
    format_line_once,
    tag_set,
)
from jiayuan.places import Place

NO_BUILDING = "_"
ANOMALY = "anomaly"
EDGE_STATUS = "edge_status"


def _float_fields() -> dict[str, frozenset[str]]:
    """Per kind, the payload fields declared float (per-port ones for every port)."""
    fields: dict[str, frozenset[str]] = {}
    for kind, fam in FAMILIES.items():
        names: set[str] = set()
        for signal in fam.signals:
            if signal.type is not ValueType.FLOAT:
                continue
            if signal.per_port:
                names.update(port_field(port, signal.name) for port in range(1, MAX_PORTS + 1))
            else:
                names.add(signal.name)
        fields[kind.value] = frozenset(names)
    return fields


_FLOAT_FIELDS = _float_fields()
# The fields telemetry_line adds after the values; a value of the same name (never a
# signal) takes the slow path.
_SEQ, _EVENT = "seq", "event"


# Per field name of a kind: its escaped ``name=``, whether it is a float signal (an int
# value is then written as a float), the finished ``name=value`` texts of the int values
# seen before (int signals have small ranges), the bounds the contract's checks accept a
# value in without their slow path (``jiayuan.contract.fast_bounds``; None for a string
# signal), the finished texts of the float values seen before (formatting a float costs
# more than the rest of its field, and sensor values repeat: a few decimals, bounded
# ranges), and the texts of 0.0 and -0.0 (one dict key, two texts).  Each text ends with
# the comma that separates it from the next field (the seq always follows the values), so
# a line is its head, its fields' texts and its tail joined once.
_Field = tuple[
    str, bool, dict[int, str], tuple[float, float, float, float] | None, dict[float, str], str, str
]
_INT_TEXTS_LIMIT = 1024  # per field; cleared when full
_FLOAT_TEXTS_LIMIT = 1024  # per field; cleared when full
# A position of a kind's readings (of one number of values): the name of the last value
# found there, its field, and that value and its text when it passed the contract's fast
# checks (None and "" otherwise).  Readings of a kind carry their values in one order, and
# most values equal the last one of their kind at that place (a lift at rest, an idle
# port): the name is then compared, not looked up, and the text not looked up either.
# One tuple, replaced whole: a thread reading it never sees a value with another's text.
_Slot = tuple[str | None, _Field, int | float | None, str]
_NO_FIELD: _Field = ("", False, {}, None, {}, "", "")  # of no name: never read
_NO_SLOT: _Slot = (None, _NO_FIELD, None, "")


def _fields_by_kind() -> dict[str, tuple[str, dict[str, _Field], dict[int, list[_Slot]]]]:
    """Per kind: its escaped measurement, its payload fields (per-port ones for every
    port), and its readings' slots per number of values (filled as readings come)."""
    table: dict[str, tuple[str, dict[str, _Field], dict[int, list[_Slot]]]] = {}
    for kind, fam in FAMILIES.items():
        fields: dict[str, _Field] = {}
        bounds = fast_bounds(kind.value)
        for signal in fam.signals:
            ports = range(1, MAX_PORTS + 1) if signal.per_port else (0,)
            for port in ports:
                name = port_field(port, signal.name) if signal.per_port else signal.name
                is_float = name in _FLOAT_FIELDS[kind.value]
                prefix = escaped_field_key(name) + "="
                zero, negative_zero = prefix + "0.0,", prefix + "-0.0,"
                fields[name] = (prefix, is_float, {}, bounds.get(name), {}, zero, negative_zero)
        fields.pop(_SEQ, None)
        fields.pop(_EVENT, None)
        table[kind.value] = (escaped_measurement(kind.value), fields, {})
    return table


_FIELDS = _fields_by_kind()
_SEQ_KEY = escaped_field_key(_SEQ) + "="
_EVENT_PREFIX = "," + escaped_field_key(_EVENT) + "="
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# float(int) raises OverflowError beyond this; such values take the slow path to raise it.
_FLOAT_INT_LIMIT = 2**1023
# Bound once: an attribute of a module costs a lookup each time.
_copysign = math.copysign


def _remember_float(texts: dict[float, str], value: float, text: str) -> None:
    if len(texts) >= _FLOAT_TEXTS_LIMIT:
        texts.clear()
    texts[value] = text


def _remember_int(texts: dict[int, str], value: int, text: str) -> None:
    if len(texts) >= _INT_TEXTS_LIMIT:
        texts.clear()
    texts[value] = text


def _new_slots(slots_by_count: dict[int, list[_Slot]], count: int) -> list[_Slot]:
    slots = slots_by_count[count] = [_NO_SLOT] * count
    return slots


# A telemetry line's tags, in line protocol's sorted order, are building, device, then the
# estate's district, estate and street: the estate's part is formatted once per estate and
# the device's two names, ids the contract allows only in characters line protocol needs
# no escape for, are written as they are.  No tag set a device is kept: at a district's
# 100,000 devices a cache of them would be either state a device or cleared and refilled.
_PLAIN = re.compile(SEGMENT_PATTERN)
# Estate name → (district, street, its ",district=…,estate=…,street=…"; None: a name that
# needs escaping or is refused, which the general path handles).
_estate_tags: dict[str, tuple[str, str, str | None]] = {}
_ESTATE_TAGS_LIMIT = 65_536


def _estate_part(district: str, street: str, estate: str) -> tuple[str, str, str | None]:
    plain = _PLAIN.fullmatch(district) and _PLAIN.fullmatch(street) and _PLAIN.fullmatch(estate)
    part = f",district={district},estate={estate},street={street}" if plain else None
    if len(_estate_tags) >= _ESTATE_TAGS_LIMIT:
        _estate_tags.clear()
    known = _estate_tags[estate] = (district, street, part)
    return known


def place_tags(place: Place) -> dict[str, str]:
    return {
        "district": place.district,
        "street": place.street,
        "estate": place.estate,
        "building": place.building or NO_BUILDING,
        "device": place.device,
    }


def telemetry_line(place: Place, reading: Reading, plain_ids: bool = False) -> str:
    """The reading's values, its seq, and its event code when it has one.

    ``plain_ids``: the place's device and building are known to be ids the contract
    allows (``check_reading`` passed), so they are written without a check.

    A float signal sent as a whole number (``"speed": 1``) is written as a float: InfluxDB
    refuses a field whose type changes.  (The reading has passed ``check_reading``, so int
    signals are ints already.)

    Anything unusual (an unknown kind or field, a value line protocol cannot carry, a type
    other than float, int, str or bool) goes to :func:`_telemetry_line_slow`, which also
    raises the errors.
    """
    line = _fast_line(place, _astuple(reading), plain_ids, False)
    return _telemetry_line_slow(place, reading) if line is None else line


def checked_telemetry_line(place: Place, fields: ReadingFields) -> str | None:
    """``telemetry_line(place, reading, plain_ids=True)`` of a reading (given as its
    fields, ``msgspec.structs.astuple``) that passed ``check_fields(..., values=False)``,
    when each of its values passes the contract's checks on their fast path: in the same
    pass over the values as their texts.

    None when a value needs ``jiayuan.contract.check_values`` (a string, a bool, a name
    or a number outside what the fast path takes) or the slow line: the caller checks the
    values, then calls ``telemetry_line`` for a reading they pass.
    """
    return _fast_line(place, fields, True, True)


_astuple = msgspec.structs.astuple


def _fast_line(place: Place, fields: ReadingFields, plain_ids: bool, checked: bool) -> str | None:
    """The line, or None where the slow path must write it (or, ``checked``, where a
    value needs the contract's full check).

    Written for speed (once per reading on the gateway's hot path): one pass over the
    values, each one's field found by its position in its kind's readings and its text
    kept from the last equal value there (``_Slot``) or from its field's texts; the line
    is then one join of its head, those texts and its tail.
    """
    _, kind, seq, ts, values, _, event = fields
    per_kind = _FIELDS.get(kind)
    if per_kind is None:
        return None
    measurement, names, slots_by_count = per_kind
    count = len(values)
    slots = slots_by_count.get(count)
    if slots is None:
        if count > len(names):
            return None  # more values than the kind has fields: a name it does not know
        slots = _new_slots(slots_by_count, count)
    # The head, each value's text, the tail: filled in place (no list grown value by value).
    parts: list[str] = [""] * (count + 2)
    position = 0
    for name, value in values.items():
        slot = slots[position]
        position += 1
        slot_name = slot[0]
        # The same name object most of the time (msgspec reuses a message's dict keys).
        if slot_name is name or slot_name == name:
            field = slot[1]
            kept = slot[2]
            vtype = type(value)
            if vtype is type(kept):
                if vtype is float:
                    # As C doubles once compiled; == does not see a zero's sign.
                    number, kept_number = value, kept
                    if number == kept_number and number != 0.0:
                        parts[position] = slot[3]
                        continue
                elif vtype is int and (value is kept or value == kept):
                    parts[position] = slot[3]
                    continue
        else:
            found = names.get(name)
            if found is None:
                return None
            field = found
            slot = _NO_SLOT
        if type(value) is float:
            number = value  # a C double once compiled: compared and tested without objects
            if checked:
                # jiayuan.contract.check_values's fast path: ints and floats (exactly)
                # inside their bounds; anything else is judged by its slow path.
                bounds = field[3]
                if bounds is None:
                    return None
                low, high = bounds[2], bounds[3]
                if not low <= number <= high:
                    return None
            if number != 0.0:
                float_texts = field[4]
                text = float_texts.get(value)
                if text is None:
                    # number - number == 0.0 is False for NaN and ±inf.
                    if number - number != 0.0:
                        return None
                    text = f"{field[0]}{value!r},"
                    _remember_float(float_texts, value, text)
            else:
                # A stopped lift's speed and an idle port's power and current make a third
                # of the floats: their texts are made once.
                text = field[6] if _copysign(1.0, value) < 0.0 else field[5]
        elif type(value) is int:
            if checked:
                bounds = field[3]
                if bounds is None or not bounds[0] <= value <= bounds[1]:
                    return None
            int_texts = field[2]
            text = int_texts.get(value)
            if text is None:
                if not field[1]:
                    if not _INT64_MIN <= value <= _INT64_MAX:
                        return None
                    text = f"{field[0]}{value}i,"
                elif -_FLOAT_INT_LIMIT <= value <= _FLOAT_INT_LIMIT:
                    text = f"{field[0]}{float(value)!r},"
                else:
                    return None  # float() overflows
                _remember_int(int_texts, value, text)
        elif checked:  # the contract's slow path judges strings, bools and the rest
            return None
        elif type(value) is str:
            parts[position] = f"{field[0]}{escaped_string(value)},"
            continue
        elif type(value) is bool:
            parts[position] = field[0] + ("true," if value else "false,")
            continue
        else:
            return None
        parts[position] = text
        if checked or slot is _NO_SLOT:
            # Kept only once the checks passed: a checked line may take it unchecked.
            slots[position - 1] = (name, field, value, text) if checked else (name, field, None, "")
    if type(seq) is not int or not _INT64_MIN <= seq <= _INT64_MAX:
        return None
    if type(ts) is not int or not _INT64_MIN <= ts <= _INT64_MAX:
        return None  # the slow path writes it as it is
    if event is None:
        tail = ""
    elif type(event) is str:
        tail = _EVENT_PREFIX + escaped_string(event)
    else:
        return None
    # C integers once compiled (pxd), formatted without a Python int's general conversion.
    seq_number, ts_number = seq, ts
    parts[count + 1] = f"{_SEQ_KEY}{seq_number}i{tail} {ts_number}"
    key = place.key
    district, street, estate, device = key[0], key[1], key[2], key[4]
    known = _estate_tags.get(estate)
    if known is None or known[0] != district or known[1] != street:
        known = _estate_part(district, street, estate)
    building = place.building
    if known[2] is not None and (
        plain_ids or (_PLAIN.fullmatch(device) and (not building or _PLAIN.fullmatch(building)))
    ):
        if not building:
            building = NO_BUILDING
        parts[0] = f"{measurement},building={building},device={device}{known[2]} "
        return "".join(parts)
    # Names that need escaping: the tag set formatted in full (and cached; its key never
    # looks like format_line's own cache keys, tuples of (key, value) pairs).
    tag_key = (key, building)
    tags = cached_tag_set(tag_key)
    if tags is None:
        tags = tag_set(place_tags(place), tag_key)
    parts[0] = f"{measurement}{tags} "
    return "".join(parts)


def _telemetry_line_slow(place: Place, reading: Reading) -> str:
    """telemetry_line through format_line: the reference, and every unusual case."""
    floats = _FLOAT_FIELDS[reading.kind]
    fields: dict[str, Value] = {
        name: float(value) if type(value) is int and name in floats else value
        for name, value in reading.values.items()
    }
    fields[_SEQ] = reading.seq
    if reading.event is not None:
        fields[_EVENT] = reading.event
    return format_line(reading.kind, place_tags(place), fields, reading.ts)


def anomaly_line(anomaly: Anomaly) -> str:
    """One point per anomaly, stamped with its start: the closing write overwrites it."""
    tags = {
        "district": anomaly.district,
        "street": anomaly.street,
        "estate": anomaly.estate,
        "building": anomaly.building or NO_BUILDING,
        "device": anomaly.device,
        "kind": anomaly.kind,
        "code": anomaly.code,
        "severity": anomaly.severity,
    }
    fields: dict[str, Value] = {
        "value": float(anomaly.value),
        "threshold": float(anomaly.threshold),
        "start": anomaly.start_ms,
        "end": anomaly.end_ms,
        "state": anomaly.state,
        "title_zh": anomaly.title_zh,
        "title_en": anomaly.title_en,
        "detail": anomaly.detail,
    }
    if anomaly.explanation:  # statistical anomalies only: the rules' lines are unchanged
        fields["explanation"] = anomaly.explanation
    # Not cached: an anomaly's tags are written at its opening and its closing only.
    return format_line_once(ANOMALY, tags, fields, anomaly.start_ms)


def edge_status_line(topic: Topic, status: EdgeStatus) -> str:
    tags = {
        "district": topic.district,
        "street": topic.street,
        "estate": topic.estate,
        "edge": status.edge,
    }
    return format_line(EDGE_STATUS, tags, {"state": status.state}, status.ts)
