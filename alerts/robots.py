"""Group robots of WeCom (企业微信), DingTalk (钉钉) and Feishu (飞书): their rules as data.

Each platform's custom robot takes a JSON POST to a webhook that carries its credential:

- WeCom: ``{base}?key=KEY``; ``text`` (content ≤ 2,048 bytes, ``mentioned_mobile_list``)
  or ``markdown`` (content ≤ 4,096 bytes); 20 messages a minute per robot; ``errcode``
  45009 when sent too fast, 93000 for an invalid key.
- DingTalk: ``{base}?access_token=TOKEN&timestamp=MS&sign=SIGN`` in signed mode, where
  SIGN is the url-encoded base64 HMAC-SHA256 keyed by the secret over
  ``"{timestamp}\\n{secret}"``, valid for one hour; ``at.atMobiles``; 20 messages a minute,
  and a robot that sends more is blocked for 10 minutes (``errcode`` 130101); 310000 for a
  bad signature, a missing keyword or an address not on the allow list.
- Feishu: ``{base}/{TOKEN}`` with ``timestamp`` (seconds) and ``sign`` in the body, where
  sign is the base64 HMAC-SHA256 keyed by ``"{timestamp}\\n{secret}"`` over an empty
  message; 100 a minute and 5 a second; ``code`` 19021 for a bad signature or stale
  timestamp, 19024 for a missing keyword, 11232 when limited; a body ≤ 20 KB.

``classify`` reads an answer by meaning: delivered, throttled (back off), refused for
good (park with the reason) or anything else (retry).  ``payload`` builds the body of one
message; ``RobotLimits`` are the rate limits, which tests may scale down in time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus

from jiayuan.config import AlertsConfig

WECOM = "wecom"
DINGTALK = "dingtalk"
FEISHU = "feishu"
ROBOT_CHANNELS = (WECOM, DINGTALK, FEISHU)

ROBOT_NAMES = {WECOM: "企业微信 WeCom", DINGTALK: "钉钉 DingTalk", FEISHU: "飞书 Feishu"}

# The platforms' addresses, from the configuration's defaults ([alerts] wecom_url …).
DEFAULT_BASE_URLS = {
    WECOM: AlertsConfig.wecom_url,
    DINGTALK: AlertsConfig.dingtalk_url,
    FEISHU: AlertsConfig.feishu_url,
}

WECOM_TEXT_BYTES = 2048
WECOM_MARKDOWN_BYTES = 4096
# DingTalk publishes no byte limit for its robot; the WeCom markdown limit is kept.
DINGTALK_BYTES = 4096
FEISHU_BODY_BYTES = 20 * 1024
# Room left in a Feishu body for the JSON around the text, the timestamp and the sign.
FEISHU_TEXT_BYTES = FEISHU_BODY_BYTES - 512


@dataclass(frozen=True, slots=True)
class RobotLimits:
    """How many messages a robot may send: ``per_window`` in ``window_s`` (and, for
    Feishu, ``per_second`` in any ``second_s``); a robot that was told it sent too fast
    waits ``block_s``.  ``margin_s`` widens each window against clock drift."""

    per_window: int
    window_s: float = 60.0
    per_second: int = 0  # 0: no per-second limit
    second_s: float = 1.0
    block_s: float = 60.0
    margin_s: float = 1.0

    def scaled(self, factor: float) -> RobotLimits:
        """The same limits with every duration divided by ``factor`` (tests)."""
        return RobotLimits(
            self.per_window,
            self.window_s / factor,
            self.per_second,
            self.second_s / factor,
            self.block_s / factor,
            self.margin_s / factor,
        )


LIMITS = {
    WECOM: RobotLimits(per_window=20, block_s=60.0),
    DINGTALK: RobotLimits(per_window=20, block_s=600.0),
    FEISHU: RobotLimits(per_window=100, per_second=5, block_s=60.0),
}


class Verdict(StrEnum):
    DELIVERED = "delivered"
    THROTTLED = "throttled"  # back off: the robot's limit was reached
    REFUSED = "refused"  # bad key, signature or keyword: park with the reason
    FAILED = "failed"  # anything else: retry later


# Error codes by meaning, per platform.
THROTTLE_CODES = {WECOM: {45009}, DINGTALK: {130101, 130102}, FEISHU: {11232, 9499001}}
REFUSAL_CODES = {
    WECOM: {93000, 93004, 40001, 40014},  # invalid webhook key / access token
    DINGTALK: {310000, 300001, 400101, 400102},  # sign, keyword, ip; token missing/invalid
    FEISHU: {19021, 19022, 19024, 19001},  # sign, ip, keyword; bot not found
}


def classify(channel: str, status: int, answer: Any) -> tuple[Verdict, str]:
    """What an HTTP answer from a robot's platform means, and the reason in words."""
    if not isinstance(answer, dict):
        verdict = Verdict.THROTTLED if status == 429 else Verdict.FAILED
        if status in (401, 403, 404):
            verdict = Verdict.REFUSED
        return verdict, f"HTTP {status}: not a JSON object"
    code = next((answer[k] for k in ("errcode", "code", "StatusCode") if k in answer), None)
    message = next((str(answer[k]) for k in ("errmsg", "msg", "StatusMessage") if k in answer), "")
    reason = f"HTTP {status}, code {code}: {message[:300]}"
    if code == 0 and 200 <= status < 300:
        return Verdict.DELIVERED, reason
    if code in THROTTLE_CODES[channel] or status == 429:
        return Verdict.THROTTLED, reason
    if code in REFUSAL_CODES[channel]:
        return Verdict.REFUSED, reason
    return Verdict.FAILED, reason


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """Url-encoded base64 HMAC-SHA256 (key: the secret) of ``"{timestamp}\\n{secret}"``."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Base64 HMAC-SHA256 keyed by ``"{timestamp}\\n{secret}"`` over an empty message."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    cut = raw[: max(0, limit - 3)].decode("utf-8", "ignore")
    return cut + "…"


def content_limit(channel: str, digest: bool) -> int:
    """Bytes the content of one message may hold (digests are markdown on WeCom)."""
    if channel == WECOM:
        return WECOM_MARKDOWN_BYTES if digest else WECOM_TEXT_BYTES
    if channel == DINGTALK:
        return DINGTALK_BYTES
    return FEISHU_TEXT_BYTES


@dataclass(frozen=True, slots=True)
class RobotRequest:
    url: str
    body: bytes


def robot_url(channel: str, base_url: str, token: str, secret: str, now_ms: int) -> str:
    """The webhook address of a robot, signed for DingTalk."""
    base = base_url.rstrip("/")
    if channel == WECOM:
        return f"{base}?key={quote_plus(token)}"
    if channel == DINGTALK:
        url = f"{base}?access_token={quote_plus(token)}"
        if secret:
            url += f"&timestamp={now_ms}&sign={dingtalk_sign(secret, now_ms)}"
        return url
    return f"{base}/{quote_plus(token)}"


def payload(
    channel: str,
    content: str,
    *,
    markdown: bool,
    mobiles: list[str],
    secret: str,
    now_ms: int,
    title: str = "家园告警 Jiayuan alert",
) -> bytes:
    """The JSON body of one message; ``content`` must already fit ``content_limit``."""
    body: dict[str, Any]
    if channel == WECOM:
        if markdown:
            body = {"msgtype": "markdown", "markdown": {"content": content}}
        else:
            text: dict[str, Any] = {"content": content}
            if mobiles:
                text["mentioned_mobile_list"] = mobiles
            body = {"msgtype": "text", "text": text}
    elif channel == DINGTALK:
        mention = "".join(f" @{m}" for m in mobiles)
        if markdown:
            body = {"msgtype": "markdown", "markdown": {"title": title, "text": content + mention}}
        else:
            body = {"msgtype": "text", "text": {"content": content + mention}}
        body["at"] = {"atMobiles": mobiles, "isAtAll": False}
    else:
        body = {"msg_type": "text", "content": {"text": content}}
        if secret:
            timestamp_s = now_ms // 1000
            body = {"timestamp": str(timestamp_s), "sign": feishu_sign(secret, timestamp_s), **body}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def robot_id(channel: str, token: str) -> str:
    """How logs, keys and the rate ledger name a robot: never its credential."""
    return f"{channel}:{hashlib.sha256(token.encode('utf-8')).hexdigest()[:12]}"
