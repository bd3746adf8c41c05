"""Who may call the gateway's HTTP API, and how much: bearer tokens with roles and reach,
request body size limits and per-token rate limits.

Tokens are kept only as SHA-256 hashes in a YAML file (``[api] tokens_file``, or
``$JIAYUAN_API_TOKENS_FILE``); a caller sends ``Authorization: Bearer <token>``.  Roles:

- ``ops_centre`` — the operations centre of one or more streets: reads everything of its
  streets' estates, takes every alert step there and sets silences there;
- ``property_manager`` — reads its own estates, acknowledges, resolves, closes and reopens
  their alerts and silences them;
- ``viewer`` — reads its streets or estates, changes nothing.

A street of ``"*"`` reaches every estate.  The routers ask ``current_caller`` for the
caller and check its reach; ``create_app`` puts an ``ApiAuth`` in ``app.state`` and
authenticates every route that is not public.  An app without one (the routers mounted
alone, as the unit tests do) answers as in development: everybody reaches everything.
See docs/security_api.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jiayuan.loopback import is_loopback

log = logging.getLogger(__name__)

EVERYWHERE = "*"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# Open without a token: liveness for probes, and the API's own description (no data).
# The operations board's page is public too: it holds no data and reads the API with the
# caller's token.
PUBLIC_PATHS = frozenset(
    {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/board"}
)
# The operations centre's callback (alerts.callback) checks its own bearer token and HMAC
# signature.
CALLBACK_PATH = "/opscentre/callback"
SEPARATELY_AUTHENTICATED = frozenset({CALLBACK_PATH})
# Alert pages for phones: each request carries its own signed link (alerts/mobile.py).
LINK_AUTHENTICATED_PREFIX = "/m/"


class Role(StrEnum):
    OPS_CENTRE = "ops_centre"
    PROPERTY_MANAGER = "property_manager"
    VIEWER = "viewer"


# Alert steps (and setting silences) each role may take within its reach; a viewer none.
STEPS_BY_ROLE: dict[Role, frozenset[str]] = {
    Role.OPS_CENTRE: frozenset(
        {"acknowledge", "dispatch", "resolve", "close", "cancel", "reopen", "silence"}
    ),
    Role.PROPERTY_MANAGER: frozenset({"acknowledge", "resolve", "close", "reopen", "silence"}),
    Role.VIEWER: frozenset(),
}


class AuthFileError(ValueError):
    """A tokens file that cannot be used; the message names the file, entry and field."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the token's name (never the token), role and reach."""

    name: str
    role: Role
    streets: frozenset[str] = frozenset()
    estates: frozenset[str] = frozenset()

    @property
    def everywhere(self) -> bool:
        return EVERYWHERE in self.streets

    @property
    def may_write(self) -> bool:
        return self.role is not Role.VIEWER

    def reaches(self, street: str, estate: str) -> bool:
        return self.everywhere or street in self.streets or estate in self.estates

    def require_reach(self, street: str, estate: str, what: str) -> None:
        if not self.reaches(street, estate):
            raise HTTPException(
                403, f"{what} (estate {estate!r}) is outside the reach of token {self.name!r}"
            )

    def require_role(self, roles: Iterable[Role], what: str) -> None:
        allowed = sorted(r.value for r in roles)
        if self.role not in allowed:
            raise HTTPException(
                403, f"{what} needs role {' or '.join(allowed)}; token {self.name!r} is {self.role}"
            )

    def require_step(self, step: str) -> None:
        if step not in STEPS_BY_ROLE[self.role]:
            raise HTTPException(
                403, f"role {self.role} of token {self.name!r} may not {step} alerts"
            )

    def actor(self, given: str) -> str:
        """The actor recorded for a step: what the caller says, tied to its token's name."""
        return given if self is DEVELOPER else f"{given} [{self.name}]"


# Authentication off (loopback development) or a bare router: full reach, no limits.
DEVELOPER = Caller("development", Role.OPS_CENTRE, frozenset({EVERYWHERE}))
# Public paths: a caller that reaches nothing.
ANONYMOUS = Caller("anonymous", Role.VIEWER)


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the token")
    role: Role
    streets: list[str] = []
    estates: list[str] = []


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[_TokenEntry]


def token_hash(token: str) -> str:
    """What the tokens file holds for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_tokens(path: str | Path) -> dict[str, Caller]:
    """Callers by token hash, from a YAML tokens file (see docs/security_api.md)."""
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise AuthFileError(f"{where}: cannot read the tokens file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise AuthFileError(f"{where}: not UTF-8 text: {error.reason}") from None
    except yaml.YAMLError as error:
        raise AuthFileError(f"{where}: not valid YAML: {error}") from None
    return parse_tokens(data, where)


def parse_tokens(data: Any, where: str) -> dict[str, Caller]:
    """Callers by token hash from a tokens file's parsed YAML; ``where`` names it in errors."""
    try:
        parsed = _TokensFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field_path = ".".join(str(part) for part in first["loc"])
        raise AuthFileError(f"{where}: {field_path}: {first['msg']}") from None
    callers: dict[str, Caller] = {}
    names: set[str] = set()
    for index, entry in enumerate(parsed.tokens):
        at = f"{where}: tokens.{index} ({entry.name})"
        if entry.role is Role.OPS_CENTRE and not entry.streets:
            raise AuthFileError(f"{at}: streets: an ops_centre token needs its streets")
        if entry.role is Role.PROPERTY_MANAGER and (entry.streets or not entry.estates):
            raise AuthFileError(
                f"{at}: estates: a property_manager token lists its estates, and no streets"
            )
        if entry.role is Role.VIEWER and not (entry.streets or entry.estates):
            raise AuthFileError(f"{at}: streets: a viewer token needs streets or estates")
        digest = entry.sha256.lower()
        if digest in callers or entry.name in names:
            raise AuthFileError(f"{at}: sha256/name: the same token or name appears twice")
        names.add(entry.name)
        callers[digest] = Caller(
            entry.name, entry.role, frozenset(entry.streets), frozenset(entry.estates)
        )
    return callers


