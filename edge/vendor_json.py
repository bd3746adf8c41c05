"""Vendor JSON at the edge: devices that push their own JSON by HTTP or publish it over MQTT.

NB-IoT smoke detectors, water-level gauges and charging-pile platforms each have their own
JSON.  A mapping profile (TOML, validated like device profiles: file, line, field) says
where the device id and the timestamp are, which JSON path fills which catalogue signal
(with scale and offset for the unit), which value raises which event code, and the token a
pusher must present.  What does not map (an unknown device, a missing id, a value outside
the catalogue's range, a wrong token, text that is not JSON) is dead-lettered at the edge:
appended to a JSON-lines file with the reason, and counted.

Paths are dotted names with list indexes: ``data.ports[2].temp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.decode import DecodeProblem, check_range
from edge.drivers import DriverSample
from edge.profile import ProfileError, TomlReader, locate_lines
from jiayuan.catalogue import Family, Kind, ValueType, family
from jiayuan.contract import Value

log = logging.getLogger(__name__)

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_\-]*(\[\d+\])*)*")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
TIME_UNITS = ("ms", "s", "iso")
MAX_BODY_BYTES = 64 * 1024
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True, slots=True)
class JsonValue:
    path: str
    field: str
    scale: float = 1.0
    offset: float = 0.0
    integer: bool = False


@dataclass(frozen=True, slots=True)
class JsonEvent:
    path: str
    equals: Value
    code: str


@dataclass(frozen=True, slots=True)
class JsonProfile:
    name: str
    kind: Kind
    source: str
    path: Path | None
    transport: str  # "http" or "mqtt"
    endpoint: str  # URL path (http) or topic filter (mqtt)
    device_id: str
    timestamp: str | None
    timestamp_unit: str
    token_env: str | None  # the environment variable holding the pusher's bearer token
    values: tuple[JsonValue, ...]
    events: tuple[JsonEvent, ...]

    @property
    def family(self) -> Family:
        return family(self.kind)


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path, or KeyError naming the part that is missing."""
    here = document
    for name, index in _PART.findall(path):
        try:
            here = here[int(index)] if index else here[name]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"no {path!r} in the JSON (stopped at {name or index!r})") from None
    return here


# ---- the mapping profile --------------------------------------------------------------------


def load_json_profile(path: Path) -> JsonProfile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: cannot read: {error}") from None
    return parse_json_profile(text, path)


def load_json_profiles(directory: Path) -> dict[str, JsonProfile]:
    """Every ``*.toml`` mapping of a directory, by name; all errors reported together."""
    if not directory.is_dir():
        raise ProfileError(f"{directory}: not a directory of vendor JSON mappings")
    out: dict[str, JsonProfile] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            profile = load_json_profile(path)
        except ProfileError as error:
            errors.append(str(error))
            continue
        if profile.name in out:
            errors.append(f"{path}: name {profile.name!r} is already used")
            continue
        out[profile.name] = profile
    if errors:
        raise ProfileError("\n".join(errors))
    return out


