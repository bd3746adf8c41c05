"""The people and systems around the gateway in ``jiayuan demo``.

The reference operations centre receives work orders and accepts then completes them
through the callback; a mail catcher on loopback receives the property managers' e-mail;
stand-ins of the WeCom, DingTalk and Feishu robot platforms receive the group messages
(a WeCom group per estate, a DingTalk group per street, a Feishu group per company);
a duty officer acknowledges open alerts, and the property manager resolves what has
cleared and closes what the centre completed (verified).  At the end, ``alerts_report``
measures what happened from the receiver's and InfluxDB's own records.
"""

from __future__ import annotations

import logging
import re
import secrets
import statistics
import threading
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from alerts.model import Alert
from alerts.store import AlertFilter, AlertStore
from jiayuan.api_auth import token_hash
from jiayuan.catalogue import FAMILIES, Severity
from jiayuan.config import AlertsConfig, ApiConfig
from jiayuan.extras import require
from jiayuan.influx import InfluxClient
from jiayuan.registry.model import Registry
from simulators.robot_platforms import RobotPlatforms
from tools.opscentre import ReferenceOpsCentre
from tools.servers import free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

# How the stand-ins behave: the centre accepts a work order 2 s after it arrives and
# reports it done 6 s later; the duty officer acknowledges within a second or two.
ACCEPT_AFTER_S = 2.0
COMPLETE_AFTER_S = 8.0
OPERATOR_EVERY_S = 1.0
DUTY_OFFICER = "值班员 duty officer"
PROPERTY_MANAGER = "物业经理 property manager"
# The promise: every critical fault is a work order at the centre within 5 s.
WORK_ORDER_WITHIN_S = 5.0
# Deadlines scaled to a one-minute demo, as its heartbeats are: hours become seconds, so
# an alert still unresolved after this escalates to the street while you watch.
DEMO_RESOLVE_DEADLINE_S = 15.0
# The target for group robots: a critical alert is in the group within 2 s.
ROBOT_MESSAGE_WITHIN_S = 2.0
ALERT_ID = re.compile(r"al-[0-9a-f]{20}")


