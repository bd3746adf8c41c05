"""Signed links to one alert's page, for people who have no login: who, which alert, until.

A link is ``{page_url}/m/alerts/{alert_id}?t={token}`` with the token
``{expiry_s}.{contact}.{nonce}.{mac}``: the contact's name (base64url of UTF-8), a random
nonce that names the link, and the HMAC-SHA256 (key: ``[alerts] link_secret``) over
alert id, contact, expiry and nonce, base64url, cut to 128 bits.  So a link works only
for its alert, until its expiry, and only unaltered.  ``LinkLedger`` keeps what links
did (opened, acknowledged …, with the contact's name) and the revoked nonces: a revoked
link is refused like a forged one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from jiayuan.state import LINKS_FILE as LINKS_FILE

MAC_CHARS = 22  # 128 bits of base64url


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkRefusal(StrEnum):
    MALFORMED = "malformed"
    TAMPERED = "tampered"
    EXPIRED = "expired"
    REVOKED = "revoked"


REFUSAL_WORDS: dict[LinkRefusal, tuple[str, str]] = {
    LinkRefusal.MALFORMED: ("链接不完整或格式不对", "The link is incomplete or malformed"),
    LinkRefusal.TAMPERED: (
        "链接无效：它不属于这条告警，或已被改动",
        "The link is not valid: it is not for this alert, or it was altered",
    ),
    LinkRefusal.EXPIRED: ("链接已过期", "The link has expired"),
    LinkRefusal.REVOKED: ("链接已被收回", "The link was revoked"),
}


class LinkRefused(Exception):
    def __init__(self, refusal: LinkRefusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class LinkGrant:
    """What a valid link allows: this alert, for this contact, until then."""

    alert_id: str
    contact: str
    expires_s: int
    nonce: str


class LinkSigner:
    def __init__(self, secret: str, page_url: str, ttl_s: float) -> None:
        if not secret:
            raise ValueError("signed alert links need [alerts] link_secret")
        self._key = secret.encode("utf-8")
        self.page_url = page_url.rstrip("/")
        self.ttl_s = ttl_s

    def _mac(self, alert_id: str, contact: str, expires_s: int, nonce: str) -> str:
        message = f"{alert_id}\n{contact}\n{expires_s}\n{nonce}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())[:MAC_CHARS]

    def token(self, alert_id: str, contact: str, now_s: float) -> str:
        expires_s = int(now_s + self.ttl_s)
        nonce = _b64(secrets.token_bytes(8))
        mac = self._mac(alert_id, contact, expires_s, nonce)
        return f"{expires_s}.{_b64(contact.encode('utf-8'))}.{nonce}.{mac}"

    def link(self, alert_id: str, contact: str, now_s: float) -> str:
        token = self.token(alert_id, contact, now_s)
        return f"{self.page_url}/m/alerts/{quote(alert_id)}?t={token}"

    def verify(self, alert_id: str, token: str, now_s: float) -> LinkGrant:
        """The grant of a link for ``alert_id``; ``LinkRefused`` says why not."""
        parts = token.split(".")
        if len(parts) != 4 or not parts[0].isdigit():
            raise LinkRefused(LinkRefusal.MALFORMED)
        expiry, contact_b64, nonce, mac = parts
        try:
            contact = _unb64(contact_b64).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise LinkRefused(LinkRefusal.MALFORMED) from None
        expected = self._mac(alert_id, contact, int(expiry), nonce)
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            raise LinkRefused(LinkRefusal.TAMPERED)
        if int(expiry) < now_s:
            raise LinkRefused(LinkRefusal.EXPIRED)
        return LinkGrant(alert_id, contact, int(expiry), nonce)


@dataclass(frozen=True, slots=True)
class LinkUse:
    at_ms: int
    nonce: str
    alert_id: str
    contact: str
    what: str  # opened | acknowledge | resolve | help | refused:<why>


class LinkLedger:
    """Uses and revocations of links, in SQLite beside the alert store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS link_use (
                at_ms INTEGER NOT NULL, nonce TEXT NOT NULL, alert_id TEXT NOT NULL,
                contact TEXT NOT NULL, what TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS link_use_alert ON link_use (alert_id, at_ms);
            CREATE TABLE IF NOT EXISTS link_revoked (
                nonce TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, actor TEXT NOT NULL
            );
            """
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, use: LinkUse) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO link_use VALUES (?, ?, ?, ?, ?)",
                (use.at_ms, use.nonce, use.alert_id, use.contact, use.what),
            )

    def uses(self, alert_id: str) -> list[LinkUse]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at_ms, nonce, alert_id, contact, what FROM link_use"
                " WHERE alert_id = ? ORDER BY at_ms, rowid",
                (alert_id,),
            ).fetchall()
        return [LinkUse(*row) for row in rows]

    def revoke(self, nonce: str, actor: str, at_ms: int) -> bool:
        """False when it was revoked before."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO link_revoked VALUES (?, ?, ?)", (nonce, at_ms, actor)
            )
        return cursor.rowcount == 1

    def revoked(self, nonce: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM link_revoked WHERE nonce = ?", (nonce,)
            ).fetchone()
        return row is not None
