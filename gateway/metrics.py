"""Counters of the gateway: plain numbers for ``Gateway.stats`` and the same in Prometheus
form (a private registry, so several gateways in one process, as in tests, do not clash)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.storage.deadletters import Reason
from gateway.transport.dedup import FAULT_NAMES

# How many devices' sequence faults the stats name (a district-wide fault would otherwise
# put every device into each /health answer).
SEQ_FAULT_DEVICES_SHOWN = 100


@dataclass(frozen=True)
class GatewayStats:
    """A snapshot of the gateway's counters since it started."""

    messages: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    anomalies_opened: dict[str, int] = field(default_factory=dict)  # by event code
    anomalies_closed: int = 0
    anomalies_open: int = 0
    edge_status: int = 0
    batches: int = 0
    write_retries: int = 0
    acked: int = 0
    queued: int = 0
    detection_failures: int = 0
    seq_faults: int = (
        0  # new readings that broke their device's numbering (gateway.transport.dedup)
    )
    # Messages queued as an edge's replayed backlog (gateway.transport.inbox), of those
    # waiting the backlog ones, and replayed readings stored without being judged.
    messages_backlog: int = 0
    queued_backlog: int = 0
    replayed_unjudged: int = 0
    # Per "edge/device", of the devices with the most (SEQ_FAULT_DEVICES_SHOWN).
    seq_faults_by_device: dict[str, int] = field(default_factory=dict)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: Tally[str] = Tally()
        self._dead: Tally[str] = Tally()
        self._opened: Tally[str] = Tally()
        self._seq_faults: Tally[str] = Tally()  # by "edge/device"
        r = self.registry
        self._messages = Counter("jiayuan_gateway_messages", "MQTT messages received", registry=r)
        self._received = Counter(
            "jiayuan_gateway_readings_received", "Readings received in valid envelopes", registry=r
        )
        self._stored = Counter(
            "jiayuan_gateway_readings_stored", "Readings written to InfluxDB", registry=r
        )
        self._duplicates = Counter(
            "jiayuan_gateway_duplicates",
            "Readings dropped as already seen (edge, device, seq and timestamp)",
            registry=r,
        )
        self._dead_letters = Counter(
            "jiayuan_gateway_dead_letters",
            "Messages or readings dead-lettered",
            ["reason"],
            registry=r,
        )
        self._anomalies = Counter(
            "jiayuan_gateway_anomalies_opened", "Anomalies opened", ["kind", "code"], registry=r
        )
        self._write_seconds = Histogram(
            "jiayuan_gateway_batch_write_seconds",
            "Time to write one batch to InfluxDB",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self._write_retries = Counter(
            "jiayuan_gateway_write_retries", "Failed InfluxDB writes that were retried", registry=r
        )
        self._detection_failures = Counter(
            "jiayuan_gateway_detection_failures",
            "Batches whose readings were stored but not judged: a detector bug (see the log)",
            registry=r,
        )
        self._seq_fault_kinds = Counter(
            "jiayuan_gateway_seq_faults",
            "Readings stored that broke their device's numbering: reset (seq back with a "
            "newer timestamp) or jump (seq further ahead than time has passed)",
            ["kind"],
            registry=r,
        )
        self._seq_fault_devices = Gauge(
            "jiayuan_gateway_seq_fault_devices",
            "Devices with at least one sequence fault since the start (/health names them)",
            registry=r,
        )
        self.open_anomalies = Gauge(
            "jiayuan_gateway_anomalies_open", "Anomalies open now", registry=r
        )
        self.queue_depth = Gauge(
            "jiayuan_gateway_queue_depth",
            "MQTT messages waiting for the processing thread",
            registry=r,
        )
        self.backlog_queue_depth = Gauge(
            "jiayuan_gateway_backlog_queue_depth",
            "Of the messages waiting for the processing thread, those of an edge's replayed "
            "backlog (taken after live ones, at a guaranteed share)",
            registry=r,
        )
        self.backlog_messages = Gauge(
            "jiayuan_gateway_backlog_messages",
            "MQTT messages received marked as an edge's replayed backlog",
            registry=r,
        )
        self._replayed_unjudged = Counter(
            "jiayuan_gateway_readings_replayed_unjudged",
            "Readings of an edge's replayed backlog stored without being judged (they are "
            "older than the device's live readings; events are judged)",
            registry=r,
        )
        self.mqtt_unstable = Gauge(
            "jiayuan_gateway_mqtt_unstable",
            "1 while the broker keeps closing the connection within seconds of making it "
            "(another instance with the same client id, or a failing link)",
            registry=r,
        )
        for reason in Reason:
            self._dead_letters.labels(reason.value)
        for fault in FAULT_NAMES.values():
            self._seq_fault_kinds.labels(fault)

    def _add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def received(self, messages: int, readings: int) -> None:
        """Count a batch's messages and the readings in their valid envelopes (once per
        batch: per message, the counters' locks cost more than validating a reading)."""
        self._messages.inc(messages)
        self._received.inc(readings)
        with self._lock:
            self._counts["messages"] += messages
            self._counts["readings_received"] += readings

    def readings_stored(self, count: int) -> None:
        self._stored.inc(count)
        self._add("readings_stored", count)

    def duplicate(self) -> None:
        self._duplicates.inc()
        self._add("duplicates")

    def seq_fault(self, edge: str, device: str, fault: str) -> bool:
        """Count a device's sequence fault; True when it is the device's first."""
        self._seq_fault_kinds.labels(fault).inc()
        with self._lock:
            key = f"{edge}/{device}"
            first = key not in self._seq_faults
            self._seq_faults[key] += 1
            self._counts["seq_faults"] += 1
            devices = len(self._seq_faults)
        if first:
            self._seq_fault_devices.set(devices)
        return first

    def dead_letter(self, reason: Reason) -> None:
        self._dead_letters.labels(reason.value).inc()
        with self._lock:
            self._counts["dead_letters"] += 1
            self._dead[reason.value] += 1

    def anomaly_opened(self, kind: str, code: str) -> None:
        self._anomalies.labels(kind, code).inc()
        with self._lock:
            self._opened[code] += 1

    def detection_failed(self) -> None:
        self._detection_failures.inc()
        self._add("detection_failures")

    def anomaly_closed(self) -> None:
        self._add("anomalies_closed")

    def edge_status(self) -> None:
        self._add("edge_status")

    def batch_written(self, seconds: float) -> None:
        self._write_seconds.observe(seconds)
        self._add("batches")

    def write_retry(self) -> None:
        self._write_retries.inc()
        self._add("write_retries")

    def acked(self, count: int) -> None:
        self._add("acked", count)

    def replayed_unjudged(self, count: int) -> None:
        self._replayed_unjudged.inc(count)
        self._add("replayed_unjudged", count)

    def snapshot(
        self,
        anomalies_open: int = 0,
        queued: int = 0,
        *,
        messages_backlog: int = 0,
        queued_backlog: int = 0,
    ) -> GatewayStats:
        with self._lock:
            counts = dict(self._counts)
            return GatewayStats(
                messages=counts.get("messages", 0),
                readings_received=counts.get("readings_received", 0),
                readings_stored=counts.get("readings_stored", 0),
                duplicates=counts.get("duplicates", 0),
                dead_letters=counts.get("dead_letters", 0),
                dead_letters_by_reason=dict(self._dead),
                anomalies_opened=dict(self._opened),
                anomalies_closed=counts.get("anomalies_closed", 0),
                anomalies_open=anomalies_open,
                edge_status=counts.get("edge_status", 0),
                batches=counts.get("batches", 0),
                write_retries=counts.get("write_retries", 0),
                acked=counts.get("acked", 0),
                queued=queued,
                detection_failures=counts.get("detection_failures", 0),
                seq_faults=counts.get("seq_faults", 0),
                seq_faults_by_device=dict(self._seq_faults.most_common(SEQ_FAULT_DEVICES_SHOWN)),
                messages_backlog=messages_backlog,
                queued_backlog=queued_backlog,
                replayed_unjudged=counts.get("replayed_unjudged", 0),
            )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# --- InfluxDB disk spool (gateway/storage/spool.py) --------------------------------------------
# Kept apart from GatewayMetrics: the processor registers these on the gateway's registry.


class SpoolMetrics:
    """What the gateway's InfluxDB spool holds, and whether it is near or at its budget."""

    def __init__(self, registry: CollectorRegistry, budget_bytes: int) -> None:
        r = registry
        self.bytes = Gauge(
            "jiayuan_gateway_spool_bytes", "Bytes held in the InfluxDB disk spool", registry=r
        )
        self.budget = Gauge(
            "jiayuan_gateway_spool_budget_bytes", "Disk budget of the InfluxDB spool", registry=r
        )
        self.budget.set(budget_bytes)
        self.lines = Gauge(
            "jiayuan_gateway_spool_lines", "Lines waiting in the InfluxDB disk spool", registry=r
        )
        self.warning = Gauge(
            "jiayuan_gateway_spool_budget_warning",
            "1 while the InfluxDB spool holds at least its warning share of the budget",
            registry=r,
        )
        self.full = Gauge(
            "jiayuan_gateway_spool_full",
            "1 while the InfluxDB spool is full and the gateway stops acknowledging",
            registry=r,
        )
        self.spooled = Counter(
            "jiayuan_gateway_batches_spooled", "Batches written to the InfluxDB spool", registry=r
        )
        self.replayed = Counter(
            "jiayuan_gateway_batches_replayed",
            "Spooled batches replayed into InfluxDB",
            registry=r,
        )

    def holding(self, stored_bytes: int, lines: int, warning: bool) -> None:
        self.bytes.set(stored_bytes)
        self.lines.set(lines)
        self.warning.set(int(warning))
