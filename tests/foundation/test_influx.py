"""Line protocol and the InfluxDB client, against the real InfluxDB 1.6 (and VictoriaMetrics
for the v2 write path)."""

from __future__ import annotations

import gc
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiayuan.config import InfluxConfig
from jiayuan.influx import InfluxClient, InfluxError, Series, format_line, format_line_once
from tools.servers import find_binary, free_port

# --- format_line ----------------------------------------------------------------------------

# format_line_once writes the same lines, caching nothing of their tags.
FORMATS = pytest.mark.parametrize("line_of", [format_line, format_line_once])


@FORMATS
def test_line_basic_shape_sorted_tags_and_types(line_of: Any) -> None:
    line = line_of(
        "lift",
        {"street": "s01", "device": "lift-1", "building": "", "district": "songjiang"},
        {"speed": 1.25, "floor": 7, "door": "open", "moving": True, "zero": 0.0},
        1_700_000_000_123,
    )
    assert line == (
        "lift,device=lift-1,district=songjiang,street=s01 "
        'speed=1.25,floor=7i,door="open",moving=true,zero=0.0 1700000000123'
    )


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "expected"),
    [
        # Measurement: commas and spaces only (an '=' is literal there).
        ("a b,c=d", {}, {"x": 1}, r"a\ b\,c=d x=1i 5"),
        # Tag keys and values, field keys: commas, equals signs, spaces.
        ("m", {"k ey": "v=a,l ue"}, {"f,i=e ld": 1.5}, r"m,k\ ey=v\=a\,l\ ue f\,i\=e\ ld=1.5 5"),
        # String field values: double quotes and backslashes; nothing else.
        ("m", {}, {"s": 'say "hi" \\ bye, a=b'}, r'm s="say \"hi\" \\ bye, a=b" 5'),
        (
            "电梯",
            {"小区": "松江 新城", "楼栋": "3号楼"},
            {"状态": "困人 “请稍候”", "层": 12},
            '电梯,小区=松江\\ 新城,楼栋=3号楼 状态="困人 “请稍候”",层=12i 5',
        ),
        ("m", {}, {"s": "line1\nline2"}, 'm s="line1\nline2" 5'),
        ("m", {}, {"s": ""}, 'm s="" 5'),
    ],
)
@FORMATS
def test_line_escaping(
    line_of: Any, measurement: str, tags: dict[str, str], fields: dict[str, object], expected: str
) -> None:
    assert line_of(measurement, tags, fields, 5) == expected


