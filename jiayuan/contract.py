"""The wire contract between edge agents (or device vendors) and the gateway.

Imported by edge, simulators and gateway alike; ``docs/protocol.md`` documents it for
vendors.  Topics carry the place::

    jiayuan/v1/{district}/{street}/{estate}/{kind}/{device}/{channel}

with channel ``telemetry``, ``event`` or ``status``.  An edge agent that batches readings of
many devices into one message publishes on ``kind = batch`` and ``device = <edge id>``:
per-message overhead, not JSON decoding, is what limits MQTT throughput.

A payload is UTF-8 JSON: ``{"v": 1, "edge": ..., "readings": [...]}``.  A reading is
identified by ``(edge, device, seq)`` and its ``ts``; the gateway drops a reading it has
already seen (``gateway.transport.dedup``).
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import msgspec

from jiayuan.catalogue import FAMILIES, MAX_PORTS, Family, Kind, ValueType, family, port_field

SCHEMA_VERSION = 1
TOPIC_PREFIX = "jiayuan/v1"
BATCH = "batch"
# The status topic of an edge agent (retained, with a last will "offline").
EDGE_STATUS_KIND = "edge"
# An edge agent's states: "online" after connecting, "stopped" before a clean disconnect
# (someone stopped it), "offline" its last will (the connection broke).
EdgeState = Literal["online", "offline", "stopped"]

# Limits on what one message may carry: a broken or hostile sender cannot make the gateway
# hold, parse or store more than this per message (docs/protocol.md, "Limits").
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 5000
MAX_VALUES_PER_READING = 64
MAX_STRING_CHARS = 256  # a string value (InfluxDB would take 64 KiB; no signal needs it)
# Integers InfluxDB can store, and a seq the duplicate filter can hold.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Device clocks drift and edges replay after outages, so accept old readings for a while;
# a reading stamped in the future by more than this is a broken clock.  The gateway's
# configuration can change both (gateway.max_reading_age_s, gateway.max_reading_future_s).
MAX_AGE_MS = 30 * 24 * 3600 * 1000
MAX_FUTURE_MS = 5 * 60 * 1000
# How much of a sender's text an error message repeats.
_SHOWN_CHARS = 80

# A topic segment: district, street, estate or device id.
SEGMENT_PATTERN = r"[A-Za-z0-9_.\-]{1,64}"
_SEGMENT = re.compile(SEGMENT_PATTERN)
_VALUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EVENT = re.compile(r"[a-z_]{1,32}\.[a-z0-9_]{1,64}")
# msgspec names the offset of a malformed token as "(byte N)".
_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")
_NON_JSON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"+Infinity")

Value = float | int | str


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


# A member read through its Enum class costs about 90 ns (an attribute of the class's
# metaclass); the hot paths compare against these instead.
EVENT_CHANNEL, STATUS_CHANNEL = Channel.EVENT, Channel.STATUS


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message says how."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far from the gateway's clock a reading's timestamp may be."""

    max_age_ms: int = MAX_AGE_MS
    max_future_ms: int = MAX_FUTURE_MS

    @classmethod
    def from_seconds(cls, max_age_s: float, max_future_s: float) -> TimeWindow:
        if max_age_s <= 0 or max_future_s < 0:
            raise ValueError(
                f"timestamp window: max_reading_age_s must be > 0 and max_reading_future_s "
                f">= 0, not {max_age_s} and {max_future_s}"
            )
        return cls(int(max_age_s * 1000), int(max_future_s * 1000))

    def problem(self, ts: int, now_ms: int) -> str | None:
        if ts < now_ms - self.max_age_ms:
            return (
                f"timestamp {_shown(ts)} is more than {_duration(self.max_age_ms)} old "
                f"by the gateway's clock ({now_ms})"
            )
        if ts > now_ms + self.max_future_ms:
            return (
                f"timestamp {_shown(ts)} is more than {_duration(self.max_future_ms)} in the "
                f"future by the gateway's clock ({now_ms})"
            )
        return None


