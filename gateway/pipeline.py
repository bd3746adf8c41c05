"""From one MQTT message to what must be made durable before it is acknowledged.

Pure work, no I/O: parse the topic, decode the envelope, check each reading, drop
duplicates, and collect InfluxDB lines and dead letters into a ``Batch``; ``detect`` then
judges every reading the batch accepted in one call (the statistical core and the rules'
threshold tables work on whole arrays, so one call per batch of many messages costs about
what one call per message did).  A bad message or reading becomes a dead letter; nothing
here raises on bad input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from gateway.detection.detector import Detector
from gateway.metrics import GatewayMetrics
from gateway.storage.deadletters import DeadLetter, Reason
from gateway.storage.points import (
    anomaly_line,
    checked_telemetry_line,
    edge_status_line,
    telemetry_line,
)
from gateway.transport.dedup import DUPLICATE, FAULT_MEANINGS, FAULT_NAMES, NEW, SeqWindow
from jiayuan.anomaly import OPEN, Anomaly
from jiayuan.config import GatewayConfig
from jiayuan.contract import (
    BATCH,
    DEFAULT_WINDOW,
    EDGE_STATUS_KIND,
    MAX_PAYLOAD_BYTES,
    STATUS_CHANNEL,
    Channel,
    ContractError,
    EdgeStatus,
    Envelope,
    Reading,
    TimeWindow,
    Topic,
    check_fields_on,
    check_values,
    decode_envelope,
    decode_status,
    parse_topic,
    topic_traits,
)
from jiayuan.places import EstateNames, Place, estate_names

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# Places remembered, over all estates, before the memory is cleared: a district's devices.
_PLACES_LIMIT = 262_144


astuple = msgspec.structs.astuple


# Message and Pending are made once per message and per reading on the hot path: msgspec
# Structs, whose constructor is C (a slotted dataclass's __init__ is Python bytecode, some
# 140 ns more each; a frozen one's three times that).  Neither refers back to anything
# that refers to it, so neither is tracked by the cyclic collector (gc=False); nothing
# changes them after they are made.
class Message(msgspec.Struct, gc=False):
    """One MQTT message as the network thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    session: int = 0  # which connection delivered it (acks go to that connection only)


class Pending(msgspec.Struct, gc=False):
    """One line to write, and what to dead-letter if InfluxDB refuses it."""

    line: str
    topic: str
    origin: Reading | Anomaly | EdgeStatus | bytes  # encoded only if it must be dead-lettered
    received_ms: int
    is_reading: bool

    def origin_json(self) -> bytes:
        return self.origin if isinstance(self.origin, bytes) else msgspec.json.encode(self.origin)