class MailCatcher:
    """An SMTP server on loopback that keeps what it receives (subjects decoded)."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.recipients: list[str] = []
        self._lock = threading.Lock()
        # The demo's extra: a production install has no mail catcher.
        controller = require("aiosmtpd.controller", "the demo's mail catcher").Controller
        self._controller = controller(self, hostname="127.0.0.1", port=free_port())

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self._controller.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        subject = str(make_header(decode_header(message_from_bytes(raw)["Subject"] or "")))
        with self._lock:
            self.subjects.append(subject)
            self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def received(self) -> int:
        with self._lock:
            return len(self.subjects)


@dataclass
class OperatorStats:
    acknowledged: int = 0
    resolved: int = 0
    closed: int = 0
    refused: int = 0  # a step that lost a race with the centre (409): expected, counted


@dataclass
class Operator:
    """Polls the gateway API like a person at a console would, and takes the steps."""

    api_url: str
    token: str
    stats: OperatorStats = field(default_factory=OperatorStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-operator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.api_url, timeout=5.0, headers=headers) as client:
            while not self._stop.wait(OPERATOR_EVERY_S):
                try:
                    self.round(client)
                except httpx.HTTPError:
                    continue  # the gateway is restarting: try again next round

    def round(self, client: httpx.Client) -> None:
        for alert in self._alerts(client, "open"):
            self._step(client, alert, "acknowledge", DUTY_OFFICER, "已收到 seen, on it")
        for alert in self._alerts(client, "acknowledged"):
            if not alert["condition_active"]:
                self._step(client, alert, "resolve", PROPERTY_MANAGER, "已处置 fixed on site")
        for alert in self._alerts(client, "resolved"):
            self._step(client, alert, "close", PROPERTY_MANAGER, "已复核 verified")

    def _alerts(self, client: httpx.Client, state: str) -> list[dict[str, Any]]:
        response = client.get("/alerts", params={"state": state, "limit": 1000})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return [alert for alert in found if not alert["silenced"]]

    def _step(
        self, client: httpx.Client, alert: dict[str, Any], step: str, actor: str, note: str
    ) -> None:
        response = client.post(f"/alerts/{alert['id']}/{step}", json={"actor": actor, "note": note})
        if response.status_code == 409:
            self.stats.refused += 1
            return
        response.raise_for_status()
        if step == "acknowledge":
            self.stats.acknowledged += 1
        elif step == "resolve":
            self.stats.resolved += 1
        else:
            self.stats.closed += 1


class DemoOperations:
    """The centre, the mail catcher and (once the gateway's API is up) the operator."""

    def __init__(self, out_dir: Path) -> None:
        self.secret = secrets.token_hex(16)
        self.token = secrets.token_hex(16)
        db = out_dir / "opscentre.sqlite"
        db.unlink(missing_ok=True)  # each demo run starts with an empty receiver
        self.centre = ReferenceOpsCentre(
            db,
            self.secret,
            token=self.token,
            accept_after_s=ACCEPT_AFTER_S,
            complete_after_s=COMPLETE_AFTER_S,
        )
        self.mail = MailCatcher()
        self.robots = RobotPlatforms()
        self.link_secret = secrets.token_hex(16)
        self.contacts_file = out_dir / "contacts.yaml"
        # The duty officer calls the API as the operations centre of every street.
        self.api_token = secrets.token_urlsafe(32)
        self.tokens_file = out_dir / "api-tokens.yaml"
        self.policy_file = out_dir / "policy.yaml"
        self.operator: Operator | None = None

    def start(self) -> None:
        self.centre.start()
        self.mail.start()
        self.robots.start()

    def start_operator(self, api_url: str) -> None:
        self.operator = Operator(api_url, self.api_token)
        self.operator.start()

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()

    def close(self) -> None:
        """After the report: the centre's records are read for it."""
        self.stop_operator()
        self.centre.close()
        self.mail.stop()
        self.robots.stop()

    def api_config(self, base: ApiConfig) -> ApiConfig:
        """The gateway's [api] section: tokens on, one for the duty officer."""
        entry = {
            "name": "值班员 demo duty officer",
            "sha256": token_hash(self.api_token),
            "role": "ops_centre",
            "streets": ["*"],
        }
        self.tokens_file.write_text(
            yaml.safe_dump({"tokens": [entry]}, allow_unicode=True), encoding="utf-8"
        )
        self.tokens_file.chmod(0o600)
        return replace(base, auth="on", tokens_file=str(self.tokens_file))

    def alerts_config(
        self, base: AlertsConfig, registry: Registry, page_url: str = ""
    ) -> AlertsConfig:
        """The gateway's [alerts] section pointed at the stand-ins; ``page_url``: the
        gateway's API, for the signed links to the alert pages."""
        contacts = property_managers(registry)
        for key, people in group_robots(registry).items():
            contacts.setdefault(key, []).extend(people)
            for person in people:
                for channel, token, secret in (
                    ("wecom", person.get("wecom_key", ""), ""),
                    (
                        "dingtalk",
                        person.get("dingtalk_token", ""),
                        person.get("dingtalk_secret", ""),
                    ),
                    ("feishu", person.get("feishu_token", ""), person.get("feishu_secret", "")),
                ):
                    if token:
                        self.robots.add(channel, token, secret)
        self.contacts_file.write_text(
            yaml.safe_dump(contacts, allow_unicode=True), encoding="utf-8"
        )
        urls = self.robots.urls()
        self.policy_file.write_text(yaml.safe_dump(demo_policy()), encoding="utf-8")
        return replace(
            base,
            policy_file=str(self.policy_file),
            opscentre_url=self.centre.workorders_url,
            webhook_secret=self.secret,
            callback_token=self.token,
            contacts_file=str(self.contacts_file),
            smtp_url=self.mail.url,
            smtp_from="jiayuan-demo@localhost",
            retry_initial_s=0.5,
            retry_max_s=5.0,
            score_interval_s=10.0,
            wecom_url=urls["wecom"],
            dingtalk_url=urls["dingtalk"],
            feishu_url=urls["feishu"],
            page_url=page_url,
            link_secret=self.link_secret if page_url else "",
        )


def demo_policy() -> dict[str, Any]:
    """Every event code keeps its severity and routing; only the resolve deadline shrinks."""
    return {
        "codes": {
            event.code: {"resolve_deadline_s": DEMO_RESOLVE_DEADLINE_S}
            for fam in FAMILIES.values()
            for event in fam.events
        }
    }


def property_managers(registry: Registry) -> dict[str, list[dict[str, str]]]:
    """One manager per estate, at the estate's property company (a made-up address)."""
    return {
        record.estate.id: [
            {
                "name": f"{record.company.name_zh}·{record.estate.name_zh}物业经理",
                "email": f"pm.{record.estate.id}@{record.company.id}.example.cn",
            }
        ]
        for record in registry.records()
    }


def group_robots(registry: Registry) -> dict[str, list[dict[str, str]]]:
    """A WeCom group per estate, a DingTalk group per street and a Feishu group per
    property company (signed, with made-up secrets)."""
    groups: dict[str, list[dict[str, str]]] = {}
    for record in registry.records():
        estate, company = record.estate, record.company
        groups[estate.id] = [
            {
                "name": f"{estate.name_zh}物业群",
                "wecom_key": f"wecom-{estate.id}",
                "phone": "13800000000",
            }
        ]
        groups[f"street:{estate.street}"] = [
            {
                "name": f"{estate.street}街道值班群",
                "dingtalk_token": f"ding-{estate.street}",
                "dingtalk_secret": f"SEC-demo-{estate.street}",
            }
        ]
        groups[f"company:{company.id}"] = [
            {
                "name": f"{company.name_zh}总部群",
                "feishu_token": f"feishu-{company.id}",
                "feishu_secret": f"demo-{company.id}",
            }
        ]
    return groups


def robots_report(robots: RobotPlatforms, alerts: list[Alert]) -> dict[str, Any]:
    """Per platform: messages received, alerts named, and for critical alerts the time
    from detection (raised) to the first message naming them in a group of that platform."""
    created = {a.id: a.created_ms for a in alerts}
    critical = {a.id for a in alerts if a.severity == Severity.CRITICAL.value and not a.silenced}
    report: dict[str, Any] = {}
    with robots.lock:
        received = list(robots.received)
        violations = list(robots.violations)
        refused = list(robots.refused)
    for platform in ("wecom", "dingtalk", "feishu"):
        first: dict[str, int] = {}
        messages = [r for r in received if r.platform == platform]
        for message in messages:
            for alert_id in ALERT_ID.findall(message.text):
                first.setdefault(alert_id, message.wall_ms)
        delays = sorted(
            (first[a] - created[a]) / 1000 for a in critical if a in first and a in created
        )
        report[platform] = {
            "messages": len(messages),
            "alerts_named": len(first),
            "critical_delay_s": {
                "count": len(delays),
                "median": statistics.median(delays) if delays else None,
                "max": max(delays) if delays else None,
                "over_2_s": sum(1 for d in delays if d > ROBOT_MESSAGE_WITHIN_S),
            },
        }
    report["limit_violations"] = violations
    report["refused"] = len(refused)
    return report


def alerts_report(
    operations: DemoOperations, alert_store_path: Path, influx: InfluxClient
) -> dict[str, Any]:
    """Alerts raised, work orders at the centre (and how fast), lifecycle, TTA and TTR."""
    with AlertStore(alert_store_path) as store:
        alerts = store.list_alerts(AlertFilter(limit=1_000_000))
    orders = operations.centre.store.workorders(kind="create")
    received = {order["alert_id"]: order["received_ms"] for order in orders}
    creates_per_alert: dict[str, int] = {}
    for order in orders:
        creates_per_alert[order["alert_id"]] = creates_per_alert.get(order["alert_id"], 0) + 1
    critical = [a for a in alerts if a.severity == Severity.CRITICAL.value and not a.silenced]
    delays = [
        (received[a.id] - a.created_ms) / 1000 for a in critical if a.id in received
    ]  # detection (alert raised) → work order stored at the centre
    states: dict[str, int] = {}
    for alert in alerts:
        states[alert.state.value] = states.get(alert.state.value, 0) + 1
    operator = operations.operator.stats if operations.operator else OperatorStats()
    tta = _influx_stats(influx, "tta_s", "action = 'acknowledged'")
    ttr = _influx_stats(influx, "ttr_s", "action = 'resolved' OR action = 'auto_resolved'")
    missing = [a.id for a in critical if a.id not in received]
    late = [d for d in delays if d > WORK_ORDER_WITHIN_S]
    duplicates = sum(count - 1 for count in creates_per_alert.values())
    return {
        "alerts": len(alerts),
        "alerts_by_state": states,
        "critical_alerts": len(critical),
        "critical_without_work_order": missing,
        "work_orders_created": len(orders),
        "duplicate_work_orders": duplicates,
        "redeliveries_absorbed": sum(
            o["deliveries"] - 1 for o in operations.centre.store.workorders()
        ),
        "work_order_delay_s": {
            "median": statistics.median(delays) if delays else None,
            "max": max(delays) if delays else None,
            "over_5_s": len(late),
        },
        "emails_received": operations.mail.received,
        "robots": robots_report(operations.robots, alerts),
        "operator": vars(operator),
        "time_to_acknowledge_s": tta,
        "time_to_resolve_s": ttr,
        "ok": not missing and not late and duplicates == 0 and not robot_violations(operations),
    }


def robot_violations(operations: DemoOperations) -> list[str]:
    with operations.robots.lock:
        return list(operations.robots.violations)


def _influx_stats(influx: InfluxClient, field_name: str, where: str) -> dict[str, float | None]:
    query = (
        f'SELECT count("{field_name}") AS n, mean("{field_name}") AS mean, '
        f'max("{field_name}") AS max FROM "alert" WHERE {where}'
    )
    for series in influx.query(query):
        row = dict(zip(series.columns, series.values[0], strict=True))
        return {"count": row["n"], "mean": row["mean"], "max": row["max"]}
    return {"count": 0, "mean": None, "max": None}


def format_alerts_summary(report: dict[str, Any]) -> str:
    delay = report["work_order_delay_s"]
    tta, ttr = report["time_to_acknowledge_s"], report["time_to_resolve_s"]
    states = ", ".join(f"{state} {n}" for state, n in sorted(report["alerts_by_state"].items()))

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} s"

    lines = [
        f"告警 alerts: {report['alerts']} raised ({states})",
        f"工单 work orders at the operations centre: {report['work_orders_created']} "
        f"(duplicates {report['duplicate_work_orders']}, redeliveries absorbed "
        f"{report['redeliveries_absorbed']}); critical alerts {report['critical_alerts']}, "
        f"detection → work order median {seconds(delay['median'])}, worst "
        f"{seconds(delay['max'])}, over {WORK_ORDER_WITHIN_S:g} s: {delay['over_5_s']}",
        f"确认/解决 time to acknowledge: {tta['count']} alerts, mean {seconds(tta['mean'])}, "
        f"worst {seconds(tta['max'])}; time to resolve: {ttr['count']} alerts, mean "
        f"{seconds(ttr['mean'])}, worst {seconds(ttr['max'])} (from InfluxDB)",
        f"物业通知 property-manager e-mails received: {report['emails_received']}",
    ]
    robots = report["robots"]
    for platform, name in (
        ("wecom", "企业微信 WeCom"),
        ("dingtalk", "钉钉 DingTalk"),
        ("feishu", "飞书 Feishu"),
    ):
        got = robots[platform]
        delay = got["critical_delay_s"]
        lines.append(
            f"群机器人 {name}: {got['messages']} messages naming {got['alerts_named']} alerts; "
            f"critical detection → message median {seconds(delay['median'])}, worst "
            f"{seconds(delay['max'])}, over {ROBOT_MESSAGE_WITHIN_S:g} s: {delay['over_2_s']}"
        )
    lines.append(
        f"  rate limits broken: {len(robots['limit_violations'])}, refused by the platforms: "
        f"{robots['refused']}"
    )
    if report["critical_without_work_order"]:
        lines.append(f"  MISSING work orders for {report['critical_without_work_order']}")
    return "\n".join(lines)
