"""The InfluxDB points the gateway writes: telemetry, anomalies, edge status.

Each measurement keeps one fixed tag set forever (InfluxDB 3.x refuses a change), so a
missing building is written as ``_`` rather than left out; values, ids and free text are
fields, never tags, to keep cardinality bounded.
"""

from __future__ import annotations

from gateway.anomalies import Anomaly
from gateway.rules.base import Place
from jiayuan.catalogue import FAMILIES, MAX_PORTS, ValueType, port_field
from jiayuan.contract import EdgeStatus, Reading, Topic, Value
from jiayuan.influx import format_line

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


def place_tags(place: Place) -> dict[str, str]:
    return {
        "district": place.district,
        "street": place.street,
        "estate": place.estate,
        "building": place.building or NO_BUILDING,
        "device": place.device,
    }


def telemetry_line(place: Place, reading: Reading) -> str:
    """The reading's values, its seq, and its event code when it has one.

    A float signal sent as a whole number (``"speed": 1``) is written as a float: InfluxDB
    refuses a field whose type changes.  (The reading has passed ``check_reading``, so int
    signals are ints already.)
    """
    floats = _FLOAT_FIELDS[reading.kind]
    fields: dict[str, Value] = {
        name: float(value) if type(value) is int and name in floats else value
        for name, value in reading.values.items()
    }
    fields["seq"] = reading.seq
    if reading.event is not None:
        fields["event"] = reading.event
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
    return format_line(ANOMALY, tags, fields, anomaly.start_ms)


def edge_status_line(topic: Topic, status: EdgeStatus) -> str:
    tags = {
        "district": topic.district,
        "street": topic.street,
        "estate": topic.estate,
        "edge": status.edge,
    }
    return format_line(EDGE_STATUS, tags, {"state": status.state}, status.ts)
