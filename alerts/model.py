"""What an alert is: its states, the allowed steps between them, and its history.

An anomaly is a fact the detection core observed (a condition held from start to end); an
alert is the work that follows it until someone has fixed it and checked it.  This module
is the shared vocabulary of ``alerts/``: the lifecycle store, the dispatch outbox, the
operations-centre receiver, notifications, the API and the estate score all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlertState(StrEnum):
    OPEN = "open"  # raised, nobody has taken it yet
    ACKNOWLEDGED = "acknowledged"  # a person has seen it and owns it
    DISPATCHED = "dispatched"  # the operations centre accepted the work order
    RESOLVED = "resolved"  # someone says it is fixed
    CLOSED = "closed"  # the fix was verified; terminal
    CANCELLED = "cancelled"  # not real work (false alarm, test); terminal
    AUTO_RESOLVED = "auto_resolved"  # the condition cleared and policy let it end; terminal


TERMINAL_STATES = frozenset({AlertState.CLOSED, AlertState.CANCELLED, AlertState.AUTO_RESOLVED})

# The steps a person or a system may take.  Anything else is refused with the reason
# (the API answers 409).  Dispatch may come before acknowledgement: the operations centre
# can accept a critical work order before anyone at the estate has acknowledged it.
ALLOWED_STEPS: dict[AlertState, frozenset[AlertState]] = {
    AlertState.OPEN: frozenset(
        {
            AlertState.ACKNOWLEDGED,
            AlertState.DISPATCHED,
            AlertState.RESOLVED,
            AlertState.CANCELLED,
            AlertState.AUTO_RESOLVED,
        }
    ),
    AlertState.ACKNOWLEDGED: frozenset(
        {AlertState.DISPATCHED, AlertState.RESOLVED, AlertState.CANCELLED, AlertState.AUTO_RESOLVED}
    ),
    AlertState.DISPATCHED: frozenset({AlertState.RESOLVED, AlertState.CANCELLED}),
    AlertState.RESOLVED: frozenset({AlertState.CLOSED, AlertState.OPEN}),  # OPEN = reopened
    AlertState.CLOSED: frozenset(),
    AlertState.CANCELLED: frozenset(),
    AlertState.AUTO_RESOLVED: frozenset(),
}


class AlertAction(StrEnum):
    """What one history entry records."""

    RAISED = "raised"
    REPEATED = "repeated"  # the same device and condition fired again while the alert lives
    CONDITION_CLEARED = "condition_cleared"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    AUTO_RESOLVED = "auto_resolved"
    REOPENED = "reopened"
    ESCALATED = "escalated"
    FLAPPING = "flapping"  # opened and cleared too often: notifications held back
    SILENCED = "silenced"  # raised during a maintenance silence
    NOTIFIED = "notified"  # a notification or work order was queued for delivery
    NOTED = "noted"  # a remark with no change of state (e.g. the centre rejected an order)
    INHIBITED = "inhibited"  # held under a group alert (an estate's uplink down): not routed
    RELEASED = "released"  # its hold ended and it stands alone: its work order goes out


class EscalationLevel(StrEnum):
    """Who must act: the estate first, then the street centre, then the district."""

    ESTATE = "estate"
    STREET = "street"
    DISTRICT = "district"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert.  The lifecycle fields default to a newly raised alert's, so whoever
    raises one names only what the anomaly or the group gives it.  Keyword-only: the
    fields keep their order (the store's columns follow it) while any may have a default."""

    id: str  # stable: one per device and condition for the life of the alert
    district: str
    street: str
    estate: str
    building: str
    device: str
    kind: str
    code: str
    severity: str  # jiayuan.catalogue.Severity value
    title_zh: str
    title_en: str
    state: AlertState = AlertState.OPEN
    value: float  # measured value when first raised
    threshold: float
    detail: str  # which part of the device, e.g. port "p03"; may be empty
    first_seen_ms: int  # device time of the first anomaly
    last_seen_ms: int  # device time of the latest anomaly or clearing
    repeat_count: int = 1  # anomalies merged into this alert
    condition_active: bool = True  # the underlying anomaly is still open
    incident_id: str = ""  # alerts of one building and event group share it
    escalation: EscalationLevel = EscalationLevel.ESTATE
    ack_deadline_ms: int = 0  # wall-clock deadlines from the severity policy; 0 = none
    resolve_deadline_ms: int = 0
    acknowledged_ms: int = 0  # wall-clock time of each step; 0 = not yet
    dispatched_ms: int = 0
    resolved_ms: int = 0
    closed_ms: int = 0
    work_order_id: str = ""  # the operations centre's id once accepted; empty before
    silenced: bool = False  # raised inside a maintenance silence: recorded, not routed
    flapping: bool = False
    created_ms: int  # wall clock
    updated_ms: int
    # The group alert this one is held under (inhibited: recorded, never routed, ended
    # with it; alerts.grouping); empty for an alert on its own.
    parent_id: str = ""
    # Wall clock until which an offline or group alert waits for its storm to show itself
    # before its work order goes out; 0 = not waiting.
    held_until_ms: int = 0
    # A statistical alert's value and what is usual for it when first raised, Chinese
    # first (jiayuan.anomaly.HALVES between the languages); empty for the rules'.
    explanation: str = ""

    @property
    def title(self) -> str:
        return f"{self.title_zh} {self.title_en}"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    alert_id: str
    at_ms: int  # wall clock
    action: AlertAction
    actor: str  # "system", "opscentre", a person's name or id
    from_state: AlertState | None
    to_state: AlertState | None
    note: str


class TransitionRefused(Exception):
    """A step the lifecycle does not allow; ``reason`` is what the API returns with 409."""

    def __init__(self, alert_id: str, state: AlertState, wanted: AlertState, reason: str):
        super().__init__(reason)
        self.alert_id = alert_id
        self.state = state
        self.wanted = wanted
        self.reason = reason


class AlertNotFound(KeyError):
    pass


def check_step(alert_id: str, state: AlertState, wanted: AlertState) -> None:
    """Raise ``TransitionRefused`` unless ``state → wanted`` is an allowed step."""
    if wanted in ALLOWED_STEPS[state]:
        return
    if state in TERMINAL_STATES:
        reason = f"alert {alert_id} is {state.value}, which is final; nothing more can be done"
    else:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_STEPS[state]))
        reason = f"alert {alert_id} is {state.value}; from there it can go to: {allowed}"
    raise TransitionRefused(alert_id, state, wanted, reason)