def test_line_numbers() -> None:
    big = 2**63 - 1
    line = format_line(
        "m", {}, {"a": 0.1, "b": 1e20, "c": -5e-324, "d": big, "e": -(2**63), "f": 3.0}, 0
    )
    assert line == f"m a=0.1,b=1e+20,c=-5e-324,d={big}i,e={-(2**63)}i,f=3.0 0"
    # numpy scalars (the detection core computes with numpy) format like Python numbers.
    numpy_values: dict[str, Any] = {"a": np.float64(1.5), "b": np.int64(7), "c": np.float32(0.5)}
    line = format_line("m", {}, numpy_values, 1)
    assert line == "m a=1.5,b=7i,c=0.5 1"


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "message"),
    [
        ("m", {}, {"x": math.nan}, "not finite"),
        ("m", {}, {"x": math.inf}, "not finite"),
        ("m", {}, {"x": np.float64("-inf")}, "not finite"),
        ("m", {}, {"x": 2**63}, "int64"),
        ("m", {}, {}, "at least one field"),
        ("", {}, {"x": 1}, "empty measurement"),
        ("#m", {}, {"x": 1}, "comment"),
        ("m", {"t": "a\nb"}, {"x": 1}, "newline or backslash"),
        ("m", {"t": "a\\"}, {"x": 1}, "newline or backslash"),
        ("m", {"": "v"}, {"x": 1}, "empty tag key"),
        ("m", {}, {"": 1}, "empty field key"),
        ("m", {}, {"x": None}, "unsupported value type NoneType"),
    ],
)
@FORMATS
def test_line_refuses_what_influxdb_would_refuse(
    line_of: Any, measurement: str, tags: dict[str, str], fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        line_of(measurement, tags, fields, 1)


# --- the client against real InfluxDB 1.6 ---------------------------------------------------


@pytest.fixture
def client(influx_config: InfluxConfig) -> Iterator[InfluxClient]:
    with InfluxClient(influx_config) as influx:
        yield influx


@pytest.mark.servers
def test_round_trip_ints_floats_strings_bools(client: InfluxClient) -> None:
    tags = {"district": "松江", "estate": "e 1,=x", "device": "lift-1"}
    client.write(
        [
            format_line("lift", tags, {"i": 42, "f": 0.1, "s": '楼 "A" \\ x', "b": True}, 1000),
            format_line("lift", tags, {"i": -(2**63), "f": 1e300, "s": "", "b": False}, 2000),
        ]
    )
    result = client.query('SELECT "i", "f", "s", "b", "estate" FROM "lift" ORDER BY time')
    assert result == [
        Series(
            name="lift",
            tags={},
            columns=["time", "i", "f", "s", "b", "estate"],
            values=[
                [1000, 42, 0.1, '楼 "A" \\ x', True, "e 1,=x"],
                [2000, -(2**63), 1e300, "", False, "e 1,=x"],
            ],
        )
    ]
    assert client.count("lift", "i") == 2
    assert client.count("lift", "i", where="\"estate\" = 'e 1,=x' AND time > 1500ms") == 1
    assert client.count("absent", "i") == 0


@pytest.mark.servers
def test_bytes_body_and_group_by_tags(client: InfluxClient) -> None:
    body = "\n".join(
        format_line("water_tank", {"device": f"t{n % 2}"}, {"level": float(n)}, n)
        for n in range(10)
    ).encode()
    client.write(body)
    series = client.query('SELECT count("level") FROM "water_tank" GROUP BY "device"')
    assert [(s.tags, s.values[0][1]) for s in series] == [
        ({"device": "t0"}, 5),
        ({"device": "t1"}, 5),
    ]
    client.write([])  # nothing to send: no request, no error


@pytest.mark.servers
def test_a_request_leaves_no_reference_cycle_holding_its_body(client: InfluxClient) -> None:
    """A response and its request (with the body) are freed as soon as the call returns.

    Left to the cyclic collector, every write's body waited for a full collection, which a
    gateway holding millions of long-lived objects runs seldom: tens of MiB at 100,000
    devices (bench/throughput.py --memory-devices)."""
    line = format_line("water_tank", {"device": "t0"}, {"level": 1.0}, 1)
    gc.collect()
    gc.disable()
    try:
        client.write([line])
        client.query('SELECT "level" FROM "water_tank"')
        left = [o for o in gc.get_objects() if isinstance(o, httpx.Request | httpx.Response)]
    finally:
        gc.enable()
    assert left == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tag=st.text(
        st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\\"),
        min_size=1,
        max_size=20,
    ),
    text=st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    number=st.floats(allow_nan=False, allow_infinity=False),
)
@pytest.mark.servers
def test_any_text_and_float_survive_a_round_trip(
    client: InfluxClient, tag: str, text: str, number: float
) -> None:
    client.write([format_line("fuzz", {"t": tag}, {"s": text, "x": number}, 1)])
    where = '"t" = \'' + tag.replace("\\", "\\\\").replace("'", "\\'") + "'"
    series = client.query(f'SELECT "s", "x", "t" FROM "fuzz" WHERE {where}')
    # InfluxDB's JSON writes whole floats without a decimal point: compare as float.
    ((time_ms, got_text, got_number, got_tag),) = series[0].values
    assert (time_ms, got_text, float(got_number), got_tag) == (1, text, number, tag)
    client.query('DELETE FROM "fuzz"')


@pytest.mark.servers
def test_bad_line_protocol_is_not_retryable(client: InfluxClient) -> None:
    with pytest.raises(InfluxError) as caught:
        client.write(["lift x=1 not-a-timestamp"])
    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert f"refused the write to database {client.database!r} (HTTP 400 Bad Request)" in str(
        caught.value
    )
    assert "bad timestamp" in str(caught.value)  # the server's own words


@pytest.mark.servers
def test_field_type_conflict_is_not_retryable(client: InfluxClient) -> None:
    client.write([format_line("m", {}, {"x": 1.5}, 1)])
    with pytest.raises(InfluxError, match="conflict") as caught:
        client.write([format_line("m", {}, {"x": "text"}, 2)])
    assert caught.value.retryable is False


@pytest.mark.servers
def test_missing_database_is_retryable(servers: object, influx_config: InfluxConfig) -> None:
    # Fixable by an operator (create the database): the gateway should spool, not drop.
    config = InfluxConfig(url=influx_config.url, database="no_such_database_here")
    with InfluxClient(config) as influx, pytest.raises(InfluxError) as caught:
        influx.write([format_line("m", {}, {"x": 1}, 1)])
    assert caught.value.retryable is True
    assert caught.value.status == 404
    assert "database not found" in str(caught.value)


@pytest.mark.servers
def test_query_errors_are_raised(client: InfluxClient) -> None:
    with pytest.raises(InfluxError, match="error parsing query") as caught:
        client.query("SELECT FROM")
    assert caught.value.retryable is False


def test_unreachable_server_is_retryable() -> None:
    port = free_port()  # nothing listens there
    config = InfluxConfig(url=f"http://127.0.0.1:{port}", timeout_s=2)
    with InfluxClient(config) as influx:
        assert influx.ping() is False
        with pytest.raises(InfluxError) as caught:
            influx.write([format_line("m", {}, {"x": 1}, 1)])
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert "unreachable" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


# --- request shapes (v1 credentials, v2 token) ------------------------------------------------


