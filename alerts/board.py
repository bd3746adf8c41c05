"""The operations centre's board, ``/board``: live open alerts by street and severity.

One self-contained page (no external assets, no build step).  It holds no data: the
page itself is public, and its script reads the authenticated API with the caller's
token (asked once, kept for the browser tab): ``GET /whoami`` for the role and the steps
it allows, ``GET /alerts`` for the open alerts, ``GET /alerts/stream`` (Server-Sent
Events, read with ``fetch`` so the token goes in a header) for every change after, and
``GET /score/estates`` for each estate's grade, whose explanation
(``/score/estates/{id}``) opens on a click.  Deadlines count down; escalated alerts
stand out.  Acknowledge, dispatch and resolve buttons appear as the token's role allows,
and the API checks again.  Grafana stays the place to watch trends.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from jiayuan.api_auth import STEPS_BY_ROLE, Caller, current_caller

BOARD_PATH = "/board"

CallerDep = Annotated[Caller, Depends(current_caller)]


class WhoAmIOut(BaseModel):
    name: str
    role: str
    steps: list[str]
    everywhere: bool


STYLE = """
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,"PingFang SC",
"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;background:#111827;color:#e5e7eb}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:baseline;padding:.6rem 1rem;
background:#1f2937}h1{font-size:1.2rem;margin:0}.en{color:#9ca3af;font-size:.85em}
#status{margin-left:auto}#status.live{color:#4ade80}#status.down{color:#f87171}
#streets{display:grid;grid-template-columns:repeat(auto-fill,minmax(19rem,1fr));gap:.8rem;
padding:.8rem}.street{background:#1f2937;border-radius:.5rem;padding:.6rem}
.street h2{font-size:1rem;margin:0 0 .4rem;display:flex;justify-content:space-between}
.count{font-weight:400}.card{background:#374151;border-left:.35rem solid #6b7280;
border-radius:.35rem;padding:.45rem .6rem;margin:.4rem 0}.card.critical{border-color:#ef4444}
.card.high{border-color:#f97316}.card.warning{border-color:#eab308}.card.info{border-color:#3b82f6}
.card.escalated{outline:2px solid #f87171;background:#4b1d1d}.card.fresh{animation:f 2s}
@keyframes f{from{background:#1e3a8a}}.title{font-weight:600}.meta{font-size:.85rem;
color:#d1d5db}.esc{color:#fca5a5;font-weight:600}.due{color:#fca5a5}.left{color:#a7f3d0}
button{font:inherit;font-size:.85rem;margin:.35rem .3rem 0 0;padding:.3rem .6rem;border:0;
border-radius:.3rem;background:#2563eb;color:#fff;cursor:pointer}button.res{background:#15803d}
button.dis{background:#7c3aed}button.grade{background:#4b5563}
form#login{max-width:26rem;margin:3rem auto;background:#1f2937;padding:1rem;border-radius:.5rem}
input{width:100%;font:inherit;padding:.45rem;margin:.25rem 0 .6rem;border-radius:.3rem;
border:1px solid #6b7280;background:#111827;color:#e5e7eb}#empty{padding:2rem;text-align:center}
dialog{max-width:36rem;background:#1f2937;color:#e5e7eb;border:1px solid #6b7280;
border-radius:.5rem}dialog li{margin:.25rem 0}#error{color:#fca5a5;padding:0 1rem}
"""

SCRIPT = r"""
var S={token:sessionStorage.getItem('jy-token')||'',actor:sessionStorage.getItem('jy-actor')||'',
alerts:new Map(),grades:{},me:null,fresh:new Set()};
var SEV={critical:['紧急','Critical',0],high:['重要','High',1],warning:['一般','Warning',2],
info:['提示','Info',3]};
var ST={open:['待确认','Open'],acknowledged:['已确认','Acknowledged'],dispatched:['已派单',
'Dispatched'],resolved:['已处理','Resolved'],closed:['已关闭','Closed'],cancelled:['已取消',
'Cancelled']};
var ESC={street:['已升级至街道','escalated to the street'],district:['已升级至区',
'escalated to the district']};
var LIVE=['open','acknowledged','dispatched'];
function $(id){return document.getElementById(id)}
function esc(t){var d=document.createElement('div');d.textContent=t==null?'':String(t);
return d.innerHTML}
function hdr(){return S.token?{'Authorization':'Bearer '+S.token}:{}}
async function api(path,opts){opts=opts||{};var h=Object.assign({},hdr(),opts.headers||{});
var r=await fetch(path,Object.assign({},opts,{headers:h}));
if(!r.ok){var t=await r.text();var e=new Error(r.status+' '+t);e.status=r.status;throw e}
return r.json()}
function say(t){$('error').textContent=t||''}
function status(live){var s=$('status');s.className=live?'live':'down';
s.textContent=live?'● 实时 live':'● 连接中断，重连中 reconnecting'}
async function start(){try{S.me=await api('/whoami')}catch(e){
if(e.status===401||e.status===403){login();$('login-error').textContent=S.token?
'令牌无效或已收回 token refused ('+e.status+')':'';return}
say('无法连接网关 cannot reach the gateway: '+e.message);setTimeout(start,3000);return}
$('login').hidden=true;$('board').hidden=false;
$('who').textContent=S.me.name+' · '+S.me.role;await reload();loadGrades();stream()}
function login(){$('login').hidden=false;$('board').hidden=true;$('token').value=S.token;
$('actor').value=S.actor}
async function reload(){var q='/alerts?limit=1000&'+LIVE.map(function(s){return 'state='+s})
.join('&');var list=await api(q);S.alerts=new Map();list.forEach(function(a){
S.alerts.set(a.id,a)});render()}
async function loadGrades(){try{var list=await api('/score/estates');S.grades={};
list.forEach(function(g){S.grades[g.estate]=g});render()}catch(e){}}
async function stream(){while(true){try{var r=await fetch('/alerts/stream',{headers:hdr()});
if(!r.ok)throw new Error(r.status);var rd=r.body.getReader(),dec=new TextDecoder(),buf='';
status(true);await reload();while(true){var x=await rd.read();if(x.done)break;
buf+=dec.decode(x.value,{stream:true}).replace(/\r\n/g,'\n');var i;
while((i=buf.indexOf('\n\n'))>=0){handle(buf.slice(0,i));buf=buf.slice(i+2)}}}
catch(e){}status(false);await new Promise(function(r){setTimeout(r,2000)})}}
function handle(block){var ev='message',data='';block.split('\n').forEach(function(l){
if(l.indexOf('event:')===0)ev=l.slice(6).trim();else if(l.indexOf('data:')===0)
data+=l.slice(5).trim()});if(ev==='lost'){reload();return}if(ev!=='alert')return;
var a=JSON.parse(data).alert;if(LIVE.indexOf(a.state)>=0)S.alerts.set(a.id,a);
else S.alerts.delete(a.id);S.fresh.add(a.id);render()}
function due(a){return a.state==='open'?a.ack_deadline_ms:a.resolve_deadline_ms}
function card(a){var s=SEV[a.severity]||[a.severity,a.severity,9],st=ST[a.state]||[a.state,
a.state],e=ESC[a.escalation],steps=S.me.steps,g=S.grades[a.estate],b='';
if(a.state==='open'&&steps.indexOf('acknowledge')>=0)b+='<button data-do="acknowledge" '+
'data-id="'+esc(a.id)+'">确认 Acknowledge</button>';
if(a.state!=='dispatched'&&steps.indexOf('dispatch')>=0)b+='<button class="dis" '+
'data-do="dispatch" data-id="'+esc(a.id)+'">派单 Dispatch</button>';
if(steps.indexOf('resolve')>=0)b+='<button class="res" data-do="resolve" data-id="'+
esc(a.id)+'">处理完毕 Resolve</button>';
if(g)b+='<button class="grade" data-grade="'+esc(a.estate)+'">评级 '+esc(g.grade)+' '+
esc(g.grade_en)+'</button>';var d=due(a);
return '<div class="card '+esc(a.severity)+(e?' escalated':'')+(S.fresh.has(a.id)?' fresh':'')
+'" data-alert="'+esc(a.id)+'" data-state="'+esc(a.state)+'"><div class="title">【'+s[0]+
' '+s[1]+'】'
+esc(a.title_zh)+' <span class="en">'+esc(a.title_en)+'</span></div><div class="meta">'+
esc(a.estate)+' · '+esc(a.building)+' · '+esc(a.device)+' · <span class="state">'+st[0]+
' '+st[1]+'</span></div>'+(e?'<div class="esc">'+e[0]+' '+e[1]+'</div>':'')+
(d?'<div class="meta">'+(a.state==='open'?'确认':'处理')+'期限 <span data-due="'+d+
'"></span></div>':'')+'<div>'+b+'</div></div>'}
function render(){var by={};S.alerts.forEach(function(a){(by[a.street]=by[a.street]||[])
.push(a)});var names=Object.keys(by).sort(),html='';names.forEach(function(n){
var list=by[n].sort(function(x,y){var a=(SEV[x.severity]||[0,0,9])[2],b=(SEV[y.severity]||
[0,0,9])[2];return a-b||due(x)-due(y)});html+='<section class="street" data-street="'+esc(n)+
'"><h2><span>街道 '+esc(n)+'</span><span class="count">'+list.length+' 条 open</span></h2>'+
list.map(card).join('')+'</section>'});$('streets').innerHTML=html;
$('empty').hidden=names.length>0;S.fresh.clear();tick()}
function tick(){var now=Date.now();document.querySelectorAll('[data-due]').forEach(function(e){
var left=Math.round((+e.dataset.due-now)/1000),a=Math.abs(left),h=Math.floor(a/3600),
m=Math.floor(a%3600/60),s=a%60,t=(h?h+':':'')+(m<10&&h?'0':'')+m+':'+(s<10?'0':'')+s;
e.textContent=left>=0?'剩 '+t+' left':'超时 '+t+' overdue';e.className=left>=0?'left':'due'})}
async function act(what,id){var body={actor:S.actor||'值班员 duty officer',note:''};
if(what==='dispatch'){var w=prompt('工单号 Work order id');if(!w)return;body.work_order_id=w}
if(what==='resolve'){var n=prompt('处理说明 What was done');if(!n)return;body.note=n}
try{await api('/alerts/'+encodeURIComponent(id)+'/'+what,{method:'POST',body:
JSON.stringify(body),headers:{'Content-Type':'application/json'}});say('')}
catch(e){say('未执行 not done: '+e.message)}}
async function explain(estate){try{var x=await api('/score/estates/'+encodeURIComponent(estate));
$('explain-title').textContent=x.name_zh+' '+x.estate+'：'+x.grade+' '+x.grade_en+'（'+
x.score.toFixed(1)+'）';$('explain-lines').innerHTML=x.lines.map(function(l){return '<li>'+
esc(l.label)+'：'+esc(l.value)+(l.penalty?' −'+l.penalty:'')+(l.why?' <span class="en">'+
esc(l.why)+'</span>':'')+'</li>'}).join('')+(x.cap_reason?'<li>'+esc(x.cap_reason)+'</li>':'');
$('explain').showModal()}catch(e){say('评级说明不可用 explanation unavailable: '+e.message)}}
document.addEventListener('click',function(e){var t=e.target.closest('button');if(!t)return;
if(t.dataset.do)act(t.dataset.do,t.dataset.id);if(t.dataset.grade)explain(t.dataset.grade)});
$('login').addEventListener('submit',function(e){e.preventDefault();S.token=$('token').value
.trim();S.actor=$('actor').value.trim();sessionStorage.setItem('jy-token',S.token);
sessionStorage.setItem('jy-actor',S.actor);start()});
setInterval(tick,1000);start();
"""

PAGE = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>运营中心告警看板 Operations board</title><style>{STYLE}</style></head><body>
<form id="login" hidden><h1>运营中心告警看板 <span class="en">Operations board</span></h1>
<label for="token">访问令牌 <span class="en">API token</span></label>
<input id="token" type="password" autocomplete="off">
<label for="actor">值班员姓名 <span class="en">Your name (recorded with each step)</span></label>
<input id="actor" autocomplete="name"><p id="login-error" class="due"></p>
<button>进入 Enter</button></form>
<div id="board" hidden><header><h1>运营中心告警看板 <span class="en">Operations board</span></h1>
<span id="who" class="en"></span><span id="status"></span></header><p id="error"></p>
<div id="streets"></div><p id="empty" hidden>暂无未处理告警 <span class="en">No open alerts</span>
</p></div><dialog id="explain"><h2 id="explain-title"></h2><ol id="explain-lines"></ol>
<form method="dialog"><button>关闭 Close</button></form></dialog>
<script>{SCRIPT}</script></body></html>"""


def create_board_router() -> APIRouter:
    router = APIRouter(tags=["board"])

    @router.get(
        BOARD_PATH,
        response_class=HTMLResponse,
        summary="运营中心告警看板 The operations centre's live board (a page, no data)",
    )
    def board() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})

    @router.get("/whoami", response_model=WhoAmIOut, summary="The caller's token: role, steps")
    def whoami(caller: CallerDep) -> WhoAmIOut:
        return WhoAmIOut(
            name=caller.name,
            role=caller.role.value,
            steps=sorted(STEPS_BY_ROLE[caller.role]),
            everywhere=caller.everywhere,
        )

    return router
