"""The alert page for phones, ``/m/alerts/{id}?t=…``, opened from a robot's or an e-mail's
signed link: no login, this one alert only, until the link expires or is revoked.

It shows what happened, where, since when, the deadlines, what to do and the history,
with three buttons: acknowledge (确认收到), mark handled with a note (已处理), ask the
street for help (请求街道协助).  The buttons are plain HTML forms (a phone without
JavaScript can use them); the script only counts the deadlines down.  Each step is the
engine's, so it lands in the alert's history in SQLite and InfluxDB like any other, with
the actor ``{name} [链接 link: {contact}]``.  Every use of a link is written to the
``LinkLedger`` and logged with the contact's name.  ``POST /links/revoke`` (operations
centre) revokes a link.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from alerts.engine import AlertEngine
from alerts.links import (
    REFUSAL_WORDS,
    LinkGrant,
    LinkLedger,
    LinkRefusal,
    LinkRefused,
    LinkSigner,
    LinkUse,
)
from alerts.model import Alert, AlertNotFound, AlertState, TransitionRefused
from alerts.notify import ACTION_WORDS, SEVERITY_WORDS, guidance, local_time
from alerts.store import AlertStore
from jiayuan.anomaly import explanation_halves
from jiayuan.api_auth import Caller, Role, current_caller

log = logging.getLogger(__name__)

PAGE_PREFIX = "/m/"
MAX_FORM_BYTES = 16 * 1024

STATE_WORDS: dict[AlertState, tuple[str, str]] = {
    AlertState.OPEN: ("待确认", "Open"),
    AlertState.ACKNOWLEDGED: ("已确认", "Acknowledged"),
    AlertState.DISPATCHED: ("已派单", "Dispatched"),
    AlertState.RESOLVED: ("已处理", "Resolved"),
    AlertState.CLOSED: ("已关闭", "Closed"),
    AlertState.CANCELLED: ("已取消", "Cancelled"),
}

ACTOR_WORDS = {"system": "系统 system"}

DONE_WORDS = {
    "acknowledge": ("已确认收到，谢谢。", "Acknowledged, thank you."),
    "resolve": ("已标记为处理完毕，谢谢。", "Marked as handled, thank you."),
    "help": ("已通知街道，请保持电话畅通。", "The street has been asked for help."),
}

CallerDep = Annotated[Caller, Depends(current_caller)]

STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"PingFang SC",
"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;background:#f3f4f6;color:#111}
main{max-width:40rem;margin:0 auto;padding:0 0 2rem}
header{padding:.9rem 1rem;color:#fff;background:#6b7280}
header.critical{background:#b91c1c}header.high{background:#c2410c}
header.warning{background:#a16207}header.info{background:#1d4ed8}
header p{margin:0;font-size:.95rem}h1{margin:.2rem 0 0;font-size:1.35rem;line-height:1.3}
h1 small{display:block;font-size:.95rem;font-weight:400;opacity:.9}
section{background:#fff;margin:.75rem .5rem;padding:.8rem 1rem;border-radius:.6rem}
h2{font-size:1rem;margin:0 0 .5rem}dl{margin:0;display:grid;
grid-template-columns:minmax(5.5rem,auto) 1fr;gap:.45rem .8rem}dt{color:#4b5563;line-height:1.25}
dt .en{display:block;font-size:.75rem}dd{margin:0;font-weight:600}dd .en{display:block}
.en{color:#6b7280;font-weight:400;font-size:.9em}.due{color:#b91c1c}
.flash{background:#dcfce7;border:1px solid #16a34a}.error{background:#fee2e2;
border:1px solid #dc2626}label{display:block;margin:.5rem 0 .2rem;color:#374151}
input,textarea{width:100%;font:inherit;padding:.55rem;border:1px solid #9ca3af;
border-radius:.4rem}textarea{min-height:4.5rem}
button{display:block;width:100%;font:inherit;font-weight:600;padding:.8rem;margin:.6rem 0 0;
border:0;border-radius:.5rem;color:#fff;background:#1d4ed8;min-height:3rem}
button.done{background:#15803d}button.help{background:#b45309}
button[disabled]{background:#9ca3af}
ol{margin:0;padding-left:1.2rem}li{margin:.3rem 0}
@media(min-width:48rem){main{padding-top:1rem}header{border-radius:.6rem .6rem 0 0;
margin:0 .5rem}.buttons{display:flex;gap:.6rem}.buttons button{flex:1}}
"""

