"""Where each outbox channel delivers, checked against the configuration at start.

``check_destinations`` says, per channel, whether its messages can leave the gateway and
if not why (Chinese first, English beside it): the gateway logs each problem as an error
at start and shows them in ``/health``.  ``channel_digest`` is a fingerprint of what
decides a channel's delivery (URL, secret, mail server); a parked message remembers the
one it failed under, and is tried again when the configuration in force differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from alerts.contacts import ContactBook

WORKORDER = "workorder"
MANAGER_WEBHOOK = "manager_webhook"
EMAIL = "email"


@dataclass(frozen=True, slots=True)
class DestinationCheck:
    channel: str
    destination: str  # the URL or mail server, without credentials; '' when none
    problem: str  # '' when the channel can deliver

    @property
    def ok(self) -> bool:
        return not self.problem


def _http_url_problem(url: str, setting: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{setting} 不是 http(s) 地址 is not an http(s) URL: {url!r}"
    return ""


def without_credentials(url: str) -> str:
    """The URL as shown in logs and /health: no user, password or query string."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_destinations(
    *,
    opscentre_url: str,
    webhook_secret: str,
    smtp_url: str,
    contacts: ContactBook | None,
    robot_urls: Mapping[str, str] | None = None,
) -> list[DestinationCheck]:
    """One check for work orders, and one per notification channel the contacts use
    (``robot_urls``: each group-robot channel's base URL)."""
    if not opscentre_url:
        problem = (
            "未配置工单接收地址，工单暂存不发送 no destination for work orders: "
            "[alerts] opscentre_url is not set, every work order is parked"
        )
    elif not webhook_secret:
        problem = (
            "未配置签名密钥，工单暂存不发送 [alerts] webhook_secret is not set: "
            "work orders cannot be signed and are parked"
        )
    else:
        problem = _http_url_problem(opscentre_url, "[alerts] opscentre_url")
    checks = [DestinationCheck(WORKORDER, without_credentials(opscentre_url), problem)]
    if contacts is None:
        return checks
    people = [person for estate in contacts.estates for person in contacts.for_estate(estate)]
    if any(person.email for person in people):
        problem = (
            ""
            if smtp_url
            else "未配置邮件服务器，物业邮件暂存不发送 [alerts] smtp_url is not set: "
            "e-mail to property managers is parked"
        )
        checks.append(DestinationCheck(EMAIL, without_credentials(smtp_url), problem))
    if any(person.webhook_url for person in people):
        problem = (
            ""
            if webhook_secret
            else "未配置签名密钥，物业推送暂存不发送 [alerts] webhook_secret is not set: "
            "property-manager webhooks cannot be signed and are parked"
        )
        checks.append(DestinationCheck(MANAGER_WEBHOOK, "(per contact)", problem))
    used = sorted({channel for person in people for channel, _, _ in person.robots()})
    for channel in used:
        url = (robot_urls or {}).get(channel, "")
        problem = _http_url_problem(url, f"[alerts] {channel}_url")
        checks.append(DestinationCheck(channel, without_credentials(url), problem))
    return checks


def channel_digest(channel: str, destination: str, settings: dict[str, str]) -> str:
    """A fingerprint of the settings that decide whether ``channel`` delivers to
    ``destination`` (secrets are hashed into it, never stored)."""
    decisive = {"channel": channel, "destination": destination, **settings}
    encoded = json.dumps(decisive, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:32]