def recording_transport(seen: list[httpx.Request], status: int = 204) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"results": []} if status == 200 else None)

    return httpx.MockTransport(handle)


def test_v1_requests_carry_database_rp_and_basic_auth() -> None:
    seen: list[httpx.Request] = []
    config = InfluxConfig(
        url="http://127.0.0.1:9/",
        database="jy",
        retention_policy="week",
        username="u",
        password="p:w",
    )
    with InfluxClient(config, transport=recording_transport(seen)) as influx:
        influx.write([b"m x=1 1".decode(), "m x=2 2"])
    (request,) = seen
    assert request.url.path == "/write"
    assert dict(request.url.params) == {"db": "jy", "rp": "week", "precision": "ms"}
    assert request.content == b"m x=1 1\nm x=2 2"
    assert request.headers["Authorization"] == httpx.BasicAuth("u", "p:w")._auth_header
    assert "p:w" not in str(request.url)  # never in the URL (logs, error messages)


def test_v2_requests_carry_org_bucket_and_token() -> None:
    seen: list[httpx.Request] = []
    config = InfluxConfig(
        url="http://127.0.0.1:9", api="v2", token="t0k", org="songjiang", bucket="estates"
    )
    with InfluxClient(config, transport=recording_transport(seen)) as influx:
        influx.write(["m x=1 1"])
        influx.ensure_database()  # v2: buckets are made by an admin, no request
    (request,) = seen
    assert request.url.path == "/api/v2/write"
    assert dict(request.url.params) == {"org": "songjiang", "bucket": "estates", "precision": "ms"}
    assert request.headers["Authorization"] == "Token t0k"


def test_v2_query_uses_v1_compatible_endpoint_with_bucket() -> None:
    seen: list[httpx.Request] = []
    config = InfluxConfig(url="http://127.0.0.1:9", api="v2", token="t0k", bucket="estates")
    with InfluxClient(config, transport=recording_transport(seen, status=200)) as influx:
        assert influx.query("SHOW MEASUREMENTS") == []
    (request,) = seen
    assert request.url.path == "/query"
    assert request.url.params["db"] == "estates"
    assert request.headers["Authorization"] == "Token t0k"


def test_server_errors_are_retryable_and_quote_the_server() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": "unavailable", "message": "engine is closed"})

    config = InfluxConfig(url="http://127.0.0.1:9", api="v2", bucket="b")
    with (
        InfluxClient(config, transport=httpx.MockTransport(handle)) as influx,
        pytest.raises(InfluxError, match=r"HTTP 503.*engine is closed") as caught,
    ):
        influx.write(["m x=1 1"])
    assert caught.value.retryable is True


# --- the v2 write path against a real server: VictoriaMetrics -------------------------------


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[str]:
    binary = find_binary("victoria-metrics")
    if binary is None:
        pytest.skip("victoria-metrics not installed (Debian package victoria-metrics)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "vm.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={tmp_path / 'vm-data'}",
            "-loggerLevel=ERROR",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", trust_env=False).text.strip() == "OK":
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"victoria-metrics did not start: {(tmp_path / 'vm.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(tmp_path / "vm-data", ignore_errors=True)


def test_v2_write_to_victoria_metrics(victoria_metrics: str) -> None:
    # Whole seconds in the recent past: the export ends at "now" by default.
    then_ms = (int(time.time()) - 60) * 1000
    config = InfluxConfig(
        url=victoria_metrics, api="v2", token="unused", org="songjiang", bucket="estates"
    )
    with InfluxClient(config) as influx:
        assert influx.ping()
        influx.write(
            [
                format_line("lift", {"device": "lift-1", "estate": "e1"}, {"speed": 1.25}, then_ms),
                format_line(
                    "lift", {"device": "lift-1", "estate": "e1"}, {"speed": 2.5}, then_ms + 1
                ),
            ]
        )
    with httpx.Client(base_url=victoria_metrics, trust_env=False) as http:
        http.get("/internal/force_flush").raise_for_status()  # make the points searchable
        response = http.get("/api/v1/export", params={"match[]": '{__name__="lift_speed"}'})
    response.raise_for_status()
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 1
    assert rows[0]["metric"]["device"] == "lift-1"
    assert rows[0]["metric"]["estate"] == "e1"
    assert rows[0]["values"] == [1.25, 2.5]
    assert rows[0]["timestamps"] == [then_ms, then_ms + 1]  # precision=ms was honoured


def test_no_right_to_create_the_database_is_not_retryable() -> None:
    # InfluxDB 1.x with auth: a non-admin user may write but not CREATE DATABASE.
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": "requires admin privilege"})

    config = InfluxConfig(url="http://127.0.0.1:9", username="writer", password="pw")
    with (
        InfluxClient(config, transport=httpx.MockTransport(handle)) as influx,
        pytest.raises(InfluxError, match="requires admin privilege") as caught,
    ):
        influx.ensure_database()
    assert caught.value.retryable is False and caught.value.status == 403
