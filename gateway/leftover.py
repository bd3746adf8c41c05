"""What a stopped gateway leaves for its next start, for the last lines it prints.

An operator stopping a gateway must see that data is still waiting (on disk in the InfluxDB
spool, at the broker unacknowledged, in the alert outbox), and where, before deciding to
move or wipe its state directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Leftover:
    spool_path: Path
    spooled_batches: int = 0
    spooled_lines: int = 0
    spooled_bytes: int = 0
    # MQTT messages received and not acknowledged: the broker sends them again.
    unacknowledged: int = 0
    # Alert outbox messages not delivered, by state (pending, parked).
    outbox: Mapping[str, int] = field(default_factory=dict)
    outbox_path: Path | None = None

    @property
    def nothing(self) -> bool:
        return not (self.spooled_batches or self.unacknowledged or any(self.outbox.values()))

    def describe(self) -> list[str]:
        """The lines to print, Chinese first."""
        if self.nothing:
            return ["无遗留 nothing left: InfluxDB spool empty, every message acknowledged"]
        lines = []
        if self.spooled_batches:
            lines.append(
                f"磁盘缓存待写 still spooled on disk: {self.spooled_batches} batches, "
                f"{self.spooled_lines} lines, {self.spooled_bytes} bytes in {self.spool_path}"
                " (written to InfluxDB at the next start)"
            )
        if self.unacknowledged:
            lines.append(
                f"未确认 not acknowledged: {self.unacknowledged} MQTT messages "
                "(the broker keeps them for the next start)"
            )
        waiting = {state: count for state, count in sorted(self.outbox.items()) if count}
        if waiting:
            counts = ", ".join(f"{count} {state}" for state, count in waiting.items())
            where = f" in {self.outbox_path}" if self.outbox_path is not None else ""
            lines.append(f"告警发件箱未送达 alert outbox not delivered: {counts}{where}")
        return lines
