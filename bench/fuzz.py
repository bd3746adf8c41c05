"""Fuzz the real gateway: generated good and bad messages through Mosquitto, every one counted.

    .venv/bin/python bench/fuzz.py --messages 100000 [--seed 7]

Starts its own Mosquitto and InfluxDB on loopback ports (``tools.servers``), runs a
``Gateway`` against them, publishes a seeded mix of valid messages, duplicates and broken
ones (bad topics, malformed and oversized payloads, NaN/Infinity literals, wrong types,
missing and extra fields, deep nesting, timestamps outside the window, unknown kinds,
bad device ids, invalid UTF-8), then accounts for each: readings stored (counted in
InfluxDB by query), dead letters by reason (counted in the dead-letter store), duplicates
(the gateway's counter).  Every message's expected outcome comes from how it was made, not
from the gateway's own checks.  Finally it checks the gateway is still healthy and still
stores a fresh reading.  ``tests/gateway/test_fuzz_gateway.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.service import Gateway
from jiayuan.catalogue import FAMILIES, Kind, ValueType
from jiayuan.config import AlertsConfig, Config, GatewayConfig, InfluxConfig, MqttConfig
from jiayuan.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    batch_topic,
    device_topic,
    edge_status_topic,
)
from jiayuan.influx import InfluxClient
from tools.servers import free_port, start_servers

DAY_MS = 86_400_000
DISTRICT, STREET = "songjiang", "fuzz"
# Each device's valid readings are stamped base + seq * STEP: unique per device (InfluxDB
# keeps one point per series and timestamp), well inside the accepted window.
STEP_MS = 10
READINGS_WINDOW_MS = 3_600_000
PUBLISH_CHUNK = 2000

Json = dict[str, object]


@dataclass
class Expected:
    """What a set of messages must come to, known from how each was made."""

    messages: int = 0
    valid_messages: int = 0
    invalid_messages: int = 0
    stored: Counter[str] = field(default_factory=Counter)  # readings by kind
    dead: Counter[str] = field(default_factory=Counter)  # dead letters by reason
    duplicates: int = 0
    statuses: int = 0
    labels: Counter[str] = field(default_factory=Counter)  # what was generated
    defects: Counter[str] = field(default_factory=Counter)  # each kind of defect


@dataclass(frozen=True)
class FuzzMessage:
    topic: str
    payload: bytes
    label: str
    stored: tuple[str, ...] = ()  # the kind of each reading that must be stored
    dead: tuple[str, ...] = ()  # the reason of each dead letter it must make
    duplicates: int = 0
    status: bool = False

    @property
    def valid(self) -> bool:
        return not self.dead


@dataclass(frozen=True)
class Device:
    estate: str
    edge: str
    kind: Kind
    id: str


class Traffic:
    """A seeded stream of messages, a ``valid_share`` of them fully valid."""

    def __init__(self, seed: int, now_ms: int, estates: int = 4, per_kind: int = 3) -> None:
        self.rng = random.Random(seed)
        self.base_ms = now_ms - READINGS_WINDOW_MS
        self.now_ms = now_ms
        self.devices = [
            Device(f"e{e}", f"e{e}-edge", kind, f"e{e}-{kind.value}-{n}")
            for e in range(estates)
            for kind in Kind
            for n in range(per_kind)
        ]
        self._seq: Counter[str] = Counter()
        self._sent: list[FuzzMessage] = []  # fully valid reading messages, to resend
        self._bad_message: list[Callable[[], FuzzMessage]] = [
            *(self._bad_topic for _ in range(3)),
            *(self._bad_payload for _ in range(5)),
            self._bad_status,
        ]

    # --- the stream ----------------------------------------------------------------------

    def messages(self, count: int, valid_share: float = 0.5) -> Iterator[FuzzMessage]:
        for _ in range(count):
            roll = self.rng.random()
            if roll < valid_share * 0.85:
                message = self._valid()
            elif roll < valid_share * 0.93 and self._sent:
                message = self._duplicate()
            elif roll < valid_share:
                message = self._status()
            elif roll < valid_share + (1 - valid_share) * 0.4:
                message = self._bad_readings()
            else:
                message = self.rng.choice(self._bad_message)()
            yield message

    # --- valid -----------------------------------------------------------------------------

    def _reading(self, device: Device, event: str | None = None) -> Json:
        self._seq[device.id] += 1
        seq = self._seq[device.id]
        values: Json = {}
        signals = [s for s in FAMILIES[device.kind].signals if not s.per_port]
        for signal in self.rng.sample(signals, self.rng.randint(1, min(4, len(signals)))):
            low, high = signal.minimum or 0.0, signal.maximum or 100.0
            if signal.type is ValueType.INT:
                values[signal.name] = self.rng.randint(int(low), int(high))
            else:
                values[signal.name] = round(self.rng.uniform(low, high), 3)
        reading: Json = {
            "device": device.id,
            "kind": device.kind.value,
            "seq": seq,
            "ts": self.base_ms + seq * STEP_MS,
            "values": values,
        }
        if self.rng.random() < 0.3:
            reading["building"] = "b1"
        if event is not None:
            reading["event"] = event
        return reading

    def _edge_devices(self) -> tuple[str, str, list[Device]]:
        device = self.rng.choice(self.devices)
        peers = [d for d in self.devices if d.edge == device.edge]
        return device.estate, device.edge, peers

    def _valid(self) -> FuzzMessage:
        if self.rng.random() < 0.25:  # one device on its own topic, telemetry or an event
            device = self.rng.choice(self.devices)
            channel = Channel.EVENT if self.rng.random() < 0.3 else Channel.TELEMETRY
            event = (
                self.rng.choice(FAMILIES[device.kind].events).code
                if channel is Channel.EVENT
                else None
            )
            topic = device_topic(DISTRICT, STREET, device.estate, device.kind, device.id, channel)
            payload = _envelope(device.edge, [self._reading(device, event)])
            message = FuzzMessage(topic, payload, f"valid_{channel.value}", (device.kind.value,))
        else:
            estate, edge, peers = self._edge_devices()
            chosen = [self.rng.choice(peers) for _ in range(self.rng.randint(1, 8))]
            readings = [self._reading(d) for d in chosen]
            topic = batch_topic(DISTRICT, STREET, estate, edge)
            message = FuzzMessage(
                topic,
                _envelope(edge, readings),
                "valid_batch",
                tuple(d.kind.value for d in chosen),
            )
        self._sent.append(message)
        return message

    def _duplicate(self) -> FuzzMessage:
        original = self.rng.choice(self._sent)
        return FuzzMessage(
            original.topic, original.payload, "duplicate", duplicates=len(original.stored)
        )

    def _status(self) -> FuzzMessage:
        _, edge, _ = self._edge_devices()
        estate = edge.removesuffix("-edge")
        state = self.rng.choice(["online", "offline"])
        payload = msgspec.json.encode({"v": 1, "edge": edge, "state": state, "ts": self.now_ms})
        topic = edge_status_topic(DISTRICT, STREET, estate, edge)
        return FuzzMessage(topic, payload, "valid_status", status=True)

    # --- broken readings inside otherwise good envelopes ----------------------------------

    def _bad_readings(self) -> FuzzMessage:
        estate, edge, peers = self._edge_devices()
        good = [self.rng.choice(peers) for _ in range(self.rng.randint(0, 3))]
        readings = [self._reading(d) for d in good]
        label, bad = self._broken_reading(self.rng.choice(peers))
        readings.insert(self.rng.randint(0, len(readings)), bad)
        return FuzzMessage(
            batch_topic(DISTRICT, STREET, estate, edge),
            _envelope(edge, readings),
            f"bad_reading:{label}",
            tuple(d.kind.value for d in good),
            ("bad_reading",),
        )

    def _broken_reading(self, device: Device) -> tuple[str, Json]:
        """A reading with exactly one defect; it takes no seq from the device's counter."""
        reading: Json = {
            "device": device.id,
            "kind": device.kind.value,
            "seq": self._seq[device.id] + 1,
            "ts": self.now_ms - 1000,
            "values": {FAMILIES[device.kind].signals[0].name: 0},
        }
        signal = FAMILIES[device.kind].signals[-1]
        rng = self.rng
        mutations: list[tuple[str, Json]] = [
            ("unknown_kind", {"kind": rng.choice(["rocket", "LIFT", "", "lift2"])}),
            ("unknown_value", {"values": {"warp_factor": 1}}),
            ("value_name", {"values": {"Speed!": 1}}),
            ("string_for_number", {"values": {signal.name: "12"}}),
            ("long_string", {"values": {signal.name: "x" * rng.randint(257, 5000)}}),
            ("above_range", {"values": {signal.name: (signal.maximum or 0) + 1000}}),
            ("below_range", {"values": {signal.name: (signal.minimum or 0) - 1000}}),
            ("int_beyond_int64", {"values": {signal.name: 2**64}}),
            ("too_many_values", {"values": {f"v{i}": i for i in range(65)}}),
            ("no_values", {"values": {}}),
            ("ts_far_past", {"ts": self.now_ms - rng.randint(31, 10_000) * DAY_MS}),
            ("ts_far_future", {"ts": self.now_ms + rng.randint(1, 10_000) * DAY_MS}),
            ("ts_zero", {"ts": rng.choice([0, -1, -(2**63)])}),
            ("ts_huge", {"ts": 2**70}),
            ("seq_not_positive", {"seq": rng.choice([0, -1, -(2**40)])}),
            ("seq_huge", {"seq": 2**64 + rng.randint(0, 9)}),
            ("device_id", {"device": rng.choice(["a b", "家园-1", "x" * 65, "", "a/b"])}),
            ("building_id", {"building": rng.choice(["楼 1", "y" * 70, "b#1"])}),
            ("event_other_kind", {"event": "rocket.launch"}),
            ("event_malformed", {"event": "NOT AN EVENT"}),
        ]
        label, change = rng.choice(mutations)
        reading.update(change)
        return label, reading

    # --- broken messages ------------------------------------------------------------------

    def _bad_topic(self) -> FuzzMessage:
        device = self.rng.choice(self.devices)
        good = device_topic(
            DISTRICT, STREET, device.estate, device.kind, device.id, Channel.TELEMETRY
        )
        payload = _envelope(device.edge, [self._reading_without_seq(device)])
        parts = good.split("/")
        rng = self.rng
        mutations: list[tuple[str, Callable[[list[str]], list[str]]]] = [
            ("too_short", lambda p: p[:-1]),
            ("too_long", lambda p: [*p, "extra"]),
            ("unknown_kind", lambda p: [*p[:5], "rocket", *p[6:]]),
            ("unknown_channel", lambda p: [*p[:7], "gossip"]),
            ("empty_segment", lambda p: [*p[:4], "", *p[5:]]),
            ("chinese_segment", lambda p: [*p[:4], "家园一村", *p[5:]]),
            ("space_in_segment", lambda p: [*p[:6], "L 1", p[7]]),
            ("long_segment", lambda p: [*p[:6], "d" * rng.randint(65, 2000), p[7]]),
            ("status_not_edge", lambda p: [*p[:7], "status"]),
        ]
        label, mutate = rng.choice(mutations)
        return FuzzMessage(
            "/".join(mutate(parts)), payload, f"bad_topic:{label}", dead=("bad_topic",)
        )

    def _reading_without_seq(self, device: Device) -> Json:
        """A good-looking reading for a message that is dead-lettered whole."""
        return {
            "device": device.id,
            "kind": device.kind.value,
            "seq": 1,
            "ts": self.now_ms,
            "values": {FAMILIES[device.kind].signals[0].name: 0},
        }

    def _bad_payload(self) -> FuzzMessage:
        device = self.rng.choice(self.devices)
        edge, rng = device.edge, self.rng
        reading = self._reading_without_seq(device)
        good = _envelope(edge, [reading])
        mutations: list[tuple[str, Callable[[], bytes]]] = [
            ("random_bytes", lambda: rng.randbytes(rng.randint(1, 300))),
            ("empty", lambda: b""),
            ("truncated", lambda: good[: rng.randint(1, len(good) - 1)]),
            ("invalid_utf8", lambda: good.replace(device.id.encode(), b"\xff\xfe\xc0")),
            ("nan_literal", lambda: _literal(edge, reading, b"NaN")),
            ("infinity_literal", lambda: _literal(edge, reading, b"Infinity")),
            ("neg_infinity", lambda: _literal(edge, reading, b"-Infinity")),
            ("huge_exponent", lambda: _literal(edge, reading, b"1e999")),
            ("json_scalar", lambda: rng.choice([b"null", b"42", b'"text"', b"[]", b"true"])),
            ("wrong_type_v", lambda: _json({"v": "1", "edge": edge, "readings": [reading]})),
            ("wrong_type_readings", lambda: _json({"v": 1, "edge": edge, "readings": reading})),
            ("wrong_type_seq", lambda: _envelope(edge, [{**reading, "seq": "3"}])),
            ("wrong_type_ts", lambda: _envelope(edge, [{**reading, "ts": 1.5}])),
            ("wrong_type_values", lambda: _envelope(edge, [{**reading, "values": [1, 2]}])),
            ("bool_value", lambda: _envelope(edge, [{**reading, "values": {"x": True}}])),
            ("null_value", lambda: _envelope(edge, [{**reading, "values": {"x": None}}])),
            ("missing_edge", lambda: _json({"v": 1, "readings": [reading]})),
            ("missing_ts", lambda: _envelope(edge, [_without(reading, "ts")])),
            ("extra_field", lambda: _json({"v": 1, "edge": edge, "readings": [reading], "x": 1})),
            ("extra_reading_field", lambda: _envelope(edge, [{**reading, "unit": "m"}])),
            ("schema_version", lambda: _json({"v": 2, "edge": edge, "readings": [reading]})),
            ("no_readings", lambda: _json({"v": 1, "edge": edge, "readings": []})),
            ("edge_id", lambda: _json({"v": 1, "edge": "边缘 1", "readings": [reading]})),
            ("deep_nesting", lambda: _deep(rng.randint(100, 20_000))),
            ("huge_payload", lambda: _huge(edge, reading, rng.randint(1, 64 * 1024))),
        ]
        label, make = rng.choice(mutations)
        return FuzzMessage(
            device_topic(
                DISTRICT, STREET, device.estate, device.kind, device.id, Channel.TELEMETRY
            ),
            make(),
            f"bad_payload:{label}",
            dead=("bad_payload",),
        )

    def _bad_status(self) -> FuzzMessage:
        _, edge, _ = self._edge_devices()
        estate = edge.removesuffix("-edge")
        rng = self.rng
        payloads = [
            ("state", {"v": 1, "edge": edge, "state": "sleeping", "ts": self.now_ms}),
            ("other_edge", {"v": 1, "edge": "someone-else", "state": "online", "ts": 1}),
            ("missing_ts", {"v": 1, "edge": edge, "state": "online"}),
            ("version", {"v": 9, "edge": edge, "state": "online", "ts": 1}),
        ]
        label, body = rng.choice(payloads)
        return FuzzMessage(
            edge_status_topic(DISTRICT, STREET, estate, edge),
            _json(body),
            f"bad_status:{label}",
            dead=("bad_status",),
        )