COUNTDOWN = """
function tick(){var now=Date.now();document.querySelectorAll('[data-due]').forEach(
function(e){var left=Math.round((+e.dataset.due-now)/1000),a=Math.abs(left),
h=Math.floor(a/3600),m=Math.floor(a%3600/60),s=a%60,t=(h?h+'时':'')+m+'分'+s+'秒';
e.textContent=left>=0?'剩 '+t+' left':'已超时 '+t+' overdue';
e.className=left>=0?'en':'due'})}tick();setInterval(tick,1000);
var f=document.querySelector('form');if(f)f.addEventListener('submit',function(e){
var n=document.getElementById('note');if(e.submitter&&e.submitter.value==='resolve'&&
!n.value.trim()){e.preventDefault();document.getElementById('need-note').hidden=false;
n.focus()}});
"""


def _page(title: str, body: str, *, script: bool = False) -> str:
    js = f"<script>{COUNTDOWN}</script>" if script else ""
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main>{js}</body></html>"
    )


def refusal_page(refusal: LinkRefusal | None) -> str:
    """Chinese first: why the link does not open, and what to do instead."""
    zh, en = REFUSAL_WORDS[refusal] if refusal else ("找不到这条告警", "No such alert")
    body = (
        '<header class="critical"><h1>无法打开告警页面'
        "<small>This alert page cannot be opened</small></h1></header>"
        f'<section class="error"><p><strong>{html.escape(zh)}</strong><br>'
        f'<span class="en">{html.escape(en)}</span></p>'
        "<p>请使用最新消息中的链接，或联系运营中心获取新链接。<br>"
        '<span class="en">Use the link in the latest message, or ask the operations '
        "centre for a new one.</span></p></section>"
    )
    return _page("无法打开 Cannot open", body)


def _row(zh: str, en: str, value: str, extra: str = "") -> str:
    return f'<dt>{zh} <span class="en">{en}</span></dt><dd>{html.escape(value)}{extra}</dd>'


def _short(ms: int) -> str:
    return local_time(ms)[5:16]  # MM-DD HH:MM: the year is this one


def _deadline(due_ms: int, done_ms: int, done_zh: str, done_en: str) -> tuple[str, str]:
    """The deadline with a countdown, or when the step was taken."""
    if done_ms:
        return f"{done_zh} {_short(done_ms)}", f' <span class="en">{done_en}</span>'
    if not due_ms:
        return "-", ""
    return _short(due_ms), f' <span data-due="{due_ms}" class="en"></span>'


