"""What a gateway restart remembers, in the words every text about it uses.

``gateway run --help``, ``demo --help`` and the README state it; tests/tools/test_help_facts.py
fails when one of them drifts from these, and tests/gateway/test_gateway_snapshot.py checks the
statement against the code (``gateway.detection.snapshot`` for a clean stop,
``gateway.detection.resume`` after a crash).  Kept free of imports so the help texts need
nothing heavy.
"""

from __future__ import annotations

# Saved at a clean stop (SIGINT, SIGTERM) and taken back at the next start.
CLEAN_STOP_KEEPS = "open anomalies, rule holds, statistical baselines and the duplicate window"

# After a crash, SIGKILL or a stop that gave up on InfluxDB: read back from InfluxDB.
CRASH_KEEPS = "devices' last readings and open offline anomalies"