class TokenBuckets:
    """Per-key token buckets: ``rate_per_s`` sustained, ``burst`` at once."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 when a request may go ahead, else the seconds until it may."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s


@dataclass
class ApiAuth:
    """The API's access policy: ``enabled`` False serves everyone as ``DEVELOPER``."""

    enabled: bool
    callers: dict[str, Caller] = field(default_factory=dict)
    buckets: TokenBuckets | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Which street an estate is on (the registry), for reach checks that know only the
    # estate (silences); None or an unknown estate: only estate-listed reach applies.
    street_of: Callable[[str], str | None] | None = None
    source: str = ""

    @classmethod
    def off(cls, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ApiAuth:
        return cls(enabled=False, max_body_bytes=max_body_bytes, source="authentication off")

    @classmethod
    def from_config(
        cls,
        api: ApiSettings,
        bind_host: str,
        street_of: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ApiAuth:
        """The policy of ``[api]`` for an API bound to ``bind_host``.

        ``auth = "auto"`` is off on a loopback address with no tokens file (development, a
        warning is logged) and on everywhere else; ``off`` is refused off loopback.
        """
        loopback = is_loopback(bind_host)
        if api.auth == "off" and not loopback:
            raise AuthFileError(
                f'[api] auth = "off" is only allowed on a loopback address, not {bind_host}'
            )
        if api.auth == "off" or (api.auth == "auto" and loopback and not api.tokens_file):
            log.warning(
                "API authentication is OFF (loopback %s, no [api] tokens_file): every caller "
                "reaches every estate; see docs/security_api.md",
                bind_host,
            )
            policy = cls.off(api.max_body_bytes)
            policy.street_of = street_of
            return policy
        callers = load_tokens(api.tokens_file) if api.tokens_file else {}
        if not callers:
            log.warning("API authentication is on but no tokens are configured: only /health")
        log.info("API tokens loaded: %d from %s", len(callers), api.tokens_file or "nowhere")
        return cls(
            enabled=True,
            callers=callers,
            buckets=TokenBuckets(api.rate_per_s, api.rate_burst, clock),
            max_body_bytes=api.max_body_bytes,
            street_of=street_of,
            source=api.tokens_file,
        )

    def authenticate(self, authorization: str | None) -> Caller:
        if not self.enabled:
            return DEVELOPER
        challenge = {"WWW-Authenticate": "Bearer"}
        if not self.callers:
            raise HTTPException(
                401,
                "no API tokens are configured: set [api] tokens_file (docs/security_api.md)",
                headers=challenge,
            )
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401, "missing bearer token: send 'Authorization: Bearer <token>'", headers=challenge
            )
        caller = self.callers.get(token_hash(token.strip()))
        if caller is None:
            raise HTTPException(401, "unknown or revoked token", headers=challenge)
        if self.buckets is not None:
            wait_s = self.buckets.take(caller.name)
            if wait_s > 0:
                raise HTTPException(
                    429,
                    f"rate limit of token {caller.name!r}: "
                    f"{self.buckets.rate_per_s:g} requests/s, burst {self.buckets.burst}",
                    headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
                )
        return caller


class ApiSettings(Protocol):
    """The fields of ``[api]`` that ``ApiAuth.from_config`` reads (``jiayuan.config.ApiConfig``)."""

    @property
    def auth(self) -> Literal["auto", "on", "off"]: ...
    @property
    def tokens_file(self) -> str: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def rate_per_s(self) -> float: ...
    @property
    def rate_burst(self) -> int: ...


def auth_of(request: Request) -> ApiAuth | None:
    found = getattr(request.app.state, "api_auth", None)
    return found if isinstance(found, ApiAuth) else None


def current_caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller (cached per request)."""
    auth = auth_of(request)
    if auth is None:
        return DEVELOPER
    path = request.url.path
    if (
        path in PUBLIC_PATHS
        or path in SEPARATELY_AUTHENTICATED
        or path.startswith(LINK_AUTHENTICATED_PREFIX)
    ):
        return ANONYMOUS
    return auth.authenticate(request.headers.get("authorization"))


def street_of(request: Request, estate: str) -> str | None:
    auth = auth_of(request)
    if auth is None or auth.street_of is None:
        return None
    return auth.street_of(estate)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app
    acts on it, whether it says its length or streams chunks."""

    def __init__(self, app: Asgi, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = HTTPException(
            413, f"request body larger than {self.max_bytes} bytes ([api] max_body_bytes)"
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_error(send, too_large)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large  # FastAPI and Starlette answer it as a 413
            return message

        await self.app(scope, counted, send)


async def _send_error(send: Send, error: HTTPException) -> None:
    response = JSONResponse({"detail": error.detail}, status_code=error.status_code)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})