DEFAULT_WINDOW = TimeWindow()


def _duration(ms: int) -> str:
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}{'' if ms == size else 's'}"
    return f"{ms / 1000:g} seconds"


def _shown(value: object) -> str:
    """A sender's value for an error message, cut short: a 200 KiB id must not be echoed."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}… ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class Topic:
    district: str
    street: str
    estate: str
    kind: str  # a Kind value, "batch", or "edge" on status topics
    device: str  # a device id, or the edge id on batch and edge-status topics
    channel: Channel

    def __str__(self) -> str:
        return "/".join(
            (
                TOPIC_PREFIX,
                self.district,
                self.street,
                self.estate,
                self.kind,
                self.device,
                self.channel.value,
            )
        )


def batch_topic(district: str, street: str, estate: str, edge: str) -> str:
    return str(Topic(district, street, estate, BATCH, edge, Channel.TELEMETRY))


def device_topic(
    district: str, street: str, estate: str, kind: Kind, device: str, channel: Channel
) -> str:
    return str(Topic(district, street, estate, kind.value, device, channel))


def edge_status_topic(district: str, street: str, estate: str, edge: str) -> str:
    return str(Topic(district, street, estate, EDGE_STATUS_KIND, edge, Channel.STATUS))


def subscription(street_filter: str = "+") -> str:
    """The MQTT filter a gateway subscribes to; ``street_filter`` lets it own one street."""
    return f"{TOPIC_PREFIX}/+/{street_filter}/#"


# The kind segment of a topic: a device family, an edge's batch, or an edge's status.
TOPIC_KINDS = frozenset({k.value for k in Kind} | {BATCH, EDGE_STATUS_KIND})


# A device publishes on the same few topics for ever: remember the parsed ones (bounded;
# an invalid topic raises, and lru_cache keeps no exceptions, so junk cannot fill it).
@functools.lru_cache(maxsize=131_072)
def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 8 or "/".join(parts[:2]) != TOPIC_PREFIX:
        raise ContractError(
            f"topic {_shown(topic)} is not "
            f"{TOPIC_PREFIX}/district/street/estate/kind/device/channel"
        )
    district, street, estate, kind, device, channel = parts[2:]
    for name, segment in (
        ("district", district),
        ("street", street),
        ("estate", estate),
        ("device", device),
    ):
        if not _SEGMENT.fullmatch(segment):
            raise ContractError(
                f"topic segment {name}={_shown(segment)} is not [A-Za-z0-9_.-]{{1,64}}"
            )
    try:
        parsed_channel = Channel(channel)
    except ValueError:
        raise ContractError(f"unknown channel {_shown(channel)}") from None
    if kind not in TOPIC_KINDS:
        raise ContractError(f"unknown kind {_shown(kind)} in topic")
    return Topic(district, street, estate, kind, device, parsed_channel)


# Decoded by the thousand a second, and holding only names, numbers and a dict of them
# (never anything that refers back), so not tracked by the cyclic collector (gc=False):
# a tracked struct costs its allocation more and counts towards the next collection.
class Reading(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One device's values at one instant."""

    # The gateway's hot path reads the fields by position (``msgspec.structs.astuple``:
    # ``check_fields``, gateway/pipeline.py, ``checked_telemetry_line``): keep their order.
    device: str
    kind: str
    seq: int  # per (edge, device), strictly increasing from 1; survives edge restarts
    ts: int  # device time, epoch milliseconds
    values: dict[str, Value]
    building: str = ""
    event: str | None = None  # an event code such as "lift.fault_code" on the event channel

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.seq)