def parse_json_profile(text: str, path: Path | None = None) -> JsonProfile:
    where = str(path) if path is not None else "<profile>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{where}: not valid TOML: {error}") from None
    reader = TomlReader(where, locate_lines(text))
    reader.table(data, (), {"profile", "json", "value", "event"})
    head = reader.table(
        data.get("profile", {}), ("profile",), {"name", "family", "source", "description"}
    )
    for key in ("name", "family", "source"):
        if key not in head:
            raise reader.fail(("profile", key), "missing")
    try:
        fam = family(str(head["family"]))
    except KeyError as error:
        raise reader.fail(("profile", "family"), str(error.args[0])) from None
    keys = {"transport", "path", "topic", "device_id", "timestamp", "timestamp_unit", "token_env"}
    spec = reader.table(data.get("json", {}), ("json",), keys)
    transport = spec.get("transport")
    if transport not in ("http", "mqtt"):
        raise reader.fail(("json", "transport"), f"must be 'http' or 'mqtt', not {transport!r}")
    endpoint_key = "path" if transport == "http" else "topic"
    endpoint = spec.get(endpoint_key)
    if not isinstance(endpoint, str) or not endpoint:
        raise reader.fail(("json", endpoint_key), f"missing: the {transport} {endpoint_key}")
    if transport == "http" and not endpoint.startswith("/"):
        raise reader.fail(("json", "path"), "must start with /")
    for key in ("device_id", "timestamp"):
        if key in spec and not _PATH.fullmatch(str(spec[key])):
            raise reader.fail(("json", key), f"{spec[key]!r} is not a path like data.id")
    if "device_id" not in spec:
        raise reader.fail(("json", "device_id"), "missing: where the device id is")
    unit = spec.get("timestamp_unit", "ms")
    if unit not in TIME_UNITS:
        raise reader.fail(("json", "timestamp_unit"), f"must be one of {', '.join(TIME_UNITS)}")
    values: list[JsonValue] = []
    for index, raw in enumerate(data.get("value", [])):
        where_ = ("value", index)
        entry = reader.table(raw, where_, {"json", "signal", "port", "scale", "offset"})
        for key in ("json", "signal"):
            if key not in entry:
                raise reader.fail((*where_, key), "missing")
        if not _PATH.fullmatch(str(entry["json"])):
            raise reader.fail((*where_, "json"), f"{entry['json']!r} is not a path like data.level")
        (field_name, signal_type), *_ = reader.signal_fields(entry, where_, fam)
        if signal_type is ValueType.STR:
            raise reader.fail((*where_, "signal"), "string signals are not mapped from JSON")
        scale = reader.number(entry, where_, "scale") if "scale" in entry else 1.0
        offset = reader.number(entry, where_, "offset") if "offset" in entry else 0.0
        values.append(
            JsonValue(str(entry["json"]), field_name, scale, offset, signal_type is ValueType.INT)
        )
    events: list[JsonEvent] = []
    codes = {e.code for e in fam.events}
    for index, raw in enumerate(data.get("event", [])):
        where_ = ("event", index)
        entry = reader.table(raw, where_, {"json", "equals", "code"})
        for key in ("json", "equals", "code"):
            if key not in entry:
                raise reader.fail((*where_, key), "missing")
        if entry["code"] not in codes:
            raise reader.fail(
                (*where_, "code"), f"{entry['code']!r} is not an event code of {fam.kind.value}"
            )
        events.append(JsonEvent(str(entry["json"]), entry["equals"], entry["code"]))
    if not values and not events:
        raise reader.fail(("value",), "the mapping maps nothing: add [[value]] or [[event]]")
    token_env = spec.get("token_env")
    return JsonProfile(
        name=str(head["name"]),
        kind=fam.kind,
        source=str(head["source"]),
        path=path,
        transport=transport,
        endpoint=endpoint,
        device_id=str(spec["device_id"]),
        timestamp=str(spec["timestamp"]) if "timestamp" in spec else None,
        timestamp_unit=unit,
        token_env=str(token_env) if token_env else None,
        values=tuple(values),
        events=tuple(events),
    )


# ---- mapping one message ---------------------------------------------------------------------


# Why a vendor message was dead-lettered (counted by reason; docs/devices.md from here).
DEAD_LETTER_REASONS = {
    "not_json": "the body is not JSON (or not UTF-8)",
    "no_device_id": "the mapping's device_id path is not in the message",
    "unknown_device": "no registry device has this vendor_id for this mapping",
    "bad_timestamp": "the timestamp path is missing or not a time in timestamp_unit",
    "no_values": "none of the mapped paths holds a usable number (each problem in the detail)",
    "bad_token": "HTTP: a missing or wrong bearer token (answered 401)",
    "too_large": "HTTP: a body above 64 KiB (answered 413)",
}


