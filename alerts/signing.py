"""HMAC-SHA256 request signatures shared by the gateway and the operations centre.

Both directions (work orders to the operations centre, callbacks to the gateway) carry

    X-Jiayuan-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

The timestamp is signed with the body, so a captured request cannot be replayed outside
the tolerance window, and the signature is made when a message is sent (not when it was
queued), so a work order retried after an hour-long outage is still fresh.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Jiayuan-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Stripe and GitHub use five minutes: wide enough for clock skew, short for replays.
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A request whose signature is missing, malformed, wrong or stale; says which."""


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the webhook secret is empty; set [alerts] webhook_secret_file")
    return key


def compute(secret: str | bytes, timestamp_s: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    message = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, now_s: float | None = None) -> str:
    """The value of the signature header for ``body`` sent now."""
    timestamp = int(time.time() if now_s is None else now_s)
    return f"t={timestamp},v1={compute(secret, timestamp, body)}"


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    now_s: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` within the window."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER}: {item.strip()!r} is not k=v")
        parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise SignatureError(f"{SIGNATURE_HEADER} needs one t=<unix seconds>")
    timestamp = int(stamps[0])
    now = time.time() if now_s is None else now_s
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"signature timestamp {timestamp} is {now - timestamp:+.0f} s from now "
            f"(tolerance {tolerance_s:.0f} s): stale or clock skew"
        )
    expected = compute(secret, timestamp, body)
    # Several v1 values let a sender sign with the old and the new secret during rotation.
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("signature does not match the body (wrong secret or altered body)")
