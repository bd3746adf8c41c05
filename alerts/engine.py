"""The alert engine: turns anomalies into alerts and takes people's steps on them.

One alert per device and condition (event code + detail): while it lives, the condition
firing again only counts a repeat.  Alerts of one building that start within the incident
window share an incident; a condition that opens and clears too often is marked flapping
and held back; alerts raised inside a maintenance silence are recorded, not routed.  Every
change writes history and becomes an :class:`AlertEvent` handed to the sinks (outbox,
InfluxDB points, live stream).  One lock makes each change atomic, whichever thread calls
(the gateway's processing thread, uvicorn's for the API).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from alerts.grouping import (
    BUILDING_DOWN,
    EDGE_STATE_CAUSES,
    ESTATE_EDGE_STOPPED,
    ESTATE_UPLINK_DOWN,
    GROUP_KIND,
    GROUP_SEVERITY,
    OFFLINE_SUFFIX,
    DeviceCount,
    building_threshold,
    device_list,
    estate_threshold,
    group_title,
    is_offline_code,
)
from alerts.model import (
    ALLOWED_STEPS,
    Alert,
    AlertAction,
    AlertState,
    EscalationLevel,
    HistoryEntry,
    check_step,
)
from alerts.policy import AlertPolicy, CodePolicy
from alerts.silences import Silence, SilenceScope, check_silence
from alerts.store import AlertStore, Incident, OpenCount
from jiayuan.anomaly import Anomaly
from jiayuan.contract import EdgeState

log = logging.getLogger(__name__)

SYSTEM = "system"
LADDER = (EscalationLevel.ESTATE, EscalationLevel.STREET, EscalationLevel.DISTRICT)
LEVEL_ZH = {
    EscalationLevel.ESTATE: "小区",
    EscalationLevel.STREET: "街道",
    EscalationLevel.DISTRICT: "区",
}
# Which events carry a work order (new, update or cancellation) or a manager notification
# when the alert's policy asks for them; the rest are bookkeeping.
WORK_ORDER_ACTIONS = frozenset(
    {
        AlertAction.RAISED,
        AlertAction.REOPENED,
        AlertAction.ESCALATED,
        AlertAction.CANCELLED,
        AlertAction.AUTO_RESOLVED,
        AlertAction.RELEASED,
    }
)
NOTIFY_ACTIONS = frozenset(
    {
        AlertAction.RAISED,
        AlertAction.REOPENED,
        AlertAction.ESCALATED,
        AlertAction.AUTO_RESOLVED,
        AlertAction.RELEASED,
    }
)
# Events of the condition itself; they are held back while the alert flaps.
CONDITION_ACTIONS = frozenset(
    {
        AlertAction.RAISED,
        AlertAction.REPEATED,
        AlertAction.CONDITION_CLEARED,
        AlertAction.AUTO_RESOLVED,
        AlertAction.REOPENED,
        AlertAction.FLAPPING,
        AlertAction.SILENCED,
    }
)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One change of an alert, as the sinks hear of it.

    ``routed`` False: recorded only (silenced, flapping, bookkeeping such as repeats).
    ``work_order`` / ``notify_manager``: this event should reach the operations centre /
    the property manager.
    """

    alert: Alert
    action: AlertAction
    at_ms: int  # wall clock
    actor: str
    note: str
    routed: bool
    work_order: bool
    notify_manager: bool


Sink = Callable[[AlertEvent], Any]
# One change: the alert as it is after the change, what happened, and a note.
Step = tuple[Alert, AlertAction, str]
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def condition_key(anomaly: Anomaly) -> str:
    """Identity of a device and condition: building is a label, not identity."""
    place = "/".join((anomaly.district, anomaly.street, anomaly.estate, anomaly.kind))
    return f"{place}/{anomaly.device}|{anomaly.code}|{anomaly.detail}"


def group_key(district: str, street: str, estate: str, code: str, building: str = "") -> str:
    """Identity of a group alert: one estate (or one building of it) and the cause."""
    return f"{district}/{street}/{estate}/{GROUP_KIND}/|{code}|{building}"