def _json(body: object) -> bytes:
    return msgspec.json.encode(body)


def _envelope(edge: str, readings: list[Json]) -> bytes:
    return _json({"v": 1, "edge": edge, "readings": readings})


def _without(reading: Json, name: str) -> Json:
    return {k: v for k, v in reading.items() if k != name}


def _literal(edge: str, reading: Json, literal: bytes) -> bytes:
    """The envelope with one value written as ``literal``, which no JSON encoder emits."""
    marker = "@@value@@"
    values = dict.fromkeys(reading["values"] if isinstance(reading["values"], dict) else (), marker)
    encoded = _envelope(edge, [{**reading, "values": values}])
    return encoded.replace(b'"' + marker.encode() + b'"', literal)


def _deep(depth: int) -> bytes:
    return b'{"v":1,"edge":"e","readings":' + b"[" * depth + b"]" * depth + b"}"


def _huge(edge: str, reading: Json, extra: int) -> bytes:
    padding = "x" * (MAX_PAYLOAD_BYTES + extra)
    return _envelope(edge, [{**reading, "values": {"note": padding}}])


def expect(messages: list[FuzzMessage]) -> Expected:
    expected = Expected()
    for message in messages:
        expected.messages += 1
        expected.labels[message.label.split(":")[0]] += 1
        if ":" in message.label:
            expected.defects[message.label] += 1
        if message.valid:
            expected.valid_messages += 1
        else:
            expected.invalid_messages += 1
        expected.stored.update(message.stored)
        expected.dead.update(message.dead)
        expected.duplicates += message.duplicates
        expected.statuses += int(message.status)
    return expected