class Unmapped(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JsonDevice:
    """A registry device whose vendor JSON carries ``vendor_id`` as its device id."""

    id: str
    building: str
    vendor_id: str
    profile: JsonProfile


def map_message(
    profile: JsonProfile,
    devices: Mapping[str, JsonDevice],
    document: Any,
    now_ms: int,
) -> tuple[list[DriverSample], list[DecodeProblem]]:
    """The samples one vendor message stands for; Unmapped when it stands for none."""
    try:
        vendor_id = str(lookup(document, profile.device_id))
    except KeyError as error:
        raise Unmapped("no_device_id", str(error.args[0])) from None
    device = devices.get(vendor_id)
    if device is None:
        raise Unmapped("unknown_device", f"vendor device {vendor_id!r} is not in the registry")
    ts = now_ms
    if profile.timestamp is not None:
        try:
            ts = _timestamp(lookup(document, profile.timestamp), profile.timestamp_unit)
        except (KeyError, ValueError, TypeError) as error:
            raise Unmapped("bad_timestamp", str(error)) from None
    fam = profile.family
    values: dict[str, Value] = {}
    problems: list[DecodeProblem] = []
    for spec in profile.values:
        try:
            raw = lookup(document, spec.path)
        except KeyError:
            continue  # a message carries the values that changed, not always all of them
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            problems.append(DecodeProblem("not_a_number", f"{spec.path}={raw!r}"))
            continue
        scaled = raw * spec.scale + spec.offset
        value: Value = round(scaled) if spec.integer else float(scaled)
        try:
            check_range(fam, spec.field, value)
        except DecodeProblem as problem:
            problems.append(problem)
            continue
        values[spec.field] = value
    raised = []
    for event in profile.events:
        with contextlib.suppress(KeyError):
            if lookup(document, event.path) == event.equals:
                raised.append(event.code)
    if not values and not raised:
        detail = "; ".join(str(p) for p in problems) or "none of the mapped paths is present"
        raise Unmapped("no_values", detail)
    samples = [
        DriverSample(
            device.id, profile.kind, device.building, ts, values, raised[0] if raised else None
        )
    ]
    samples += [
        DriverSample(device.id, profile.kind, device.building, ts, dict(values), code)
        for code in raised[1:]
    ]
    return samples, problems


def _timestamp(raw: Any, unit: str) -> int:
    if unit == "iso":
        when = dt.datetime.fromisoformat(str(raw))
        if when.tzinfo is None:
            when = when.replace(tzinfo=SHANGHAI)  # vendors in China send Beijing time
        return int(when.timestamp() * 1000)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"timestamp {raw!r} is not a number")
    return int(raw * 1000) if unit == "s" else int(raw)


# ---- dead letters ----------------------------------------------------------------------------


