"""Stand-ins for the WeCom, DingTalk and Feishu group-robot webhooks, on 127.0.0.1, for
the tests and ``jiayuan demo``.

Written from the platforms' published rules, not from our sender:

- WeCom group robot: ``POST /cgi-bin/webhook/send?key=KEY``; ``msgtype`` text (content
  ≤ 2,048 bytes, optional ``mentioned_mobile_list``) or markdown (content ≤ 4,096
  bytes); at most 20 messages a minute per robot, beyond that ``errcode`` 45009 "api freq
  out of limit"; an unknown key ``errcode`` 93000 "invalid webhook url".
- DingTalk custom robot: ``POST /robot/send?access_token=T&timestamp=MS&sign=S`` with
  S = urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))), timestamp within
  an hour, else ``errcode`` 310000 "sign not match"; text or markdown, ``at.atMobiles``;
  20 a minute, a robot that sends more is refused with ``errcode`` 130101 "send too
  fast, exceed 20 times per minute" for 10 minutes.
- Feishu custom bot: ``POST /open-apis/bot/v2/hook/TOKEN`` with ``timestamp`` (s) and
  ``sign`` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")) in the body,
  else ``code`` 19021 "sign match fail or timestamp is not within one hour from current
  time"; body ≤ 20 KB; 100 a minute and 5 a second, beyond that ``code`` 11232
  "frequency limited".

Sources: Feishu's custom-bot guide (open.larkoffice.com, 自定义机器人使用指南: 100 次/分钟,
5 次/秒, 11232, 20 KB); the 19021 answer as quoted in PrometheusAlert issue #422; the
DingTalk robot pages (每个机器人每分钟最多发送20条, 超过会限流10分钟; errcode 130101 "send
too fast, exceed 20 times per minute"); WeCom's group-robot page (text 2,048 bytes,
markdown 4,096 bytes, mentioned_mobile_list, 20 条/分钟; errcode 45009).

Durations are divided by ``time_scale`` so a test's "minute" can be seconds, or the
``clock`` is one the test moves; every limit broken is kept in ``violations`` (what the
sender must never cause).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Received:
    platform: str
    robot: str
    at: float  # monotonic
    body: dict[str, Any]
    wall_ms: int = 0  # when it arrived, epoch ms

    @property
    def text(self) -> str:
        if self.platform == "feishu":
            return str(self.body["content"]["text"])
        kind = self.body["msgtype"]
        part = self.body[kind]
        return str(part.get("content", part.get("text", "")))

    @property
    def mobiles(self) -> list[str]:
        if self.platform == "wecom":
            return list(self.body.get("text", {}).get("mentioned_mobile_list", []))
        if self.platform == "dingtalk":
            return list(self.body.get("at", {}).get("atMobiles", []))
        return []


@dataclass
class Robot:
    secret: str = ""
    sends: deque[float] = field(default_factory=deque)  # accepted and refused alike
    blocked_until: float = 0.0


class RobotPlatforms:
    """All three platforms on one server; ``robots`` maps (platform, token) → Robot."""

    def __init__(
        self, time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock``: seconds, for the rate limits (a test may move it by hand)."""
        self.scale = time_scale
        self.clock = clock
        self.robots: dict[tuple[str, str], Robot] = {}
        self.received: list[Received] = []
        self.refused: list[tuple[str, int, str]] = []  # platform, code, message
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- set-up -----------------------------------------------------------------------

    def add(self, platform: str, token: str, secret: str = "") -> None:
        self.robots[platform, token] = Robot(secret)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def urls(self) -> dict[str, str]:
        return {
            "wecom": f"{self.base}/cgi-bin/webhook/send",
            "dingtalk": f"{self.base}/robot/send",
            "feishu": f"{self.base}/open-apis/bot/v2/hook",
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RobotPlatforms:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def texts(self, platform: str) -> list[str]:
        with self.lock:
            return [r.text for r in self.received if r.platform == platform]

    # --- the rules --------------------------------------------------------------------

    def _rate(self, platform: str, robot: Robot, now: float) -> tuple[int, str] | None:
        """The platform's answer when this request breaks a rate limit (it counts)."""
        minute = 60.0 / self.scale
        robot.sends.append(now)
        while robot.sends and robot.sends[0] <= now - minute:
            robot.sends.popleft()
        if platform == "dingtalk" and now < robot.blocked_until:
            return 130101, "send too fast, exceed 20 times per minute"
        if platform in ("wecom", "dingtalk") and len(robot.sends) > 20:
            self.violations.append(f"{platform}: {len(robot.sends)} in a minute")
            if platform == "dingtalk":
                robot.blocked_until = now + 600.0 / self.scale
                return 130101, "send too fast, exceed 20 times per minute"
            return 45009, "api freq out of limit"
        if platform == "feishu":
            second = 1.0 / self.scale
            in_second = sum(1 for t in robot.sends if t > now - second)
            if len(robot.sends) > 100 or in_second > 5:
                self.violations.append(
                    f"feishu: {len(robot.sends)} in a minute, {in_second} in a second"
                )
                return 11232, "frequency limited"
        return None

    def handle(self, path: str, raw: bytes) -> dict[str, Any]:
        now = self.clock()
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/cgi-bin/webhook/send":
            return self._wecom(query.get("key", ""), raw, now)
        if parts.path == "/robot/send":
            return self._dingtalk(query, parts.query, raw, now)
        prefix = "/open-apis/bot/v2/hook/"
        if parts.path.startswith(prefix):
            return self._feishu(unquote(parts.path[len(prefix) :]), raw, now)
        return {"errcode": 404, "errmsg": f"no such path {parts.path}"}

    def _refuse(self, platform: str, answer: dict[str, Any]) -> dict[str, Any]:
        code = answer.get("errcode", answer.get("code", -1))
        self.refused.append((platform, int(code), str(answer.get("errmsg", answer.get("msg")))))
        return answer

    def _wecom(self, key: str, raw: bytes, now: float) -> dict[str, Any]:
        robot = self.robots.get(("wecom", key))
        if robot is None:
            return self._refuse("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"})
        limited = self._rate("wecom", robot, now)
        if limited:
            return self._refuse("wecom", {"errcode": limited[0], "errmsg": limited[1]})
        body = json.loads(raw)
        kind = body.get("msgtype")
        limits = {"text": 2048, "markdown": 4096}
        if kind not in limits or not isinstance(body.get(kind), dict):
            return self._refuse("wecom", {"errcode": 40008, "errmsg": "invalid message type"})
        content = body[kind].get("content")
        if not isinstance(content, str) or not content:
            return self._refuse("wecom", {"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode("utf-8")) > limits[kind]:
            self.violations.append(f"wecom: {kind} of {len(content.encode())} bytes")
            return self._refuse("wecom", {"errcode": 40058, "errmsg": "content exceed max length"})
        mobiles = body[kind].get("mentioned_mobile_list", [])
        if not isinstance(mobiles, list) or not all(isinstance(m, str) for m in mobiles):
            return self._refuse("wecom", {"errcode": 40058, "errmsg": "invalid mentioned list"})
        self._accept("wecom", key, now, body)
        return {"errcode": 0, "errmsg": "ok"}

    def _dingtalk(
        self, query: dict[str, str], raw_query: str, raw: bytes, now: float
    ) -> dict[str, Any]:
        token = query.get("access_token", "")
        robot = self.robots.get(("dingtalk", token))
        if robot is None:
            return self._refuse("dingtalk", {"errcode": 300001, "errmsg": "token is not exist"})
        if robot.secret:
            # The sign is compared as sent (url-encoded), as DingTalk's sample builds it.
            sent = dict(p.split("=", 1) for p in raw_query.split("&") if "=" in p)
            stamp = sent.get("timestamp", "")
            expected = base64.b64encode(
                hmac.new(
                    robot.secret.encode(), f"{stamp}\n{robot.secret}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            fresh = stamp.isdigit() and abs(int(stamp) / 1000 - time.time()) < 3600
            if not fresh or unquote(sent.get("sign", "")) != expected:
                return self._refuse("dingtalk", {"errcode": 310000, "errmsg": "sign not match"})
        limited = self._rate("dingtalk", robot, now)
        if limited:
            return self._refuse("dingtalk", {"errcode": limited[0], "errmsg": limited[1]})
        body = json.loads(raw)
        kind = body.get("msgtype")
        if kind == "text":
            ok = isinstance(body.get("text", {}).get("content"), str)
        elif kind == "markdown":
            part = body.get("markdown", {})
            ok = isinstance(part.get("title"), str) and isinstance(part.get("text"), str)
        else:
            ok = False
        at = body.get("at", {})
        if not ok or not isinstance(at.get("atMobiles", []), list):
            return self._refuse("dingtalk", {"errcode": 40035, "errmsg": "缺少参数 json"})
        self._accept("dingtalk", token, now, body)
        return {"errcode": 0, "errmsg": "ok"}

    def _feishu(self, token: str, raw: bytes, now: float) -> dict[str, Any]:
        robot = self.robots.get(("feishu", token))
        if robot is None:
            return self._refuse(
                "feishu", {"code": 19001, "msg": "param invalid: incoming webhook access token"}
            )
        if len(raw) > 20 * 1024:
            self.violations.append(f"feishu: body of {len(raw)} bytes")
            return self._refuse("feishu", {"code": 9499, "msg": "Bad Request"})
        body = json.loads(raw)
        if robot.secret:
            stamp = str(body.get("timestamp", ""))
            expected = base64.b64encode(
                hmac.new(f"{stamp}\n{robot.secret}".encode(), b"", hashlib.sha256).digest()
            ).decode()
            fresh = stamp.isdigit() and abs(int(stamp) - time.time()) < 3600
            if not fresh or body.get("sign") != expected:
                return self._refuse(
                    "feishu",
                    {
                        "code": 19021,
                        "msg": "sign match fail or timestamp is not within one hour "
                        "from current time",
                    },
                )
        limited = self._rate("feishu", robot, now)
        if limited:
            return self._refuse("feishu", {"code": limited[0], "msg": limited[1]})
        if body.get("msg_type") != "text" or not isinstance(
            body.get("content", {}).get("text"), str
        ):
            return self._refuse("feishu", {"code": 9499, "msg": "Bad Request"})
        self._accept("feishu", token, now, body)
        return {"code": 0, "msg": "success", "data": {}}

    def _accept(self, platform: str, robot: str, now: float, body: dict[str, Any]) -> None:
        self.received.append(Received(platform, robot, now, body, time.time_ns() // 1_000_000))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with standin.lock:
                    try:
                        answer = standin.handle(self.path, raw)
                    except (ValueError, KeyError, TypeError) as error:
                        answer = {"errcode": 40000, "errmsg": f"bad request: {error}"}
                out = json.dumps(answer, ensure_ascii=False).encode("utf-8")
                self.send_response(200)  # the platforms answer errors with 200 and a code
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
