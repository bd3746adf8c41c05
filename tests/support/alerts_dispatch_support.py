"""Shared by the dispatch tests: alerts to send, a clock that tests move by hand."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from alerts.model import Alert, AlertState, EscalationLevel

SECRET = "test-secret-不要外传"
TOKEN = "test-callback-token"


class FakeClock:
    """Wall-clock seconds that only move when the test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_alert(number: int = 1, **changes: Any) -> Alert:
    created = 1_763_900_000_000 + number
    alert = Alert(
        id=f"al-{number:04d}",
        district="songjiang",
        street="fangsong",
        estate="sj-fs-001",
        building="b3",
        device=f"lift-{number:02d}",
        kind="lift",
        code="lift.trapped",
        severity="critical",
        title_zh="困人",
        title_en="Passenger trapped",
        state=AlertState.OPEN,
        value=1.0,
        threshold=0.0,
        detail="",
        first_seen_ms=created - 20_000,
        last_seen_ms=created,
        repeat_count=1,
        condition_active=True,
        incident_id=f"inc-{number:04d}",
        escalation=EscalationLevel.ESTATE,
        ack_deadline_ms=created + 300_000,
        resolve_deadline_ms=created + 1_800_000,
        acknowledged_ms=0,
        dispatched_ms=0,
        resolved_ms=0,
        closed_ms=0,
        work_order_id="",
        silenced=False,
        flapping=False,
        created_ms=created,
        updated_ms=created,
    )
    return replace(alert, **changes)