def alert_page(
    alert: Alert,
    history: list[tuple[int, str, str, str]],
    grant: LinkGrant,
    token: str,
    flash: str = "",
    error: str = "",
) -> str:
    sev_zh, sev_en = SEVERITY_WORDS.get(alert.severity, (alert.severity, alert.severity))
    state_zh, state_en = STATE_WORDS.get(alert.state, (alert.state.value, alert.state.value))
    todo_zh, todo_en = guidance(alert.code, alert.kind)
    ack_by, ack_count = _deadline(
        alert.ack_deadline_ms, alert.acknowledged_ms, "已确认", "acknowledged"
    )
    fix_by, fix_count = _deadline(
        alert.resolve_deadline_ms, alert.resolved_ms, "已处理", "resolved"
    )
    device = alert.device + (f" {alert.detail}" if alert.detail else "")
    where = " · ".join(part for part in (alert.estate, alert.building, device) if part)
    measured = f"测量值 {alert.value:g}，阈值 {alert.threshold:g}"
    measured_en = f"measured {alert.value:g}, threshold {alert.threshold:g}"
    if alert.explanation:  # a statistical alert: what is usual, not a threshold
        measured, measured_en = explanation_halves(alert.explanation)
    valid_until = html.escape(local_time(grant.expires_s * 1000))
    notices = ""
    if flash:
        notices += f'<section class="flash" role="status">{flash}</section>'
    if error:
        notices += f'<section class="error" role="alert">{error}</section>'
    action = f"/m/alerts/{quote(alert.id)}/act?t={quote(token)}"
    closed = alert.state in (AlertState.RESOLVED, AlertState.CLOSED, AlertState.CANCELLED)
    ack_off = " disabled" if alert.state is not AlertState.OPEN else ""
    contact = html.escape(grant.contact)
    steps = "".join(
        f"<li>{html.escape(local_time(at))} · {html.escape(what)}"
        f" · {html.escape(ACTOR_WORDS.get(actor, actor))}"
        + (f'<br><span class="en">{html.escape(note)}</span>' if note else "")
        + "</li>"
        for at, what, actor, note in history
    )
    if closed:
        act_section = (
            f'<section class="flash"><p>此告警{state_zh}，无需再操作。<br>'
            f'<span class="en">This alert is {state_en.lower()}: nothing more to do.</span>'
            "</p></section>"
        )
    else:
        act_section = f"""<section><h2>处理 <span class="en">Act</span></h2>
<form method="post" action="{html.escape(action)}">
<label for="name">您的姓名 <span class="en">Your name</span></label>
<input id="name" name="name" maxlength="60" autocomplete="name" placeholder="例如 e.g. 王师傅">
<p class="en">不填则记为 left blank, recorded as「{contact}」</p>
<label for="note">备注（标记已处理时必填）
<span class="en">Note (needed to mark handled)</span></label>
<textarea id="note" name="note" maxlength="2000"></textarea>
<p id="need-note" class="due" hidden>请先填写备注：做了什么处理。Please say what was done.</p>
<div class="buttons">
<button name="action" value="acknowledge"{ack_off}>确认收到 Acknowledge</button>
<button class="done" name="action" value="resolve">已处理 Mark handled</button>
<button class="help" name="action" value="help">请求街道协助 Ask the street</button>
</div></form></section>"""
    body = f"""
<header class="{html.escape(alert.severity)}">
<p>{sev_zh} {sev_en} · {state_zh} {state_en}</p>
<h1>{html.escape(alert.title_zh)}<small>{html.escape(alert.title_en)}</small></h1>
</header>
{notices}
<section><dl>
{_row("位置", "Where", where, '<span class="en">小区 estate · 楼栋 building · 设备 device</span>')}
{_row("开始", "Since", _short(alert.first_seen_ms))}
{_row("确认期限", "Ack by", ack_by, ack_count)}
{_row("处理期限", "Resolve by", fix_by, fix_count)}
{_row("情况", "Reading", measured, f'<span class="en">{measured_en}</span>')}
</dl></section>
<section><h2>处置建议 <span class="en">What to do</span></h2>
<p>{html.escape(todo_zh)}<br><span class="en">{html.escape(todo_en)}</span></p></section>
{act_section}
<section><h2>经过 <span class="en">History</span></h2><ol>{steps}</ol></section>
<section><p class="en">告警编号 Alert {html.escape(alert.id)} · 链接属于 link of
{html.escape(grant.contact)}，有效至 valid until {valid_until}</p>
</section>"""
    return _page(f"{alert.title_zh} {alert.title_en}", body, script=True)


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=400, description="the link's t= value")


class RevokeOut(BaseModel):
    nonce: str
    revoked: bool = Field(description="False when it had been revoked before")