# --- the run against the real gateway --------------------------------------------------------


@dataclass
class Report:
    expected: Expected
    stored: dict[str, int]
    dead: dict[str, int]
    duplicates: int
    statuses: int
    messages_seen: int
    readings_received: int
    alive: bool
    seconds: float
    examples: dict[str, str] = field(default_factory=dict)  # one stored detail per reason

    @property
    def unaccounted(self) -> int:
        """Outcomes that differ from what each message must come to; 0 when all is right."""
        e = self.expected
        kinds = set(e.stored) | set(self.stored)
        reasons = set(e.dead) | set(self.dead)
        return (
            sum(abs(e.stored[k] - self.stored.get(k, 0)) for k in kinds)
            + sum(abs(e.dead[r] - self.dead.get(r, 0)) for r in reasons)
            + abs(e.duplicates - self.duplicates)
            + abs(e.statuses - self.statuses)
            + abs(e.messages - self.messages_seen)
        )

    def lines(self) -> list[str]:
        e = self.expected
        rate = e.messages / self.seconds if self.seconds else 0.0
        out = [
            f"messages published     {e.messages:>9,}  (gateway saw {self.messages_seen:,}; "
            f"{rate:,.0f} msg/s end to end)",
            f"  valid / invalid      {e.valid_messages:>9,} / {e.invalid_messages:,}",
            f"  generated            {dict(sorted(e.labels.items()))}",
            f"  defects              {len(e.defects)} kinds: "
            + ", ".join(f"{label} {n}" for label, n in sorted(e.defects.items())),
            f"readings stored        {sum(self.stored.values()):>9,}  "
            f"(expected {sum(e.stored.values()):,}; counted in InfluxDB)",
        ]
        for kind in sorted(set(e.stored) | set(self.stored)):
            out.append(
                f"  {kind:<20} {self.stored.get(kind, 0):>9,}  (expected {e.stored[kind]:,})"
            )
        out.append(
            f"dead letters           {sum(self.dead.values()):>9,}  "
            f"(expected {sum(e.dead.values()):,}; counted in the dead-letter store)"
        )
        for reason in sorted(set(e.dead) | set(self.dead)):
            out.append(
                f"  {reason:<20} {self.dead.get(reason, 0):>9,}  (expected {e.dead[reason]:,})"
            )
            if reason in self.examples:
                out.append(f"      e.g. {self.examples[reason][:150]}")
        out += [
            f"duplicates dropped     {self.duplicates:>9,}  (expected {e.duplicates:,})",
            f"edge statuses          {self.statuses:>9,}  (expected {e.statuses:,})",
            f"unaccounted            {self.unaccounted:>9,}",
            f"gateway alive          {'yes' if self.alive else 'NO'}",
        ]
        return out


