"""Notifications to an estate's property managers: e-mail, webhook and group robots
(WeCom, DingTalk, Feishu), Chinese first.

Each says where (estate, building, device), what happened (title, value against the
threshold), since when (Shanghai local time), how urgent (severity, deadlines) and what
to do (guidance per event code).  ``notification_messages`` turns one lifecycle step into
outbox messages, one per contact and channel, keyed ``pm:{alert_id}:{event}:email:
{address}`` or ``pm:{alert_id}:{event}:manager_webhook:{url hash}`` so a replayed step
never notifies anyone twice; robots' keys end ``:{channel}:{robot hash}``.  With a
``link`` function each message carries a signed link to the alert's page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from alerts.contacts import Contact
from alerts.model import Alert, AlertAction
from alerts.outbox import OutboxMessage
from alerts.robot_delivery import RobotContent
from alerts.robots import robot_id
from alerts.signing import IDEMPOTENCY_HEADER
from alerts.workorder import SHANGHAI
from jiayuan.anomaly import explanation_halves

EMAIL_CHANNEL = "email"
WEBHOOK_CHANNEL = "manager_webhook"

SEVERITY_WORDS = {
    "critical": ("紧急", "Critical"),
    "high": ("重要", "High"),
    "warning": ("一般", "Warning"),
    "info": ("提示", "Info"),
}

ACTION_WORDS: dict[AlertAction, tuple[str, str]] = {
    AlertAction.RAISED: ("新告警", "New alert"),
    AlertAction.REPEATED: ("告警重复发生", "Alert repeated"),
    AlertAction.CONDITION_CLEARED: ("异常已消失", "Condition cleared"),
    AlertAction.ACKNOWLEDGED: ("告警已确认", "Alert acknowledged"),
    AlertAction.DISPATCHED: ("工单已派发", "Work order accepted"),
    AlertAction.RESOLVED: ("告警已处理", "Alert resolved"),
    AlertAction.CLOSED: ("告警已关闭", "Alert closed"),
    AlertAction.CANCELLED: ("告警已取消", "Alert cancelled"),
    AlertAction.AUTO_RESOLVED: ("告警已自动解除", "Alert auto-resolved"),
    AlertAction.REOPENED: ("告警重新打开", "Alert reopened"),
    AlertAction.ESCALATED: ("告警已升级", "Alert escalated"),
    AlertAction.FLAPPING: ("告警频繁反复", "Alert flapping"),
    AlertAction.SILENCED: ("维护期间告警", "Alert during maintenance"),
    AlertAction.NOTIFIED: ("告警通知", "Alert notice"),
    AlertAction.NOTED: ("备注", "Note"),
    AlertAction.INHIBITED: ("告警归入上级告警", "Alert held under a group alert"),
    AlertAction.RELEASED: ("新告警", "New alert"),
}

ESCALATION_WORDS = {
    "estate": ("小区", "the estate"),
    "street": ("街道", "the street centre"),
    "district": ("区", "the district"),
}

# What the property manager should do, per event code (then per family, then generic).
GUIDANCE: dict[str, tuple[str, str]] = {
    "lift.trapped": (
        "立即通知维保单位到场救援，安抚被困人员，切勿自行扒门",
        "Dispatch the lift maintenance crew now, reassure the passengers, do not force the doors",
    ),
    "lift.door_open_moving": (
        "立即停用该电梯并通知维保单位检查门锁回路",
        "Take the lift out of service now and have the crew check the door-lock circuit",
    ),
    "lift.overspeed": (
        "立即停用该电梯，通知维保单位检查限速器和安全钳",
        "Take the lift out of service; have the crew check the governor and safety gear",
    ),
    "lift.power_loss": (
        "确认轿厢内无人被困，联系供电并通知维保单位",
        "Make sure nobody is trapped, contact the power supplier and the maintenance crew",
    ),
    "fire.alarm": (
        "立即派人到场核实火情；确认起火即拨打119并组织疏散",
        "Send someone to check at once; if there is a fire, call 119 and evacuate",
    ),
    "fire.fault": (
        "通知消防维保单位检修消防设施，期间加强人工巡查",
        "Have the fire-system contractor repair the fault; patrol the area meanwhile",
    ),
    "fire.pump_not_started": (
        "立即到泵房检查消防泵控制柜（是否处于自动状态）并通知维保单位",
        "Check the fire-pump control panel (set to automatic?) now and call the contractor",
    ),
    "ebike_charger.smoke": (
        "立即派人到充电区核实，切断充电电源，必要时拨打119",
        "Send someone to the charging site now, cut the charging power, call 119 if needed",
    ),
    "ebike_charger.over_temperature": (
        "远程或现场切断该充电口电源，检查车辆电池和插头",
        "Cut power to the port (remotely or on site) and check the battery and plug",
    ),
    "water_tank.chlorine_low": (
        "通知二次供水管理单位检查消毒设备，必要时停止供水并告知居民",
        "Have the water operator check disinfection; stop supply and tell residents if needed",
    ),
    "water_tank.turbidity_high": (
        "暂停二次供水，通知管理单位清洗水箱并取样送检",
        "Stop the secondary supply; have the operator clean the tank and send samples",
    ),
    "water_tank.lid_open": (
        "立即派人到泵房检查水箱盖和门锁，排除人为投毒风险",
        "Send someone to the pump room to check the tank lid and locks now",
    ),
    "estate.uplink_down": (
        "检查小区边缘网关的电源和上行网络（光猫、交换机）；恢复前小区设备均无法监测",
        "Check the estate edge box's power and uplink (modem, switch); no device of the "
        "estate is monitored until it is back",
    ),
    "estate.edge_stopped": (
        "边缘网关已被停止；维护完成后重新启动，恢复前小区设备均无法监测",
        "The edge box was stopped; start it again after the maintenance: until then no "
        "device of the estate is monitored",
    ),
    "estate.building_down": (
        "检查该楼栋的供电和网络设备（配电箱、楼道交换机）",
        "Check the building's power and network gear (distribution board, floor switch)",
    ),
    "waterlogging.depth_30": (
        "设置警示并组织排水，必要时转移地下车库车辆并通知居民",
        "Put up warnings, start pumping, move cars out of the basement, tell residents",
    ),
}

FAMILY_GUIDANCE: dict[str, tuple[str, str]] = {
    "lift": ("通知电梯维保单位检查", "Ask the lift maintenance crew to check"),
    "fire": ("通知消防维保单位检查", "Ask the fire-system contractor to check"),
    "water_tank": ("通知二次供水管理单位检查", "Ask the secondary-water operator to check"),
    "ebike_charger": ("派人检查充电设施", "Send someone to check the charging site"),
    "waterlogging": ("派人查看积水情况并组织排水", "Send someone to check the water and pump it"),
}

OFFLINE_GUIDANCE = (
    "检查设备电源和网络；设备离线期间无法监测",
    "Check the device's power and network; it is not monitored while offline",
)
GENERIC_GUIDANCE = ("派人到场核实", "Send someone to check on site")


def guidance(code: str, kind: str) -> tuple[str, str]:
    if code in GUIDANCE:
        return GUIDANCE[code]
    if code.endswith(".offline"):
        return OFFLINE_GUIDANCE
    return FAMILY_GUIDANCE.get(kind, GENERIC_GUIDANCE)


def local_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Notification:
    subject: str
    text: str
    event: str  # names the step in idempotency keys


def _event_name(alert: Alert, action: AlertAction, at_ms: int) -> str:
    # A step that can happen more than once per alert needs more than its name.
    if action is AlertAction.ESCALATED:
        return f"escalated-{alert.escalation.value}"
    if action in (AlertAction.REOPENED, AlertAction.REPEATED, AlertAction.NOTIFIED):
        return f"{action.value}-{at_ms}"
    return action.value


def _number(value: float) -> str:
    return f"{value:g}"


def compose(alert: Alert, action: AlertAction, at_ms: int, note: str = "") -> Notification:
    """Subject and plain-text body, Chinese first with English beside it."""
    sev_zh, sev_en = SEVERITY_WORDS.get(alert.severity, (alert.severity, alert.severity))
    act_zh, act_en = ACTION_WORDS[action]
    if action is AlertAction.ESCALATED:
        to_zh, to_en = ESCALATION_WORDS[alert.escalation.value]
        act_zh, act_en = f"{act_zh}至{to_zh}", f"{act_en} to {to_en}"
    todo_zh, todo_en = guidance(alert.code, alert.kind)
    device = alert.device + (f" {alert.detail}" if alert.detail else "")
    building = alert.building or "-"
    since = local_time(alert.first_seen_ms)
    ack_by = local_time(alert.ack_deadline_ms) if alert.ack_deadline_ms else "-"
    resolve_by = local_time(alert.resolve_deadline_ms) if alert.resolve_deadline_ms else "-"
    value, threshold = _number(alert.value), _number(alert.threshold)
    reading_zh, reading_en = (
        f"测量值 {value}，阈值 {threshold}",
        (f"measured {value} against threshold {threshold}"),
    )
    if alert.explanation:  # a statistical alert: what is usual, not a threshold
        reading_zh, reading_en = explanation_halves(alert.explanation)
    subject = (
        f"【{sev_zh} {sev_en}】{act_zh} {act_en}：{alert.title_zh} {alert.title_en}"
        f" — {alert.estate} {building} {alert.device}"
    )
    note_zh = [f"备注：{note}"] if note else []
    note_en = [f"Note: {note}"] if note else []
    lines = [
        f"{act_zh}：{alert.title_zh}",
        f"小区：{alert.estate}　楼栋：{building}　设备：{device}",
        f"情况：{alert.title_zh}，{reading_zh}",
        f"开始时间：{since}（上海时间），已发生 {alert.repeat_count} 次",
        f"级别：{sev_zh}；确认期限：{ack_by}；处理期限：{resolve_by}",
        f"处置建议：{todo_zh}",
        *note_zh,
        f"告警编号：{alert.id}",
        "",
        f"{act_en}: {alert.title_en}",
        f"Estate: {alert.estate}  Building: {building}  Device: {device}",
        f"What happened: {alert.title_en}, {reading_en}",
        f"Since: {since} (Shanghai time), {alert.repeat_count} occurrence(s)",
        f"Severity: {sev_en}; acknowledge by {ack_by}; resolve by {resolve_by}",
        f"What to do: {todo_en}",
        *note_en,
        f"Alert id: {alert.id}",
    ]
    return Notification(subject, "\n".join(lines) + "\n", _event_name(alert, action, at_ms))


def message_id(key: str) -> str:
    """A Message-ID derived from the idempotency key: a retried send carries the same one."""
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@jiayuan>"


def email_message(
    notification: Notification, key: str, contact: Contact, sender: str, at_ms: int
) -> bytes:
    mail = EmailMessage(policy=SMTP)
    mail["Subject"] = notification.subject
    mail["From"] = formataddr(("家园 Jiayuan", sender))
    mail["To"] = formataddr((contact.name, contact.email))
    mail["Date"] = format_datetime(datetime.fromtimestamp(at_ms / 1000, tz=SHANGHAI))
    mail["Message-ID"] = message_id(key)
    mail["X-Jiayuan-Key"] = key
    mail.set_content(notification.text)
    return mail.as_bytes()


def webhook_body(
    alert: Alert, action: AlertAction, notification: Notification, key: str, at_ms: int
) -> bytes:
    todo_zh, todo_en = guidance(alert.code, alert.kind)
    body = {
        "schema_version": 1,
        "type": "notification",
        "idempotency_key": key,
        "action": action.value,
        "event_time_ms": at_ms,
        "alert_id": alert.id,
        "state": alert.state.value,
        "severity": alert.severity,
        "code": alert.code,
        "title": {"zh": alert.title_zh, "en": alert.title_en},
        "place": {
            "district": alert.district,
            "street": alert.street,
            "estate": alert.estate,
            "building": alert.building,
            "device": alert.device,
        },
        "value": alert.value,
        "threshold": alert.threshold,
        "explanation": alert.explanation,
        "since_ms": alert.first_seen_ms,
        "guidance": {"zh": todo_zh, "en": todo_en},
        "subject": notification.subject,
        "text": notification.text,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _short_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=SHANGHAI).strftime("%m-%d %H:%M")


def robot_content(
    alert: Alert, action: AlertAction, notification: Notification, link: str, mobiles: list[str]
) -> RobotContent:
    """The robot's message: the title line first (what a phone's preview shows), the page
    link right after the Chinese part so that cutting to the size limit keeps it."""
    sev_zh, _ = SEVERITY_WORDS.get(alert.severity, (alert.severity, alert.severity))
    act_zh, act_en = ACTION_WORDS[action]
    chinese, _, english = notification.text.partition("\n\n")
    page = [f"处理页面 Alert page: {link}"] if link else []
    text = "\n".join([notification.subject, *chinese.splitlines()[1:], *page, "", english])
    where = " ".join(part for part in (alert.estate, alert.building, alert.device) if part)
    shown = f"[{alert.title_zh}]({link})" if link else alert.title_zh
    line = (
        f"【{sev_zh}】{where} {shown} {alert.title_en} · {act_zh} {act_en}"
        f" · {_short_time(alert.first_seen_ms)}起 · {alert.id}"
    )
    return RobotContent(alert.id, alert.severity, text, line, tuple(mobiles))


def notification_messages(
    alert: Alert,
    action: AlertAction,
    contacts: Sequence[Contact],
    *,
    at_ms: int,
    sender: str,
    note: str = "",
    link: Callable[[Contact], str] | None = None,
) -> list[OutboxMessage]:
    """One outbox message per contact and channel (e-mail, webhook, robots) for this
    step; ``link`` gives a contact's signed link to the alert's page."""
    notification = compose(alert, action, at_ms, note)
    prefix = f"pm:{alert.id}:{notification.event}"
    messages = []
    for contact in contacts:
        page = link(contact) if link is not None else ""
        for channel, token, _secret in contact.robots():
            mobiles = [contact.phone] if contact.phone else []
            content = robot_content(alert, action, notification, page, mobiles)
            key = f"{prefix}:{channel}:{robot_id(channel, token).split(':')[1]}"
            messages.append(OutboxMessage(channel, key, token, content.encode(), {}))
        if contact.email:
            key = f"{prefix}:{EMAIL_CHANNEL}:{contact.email.lower()}"
            mailed = notification
            if page:
                text = notification.text + f"\n处理页面 Alert page: {page}\n"
                mailed = Notification(notification.subject, text, notification.event)
            raw = email_message(mailed, key, contact, sender, at_ms)
            messages.append(OutboxMessage(EMAIL_CHANNEL, key, contact.email, raw, {}))
        if contact.webhook_url:
            # A hash, not the URL: URLs may carry tokens, and keys are logged and sent.
            url_id = hashlib.sha256(contact.webhook_url.encode("utf-8")).hexdigest()[:16]
            key = f"{prefix}:{WEBHOOK_CHANNEL}:{url_id}"
            headers = {"Content-Type": "application/json; charset=utf-8", IDEMPOTENCY_HEADER: key}
            raw = webhook_body(alert, action, notification, key, at_ms)
            messages.append(OutboxMessage(WEBHOOK_CHANNEL, key, contact.webhook_url, raw, headers))
    return messages
