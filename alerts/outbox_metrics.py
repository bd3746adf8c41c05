"""The outbox in Prometheus: ``jiayuan_alerts_outbox_messages{channel, state}``, read from
the SQLite outbox at each scrape (so it counts what an earlier run left parked too)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.destinations import WORKORDER
from alerts.outbox import MessageState, Outbox

log = logging.getLogger(__name__)

METRIC = "jiayuan_alerts_outbox_messages"


class OutboxCollector(Collector):
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            METRIC,
            "Outbox messages by channel and state; parked: refused or undeliverable "
            "(no destination configured), waiting for a retry",
            labels=["channel", "state"],
        )
        try:
            per_channel = self.outbox.counts_by_channel()
        except Exception as error:  # a closed or broken outbox must not break /metrics
            log.warning("outbox not counted for /metrics: %s", error)
            return
        # Work orders always appear, so an alert on parked work orders has a series.
        for channel in sorted(set(per_channel) | {WORKORDER}):
            states = per_channel.get(channel, {})
            for state in MessageState:
                family.add_metric([channel, state.value], states.get(state.value, 0))
        yield family
