"""InfluxDB: line-protocol formatting and a small synchronous HTTP client.

The client does one HTTP request per call and raises :class:`InfluxError` on failure: the
gateway must know synchronously when a batch is durable (to acknowledge MQTT, or to spool
it), so batching, retry and the disk spool live in the gateway, not here.

Two APIs, chosen by ``InfluxConfig.api``:

* ``v1`` — ``/write`` and ``/query`` with a database (and optional user/password): InfluxDB
  1.x, and the v1-compatible API of 2.x and 3.x.
* ``v2`` — ``/api/v2/write`` with ``Authorization: Token``, org and bucket (2.x, 3.x,
  VictoriaMetrics); queries still go to the v1-compatible ``/query`` with ``db=bucket``,
  since InfluxQL is the one query language all three versions answer.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from jiayuan.config import InfluxConfig
from jiayuan.http_responses import released
from jiayuan.loopback import is_loopback

# --- line protocol --------------------------------------------------------------------------

_ESCAPE_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_ESCAPE_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Measurements, tag keys and values and field keys repeat endlessly (bounded cardinality),
# so each is escaped and checked once; the caches are cleared if they ever grow large.
_CACHE_LIMIT = 65_536
_measurement_cache: dict[str, str] = {}
_key_cache: dict[str, str] = {}
# Keyed by the tags' items, or by a caller's own key for the same tags (see tag_set).
_tagset_cache: dict[Hashable, str] = {}


def _check_name(text: str, what: str) -> None:
    if not text:
        raise ValueError(f"empty {what}")
    # Line protocol cannot carry these in names reliably: a newline ends the line, and
    # InfluxDB 1.x does not unescape backslashes (a trailing one swallows the separator).
    if "\n" in text or "\r" in text or "\\" in text:
        raise ValueError(f"{what} {text!r} contains a newline or backslash")


def _escape_measurement(name: str) -> str:
    escaped = _measurement_cache.get(name)
    if escaped is None:
        _check_name(name, "measurement")
        if name.startswith("#"):
            raise ValueError(f"measurement {name!r} starts with '#' (a comment line)")
        escaped = name.translate(_ESCAPE_MEASUREMENT)
        if len(_measurement_cache) >= _CACHE_LIMIT:
            _measurement_cache.clear()
        _measurement_cache[name] = escaped
    return escaped


def _escape_key(text: str, what: str) -> str:
    escaped = _key_cache.get(text)
    if escaped is None:
        _check_name(text, what)
        escaped = text.translate(_ESCAPE_KEY)
        if len(_key_cache) >= _CACHE_LIMIT:
            _key_cache.clear()
        _key_cache[text] = escaped
    return escaped


def _escape_tag_value_once(text: str) -> str:
    """A tag value escaped without adding it to the cache (written once or twice)."""
    escaped = _key_cache.get(text)
    if escaped is None:
        _check_name(text, "tag value")
        escaped = text.translate(_ESCAPE_KEY)
    return escaped


def _format_tags(tags: Mapping[str, str], cache_values: bool = True) -> str:
    return "".join(
        f",{_escape_key(key, 'tag key')}="
        + (_escape_key(value, "tag value") if cache_values else _escape_tag_value_once(value))
        for key, value in sorted(tags.items())
        if value
    )


def cached_entries() -> int:
    """How many entries the line-protocol caches hold (for tests and memory figures)."""
    return len(_measurement_cache) + len(_key_cache) + len(_tagset_cache)


def cached_tag_set(key: Hashable) -> str | None:
    """The tag set stored under ``key`` by :func:`tag_set`, or None."""
    return _tagset_cache.get(key)


def tag_set(tags: Mapping[str, str], key: Hashable | None = None) -> str:
    """The escaped, sorted ``,key=value…`` part of a line, cached under ``key``.

    ``key`` defaults to the tags' items; a caller that knows the tags from something
    cheaper to hash (a device's place) passes that instead, and then it must always stand
    for the same tags and never look like a tuple of (key, value) pairs.
    """
    if key is None:
        key = tuple(tags.items())
    tag_part = _tagset_cache.get(key)
    if tag_part is None:
        tag_part = _format_tags(tags)
        if len(_tagset_cache) >= _CACHE_LIMIT:
            _tagset_cache.clear()
        _tagset_cache[key] = tag_part
    return tag_part


def escaped_measurement(name: str) -> str:
    """The measurement as line protocol writes it; ValueError for one it cannot carry."""
    return _escape_measurement(name)


def escaped_field_key(key: str) -> str:
    """The field key as line protocol writes it; ValueError for one it cannot carry."""
    return _key_cache.get(key) or _escape_key(key, "field key")


def escaped_string(text: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + text.translate(_ESCAPE_STRING) + '"'


def _format_value(key: str, value: object) -> str:
    # Most common first; bool before int since bool is an int.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value} cannot be stored (not finite)")
        # float.__repr__, not repr(): numpy 2 scalars repr as 'np.float64(1.5)'.
        return float.__repr__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"field {key!r}: integer {value} outside the int64 range")
        return int.__repr__(value) + "i"
    if isinstance(value, str):
        return escaped_string(value)
    if isinstance(value, numbers.Integral):  # numpy integers
        return _format_value(key, int(value))
    if isinstance(value, numbers.Real):  # numpy float32 and other real numbers
        return _format_value(key, float(value))
    raise ValueError(f"field {key!r}: unsupported value type {type(value).__name__}")


def format_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    ts_ms: int,
) -> str:
    """One line of InfluxDB line protocol with a millisecond timestamp.

    Tags are sorted by key (what InfluxDB wants for the fastest writes) and empty tag values
    are left out; ints become ``5i``, floats their shortest round-trip form, bools
    ``true``/``false``.  Raises ValueError for a value InfluxDB would refuse: no fields, NaN
    or infinity, an int outside int64, a name with a newline or backslash.
    """
    tag_part = ""
    if tags:
        # A device sends the same tag set with every reading: escape and sort it once.
        tag_key = tuple(tags.items())
        tag_part = _tagset_cache.get(tag_key) or tag_set(tags, tag_key)
    return _line(measurement, tag_part, fields, ts_ms)


def format_line_once(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    ts_ms: int,
) -> str:
    """``format_line`` for a tag set written once or twice (an anomaly's: its opening and
    its closing): the same line, with nothing of its tags added to the caches, which
    would otherwise keep every such tag set until they fill (a district's offline
    anomalies: some 900 bytes each)."""
    return _line(measurement, _format_tags(tags, cache_values=False), fields, ts_ms)


def _line(
    measurement: str, tag_part: str, fields: Mapping[str, float | int | str | bool], ts_ms: int
) -> str:
    # Written for speed (once per reading on the gateway's hot path): cached escapes looked
    # up inline, the plain-float case without a function call.
    cache = _key_cache
    parts = [_measurement_cache.get(measurement) or _escape_measurement(measurement), tag_part]
    if not fields:
        raise ValueError(f"{measurement}: a point needs at least one field")
    separator = " "
    for key, value in fields.items():
        name = cache.get(key) or _escape_key(key, "field key")
        # value - value == 0.0 is False for NaN and ±inf.
        if type(value) is float and value - value == 0.0:
            parts.append(f"{separator}{name}={value!r}")
        else:
            parts.append(f"{separator}{name}={_format_value(key, value)}")
        separator = ","
    parts.append(f" {int(ts_ms)}")
    return "".join(parts)


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes (measurement, field, database names)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes (tag values in WHERE clauses)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- client ---------------------------------------------------------------------------------


class InfluxError(Exception):
    """A request to InfluxDB failed.

    ``retryable`` is False only when the server refused the request body itself (bad line
    protocol, a field type conflict, a batch too large, a query error): sending the same
    request again will never succeed.  Unreachable servers, timeouts, 5xx, and refusals
    that an operator can fix (authentication, a missing database) are retryable, so the
    gateway spools such batches instead of dropping them.  ``status`` is the HTTP status, or
    None when no response arrived.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


# Statuses meaning "this body will never be accepted as it is".
_BAD_REQUEST_STATUSES = frozenset({400, 413, 422})


@dataclass(frozen=True)
class Series:
    """One series of a query result (InfluxQL JSON): name, group-by tags, rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


def _error_text(response: httpx.Response) -> str:
    """The server's own words: 1.x sends {"error": ...}, 2.x {"code":..., "message": ...}."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    header = response.headers.get("X-Influxdb-Error")
    if header:
        return str(header)
    return response.text.strip()[:500] or response.reason_phrase


class InfluxClient:
    """InfluxDB over HTTP: one persistent connection pool, one request per call."""

    def __init__(
        self, config: InfluxConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        headers = {"User-Agent": "jiayuan"}
        auth: tuple[str, str] | None = None
        if config.api == "v2":
            if config.token:
                headers["Authorization"] = f"Token {config.token}"
            database = config.bucket or config.database
            self._write_path = "/api/v2/write"
            self._write_params = {"org": config.org, "bucket": database, "precision": "ms"}
        else:
            # Basic auth rather than u=/p= query parameters: URLs end up in logs and in
            # error messages, headers do not.  1.x and the 2.x/3.x v1 API accept both.
            if config.username or config.password:
                auth = (config.username, config.password)
            database = config.database
            self._write_path = "/write"
            self._write_params = {"db": database, "precision": "ms"}
            if config.retention_policy:
                self._write_params["rp"] = config.retention_policy
        self.database = database
        self._query_params = {"db": database, "epoch": "ms"}
        if config.retention_policy:
            self._query_params["rp"] = config.retention_policy
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=auth,
            timeout=config.timeout_s,
            transport=transport,
            # A proxy from the environment must never see traffic to a local server.
            trust_env=not is_loopback(urlsplit(self.url).hostname or ""),
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = released(
                self._client.request(method, path, params=params, content=content, data=data)
            )
        except httpx.TransportError as error:
            raise InfluxError(
                f"InfluxDB at {self.url} unreachable ({what}): {type(error).__name__}: "
                f"{error or 'no details'}",
                retryable=True,
            ) from error
        if response.status_code >= 300:
            status = response.status_code
            raise InfluxError(
                f"InfluxDB at {self.url} refused the {what} "
                f"(HTTP {status} {response.reason_phrase}): {_error_text(response)}",
                retryable=status not in _BAD_REQUEST_STATUSES,
                status=status,
            )
        return response

    # --- API --------------------------------------------------------------------------------

    def ping(self) -> bool:
        """Whether the server answers at all (``/ping`` → 204 on 1.x, 2.x and 3.x)."""
        try:
            response = self._client.get("/ping")
        except httpx.TransportError:
            return False
        return response.status_code in (200, 204)

    def ensure_database(self) -> None:
        """Create the v1 database if missing (idempotent); v2 buckets are made by an admin.

        A user without the right to create databases gets a non-retryable InfluxError:
        asking again will not help, and the database may well exist already.
        """
        if self.config.api != "v1":
            return
        try:
            self.query(
                f"CREATE DATABASE {quote_identifier(self.database)}",
                what=f"creation of database {self.database!r}",
            )
        except InfluxError as error:
            if error.status in (401, 403):
                raise InfluxError(str(error), retryable=False, status=error.status) from error
            raise

    def drop_database(self) -> None:
        """Drop the v1 database (tests and demo clean-up)."""
        if self.config.api == "v1":
            self.query(f"DROP DATABASE {quote_identifier(self.database)}")

    def write(self, lines: Sequence[str] | bytes) -> None:
        """Write line-protocol lines (ms timestamps) in one request; raise InfluxError."""
        if isinstance(lines, bytes | bytearray | memoryview):
            body = bytes(lines)
        else:
            body = "\n".join(lines).encode("utf-8")
        if not body:
            return
        what = f"write to database {self.database!r}"
        self._request("POST", self._write_path, what, params=self._write_params, content=body)

    def query(self, influxql: str, what: str = "query") -> list[Series]:
        """Run InfluxQL (one or more statements) and return every series, epoch ms times.

        ``what`` names the request in error messages (a database creation is no query to
        the operator reading them).
        """
        # POST: 1.x accepts only POST for statements that change anything (CREATE, DROP).
        response = self._request(
            "POST", "/query", what, params=self._query_params, data={"q": influxql}
        )
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InfluxError(
                f"InfluxDB at {self.url} answered the {what} with no JSON: {error}",
                retryable=True,
                status=response.status_code,
            ) from None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise InfluxError(
                f"InfluxDB at {self.url} refused the {what}: {body['error']}",
                retryable=False,
                status=response.status_code,
            )
        series: list[Series] = []
        for result in body.get("results", []) if isinstance(body, dict) else []:
            if "error" in result:
                raise InfluxError(
                    f"InfluxDB at {self.url} refused the {what}: {result['error']}",
                    retryable=False,
                    status=response.status_code,
                )
            for item in result.get("series", []):
                series.append(
                    Series(
                        name=str(item.get("name", "")),
                        tags={str(k): str(v) for k, v in (item.get("tags") or {}).items()},
                        columns=[str(column) for column in item.get("columns", [])],
                        values=[list(row) for row in item.get("values", [])],
                    )
                )
        return series

    def count(self, measurement: str, field: str, where: str = "") -> int:
        """How many points of measurement have field (optionally filtered by a WHERE)."""
        source = quote_identifier(measurement)
        if self.config.retention_policy:
            source = f"{quote_identifier(self.config.retention_policy)}.{source}"
        statement = f"SELECT count({quote_identifier(field)}) FROM {source}"
        if where:
            statement += f" WHERE {where}"
        total = 0
        for series in self.query(statement):
            index = series.columns.index("count") if "count" in series.columns else 1
            total += sum(int(row[index] or 0) for row in series.values)
        return total

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