def publish(mqtt_url: str, messages: list[FuzzMessage]) -> None:
    """QoS 1 from one client, so the broker keeps each device's order."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    parts = httpx.URL(mqtt_url)
    client.connect(parts.host, parts.port or 1883)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"cannot connect to {mqtt_url}")
        # paho numbers messages in 16 bits: wait for each chunk so no id is in use twice.
        for start in range(0, len(messages), PUBLISH_CHUNK):
            sent = [
                client.publish(m.topic, m.payload, qos=1)
                for m in messages[start : start + PUBLISH_CHUNK]
            ]
            for info in sent:
                info.wait_for_publish(120)
                if not info.is_published():
                    raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
    finally:
        client.disconnect()
        client.loop_stop()


def run(config: Config, messages: list[FuzzMessage], timeout_s: float = 600.0) -> Report:
    """Publish ``messages`` to a fresh gateway on ``config`` and account for every one."""
    expected = expect(messages)
    config = replace(config, alerts=AlertsConfig(enabled=False))
    started = time.monotonic()
    with Gateway(config) as gateway:
        if not gateway.wait_ready(15):
            raise RuntimeError("the gateway did not subscribe")
        publish(config.mqtt.url, messages)
        deadline = time.monotonic() + timeout_s
        while gateway.stats.messages < expected.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        gateway.wait_idle(timeout_s=60)
        seconds = time.monotonic() - started
        stats = gateway.stats
        stored = count_stored(config.influx)
        dead = gateway.dead_letter_store.totals()
        examples: dict[str, str] = {}
        for letter in gateway.dead_letter_store.recent(5000):
            examples.setdefault(letter.reason, letter.detail)
        alive = still_alive(gateway, config)
    return Report(
        expected,
        stored,
        dead,
        stats.duplicates,
        stats.edge_status,
        stats.messages,
        stats.readings_received,
        alive,
        seconds,
        examples,
    )


def count_stored(influx: InfluxConfig) -> dict[str, int]:
    with InfluxClient(influx) as client:
        return {kind.value: client.count(kind.value, "seq") for kind in Kind}


def still_alive(gateway: Gateway, config: Config) -> bool:
    """Healthy by its own API, and a fresh valid reading still goes all the way to InfluxDB."""
    if gateway.api_url is None:
        return False
    health = httpx.get(f"{gateway.api_url}/health", timeout=5).json()
    if health.get("status") != "ok":
        return False
    canary = "canary-1"
    payload = _envelope(
        "canary-edge",
        [
            {
                "device": canary,
                "kind": "waterlogging",
                "seq": 1,
                "ts": int(time.time() * 1000),
                "values": {"depth": 1.0},
            }
        ],
    )
    before = gateway.stats.messages
    publish(
        config.mqtt.url,
        [FuzzMessage(batch_topic(DISTRICT, STREET, "canary", "canary-edge"), payload, "canary")],
    )
    deadline = time.monotonic() + 30
    while gateway.stats.messages == before and time.monotonic() < deadline:
        time.sleep(0.05)
    gateway.wait_idle(timeout_s=30)
    with InfluxClient(config.influx) as client:
        return client.count("waterlogging", "seq", f"\"device\" = '{canary}'") == 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--valid-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    traffic = Traffic(args.seed, int(time.time() * 1000))
    messages = list(traffic.messages(args.messages, args.valid_share))
    with tempfile.TemporaryDirectory(prefix="jiayuan-fuzz-") as tmp:
        servers = start_servers(Path(tmp) / "servers")
        try:
            influx = InfluxConfig(url=servers.influx_url, database="fuzz")
            with InfluxClient(influx) as client:
                client.ensure_database()
            config = Config(
                mqtt=MqttConfig(url=servers.mqtt_url, gateway_client_id="jiayuan-fuzz"),
                influx=influx,
                gateway=GatewayConfig(state_dir=str(Path(tmp) / "gateway"), api_port=free_port()),
                source="bench/fuzz.py",
            )
            report = run(config, messages)
        finally:
            servers.stop()
    print("\n".join(report.lines()))
    return 0 if report.unaccounted == 0 and report.alive else 1


if __name__ == "__main__":
    sys.exit(main())