class Envelope(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    v: int
    edge: str
    readings: list[Reading]
    # Sent from the edge's backlog after an uplink outage (docs/protocol.md, "Replay").
    replay: bool = False


class EdgeStatus(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    edge: str
    state: EdgeState
    ts: int


_envelope_decoder = msgspec.json.Decoder(Envelope)
_status_decoder = msgspec.json.Decoder(EdgeStatus)
_encoder = msgspec.json.Encoder()


def encode(message: Envelope | EdgeStatus) -> bytes:
    return _encoder.encode(message)


def decode_envelope(payload: bytes) -> Envelope:
    """Decode and check the envelope's shape; readings are checked one by one later."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes"
        )
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ContractError(
            f"payload is not a valid envelope: {error}{_json_hint(payload, error)}"
        ) from None
    if envelope.v != SCHEMA_VERSION:
        raise ContractError(f"schema version {envelope.v} is not supported (want {SCHEMA_VERSION})")
    if not _valid_id(envelope.edge):  # the edges' ids repeat with every message
        raise ContractError(f"edge id {_shown(envelope.edge)} is not [A-Za-z0-9_.-]{{1,64}}")
    if not envelope.readings:
        raise ContractError("envelope holds no readings")
    if len(envelope.readings) > MAX_READINGS_PER_MESSAGE:
        raise ContractError(
            f"envelope holds {len(envelope.readings)} readings, more than "
            f"{MAX_READINGS_PER_MESSAGE}"
        )
    return envelope


def decode_status(payload: bytes) -> EdgeStatus:
    try:
        status = _status_decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ContractError(
            f"payload is not a valid edge status: {error}{_json_hint(payload, error)}"
        ) from None
    if status.v != SCHEMA_VERSION:
        raise ContractError(f"schema version {status.v} is not supported (want {SCHEMA_VERSION})")
    return status


def _json_hint(payload: bytes, error: Exception) -> str:
    """Name the usual culprit: NaN and Infinity are JavaScript, not JSON."""
    found = _BYTE_OFFSET.search(str(error))
    if found is None:
        return ""
    at = int(found.group(1))
    for start in (at, at - 1):
        if any(payload.startswith(word, max(start, 0)) for word in _NON_JSON_NUMBERS):
            return "; NaN and Infinity are not JSON numbers: leave the value out instead"
    return ""


# Per kind, what each known payload field name accepts, so the common case costs a dict
# lookup, a type test and one chained comparison per value: (int low, int high, float
# low, float high) of each numeric signal.  Bounds fold in the int64 range and finiteness
# (a finite float stands for "no bound", so NaN and ±inf fail ``low <= v <= high``); the
# empty range (inf, -inf) refuses floats for an int signal.  String signals, and anything
# the fast path does not accept, are judged by the catalogue-driven slow path, which alone
# writes error messages, so they stay the same.
_FastBounds = tuple[float, float, float, float]
_NO_FLOATS = (math.inf, -math.inf)
# Edges and buildings repeat with every message; remember ids already found valid.  A
# device id is checked with the regex each time: the gateway checks a device once, then
# vouches for it (``known_ids``), so caching device ids would only hold a district's
# worth of them in the set (40 B a device at 100,000).
_ID_CACHE_LIMIT = 131_072
_valid_ids: set[str] = set()


def _fast_bounds(
    signal_type: ValueType, minimum: float | None, maximum: float | None
) -> _FastBounds | None:
    if signal_type is ValueType.STR:
        return None
    int_low = INT64_MIN if minimum is None else max(minimum, INT64_MIN)
    int_high = INT64_MAX if maximum is None else min(maximum, INT64_MAX)
    if signal_type is ValueType.INT:
        return (int_low, int_high, *_NO_FLOATS)
    float_low = -sys.float_info.max if minimum is None else minimum
    float_high = sys.float_info.max if maximum is None else maximum
    return (int_low, int_high, float_low, float_high)


def _build_fast_bounds() -> dict[str, dict[str, _FastBounds]]:
    table: dict[str, dict[str, _FastBounds]] = {}
    for kind, fam in FAMILIES.items():
        names = {
            port_field(port, signal.name) if signal.per_port else signal.name
            for signal in fam.signals
            for port in (range(1, MAX_PORTS + 1) if signal.per_port else (0,))
        }
        bounds: dict[str, _FastBounds] = {}
        for name in names:
            # Only names the slow path itself accepts, with the signal it finds for them.
            signal = fam.signal(name)
            if signal is None or not _VALUE_NAME.fullmatch(name):
                continue
            found = _fast_bounds(signal.type, signal.minimum, signal.maximum)
            if found is not None:
                bounds[name] = found
        table[kind.value] = bounds
    return table


_FAST_BOUNDS = _build_fast_bounds()
_KNOWN_KINDS = ", ".join(kind.value for kind in Kind)


def _valid_id(text: str) -> bool:
    if text in _valid_ids:
        return True
    if not _SEGMENT.fullmatch(text):
        return False
    if len(_valid_ids) >= _ID_CACHE_LIMIT:
        _valid_ids.clear()
    _valid_ids.add(text)
    return True


def check_reading(
    reading: Reading,
    topic: Topic,
    now_ms: int | None = None,
    window: TimeWindow = DEFAULT_WINDOW,
    values: bool = True,
) -> str | None:
    """Why this reading breaks the contract, or None when it is good.

    Checks that it belongs to its topic, that its kind and every value name are in the
    catalogue with the declared type, that numbers are finite and inside the signal's
    plausible range, that strings are short, and that the timestamp is inside ``window``.

    ``values=False`` leaves out the checks of each value (``check_values``) for a caller
    that does them itself: the gateway checks them while it writes their line.
    """
    return check_fields(_astuple(reading), topic, now_ms, window, values)


# A Reading's fields in their order (msgspec.structs.astuple): a hot path takes them
# all at once, since each attribute of a struct read on its own costs a type lookup.
ReadingFields = tuple[str, str, int, int, dict[str, Value], str, str | None]
_astuple = msgspec.structs.astuple


def check_fields(
    fields: ReadingFields,
    topic: Topic,
    now_ms: int | None = None,
    window: TimeWindow = DEFAULT_WINDOW,
    values: bool = True,
) -> str | None:
    """``check_reading`` of a reading's fields (``msgspec.structs.astuple``)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return check_fields_within(
        fields, topic, now - window.max_age_ms, now + window.max_future_ms, now, window, values
    )


def check_fields_within(
    fields: ReadingFields,
    topic: Topic,
    earliest: int,
    latest: int,
    now_ms: int,
    window: TimeWindow,
    values: bool = True,
    known_ids: bool = False,
) -> str | None:
    """``check_fields`` with the timestamp's bounds (``earliest`` to ``latest``, from
    ``now_ms`` and ``window``) worked out once by a caller that checks many readings.

    ``known_ids``: the caller vouches that the reading's kind, device and building ids
    passed these checks before (the gateway remembers each device it heard from with
    them), so they are not looked up again.
    """
    on_batch, on_event_channel = topic_traits(topic)
    return check_fields_on(
        fields,
        topic,
        on_batch,
        on_event_channel,
        earliest,
        latest,
        now_ms,
        window,
        values,
        known_ids,
    )


def topic_traits(topic: Topic) -> tuple[bool, bool]:
    """What the checks ask of a reading's topic: whether it is an edge's batch topic (its
    readings may be of any device), whether its channel is the event channel."""
    return topic.kind == BATCH, topic.channel is EVENT_CHANNEL


def check_fields_on(
    fields: ReadingFields,
    topic: Topic,
    on_batch: bool,
    on_event_channel: bool,
    earliest: int,
    latest: int,
    now_ms: int,
    window: TimeWindow,
    values: bool = True,
    known_ids: bool = False,
) -> str | None:
    """``check_fields_within`` with the topic's ``topic_traits`` worked out once by a
    caller that checks all of a message's readings (each read of a topic's attribute
    costs a type lookup)."""
    device, kind, seq, ts, reading_values, building, event = fields
    if not on_batch and (kind != topic.kind or device != topic.device):
        return (
            f"reading for {_shown(kind)}/{_shown(device)} published on the "
            f"topic of {topic.kind}/{topic.device}"
        )
    if not known_ids:
        # Every kind is in the table (a Kind member finds its value's entry).
        fast = _FAST_BOUNDS.get(kind) if isinstance(kind, str) else None
        if fast is None:
            return f"unknown kind {_shown(kind)}; known: {_KNOWN_KINDS}"
        if not _SEGMENT.fullmatch(device):
            return f"device id {_shown(device)} is not [A-Za-z0-9_.-]{{1,64}}"
        if building and not _valid_id(building):
            return f"building id {_shown(building)} is not [A-Za-z0-9_.-]{{1,64}}"
    if not 1 <= seq <= INT64_MAX:
        return f"seq {_shown(seq)} is not an integer from 1 to {INT64_MAX}"
    if not earliest <= ts <= latest:
        late_or_early = window.problem(ts, now_ms)
        if late_or_early is not None:
            return late_or_early
    if event is not None:
        if not _EVENT.fullmatch(event) or not event.startswith(kind + "."):
            return f"event code {_shown(event)} does not belong to kind {kind}"
    elif on_event_channel:
        return "reading on the event channel has no event code"
    elif not reading_values:
        return "reading has neither values nor an event code"
    if len(reading_values) > MAX_VALUES_PER_READING:
        return f"reading has {len(reading_values)} values, more than {MAX_VALUES_PER_READING}"
    if not values:
        return None
    return check_values(kind, reading_values)


def check_values(kind: str, values: dict[str, Value]) -> str | None:
    """The first value of a reading of ``kind`` (a kind of the catalogue) whose name or
    value breaks the catalogue, or None: ``check_reading``'s checks of each value."""
    fast = _FAST_BOUNDS[kind]
    for name, value in values.items():
        bounds = fast.get(name)
        if bounds is None:
            break
        # type() is, not isinstance: bools and subclasses take the slow path.
        if type(value) is float:
            if not bounds[2] <= value <= bounds[3]:
                break
        elif type(value) is int:
            if not bounds[0] <= value <= bounds[1]:
                break
        else:
            break
    else:
        return None
    # A value the fast path did not accept: the slow path finds the first problem.
    return _check_values(family(kind), values)


def fast_bounds(kind: str) -> dict[str, tuple[float, float, float, float]]:
    """Per value name of a kind of the catalogue, what ``check_values`` accepts without
    its slow path: (int low, int high, float low, float high), int and float values of
    exactly those types inside them (a value of any other name or type, or outside its
    bounds, takes the slow path).  For a caller that checks values while reading them
    for something else; not to be changed."""
    return _FAST_BOUNDS[kind]


def _check_values(fam: Family, values: dict[str, Value]) -> str | None:
    """The first value whose name or value breaks the catalogue, driven by it alone."""
    for name, value in values.items():
        if not _VALUE_NAME.fullmatch(name):
            return f"value name {_shown(name)} is not [a-z][a-z0-9_]{{0,63}}"
        signal = fam.signal(name)
        if signal is None:
            return f"value {name!r} is not a signal of {fam.kind.value}"
        problem = _check_value(name, value, signal.type, signal.minimum, signal.maximum)
        if problem is not None:
            return problem
    return None


def _check_value(
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


def normalise_values(kind: Kind, values: dict[str, Value]) -> dict[str, Value]:
    """Cast values to the catalogue's declared types (ints stay ints, floats become floats).

    InfluxDB refuses a field whose type changes, so an edge normalises before spooling.
    """
    fam = family(kind)
    normalised: dict[str, Value] = {}
    for name, value in values.items():
        signal = fam.signal(name)
        if signal is None or isinstance(value, str):
            normalised[name] = value
        elif signal.type is ValueType.INT:
            normalised[name] = int(value)
        elif signal.type is ValueType.FLOAT:
            normalised[name] = float(value)
        else:
            normalised[name] = value
    return normalised
