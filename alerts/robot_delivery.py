"""Sending outbox messages to group robots without ever breaking a robot's rate limit.

Per robot and round: while its backlog fits the free slots with half the limit to spare,
each message goes out on its own.  Beyond that the robot is in a storm: one digest at a
time, paced so that the spare half lasts the window, naming as many waiting alerts as
fit in one message, critical first; the others wait for the next digest.  Nothing is
dropped: a message leaves the outbox only when a message naming it was delivered.
Every request takes its slot in the ``RobotLedger`` before it leaves (counted and noted
in one transaction), so limits hold across a restart and across processes sharing the
ledger.  Answers are read by meaning (``alerts.robots.classify``): throttled blocks the
robot for the platform's penalty and defers its messages, refused parks them with the
reason, anything else retries them with backoff.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from alerts.outbox import Outbox, StoredMessage
from alerts.robot_ledger import RobotLedger
from alerts.robots import (
    DEFAULT_BASE_URLS,
    LIMITS,
    ROBOT_NAMES,
    RobotLimits,
    Verdict,
    classify,
    content_limit,
    fit_bytes,
    payload,
    robot_id,
    robot_url,
)
from jiayuan.http_responses import released

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}

Verb = Literal["delivered", "retry", "park", "defer"]


@dataclass(frozen=True, slots=True)
class RobotOutcome:
    message: StoredMessage
    verb: Verb
    reason: str = ""
    until_ms: int = 0  # for "defer"


@dataclass(frozen=True, slots=True)
class RobotContent:
    """What an outbox message to a robot holds (its body, as JSON)."""

    alert_id: str
    severity: str
    text: str  # the whole message, Chinese first
    line: str  # one line naming the alert, for digests
    mobiles: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body = {
            "schema_version": 1,
            "alert_id": self.alert_id,
            "severity": self.severity,
            "text": self.text,
            "line": self.line,
            "mobiles": list(self.mobiles),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> RobotContent:
        body = json.loads(raw)
        return cls(
            alert_id=str(body["alert_id"]),
            severity=str(body["severity"]),
            text=str(body["text"]),
            line=str(body["line"]),
            mobiles=tuple(str(m) for m in body.get("mobiles", [])),
        )


@dataclass(frozen=True)
class RobotSettings:
    base_urls: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_BASE_URLS))
    # "{channel}:{token}" → signing secret (DingTalk, Feishu); '' or absent: unsigned.
    secrets: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, RobotLimits] = field(default_factory=lambda: dict(LIMITS))

    def secret(self, channel: str, token: str) -> str:
        return self.secrets.get(f"{channel}:{token}", "")

    def base_url(self, channel: str) -> str:
        return self.base_urls.get(channel) or DEFAULT_BASE_URLS[channel]


def _order(message: StoredMessage, content: RobotContent) -> tuple[int, int]:
    return SEVERITY_ORDER.get(content.severity, 9), message.id


def digest_text(
    channel: str, contents: list[RobotContent], waiting: int, limit: int
) -> tuple[str, int]:
    """A digest naming as many of ``contents`` (in order) as fit ``limit`` bytes; the
    text and how many it names.  ``waiting``: all the robot's waiting alerts."""
    critical = sum(1 for c in contents if c.severity == "critical")
    head_zh = f"**告警汇总**：{waiting} 条待通知（紧急 {critical} 条），紧急在前"
    head_en = f"Alert digest: {waiting} waiting ({critical} critical), critical first"
    named: list[str] = []
    for content in contents:
        more = waiting - len(named) - 1
        tail = f"\n\n另有 {more} 条随后发送 {more} more follow" if more else ""
        candidate = "\n".join([head_zh, head_en, "", *named, f"- {content.line}"]) + tail
        if len(candidate.encode("utf-8")) > limit and named:
            break
        named.append(f"- {content.line}")
    more = waiting - len(named)
    tail = f"\n\n另有 {more} 条随后发送 {more} more follow" if more else ""
    text = "\n".join([head_zh, head_en, "", *named]) + tail
    return fit_bytes(text, limit), len(named)


