"""An anomaly: one per device and condition, from its start to its end.

The gateway's detection opens and closes them; the alert engine, the API and the points
written to InfluxDB all read them.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSED = "open", "closed"
# Between the Chinese and the English half of an anomaly's explanation.
HALVES = " / "


@dataclass(frozen=True, slots=True)
class Anomaly:
    district: str
    street: str
    estate: str
    building: str
    device: str
    kind: str
    code: str
    severity: str
    title_zh: str
    title_en: str
    value: float  # the measured value when it opened
    threshold: float
    start_ms: int  # device time; also the InfluxDB point time, so closing overwrites it
    end_ms: int  # 0 while open
    state: str  # "open" or "closed"
    detail: str = ""
    # The value and what is usual for it, Chinese first (statistical anomalies; else empty).
    explanation: str = ""

    @property
    def active(self) -> bool:
        return self.state == OPEN

    @property
    def title(self) -> str:
        return f"{self.title_zh} {self.title_en}"


def explanation_halves(explanation: str) -> tuple[str, str]:
    """An explanation's Chinese and English halves (the whole text for both where it has
    no ``HALVES``)."""
    zh, mark, en = explanation.partition(HALVES)
    return (zh, en) if mark else (explanation, explanation)
