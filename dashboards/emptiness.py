"""What an empty panel means: a failure, or the healthy state of a panel of events.

A panel of events (anomalies, alerts, escalations) is empty when nothing happens, which is
good news; a panel of telemetry or scores is empty only when something is broken.  The
dashboards declare which is which per panel (``empty_means`` in ``dashboards.builder``),
as the words Grafana shows instead of "No data" (``fieldConfig.defaults.noValue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_DATA = "无数据 No data"


def empty_is_healthy(panel: Mapping[str, Any]) -> bool:
    """Whether the panel declares that showing nothing is the healthy state (no escalation,
    no anomaly): it names what Grafana shows then (``fieldConfig.defaults.noValue``, set
    by the builders' ``empty_means``).  Panels without it must have data: telemetry, scores."""
    return "noValue" in panel.get("fieldConfig", {}).get("defaults", {})


def empty_means(panel: Mapping[str, Any]) -> str:
    """What an empty panel says: its declared words, else Grafana's "No data"."""
    value = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue")
    return NO_DATA if value is None else str(value)