def alert_id_for(key: str, start_ms: int) -> str:
    # Derived from the condition and its first start: the same anomaly always names the
    # same alert, so a replay can never mint a second one.
    return "al-" + hashlib.sha256(f"{key}|{start_ms}".encode()).hexdigest()[:20]


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def missed_deadlines(first_ms: int, period_s: float, until_ms: int) -> int:
    """How many deadlines passed: the first at ``first_ms``, then one every period."""
    if first_ms <= 0 or period_s <= 0 or until_ms < first_ms:
        return 0
    return 1 + (until_ms - first_ms) // int(period_s * 1000)


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        policy: AlertPolicy,
        clock: Clock = wall_clock_ms,
        sinks: Iterable[Sink] = (),
        sink_batch: Callable[[], AbstractContextManager[None]] = nullcontext,
        population: DeviceCount | None = None,
    ) -> None:
        """``sink_batch``: what the sinks hear of one call's anomalies is wrapped in it (the
        outbox's ``batch``: one commit for a batch's work orders).  ``population``: how many
        devices an estate or building has; without it silence alone never makes a group
        alert (an edge's status still does)."""
        self.store = store
        self.population = population
        self.policy = policy
        self.clock = clock
        self._sinks: list[Sink] = list(sinks)
        self._sink_batch = sink_batch
        # Re-entrant: a sink may read the engine while an event is being delivered.
        self._lock = threading.RLock()

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    # --- anomalies ------------------------------------------------------------------------

    def on_anomalies(self, anomalies: Iterable[Anomaly]) -> list[AlertEvent]:
        """Raise, count, clear or reopen alerts for these anomalies; the events, in order."""
        events: list[AlertEvent] = []
        # One commit for the batch, not one an alert.  The sinks' batch (the outbox) commits
        # first: after a crash between the two, the redelivered anomalies raise the same
        # alerts again, whose messages are already queued under the same keys (a reopen's
        # key carries its time: at worst sent twice).  The other way round the anomalies
        # would be "seen already" and their work orders lost.
        with self._lock, self.store.batch():
            for anomaly in anomalies:
                policy = self.policy.for_code(anomaly.code, anomaly.severity)
                if not policy.raise_alert:
                    continue  # info: the anomaly itself is the record
                if anomaly.active:
                    opened = self._opened(anomaly, policy)
                    events += opened
                    if opened and opened[0].action is AlertAction.RAISED:
                        events += self._group_if_storm(opened[0].alert)
                else:
                    events += self._closed(anomaly, policy)
            with self._sink_batch():
                self._emit(events)
        return events

    def _opened(self, anomaly: Anomaly, policy: CodePolicy) -> list[AlertEvent]:
        key = condition_key(anomaly)
        latest = self.store.latest(key)
        if latest is not None and anomaly.start_ms <= latest.last_seen_ms:
            return []  # seen already (a redelivered message, a replay)
        if latest is None or latest.terminal:
            return self._raise(anomaly, key, policy)
        now = self.clock()
        returned = not latest.condition_active  # it had cleared: one more open/clear cycle
        alert = replace(
            latest,
            repeat_count=latest.repeat_count + 1,
            last_seen_ms=anomaly.start_ms,
            condition_active=True,
            updated_ms=now,
        )
        steps: list[Step] = []
        if returned and latest.state is AlertState.RESOLVED:
            alert = self._reopened(alert, now)
            steps.append((alert, AlertAction.REOPENED, "条件再次出现 the condition came back"))
        else:
            repeat = f"第{alert.repeat_count}次 repeat {alert.repeat_count}"
            steps.append((alert, AlertAction.REPEATED, repeat))
        if returned and not alert.flapping and self._flapping(key, now):
            alert = replace(alert, flapping=True)
            steps.append((alert, AlertAction.FLAPPING, self._flapping_note()))
        return self._record(latest, steps, now, SYSTEM)

    def _raise(self, anomaly: Anomaly, key: str, policy: CodePolicy) -> list[AlertEvent]:
        now = self.clock()
        alert_id = alert_id_for(key, anomaly.start_ms)
        silence = self._silence_for(anomaly)
        incident = self.store.latest_incident(
            anomaly.district, anomaly.street, anomaly.estate, anomaly.building
        )
        window_ms = int(self.policy.noise.incident_window_s * 1000)
        new_incident: Incident | None = None
        if incident is None or abs(anomaly.start_ms - incident.start_ms) > window_ms:
            new_incident = incident = Incident(
                "inc-" + alert_id.removeprefix("al-"),
                anomaly.district,
                anomaly.street,
                anomaly.estate,
                anomaly.building,
                anomaly.start_ms,
                alert_id,
                now,
            )
        flapping = self._flapping(key, now)
        parent = held_until = None
        if silence is None and self._grouping and is_offline_code(anomaly.code):
            parent = self._live_group(
                anomaly.district, anomaly.street, anomaly.estate, anomaly.building
            )
            if parent is None:
                held_until = now + self._window_ms
        # Held or inhibited: deadlines start when it stands alone (if ever).
        waiting = silence is not None or parent is not None or held_until is not None
        ack_s = 0.0 if waiting else policy.ack_deadline_s
        resolve_s = 0.0 if waiting else policy.resolve_deadline_s
        alert = Alert(
            id=alert_id,
            district=anomaly.district,
            street=anomaly.street,
            estate=anomaly.estate,
            building=anomaly.building,
            device=anomaly.device,
            kind=anomaly.kind,
            code=anomaly.code,
            severity=policy.severity.value,
            title_zh=anomaly.title_zh,
            title_en=anomaly.title_en,
            value=anomaly.value,
            threshold=anomaly.threshold,
            detail=anomaly.detail,
            first_seen_ms=anomaly.start_ms,
            last_seen_ms=anomaly.start_ms,
            incident_id=incident.id,
            ack_deadline_ms=now + int(ack_s * 1000) if ack_s else 0,
            resolve_deadline_ms=now + int(resolve_s * 1000) if resolve_s else 0,
            silenced=silence is not None,
            flapping=flapping,
            created_ms=now,
            updated_ms=now,
            parent_id=parent.id if parent is not None else "",
            held_until_ms=held_until or 0,
            explanation=anomaly.explanation,
        )
        raised = f"{alert.title}: " + (
            anomaly.explanation or f"{alert.value:g} (阈值 threshold {alert.threshold:g})"
        )
        if held_until is not None:
            raised += (
                f"; 暂缓派单{_duration(self.policy.noise.storm_window_s)}，看是否成片离线 "
                "held for the storm window before its work order"
            )
        steps: list[Step] = [(alert, AlertAction.RAISED, raised)]
        if parent is not None:
            steps.append((alert, AlertAction.INHIBITED, _inhibited_note(parent)))
        if silence is not None:
            steps.append(
                (
                    alert,
                    AlertAction.SILENCED,
                    f"维护静默 maintenance silence {silence.id} ({silence.scope.value} "
                    f"{silence.target}, by {silence.actor}): {silence.note}".rstrip(": "),
                )
            )
        if flapping:
            steps.append((alert, AlertAction.FLAPPING, self._flapping_note()))
        return self._record(None, steps, now, SYSTEM, key=key, incident=new_incident)

    def _closed(self, anomaly: Anomaly, policy: CodePolicy) -> list[AlertEvent]:
        latest = self.store.latest(condition_key(anomaly))
        if (
            latest is None
            or latest.terminal
            or not latest.condition_active
            or anomaly.end_ms < latest.last_seen_ms  # the end of an earlier episode
        ):
            return []
        now = self.clock()
        alert = replace(latest, condition_active=False, last_seen_ms=anomaly.end_ms, updated_ms=now)
        steps: list[Step] = [
            (alert, AlertAction.CONDITION_CLEARED, "条件已消除 the condition cleared")
        ]
        if (
            policy.auto_resolve
            and not alert.flapping
            and AlertState.AUTO_RESOLVED in ALLOWED_STEPS[alert.state]
        ):
            alert = replace(alert, state=AlertState.AUTO_RESOLVED, resolved_ms=now, closed_ms=now)
            ended = "条件消除后自动解除 ended when the condition cleared"
            steps.append((alert, AlertAction.AUTO_RESOLVED, ended))
        events = self._record(latest, steps, now, SYSTEM)
        if alert.parent_id:
            # A device behind the cause reports again: the cause has ended.
            back = f"设备{alert.device}恢复上报 device {alert.device} reports again"
            events += self._cause_ended(alert.parent_id, now, back)
        return events

    def _reopened(self, alert: Alert, now: int) -> Alert:
        policy = self.policy.for_code(alert.code, alert.severity)
        ack_s = 0.0 if alert.silenced else policy.ack_deadline_s
        resolve_s = 0.0 if alert.silenced else policy.resolve_deadline_s
        return replace(
            alert,
            state=AlertState.OPEN,
            acknowledged_ms=0,
            dispatched_ms=0,
            resolved_ms=0,
            ack_deadline_ms=now + int(ack_s * 1000) if ack_s else 0,
            resolve_deadline_ms=now + int(resolve_s * 1000) if resolve_s else 0,
            updated_ms=now,
        )

    def _flapping(self, key: str, now: int) -> bool:
        noise = self.policy.noise
        since = now - int(noise.flap_window_s * 1000)
        return self.store.clears_since(key, since) > noise.flap_cycles

    def _flapping_note(self) -> str:
        noise = self.policy.noise
        return (
            f"频繁启停，暂停通知 flapping: more than {noise.flap_cycles} open/clear cycles "
            f"within {_duration(noise.flap_window_s)}; notifications held back until resolved"
        )

    def _silence_for(self, anomaly: Anomaly) -> Silence | None:
        # Device time: a condition that started during maintenance is the maintenance's,
        # even when its message arrives late (a replayed backlog).
        for silence in self.store.silences(active_at=anomaly.start_ms, estate=anomaly.estate):
            if silence.covers(anomaly.estate, anomaly.building, anomaly.device):
                return silence
        return None

    # --- alert storms (alerts.grouping) ---------------------------------------------------

    @property
    def _grouping(self) -> bool:
        return self.policy.noise.storm_window_s > 0

    @property
    def _window_ms(self) -> int:
        return int(self.policy.noise.storm_window_s * 1000)

    def on_edge_status(
        self, district: str, street: str, estate: str, edge: str, state: EdgeState
    ) -> list[AlertEvent]:
        """An estate's edge agent reported its state.  ``offline`` (its last will, published
        by the broker when the connection broke) raises the estate's uplink alert at once;
        ``stopped`` (someone stopped it cleanly) raises the estate's edge-stopped alert,
        which is information only: no work order, no deadlines.  Either holds the estate's
        device offline alerts under it; ``online``, or the other state, ends its cause."""
        if not self._grouping:
            return []
        with self._lock, self.store.batch():
            now = self.clock()
            wanted = EDGE_STATE_CAUSES.get(state)
            if wanted and self._live_cause(district, street, estate, wanted) is not None:
                return []  # heard already (a retained status after a restart)
            note = _edge_state_note(edge, state)
            events: list[AlertEvent] = []
            for code in EDGE_STATE_CAUSES.values():
                live = self._live_cause(district, street, estate, code)
                if live is not None:
                    events += self._cause_ended(live.id, now, note)
            if wanted is not None:
                events += self._form_group(district, street, estate, "", wanted, note, edge, now)
            with self._sink_batch():
                self._emit(events)
        return events

    def _live_cause(self, district: str, street: str, estate: str, code: str) -> Alert | None:
        """The estate's group alert of ``code`` whose cause holds now."""
        group = self.store.live(group_key(district, street, estate, code))
        return group if group is not None and group.condition_active else None

    def _live_group(self, district: str, street: str, estate: str, building: str) -> Alert | None:
        """The group alert whose cause holds now and covers a device of this building."""
        codes = [(ESTATE_UPLINK_DOWN, ""), (ESTATE_EDGE_STOPPED, "")]
        if building:
            codes.append((BUILDING_DOWN, building))
        for code, where in codes:
            group = self.store.live(group_key(district, street, estate, code, where))
            if group is not None and group.condition_active:
                return group
        return None

    def _group_if_storm(self, raised: Alert) -> list[AlertEvent]:
        """After a held offline alert: if enough of its estate's (or building's) devices
        are held too, one group alert takes them all."""
        if not raised.held_until_ms or raised.parent_id or self.population is None:
            return []
        noise, now = self.policy.noise, self.clock()
        place = (raised.district, raised.street, raised.estate)
        population = self.population(*place, "")
        needed = estate_threshold(noise, population)
        held = self.store.count_waiting(*place, "", OFFLINE_SUFFIX, BUILDING_DOWN)
        if needed and held >= needed:
            cause = (
                f"{held}/{population}台设备在{_duration(noise.storm_window_s)}内相继离线 "
                f"{held} of {population} devices fell silent within "
                f"{_duration(noise.storm_window_s)}"
            )
            return self._form_group(*place, "", ESTATE_UPLINK_DOWN, cause, "", now)
        if not raised.building:
            return []
        population = self.population(*place, raised.building)
        needed = building_threshold(noise, population)
        held = self.store.count_waiting(*place, raised.building, OFFLINE_SUFFIX)
        if needed and held >= needed:
            cause = (
                f"{raised.building}楼{held}/{population}台设备同时离线 "
                f"{held} of {population} devices of building {raised.building} "
                "fell silent together"
            )
            return self._form_group(*place, raised.building, BUILDING_DOWN, cause, "", now)
        return []

    def _waiting(
        self, district: str, street: str, estate: str, building: str
    ) -> tuple[list[Alert], list[Alert]]:
        """The offline alerts of the estate (or building) still waiting for their storm
        window, and for the whole estate the building groups not yet sent (whose devices
        count with the estate's)."""
        held = self.store.held_in(district, street, estate, building, OFFLINE_SUFFIX)
        if building:
            return held, []
        groups = self.store.held_in(district, street, estate, suffix=BUILDING_DOWN)
        for building_group in groups:
            held += self.store.children(building_group.id)
        return held, groups

    def _form_group(
        self,
        district: str,
        street: str,
        estate: str,
        building: str,
        code: str,
        cause: str,
        edge: str,
        now: int,
    ) -> list[AlertEvent]:
        """Raise (or revive) the group alert and hold under it every offline alert of its
        estate or building still waiting for its hold to end."""
        key = group_key(district, street, estate, code, building)
        events: list[AlertEvent] = []
        group = self.store.live(key)
        held, absorbed = self._waiting(district, street, estate, building)
        if group is None:
            zh, en = group_title(code, building)
            policy = self.policy.for_code(code, GROUP_SEVERITY[code])
            # A maintenance silence on the estate (or the building) covers its outage.
            silence = next(
                (
                    found
                    for found in self.store.silences(active_at=now, estate=estate)
                    if found.scope is not SilenceScope.DEVICE and found.covers(estate, building, "")
                ),
                None,
            )
            starts = [a.held_until_ms for a in held if a.held_until_ms]
            group = Alert(
                id=alert_id_for(key, now),
                district=district,
                street=street,
                estate=estate,
                building=building,
                device=edge,
                kind=GROUP_KIND,
                code=code,
                severity=policy.severity.value,
                title_zh=zh,
                title_en=en,
                value=float(len(held)),
                threshold=float(self.population(district, street, estate, building))
                if self.population is not None
                else 0.0,
                detail=building,
                first_seen_ms=min([a.first_seen_ms for a in held], default=now),
                last_seen_ms=now,
                silenced=silence is not None,
                created_ms=now,
                updated_ms=now,
                # Sent when the first of its devices would have been: by then the rest
                # of the storm has shown itself and the work order lists it.  A stopped
                # edge sends no work order: nothing to wait for.
                held_until_ms=0
                if code == ESTATE_EDGE_STOPPED
                else min(starts, default=now + self._window_ms),
            )
            steps: list[Step] = [(group, AlertAction.RAISED, f"{group.title}: {cause}")]
            if silence is not None:
                note = f"维护静默 maintenance silence {silence.id} ({silence.scope.value})"
                steps.append((group, AlertAction.SILENCED, note))
            events += self._record(None, steps, now, SYSTEM, key=key)
        else:  # its cause had ended and came back before the group was settled
            revived = replace(group, condition_active=True, last_seen_ms=now, updated_ms=now)
            again = f"原因再次出现 the cause came back: {cause}"
            events += self._record(group, [(revived, AlertAction.REPEATED, again)], now, SYSTEM)
            group = revived
        for child in held:
            events += self._hold_under(child, group, now)
        for building_group in absorbed:
            merged = replace(
                building_group,
                state=AlertState.AUTO_RESOLVED,
                condition_active=False,
                resolved_ms=now,
                closed_ms=now,
                updated_ms=now,
            )
            note = f"并入{group.title_zh} merged into {group.title_en} {group.id}"
            events += self._record(
                building_group, [(merged, AlertAction.AUTO_RESOLVED, note)], now, SYSTEM
            )
        return events

    def _hold_under(self, child: Alert, group: Alert, now: int) -> list[AlertEvent]:
        """Hold a device's offline alert under a group alert: recorded, never routed."""
        inhibited = replace(
            child,
            parent_id=group.id,
            held_until_ms=0,
            ack_deadline_ms=0,
            resolve_deadline_ms=0,
            updated_ms=now,
        )
        note = _inhibited_note(group)
        return self._record(child, [(inhibited, AlertAction.INHIBITED, note)], now, SYSTEM)

    def _cause_ended(self, group_id: str, now: int, why: str) -> list[AlertEvent]:
        """The group's cause ended: its condition clears; the group settles one storm
        window later (devices still silent then get their own alerts)."""
        group = self.store.find(group_id)
        if group is None or group.terminal or not group.condition_active:
            return []
        cleared = replace(group, condition_active=False, last_seen_ms=now, updated_ms=now)
        note = f"原因已消除 the cause ended: {why}"
        return self._record(group, [(cleared, AlertAction.CONDITION_CLEARED, note)], now, SYSTEM)

    def _settle(self, group: Alert, now: int) -> list[AlertEvent]:
        """One window after its cause ended: devices still silent pass to the cause that
        holds now (an uplink down, then the edge stopped) or else stand alone; the group
        ends (unless the operations centre owns it)."""
        events: list[AlertEvent] = []
        for child in self.store.children(group.id):
            if not child.condition_active:
                events += self._end_with(child, group, now)
                continue
            place = (child.district, child.street, child.estate, child.building)
            successor = self._live_group(*place)
            if successor is not None:
                events += self._hold_under(child, successor, now)
            else:
                note = (
                    f"{group.title_zh}已恢复，设备仍离线，单独告警 still silent after "
                    f"{group.title_en} ended ({group.id}): its own alert"
                )
                events += self._release(child, now, note)
        policy = self.policy.for_code(group.code, group.severity)
        if policy.auto_resolve and AlertState.AUTO_RESOLVED in ALLOWED_STEPS[group.state]:
            ended = replace(
                group,
                state=AlertState.AUTO_RESOLVED,
                resolved_ms=now,
                closed_ms=now,
                updated_ms=now,
            )
            note = "原因消除后自动解除 ended when its cause ended"
            events += self._record(group, [(ended, AlertAction.AUTO_RESOLVED, note)], now, SYSTEM)
        return events

    def _end_with(self, child: Alert, group: Alert, now: int) -> list[AlertEvent]:
        """End a held alert with its group (it was never sent anywhere)."""
        wanted = (
            AlertState.AUTO_RESOLVED
            if AlertState.AUTO_RESOLVED in ALLOWED_STEPS[child.state]
            else AlertState.CANCELLED
        )
        if wanted not in ALLOWED_STEPS[child.state]:
            return []
        action = AlertAction(wanted.value)
        ended = replace(child, state=wanted, closed_ms=now, updated_ms=now)
        if wanted is AlertState.AUTO_RESOLVED:
            ended = replace(ended, resolved_ms=now)
        note = f"随{group.title_zh}结束 ended with {group.title_en} {group.id}"
        return self._record(child, [(ended, action, note)], now, SYSTEM)

    def _release(self, alert: Alert, now: int, note: str) -> list[AlertEvent]:
        """The alert stands alone from now: fresh deadlines, its work order goes out."""
        policy = self.policy.for_code(alert.code, alert.severity)
        ack_s = 0.0 if alert.silenced else policy.ack_deadline_s
        resolve_s = 0.0 if alert.silenced else policy.resolve_deadline_s
        released = replace(
            alert,
            parent_id="",
            held_until_ms=0,
            ack_deadline_ms=now + int(ack_s * 1000) if ack_s else 0,
            resolve_deadline_ms=now + int(resolve_s * 1000) if resolve_s else 0,
            updated_ms=now,
        )
        return self._record(alert, [(released, AlertAction.RELEASED, note)], now, SYSTEM)

    def _storms(self, now: int) -> list[AlertEvent]:
        """Settle the groups whose cause ended a window ago, then send what waited."""
        events: list[AlertEvent] = []
        if not self._grouping:
            return events
        for group in self.store.settling(GROUP_KIND, now - self._window_ms):
            events += self._settle(group, now)
        for alert in self.store.held_due(now):
            if alert.kind == GROUP_KIND:
                if not alert.condition_active:
                    continue  # a blip: it ends at settling, never sent
                children = self.store.children(alert.id)
                cause = self.store.history(alert.id)[0].note.split(": ", 1)[-1]
                listed = device_list(children)
                note = f"{alert.title}: {cause}" + (f"; {listed}" if listed else "")
                counted = replace(alert, value=float(len(children)))
                events += self._release(counted, now, note)
            else:
                events += self._release(
                    alert, now, "未成片离线，单独派单 no storm: its own work order"
                )
        return events

    # --- people's and systems' steps ------------------------------------------------------

    def acknowledge(self, alert_id: str, actor: str, note: str = "") -> Alert:
        return self._step(alert_id, AlertState.ACKNOWLEDGED, AlertAction.ACKNOWLEDGED, actor, note)

    def dispatch(self, alert_id: str, actor: str, note: str = "", work_order_id: str = "") -> Alert:
        """The operations centre accepted the work order ``work_order_id``."""
        if not work_order_id.strip():
            raise ValueError("dispatch needs the operations centre's work_order_id")
        return self._step(
            alert_id,
            AlertState.DISPATCHED,
            AlertAction.DISPATCHED,
            actor,
            note,
            work_order_id=work_order_id.strip(),
        )

    def resolve(self, alert_id: str, actor: str, note: str = "") -> Alert:
        return self._step(alert_id, AlertState.RESOLVED, AlertAction.RESOLVED, actor, note)

    def close(self, alert_id: str, actor: str, note: str = "") -> Alert:
        """The fix was verified."""
        return self._step(alert_id, AlertState.CLOSED, AlertAction.CLOSED, actor, note)

    def cancel(self, alert_id: str, actor: str, note: str = "") -> Alert:
        """Not real work (a false alarm, a test)."""
        return self._step(alert_id, AlertState.CANCELLED, AlertAction.CANCELLED, actor, note)

    def reopen(self, alert_id: str, actor: str, note: str = "") -> Alert:
        """The fix did not hold: back to open with fresh deadlines."""
        return self._step(alert_id, AlertState.OPEN, AlertAction.REOPENED, actor, note)

    def note(self, alert_id: str, actor: str, note: str) -> Alert:
        """Record a remark in the history without changing the state (e.g. the operations
        centre rejected a work order: the estate keeps the alert and its deadlines)."""
        if not actor.strip() or not note.strip():
            raise ValueError("a note needs the actor and the text")
        with self._lock:
            alert = self.store.get(alert_id)
            now = self.clock()
            self._emit(
                self._record(alert, [(alert, AlertAction.NOTED, note.strip())], now, actor.strip())
            )
        return alert

    def _step(
        self,
        alert_id: str,
        wanted: AlertState,
        action: AlertAction,
        actor: str,
        note: str,
        **changes: Any,
    ) -> Alert:
        if not actor.strip():
            raise ValueError("every step needs the actor who takes it")
        with self._lock:
            before = self.store.get(alert_id)
            check_step(before.id, before.state, wanted)
            now = self.clock()
            after = replace(before, state=wanted, updated_ms=now, **changes)
            if wanted is AlertState.OPEN:
                after = self._reopened(after, now)
            elif action is AlertAction.ACKNOWLEDGED:
                after = replace(after, acknowledged_ms=now)
            elif action is AlertAction.DISPATCHED:
                after = replace(after, dispatched_ms=now)
            elif action is AlertAction.RESOLVED:
                after = replace(after, resolved_ms=now)
            else:  # closed or cancelled: terminal
                after = replace(after, closed_ms=now)
            events = self._record(before, [(after, action, note)], now, actor.strip())
            if after.terminal and after.kind == GROUP_KIND:
                for child in self.store.children(after.id):
                    events += self._end_with(child, after, now)
            self._emit(events)
        return after

    # --- deadlines ------------------------------------------------------------------------

    def tick(self, now_ms: int | None = None) -> list[AlertEvent]:
        """Settle alert storms whose cause ended, send the alerts whose storm window passed
        (alone or as their group), and escalate every live alert whose acknowledgement or
        resolution deadline passed: one level per missed deadline (estate → street →
        district)."""
        events: list[AlertEvent] = []
        with self._lock:
            now = self.clock() if now_ms is None else now_ms
            with self.store.batch():
                events += self._storms(now)
            for alert in self.store.escalation_candidates(now, LADDER[-1]):
                events += self._escalate(alert, now)
            with self._sink_batch():  # one outbox commit for a storm's released orders
                self._emit(events)
        return events

    def _escalate(self, alert: Alert, now: int) -> list[AlertEvent]:
        policy = self.policy.for_code(alert.code, alert.severity)
        taken = [t for t in (alert.acknowledged_ms, alert.dispatched_ms) if t]
        ack_missed = missed_deadlines(
            alert.ack_deadline_ms, policy.ack_deadline_s, min(taken) if taken else now
        )
        resolve_missed = missed_deadlines(
            alert.resolve_deadline_ms, policy.resolve_deadline_s, alert.resolved_ms or now
        )
        target = min(len(LADDER) - 1, ack_missed + resolve_missed)
        level = LADDER.index(alert.escalation)
        if target <= level:
            return []
        reasons = []
        if ack_missed:
            reasons.append(f"{_duration(policy.ack_deadline_s)}内未确认 not acknowledged in time")
        if resolve_missed:
            reasons.append(f"{_duration(policy.resolve_deadline_s)}内未解决 not resolved in time")
        steps: list[Step] = []
        after = alert
        for step in LADDER[level + 1 : target + 1]:
            after = replace(after, escalation=step, updated_ms=now)
            note = f"升级至{LEVEL_ZH[step]} escalated to {step.value}: " + "; ".join(reasons)
            steps.append((after, AlertAction.ESCALATED, note))
        return self._record(alert, steps, now, SYSTEM)

    # --- silences and incidents -----------------------------------------------------------

    def silence(
        self,
        scope: str,
        estate: str,
        until_ms: int,
        actor: str,
        note: str = "",
        *,
        building: str = "",
        device: str = "",
        starts_ms: int | None = None,
    ) -> Silence:
        """Hold back routing of alerts raised in this scope until ``until_ms`` (wall clock)."""
        now = self.clock()
        start = now if starts_ms is None else starts_ms
        chosen = check_silence(scope, estate, building, device, start, until_ms, actor)
        silence = Silence(
            "sil-" + uuid.uuid4().hex[:12],
            chosen,
            estate,
            building if chosen is not SilenceScope.ESTATE else "",
            device if chosen is SilenceScope.DEVICE else "",
            start,
            until_ms,
            actor.strip(),
            note,
            now,
        )
        self.store.add_silence(silence)
        log.info(
            "silence %s on %s %s until %d by %s", silence.id, scope, silence.target, until_ms, actor
        )
        return silence

    def silences(self, active_only: bool = True, estate: str = "") -> list[Silence]:
        return self.store.silences(active_at=self.clock() if active_only else None, estate=estate)

    def delete_silence(self, silence_id: str) -> bool:
        return self.store.delete_silence(silence_id)

    def list_incidents(
        self, estate: str = "", since_ms: int = 0, limit: int = 100
    ) -> list[Incident]:
        return self.store.list_incidents(estate, since_ms, limit)

    def open_counts(self, now_ms: int | None = None) -> list[OpenCount]:
        return self.store.open_counts(self.clock() if now_ms is None else now_ms)

    # --- recording and delivery -----------------------------------------------------------

    def _record(
        self,
        before: Alert | None,
        steps: Sequence[Step],
        now: int,
        actor: str,
        *,
        key: str | None = None,
        incident: Incident | None = None,
    ) -> list[AlertEvent]:
        """Save the alert as the last step left it, with one history entry per step (each
        step carries the alert as it was after that step); the events for the sinks."""
        state = before.state if before is not None else None
        history = []
        events = []
        for alert, action, note in steps:
            history.append(HistoryEntry(alert.id, now, action, actor, state, alert.state, note))
            events.append(self._event(alert, action, now, actor, note))
            state = alert.state
        self.store.save(steps[-1][0], history, condition_key=key, incident=incident)
        return events

    def _event(
        self, alert: Alert, action: AlertAction, now: int, actor: str, note: str
    ) -> AlertEvent:
        policy = self.policy.for_code(alert.code, alert.severity)
        held_back = alert.flapping and action in CONDITION_ACTIONS
        # Held for a storm window or under a group alert: recorded, never sent.
        waiting = bool(alert.parent_id) or alert.held_until_ms > 0
        routed = not alert.silenced and not held_back and not waiting and action not in _BOOKKEEPING
        return AlertEvent(
            alert,
            action,
            now,
            actor,
            note,
            routed,
            routed and policy.work_order and action in WORK_ORDER_ACTIONS,
            routed and policy.notify_manager and action in NOTIFY_ACTIONS,
        )

    def _emit(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            for sink in self._sinks:
                try:
                    sink(event)
                except Exception:
                    # A broken sink must not undo the change or stop the others hearing
                    # of it.
                    log.exception(
                        "alert sink %r failed on %s %s", sink, event.action, event.alert.id
                    )


# Events that only keep the books: never routed anywhere but InfluxDB and the stream.
_BOOKKEEPING = frozenset(
    {
        AlertAction.REPEATED,
        AlertAction.CONDITION_CLEARED,
        AlertAction.SILENCED,
        AlertAction.FLAPPING,
        AlertAction.NOTED,
        AlertAction.INHIBITED,
    }
)


def _edge_state_note(edge: str, state: EdgeState) -> str:
    if state == "offline":
        return f"边缘网关{edge}离线（遗嘱消息） edge agent {edge} offline (its last will)"
    if state == "stopped":
        return (
            f"边缘网关{edge}已停止，小区设备暂停监测 edge agent {edge} stopped: no device "
            "of the estate is monitored until it runs again"
        )
    return f"边缘网关{edge}恢复在线 edge agent {edge} back online"


def _inhibited_note(group: Alert) -> str:
    return (
        f"归入{group.title_zh}，不单独派单 held under {group.title_en} {group.id}: "
        "no work order of its own"
    )
