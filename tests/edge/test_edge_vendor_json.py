"""Vendor JSON at the edge: mapping profiles, HTTP push over real HTTP, MQTT on Mosquitto,
and dead letters for what does not map."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.devices import RegistryEstate, json_devices
from edge.profile import SHIPPED_PROFILES, ProfileError
from edge.vendor_json import (
    DeadLetters,
    JsonDevice,
    Unmapped,
    VendorJson,
    load_json_profiles,
    map_message,
    parse_json_profile,
)
from tools.servers import RunningServers

MAPPINGS = load_json_profiles(SHIPPED_PROFILES / "vendor")
SMOKE = MAPPINGS["nb-smoke-detector-http"]
LEVEL = MAPPINGS["water-level-platform-mqtt"]
NOW = 1_780_000_000_000


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _clock() -> int:
    return time.time_ns() // 1_000_000


def test_a_mapping_error_names_file_line_and_field(tmp_path: Path) -> None:
    text = (
        '[profile]\nname = "x"\nfamily = "waterlogging"\nsource = "example"\n\n'
        '[json]\ntransport = "http"\npath = "/p"\ndevice_id = "id"\n\n'
        '[[value]]\njson = "d.depth"\nsignal = "dept"\n'
    )
    with pytest.raises(ProfileError) as caught:
        parse_json_profile(text, tmp_path / "m.toml")
    assert str(caught.value).startswith(f"{tmp_path / 'm.toml'}:13: value[0].signal: 'dept'")
    with pytest.raises(ProfileError, match=r":7: json\.transport: must be 'http' or 'mqtt'"):
        parse_json_profile(text.replace('"http"', '"coap"'), tmp_path / "m.toml")


def test_messages_map_with_scale_time_units_and_events() -> None:
    gauges = {"G7": JsonDevice("est-G01", "garage", "G7", LEVEL)}
    message = {
        "deviceId": "G7",
        "reportTime": "2026-06-01T08:00:00",
        "values": {"depthMm": 186, "rainMmH": 12.5},
    }
    samples, problems = map_message(LEVEL, gauges, message, NOW)
    shanghai = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert problems == []
    assert [(s.device, s.ts, s.values, s.event) for s in samples] == [
        ("est-G01", int(shanghai.timestamp() * 1000), {"depth": 18.6, "rain_rate": 12.5}, None)
    ]
    smokes = {"86812": JsonDevice("est-C01", "shed", "86812", SMOKE)}
    alarm = {"imei": "86812", "time": 1_780_000_000, "data": {"smoke_alarm": 1}}
    (sample,), _ = map_message(SMOKE, smokes, alarm, NOW)
    assert (sample.ts, sample.values, sample.event) == (
        1_780_000_000_000,
        {"smoke": 1},
        "ebike_charger.smoke",
    )


def test_what_does_not_map_says_why() -> None:
    gauges = {"G7": JsonDevice("est-G01", "garage", "G7", LEVEL)}
    for message, reason in (
        ({"values": {"depthMm": 1}}, "no_device_id"),
        ({"deviceId": "G8", "values": {"depthMm": 1}}, "unknown_device"),
        ({"deviceId": "G7", "reportTime": "yesterday", "values": {"depthMm": 1}}, "bad_timestamp"),
        ({"deviceId": "G7", "reportTime": "2026-06-01T08:00:00", "values": {}}, "no_values"),
        (
            {"deviceId": "G7", "reportTime": "2026-06-01T08:00:00", "values": {"depthMm": 9e9}},
            "no_values",
        ),
    ):
        with pytest.raises(Unmapped) as caught:
            map_message(LEVEL, gauges, message, NOW)
        assert caught.value.reason == reason, message


@in_loop
async def test_http_push_over_real_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB_SMOKE_PUSH_TOKEN", "s3cret")
    dead = DeadLetters(tmp_path / "dead.jsonl")
    vendor = VendorJson([JsonDevice("est-C01", "shed", "86812", SMOKE)], dead, _clock)
    stop = asyncio.Event()
    task = asyncio.create_task(vendor.run(stop))
    try:
        await asyncio.wait_for(vendor.ready.wait(), 10)
        url = f"http://127.0.0.1:{vendor.http_port}/push/smoke"
        auth = {"Authorization": "Bearer s3cret"}
        async with httpx.AsyncClient() as client:
            good = {"imei": "86812", "time": 1_780_000_000, "data": {"smoke_alarm": 1}}
            ok = await client.post(url, json=good, headers=auth)
            stranger = await client.post(url, json={**good, "imei": "1"}, headers=auth)
            garbage = await client.post(url, content=b"{not json", headers=auth)
            no_token = await client.post(url, json=good)
        samples = vendor.poll(0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (ok.status_code, stranger.status_code, garbage.status_code) == (200, 202, 202)
    assert no_token.status_code == 401
    assert [(s.device, s.event) for s in samples] == [("est-C01", "ebike_charger.smoke")]
    records = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in records] == ["unknown_device", "not_json", "bad_token"]
    assert "'1' is not in the registry" in records[0]["detail"]
    assert records[1]["payload"] == "{not json"
    assert vendor.stats.dead == {"unknown_device": 1, "not_json": 1, "bad_token": 1}


@in_loop
async def test_mqtt_vendor_topics_on_the_broker(servers: RunningServers, tmp_path: Path) -> None:
    dead = DeadLetters(tmp_path / "dead.jsonl")
    vendor = VendorJson(
        [JsonDevice("est-G01", "garage", "G7", LEVEL)],
        dead,
        _clock,
        mqtt_url=servers.mqtt_url,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(vendor.run(stop))
    try:
        await asyncio.sleep(1.0)  # subscribed
        async with aiomqtt.Client("127.0.0.1", servers.mqtt_port) as publisher:
            report = {"deviceId": "G7", "reportTime": "2026-06-01T08:00:00",
                      "values": {"depthMm": 320}}  # fmt: skip
            await publisher.publish("vendor/waterlevel/g7/report", json.dumps(report), qos=1)
            await publisher.publish("vendor/waterlevel/g7/report", b"\xff\xfe", qos=1)
        deadline = asyncio.get_running_loop().time() + 5
        samples: list[Any] = []
        while not samples and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            samples = vendor.poll(0)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [(s.device, s.values) for s in samples] == [("est-G01", {"depth": 32.0})]
    assert vendor.stats.dead == {"not_json": 1}


def test_registry_entries_name_the_mapping_and_vendor_id() -> None:
    estate = RegistryEstate(
        "e1", "d", "s", "edge1",
        ({"id": "G1", "kind": "waterlogging", "building": "garage",
          "connect": {"protocol": "json", "mapping": "water-level-platform-mqtt",
                      "vendor_id": "G7"}},
         {"id": "G2", "kind": "lift",
          "connect": {"protocol": "json", "mapping": "water-level-platform-mqtt",
                      "vendor_id": "G8"}}),
    )  # fmt: skip
    with pytest.raises(ValueError, match="device G2: mapping 'water-level-platform-mqtt' is for"):
        json_devices(estate, MAPPINGS)
    (device,) = json_devices(RegistryEstate("e1", "d", "s", "edge1", estate.devices[:1]), MAPPINGS)
    assert (device.id, device.vendor_id, device.profile.name) == ("G1", "G7", LEVEL.name)