def create_mobile_router(
    engine: AlertEngine,
    store: AlertStore,
    signer: LinkSigner,
    ledger: LinkLedger,
    ask_street: Callable[[Alert, int, str], Any],
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """``ask_street(alert, at_ms, note)`` queues the street's notification."""
    router = APIRouter(tags=["alert pages"])

    def grant_for(alert_id: str, token: str, what: str) -> LinkGrant:
        now = clock()
        try:
            grant = signer.verify(alert_id, token, now)
            if ledger.revoked(grant.nonce):
                raise LinkRefused(LinkRefusal.REVOKED)
        except LinkRefused as refused:
            log.warning(
                "告警页面链接被拒 alert page link refused (%s) for %s", refused.refusal, alert_id
            )
            status = 410 if refused.refusal is LinkRefusal.EXPIRED else 403
            raise _Refusal(status, refused.refusal) from None
        ledger.record(LinkUse(int(now * 1000), grant.nonce, alert_id, grant.contact, what))
        log.info("告警页面 alert page %s: %s by the link of %s", what, alert_id, grant.contact)
        return grant

    def history_rows(alert_id: str) -> list[tuple[int, str, str, str]]:
        rows = []
        for step in store.history(alert_id):
            zh, en = ACTION_WORDS.get(step.action, (step.action.value, step.action.value))
            rows.append((step.at_ms, f"{zh} {en}", step.actor, step.note))
        return rows

    def render(alert_id: str, token: str, grant: LinkGrant, flash: str, error: str) -> Response:
        try:
            alert = store.get(alert_id)
        except AlertNotFound:
            return HTMLResponse(refusal_page(None), status_code=404)
        page = alert_page(alert, history_rows(alert_id), grant, token, flash, error)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @router.get(
        "/m/alerts/{alert_id}",
        response_class=HTMLResponse,
        summary="告警页面（手机）The alert's page for phones, opened by a signed link",
        responses={
            403: {"description": "tampered or revoked link"},
            410: {"description": "expired"},
        },
    )
    def page(
        alert_id: str,
        t: Annotated[str, Query(max_length=400)] = "",
        done: Annotated[str, Query(max_length=20)] = "",
    ) -> Response:
        try:
            grant = grant_for(alert_id, t, "opened")
        except _Refusal as refusal:
            return refusal.response()
        flash = ""
        if done in DONE_WORDS:
            zh, en = DONE_WORDS[done]
            flash = f'{zh} <span class="en">{en}</span>'
        return render(alert_id, t, grant, flash, "")

    @router.post(
        "/m/alerts/{alert_id}/act",
        response_class=HTMLResponse,
        summary="A button of the alert page: acknowledge, resolve (note needed) or help",
    )
    async def act(alert_id: str, request: Request, t: str = "") -> Response:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        action = form.get("action", "")
        if action not in DONE_WORDS:
            raise HTTPException(422, f"unknown action {action!r}: acknowledge, resolve or help")
        try:
            grant = grant_for(alert_id, t, action)
        except _Refusal as refusal:
            return refusal.response()
        name = form.get("name", "").strip()[:60] or grant.contact
        actor = f"{name} [链接 link: {grant.contact}]"
        note = form.get("note", "").strip()[:2000]
        error = ""
        try:
            if action == "acknowledge":
                engine.acknowledge(alert_id, actor, note)
            elif action == "resolve":
                if not note:
                    error = (
                        "请填写备注：做了什么处理。"
                        "<span class='en'>Please say in the note what was done.</span>"
                    )
                else:
                    engine.resolve(alert_id, actor, note)
            else:
                text = "请求街道协助 asks the street for help" + (f": {note}" if note else "")
                alert = engine.note(alert_id, actor, text)
                ask_street(alert, int(clock() * 1000), text)
        except AlertNotFound:
            return HTMLResponse(refusal_page(None), status_code=404)
        except TransitionRefused as refused:
            error = (
                f"此操作未执行：{html.escape(refused.reason)}"
                f"<span class='en'> Not done in state {refused.state.value}</span>"
            )
        if error:
            return render(alert_id, t, grant, "", error)
        # Post/redirect/get: a reload does not take the step twice.
        target = f"/m/alerts/{quote(alert_id)}?t={quote(t)}&done={action}"
        return RedirectResponse(target, status_code=303)

    @router.post(
        "/links/revoke",
        response_model=RevokeOut,
        summary="Revoke a signed alert-page link (operations centre)",
    )
    def revoke(body: RevokeIn, caller: CallerDep) -> RevokeOut:
        caller.require_role([Role.OPS_CENTRE], "revoking a link")
        parts = body.token.split(".")
        if len(parts) != 4:
            raise HTTPException(422, "not a link token: expected expiry.contact.nonce.mac")
        nonce = parts[2]
        revoked = ledger.revoke(nonce, caller.name, int(clock() * 1000))
        log.warning("告警页面链接已收回 alert page link revoked by %s: %s", caller.name, nonce)
        return RevokeOut(nonce=nonce, revoked=revoked)

    return router


class _Refusal(Exception):
    def __init__(self, status: int, refusal: LinkRefusal) -> None:
        super().__init__(refusal.value)
        self.status = status
        self.refusal = refusal

    def response(self) -> Response:
        return HTMLResponse(refusal_page(self.refusal), status_code=self.status)