@dataclass
class Batch:
    messages: list[Message] = field(default_factory=list)
    lines: list[Pending] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    readings: int = 0  # in the messages' valid envelopes
    undetected: list[tuple[Place, Reading, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.lines or self.dead)


class Pipeline:
    def __init__(
        self,
        detector: Detector,
        metrics: GatewayMetrics,
        clock: Callable[[], int] = wall_ms,
        window: TimeWindow = DEFAULT_WINDOW,
    ) -> None:
        self.detector = detector
        self.metrics = metrics
        self.seen = SeqWindow()
        self.window = window
        self._clock = clock
        # Per estate, the Place of each device heard from: a device's readings share one
        # (making a Place cost about a twentieth of a reading's processing).
        self._places: dict[EstateNames, dict[str, Place]] = {}
        self._place_count = 0

    @staticmethod
    def window_of(config: GatewayConfig) -> TimeWindow:
        """The timestamp window the configuration asks for."""
        return TimeWindow.from_seconds(config.max_reading_age_s, config.max_reading_future_s)

    def add(self, message: Message, batch: Batch) -> None:
        """Process one message into the batch; never raises."""
        batch.messages.append(message)
        try:
            self._process(message, batch)
        except Exception as error:  # a bug must not stall ingest: keep the evidence
            log.exception("processing a message on %s failed", message.topic)
            self._dead(batch, message, Reason.INTERNAL_ERROR, repr(error), message.payload)

    def detect(self, batch: Batch) -> None:
        """Judge the readings the batch accepted since the last call, in arrival order.

        Call before the batch is written.  A bug in detection is logged and counted; the
        readings are still stored (losing telemetry over a detector fault would be worse).
        """
        items, batch.undetected = batch.undetected, []
        if not items:
            return
        try:
            anomalies = self.detector.readings(items)
        except Exception:
            log.exception("detection failed on a batch of %d readings", len(items))
            self.metrics.detection_failed()
            return
        self._anomalies(batch, anomalies)

    def tick(self, batch: Batch, most: int | None = None) -> bool:
        """The timer's turn: devices that went silent (after judging what already
        arrived, so a reading waiting in the batch counts as seen), at most ``most`` of
        them into this batch.  True when that many opened: more may be due at once."""
        self.detect(batch)
        opened = self.detector.tick(self._clock(), most)
        self._anomalies(batch, opened)
        return most is not None and len(opened) >= most

    def _process(self, message: Message, batch: Batch) -> None:
        try:
            topic = parse_topic(message.topic)
        except ContractError as error:
            self._dead(batch, message, Reason.BAD_TOPIC, str(error), message.payload)
            return
        if topic.kind == EDGE_STATUS_KIND or topic.channel is STATUS_CHANNEL:
            self._status(topic, message, batch)
            return
        try:
            envelope = decode_envelope(message.payload)
        except ContractError as error:
            self._dead(batch, message, Reason.BAD_PAYLOAD, str(error), message.payload)
            return
        if topic.kind == BATCH and envelope.edge != topic.device:
            self._dead(
                batch,
                message,
                Reason.BAD_PAYLOAD,
                f"edge {envelope.edge!r} published on the batch topic of {topic.device!r}",
                message.payload,
            )
            return
        batch.readings += len(envelope.readings)
        estate = estate_names(topic.district, topic.street, topic.estate)
        places = self._places.get(estate)
        if places is None:
            places = self._places[estate] = {}
        _take_readings(self, message, topic, envelope, estate, places, self._clock(), batch)

    def _seq_fault(self, edge: str, reading: Reading, verdict: int) -> None:
        """Count a reading that breaks its device's numbering (it is stored all the same);
        the device's first is logged, the rest only counted."""
        fault = FAULT_NAMES[verdict]
        if self.metrics.seq_fault(edge, reading.device, fault):
            log.warning(
                "设备序号异常 sequence fault of device %s on edge %s: %s (seq %d, ts %d); the "
                "reading is stored, and the device's further faults are counted in /health "
                "(counters.seq_faults_by_device) and /metrics, not logged",
                reading.device,
                edge,
                FAULT_MEANINGS[fault],
                reading.seq,
                reading.ts,
            )

    def _new_place(self, places: dict[str, Place], estate: EstateNames, reading: Reading) -> Place:
        """The reading's Place, remembered for the device's next readings (a device
        that changes building or kind gets a new one)."""
        if self._place_count >= _PLACES_LIMIT:
            for known in self._places.values():  # emptied in place: the caller holds one
                known.clear()
            self._place_count = 0
        place = Place.within(estate, reading.building, reading.kind, reading.device)
        if reading.device not in places:
            self._place_count += 1
        places[reading.device] = place
        return place

    def _status(self, topic: Topic, message: Message, batch: Batch) -> None:
        if topic.kind != EDGE_STATUS_KIND or topic.channel is not STATUS_CHANNEL:
            self._dead(
                batch,
                message,
                Reason.BAD_TOPIC,
                "only edge agents publish on the status channel "
                f"(kind {topic.kind!r}, channel {topic.channel.value!r})",
                message.payload,
            )
            return
        if not message.payload:
            return  # a cleared retained status: nothing to record
        try:
            status = decode_status(message.payload)
        except ContractError as error:
            self._dead(batch, message, Reason.BAD_STATUS, str(error), message.payload)
            return
        if status.edge != topic.device:
            self._dead(
                batch,
                message,
                Reason.BAD_STATUS,
                f"status of edge {status.edge!r} on the topic of {topic.device!r}",
                message.payload,
            )
            return
        batch.lines.append(
            Pending(
                edge_status_line(topic, status),
                message.topic,
                status,  # the alert engine hears of it (an estate's uplink down)
                message.received_ms,
                False,
            )
        )
        self.metrics.edge_status()

    def _anomalies(self, batch: Batch, anomalies: list[Anomaly]) -> None:
        now = self._clock()
        for anomaly in anomalies:
            if anomaly.state == OPEN:
                self.metrics.anomaly_opened(anomaly.kind, anomaly.code)
            else:
                self.metrics.anomaly_closed()
            batch.lines.append(
                Pending(anomaly_line(anomaly), _topic_of(anomaly), anomaly, now, False)
            )
        if anomalies:
            self.metrics.open_anomalies.set(self.detector.book.open_count)

    def _dead(
        self, batch: Batch, message: Message, reason: Reason, detail: str, payload: bytes
    ) -> None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Keep the evidence, not the flood: an oversized message is stored cut short.
            detail = f"{detail}; stored its first {MAX_PAYLOAD_BYTES} of {len(payload)} bytes"
            payload = payload[:MAX_PAYLOAD_BYTES]
        batch.dead.append(DeadLetter(message.received_ms, message.topic, reason, detail, payload))
        self.metrics.dead_letter(reason)


def _take_readings(
    pipeline: Pipeline,
    message: Message,
    topic: Topic,
    envelope: Envelope,
    estate: EstateNames,
    places: dict[str, Place],
    now: int,
    batch: Batch,
) -> None:
    """The message's readings into the batch: each checked and its line written, then all
    of them offered to the duplicate window at once, then the new ones kept.  A function,
    not a method, so that the compiled build types its locals (pipeline.pxd): it runs once
    a reading."""
    window = pipeline.window
    earliest, latest = now - window.max_age_ms, now + window.max_future_ms
    # What the checks ask of the topic, once a message rather than once a reading.
    on_batch, on_event_channel = topic_traits(topic)
    # The readings that passed their checks, as parallel lists (no tuple a reading).
    kept: list[Reading] = []
    kept_places: list[Place] = []
    kept_lines: list[str] = []
    devices: list[str] = []
    seqs: list[int] = []
    stamps: list[int] = []
    for reading in envelope.readings:
        # All of a reading's fields at once: each attribute of a struct read on its own
        # costs a type lookup.
        fields = astuple(reading)
        device, kind, building = fields[0], fields[1], fields[5]
        place = places.get(device)
        # A device heard from with the same building and kind has had its ids checked.
        # key[3], not the property .kind: this runs once a reading.
        known = place is not None and place.building == building and place.key[3] == kind
        # The values are checked while their line is written (checked_telemetry_line);
        # only a reading it cannot vouch for has them checked on their own.
        problem = check_fields_on(
            fields,
            topic,
            on_batch,
            on_event_channel,
            earliest,
            latest,
            now,
            window,
            False,
            known,
        )
        if problem is not None:
            pipeline._dead(
                batch, message, Reason.BAD_READING, problem, msgspec.json.encode(reading)
            )
            continue
        if place is None or not known:
            place = pipeline._new_place(places, estate, reading)
        line = checked_telemetry_line(place, fields)
        if line is None:
            problem = check_values(kind, fields[4])
            if problem is not None:
                pipeline._dead(
                    batch, message, Reason.BAD_READING, problem, msgspec.json.encode(reading)
                )
                continue
            line = telemetry_line(place, reading, plain_ids=True)
        kept.append(reading)
        kept_places.append(place)
        kept_lines.append(line)
        devices.append(device)
        seqs.append(fields[2])
        stamps.append(fields[3])
    if not kept:
        return
    # After the checks: a refused reading must not mark its seq as seen.
    edge = envelope.edge
    verdicts = pipeline.seen.offer_many(edge, devices, seqs, stamps)
    replay = envelope.replay
    topic_text, received_ms = message.topic, message.received_ms
    lines, accepted = batch.lines, batch.undetected
    replayed_unjudged = 0
    for i in range(len(kept)):
        reading = kept[i]
        verdict = verdicts[i]
        if verdict != NEW:
            if verdict == DUPLICATE:
                pipeline.metrics.duplicate()
                continue
            pipeline._seq_fault(edge, reading, verdict)
        lines.append(Pending(kept_lines[i], topic_text, reading, received_ms, True))
        if replay and reading.event is None:
            # An edge's backlog arrives after the device's live readings: judged, its
            # values would rewind the device's rules and baselines.  Stored only; an
            # event is still judged, with its own time (docs/detection.md).
            replayed_unjudged += 1
            continue
        accepted.append((kept_places[i], reading, received_ms))
    if replayed_unjudged:
        pipeline.metrics.replayed_unjudged(replayed_unjudged)


def _topic_of(anomaly: Anomaly) -> str:
    """The telemetry topic of the anomaly's device: where a refused anomaly line is filed."""
    return str(
        Topic(
            anomaly.district,
            anomaly.street,
            anomaly.estate,
            anomaly.kind,
            anomaly.device,
            Channel.TELEMETRY,
        )
    )