class RobotSender:
    """One per deliverer; ``send_round`` handles the robot messages due in a round."""

    def __init__(
        self,
        outbox: Outbox,
        ledger: RobotLedger,
        settings: RobotSettings,
        http: httpx.Client,
        now_ms: Callable[[], int],
    ) -> None:
        self.outbox = outbox
        self.ledger = ledger
        self.settings = settings
        self._http = http
        self._now_ms = now_ms

    def send_round(self, due: list[StoredMessage]) -> list[RobotOutcome]:
        """Outcomes for the due messages (and any others a digest named)."""
        robots: dict[tuple[str, str], list[StoredMessage]] = {}
        for message in due:
            robots.setdefault((message.channel, message.destination), []).append(message)
        outcomes: list[RobotOutcome] = []
        for (channel, token), messages in robots.items():
            outcomes += self._robot_round(channel, token, messages)
        return outcomes

    def _robot_round(
        self, channel: str, token: str, due: list[StoredMessage]
    ) -> list[RobotOutcome]:
        robot = robot_id(channel, token)
        limits = self.settings.limits.get(channel, LIMITS[channel])
        outcomes: list[RobotOutcome] = []
        readable: list[tuple[StoredMessage, RobotContent]] = []
        for message in due:
            try:
                readable.append((message, RobotContent.decode(message.body)))
            except (ValueError, KeyError, TypeError) as error:
                outcomes.append(RobotOutcome(message, "park", f"unreadable robot message: {error}"))
        if not readable:
            return outcomes
        now = self._now_ms()
        slots = self.ledger.slots(robot, limits, now)
        reserve = max(1, limits.per_window // 2)
        waiting = self.outbox.pending_for(channel, token)
        if slots.free <= 0:
            return outcomes + self._defer(readable, slots.next_ms, "rate limit: waiting")
        if len(waiting) <= slots.window_free - reserve:
            # Quiet times: each alert on its own, as long as slots stay free.
            for index, (message, content) in enumerate(readable):
                send_id, next_ms = self.ledger.reserve(robot, limits, self._now_ms())
                if not send_id:
                    rest = readable[index:]
                    return outcomes + self._defer(rest, next_ms, "rate limit: waiting")
                outcomes += self._send(channel, token, robot, limits, [(message, content)], send_id)
            return outcomes
        # A storm: digests, paced so the spare half of the limit lasts the window.
        pace_ms = int(limits.window_s * 1000 / reserve)
        send_id, next_ms = self.ledger.reserve(robot, limits, self._now_ms(), gap_ms=pace_ms)
        if not send_id:
            return outcomes + self._defer(readable, next_ms, "digest: paced")
        everyone: list[tuple[StoredMessage, RobotContent]] = []
        for message in waiting:
            try:
                everyone.append((message, RobotContent.decode(message.body)))
            except (ValueError, KeyError, TypeError):
                continue  # parked above when it comes due
        everyone.sort(key=lambda pair: _order(*pair))
        named = self._send(channel, token, robot, limits, everyone, send_id)
        sent_ids = {outcome.message.id for outcome in named}
        later = [pair for pair in readable if pair[0].id not in sent_ids]
        return outcomes + named + self._defer(later, now + pace_ms, "digest: in the next one")

    @staticmethod
    def _defer(
        pairs: list[tuple[StoredMessage, RobotContent]], until_ms: int, reason: str
    ) -> list[RobotOutcome]:
        return [RobotOutcome(message, "defer", reason, until_ms) for message, _ in pairs]

    def _send(
        self,
        channel: str,
        token: str,
        robot: str,
        limits: RobotLimits,
        pairs: list[tuple[StoredMessage, RobotContent]],
        send_id: int,
    ) -> list[RobotOutcome]:
        """One request, in the slot ``send_id`` reserved in the ledger: a single message
        when ``pairs`` has one, else a digest naming as many as fit (those are the
        outcomes returned)."""
        now = self._now_ms()
        secret = self.settings.secret(channel, token)
        if len(pairs) == 1:
            content = pairs[0][1]
            text = fit_bytes(content.text, content_limit(channel, digest=False))
            markdown, mobiles, named = False, list(content.mobiles), pairs
        else:
            limit = content_limit(channel, digest=True)
            text, count = digest_text(channel, [c for _, c in pairs], len(pairs), limit)
            named = pairs[:count]
            markdown = channel != "feishu"
            mobiles = sorted({m for _, c in named if c.severity == "critical" for m in c.mobiles})
        body = payload(channel, text, markdown=markdown, mobiles=mobiles, secret=secret, now_ms=now)
        url = robot_url(channel, self.settings.base_url(channel), token, secret, now)
        try:
            response = released(
                self._http.post(
                    url, content=body, headers={"Content-Type": "application/json; charset=utf-8"}
                )
            )
        except httpx.HTTPError as error:
            self.ledger.end(send_id, self._now_ms())
            reason = f"{ROBOT_NAMES[channel]} {type(error).__name__}: {error}"
            return [RobotOutcome(m, "retry", reason) for m, _ in named]
        self.ledger.end(send_id, self._now_ms())
        answer: Any
        try:
            answer = response.json()
        except ValueError:
            answer = None
        verdict, reason = classify(channel, response.status_code, answer)
        reason = f"{ROBOT_NAMES[channel]} {robot}: {reason}"
        if verdict is Verdict.DELIVERED:
            return [RobotOutcome(m, "delivered") for m, _ in named]
        if verdict is Verdict.THROTTLED:
            until = self._now_ms() + int(limits.block_s * 1000)
            self.ledger.block(robot, until, reason)
            log.warning("机器人限流，暂停发送 robot throttled, paused: %s", reason)
            return [RobotOutcome(m, "defer", f"throttled: {reason}", until) for m, _ in named]
        if verdict is Verdict.REFUSED:
            return [RobotOutcome(m, "park", reason) for m, _ in named]
        return [RobotOutcome(m, "retry", reason) for m, _ in named]