class DeadLetters:
    """What did not map, with the reason, one JSON object a line; bounded in size."""

    def __init__(self, path: Path, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.counts: dict[str, int] = {}

    def add(self, source: str, reason: str, detail: str, payload: bytes, now_ms: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        log.warning("vendor JSON from %s dead-lettered: %s: %s", source, reason, detail)
        record = {
            "ts": now_ms,
            "source": source,
            "reason": reason,
            "detail": detail,
            "payload": payload[:MAX_BODY_BYTES].decode("utf-8", errors="replace"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


# ---- the receivers ---------------------------------------------------------------------------


@dataclass(slots=True)
class JsonStats:
    messages: int = 0
    samples: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    value_problems: dict[str, int] = field(default_factory=dict)


class VendorJson:
    """The vendor JSON of an edge's devices, received by HTTP push and/or MQTT, as a driver."""

    def __init__(
        self,
        devices: Sequence[JsonDevice],
        dead_letters: DeadLetters,
        clock: Callable[[], int],
        *,
        http_host: str = "127.0.0.1",
        http_port: int = 0,
        mqtt_url: str | None = None,
    ) -> None:
        self._clock = clock
        self._dead = dead_letters
        self._buffer: list[DriverSample] = []
        self.stats = JsonStats(dead=dead_letters.counts)
        self._profiles: dict[str, JsonProfile] = {}
        self._devices: dict[str, dict[str, JsonDevice]] = {}
        for device in devices:
            self._profiles[device.profile.name] = device.profile
            self._devices.setdefault(device.profile.name, {})[device.vendor_id] = device
        self.http_host = http_host
        self.http_port = http_port
        self.mqtt_url = mqtt_url
        self.ready = asyncio.Event()

    def poll(self, now_ms: int) -> list[DriverSample]:
        out, self._buffer[:] = list(self._buffer), []
        return out

    def receive(self, profile: JsonProfile, source: str, payload: bytes) -> str | None:
        """Map one message; the dead-letter reason when it did not map."""
        self.stats.messages += 1
        now = self._clock()
        try:
            document = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._dead.add(source, "not_json", str(error), payload, now)
            return "not_json"
        try:
            samples, problems = map_message(profile, self._devices[profile.name], document, now)
        except Unmapped as error:
            self._dead.add(source, error.reason, error.detail, payload, now)
            return error.reason
        for problem in problems:
            counts = self.stats.value_problems
            counts[problem.reason] = counts.get(problem.reason, 0) + 1
            log.info("vendor JSON from %s: value left out: %s", source, problem)
        self.stats.samples += len(samples)
        self._buffer.extend(samples)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            http = [p for p in self._profiles.values() if p.transport == "http"]
            mqtt = [p for p in self._profiles.values() if p.transport == "mqtt"]
            if http:
                tasks.create_task(self._serve_http(http, stop))
            if mqtt:
                tasks.create_task(self._subscribe(mqtt, stop))
            if not http:
                self.ready.set()

    # HTTP push: one route per mapping profile, a bearer token when the profile names one.
    async def _serve_http(self, profiles: Sequence[JsonProfile], stop: asyncio.Event) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        def endpoint(profile: JsonProfile) -> Callable[[Request], Any]:
            token = os.environ.get(profile.token_env, "") if profile.token_env else None

            async def push(request: Request) -> JSONResponse:
                source = f"http {request.client.host if request.client else '?'} {profile.endpoint}"
                body = await request.body()
                if token is not None:
                    given = request.headers.get("authorization", "").removeprefix("Bearer ")
                    if not token or not hmac.compare_digest(given, token):
                        self._dead.add(
                            source, "bad_token", "missing or wrong bearer token", b"", self._clock()
                        )
                        return JSONResponse({"error": "bad token"}, status_code=401)
                if len(body) > MAX_BODY_BYTES:
                    self._dead.add(source, "too_large", f"{len(body)} bytes", body, self._clock())
                    return JSONResponse({"error": "too large"}, status_code=413)
                reason = self.receive(profile, source, body)
                if reason is not None:
                    # Accepted and kept (dead-lettered): a vendor platform retrying it
                    # would not make it map.
                    return JSONResponse({"dead_lettered": reason}, status_code=202)
                return JSONResponse({"ok": True})

            return push

        app = Starlette(routes=[Route(p.endpoint, endpoint(p), methods=["POST"]) for p in profiles])
        config = uvicorn.Config(
            app, host=self.http_host, port=self.http_port, log_level="warning", lifespan="off"
        )
        server = _quiet_server(config)
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.servers:
            self.http_port = server.servers[0].sockets[0].getsockname()[1]
        self.ready.set()
        try:
            await stop.wait()
        finally:
            server.should_exit = True
            await task

    # MQTT: the vendors' topics on a broker, resubscribed after every reconnect.
    async def _subscribe(self, profiles: Sequence[JsonProfile], stop: asyncio.Event) -> None:
        from urllib.parse import urlsplit

        import aiomqtt

        if self.mqtt_url is None:
            raise ValueError("vendor JSON over MQTT needs a broker URL")
        url = urlsplit(self.mqtt_url)
        backoff = 0.5
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    url.hostname or "127.0.0.1",
                    url.port or 1883,
                    username=url.username,
                    password=url.password,
                ) as client:
                    for profile in profiles:
                        await client.subscribe(profile.endpoint, qos=1)
                    backoff = 0.5
                    async with asyncio.TaskGroup() as tasks:
                        reader = tasks.create_task(self._read_mqtt(client, profiles))
                        await stop.wait()
                        reader.cancel()
            except aiomqtt.MqttError as error:
                log.warning("vendor JSON broker %s: %s; retrying", self.mqtt_url, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)

    async def _read_mqtt(self, client: Any, profiles: Sequence[JsonProfile]) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = (
                bytes(message.payload)
                if isinstance(message.payload, bytes | bytearray)
                else str(message.payload).encode()
            )
            for profile in profiles:
                if message.topic.matches(profile.endpoint):
                    self.receive(profile, f"mqtt {topic}", payload)
                    break


def _quiet_server(config: Any) -> Any:
    """A uvicorn server without its signal handlers: the agent's own SIGINT and SIGTERM
    handlers stop it (uvicorn's would take the signal for itself while it serves)."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return QuietServer(config)
