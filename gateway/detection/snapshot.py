"""The detection state kept across a clean restart, in SQLite in the gateway's state
directory.

Without it a restart forgets every rule's state: an anomaly open at the stop (a trapped
passenger, a hot charging port) is never closed, since the fresh rule never opened it, and
stays "open" in InfluxDB for ever, while a condition held halfway starts its hold again
and the statistical baselines learn again from nothing.

A gateway that stops cleanly (every batch it took durable and acknowledged) saves its
detector and its duplicate window; the next start takes the snapshot back and deletes it
before any traffic.  So a gateway that later crashes starts from InfluxDB
(``gateway.detection.resume``), never from a snapshot older than what it acknowledged since.  A
gateway that gave up on InfluxDB at the stop saves nothing: the broker redelivers what it
did not acknowledge, and a restored duplicate window would drop those readings.

The snapshot is a pickle of plain data (dicts, lists, numpy arrays, the gateway's own
records) in the gateway's own state directory, which only the gateway writes.  It carries
a fingerprint of the detector's layout, the code's version and the streets the gateway
owns; a snapshot taken by other code or for other streets is refused and the gateway
resumes from InfluxDB instead.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from gateway.detection.detector import Detector
from gateway.detection.state import canonical
from gateway.transport.dedup import SeqWindow
from jiayuan import __version__

log = logging.getLogger(__name__)

# Bump when the state's attributes change meaning (2: the dedup window in arrays; 3: two
# windows a device, with timestamps; 4: the registry's site models; 5: the dedup window's
# index by edge, then device, and a site's values in two arrays; 6: the sites' learning
# rows in one array; 7: a site's learning rows in a scratch file, ``rows_at``).  A
# snapshot of another format is refused, and the gateway resumes from InfluxDB instead.
FORMAT = 7
# SQLite refuses a value over a billion bytes by default: a large state is kept in parts.
PART_BYTES = 32 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    taken_ms INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_part (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Restored:
    taken_ms: int
    devices: int
    open_anomalies: int
    size_bytes: int


def fingerprint(detector: Detector, streets: Sequence[str]) -> str:
    identity = (FORMAT, __version__, tuple(streets), detector.layout())
    return hashlib.sha256(repr(canonical(identity)).encode()).hexdigest()


def save(
    path: Path, detector: Detector, seen: SeqWindow, streets: Sequence[str], now_ms: int
) -> int:
    """Replace the snapshot with this state; the bytes written.  Call only while nothing
    changes the detector (after the processing threads ended)."""
    body = pickle.dumps(
        {"detector": detector.export_state(), "seen": seen.export_state()},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM snapshot_part")
        db.execute("DELETE FROM snapshot")
        db.executemany(
            "INSERT INTO snapshot_part (seq, body) VALUES (?, ?)",
            (
                (part, body[start : start + PART_BYTES])
                for part, start in enumerate(range(0, len(body), PART_BYTES))
            ),
        )
        db.execute(
            "INSERT INTO snapshot (id, taken_ms, fingerprint, sha256, size) VALUES (1, ?, ?, ?, ?)",
            (now_ms, fingerprint(detector, streets), hashlib.sha256(body).hexdigest(), len(body)),
        )
        db.execute("COMMIT")
    return len(body)


def take_back(
    path: Path, detector: Detector, seen: SeqWindow, streets: Sequence[str], now_ms: int
) -> Restored | None:
    """Restore the snapshot into a detector and duplicate window fresh from the code, and
    delete it; None (the state left fresh) when there is none or it does not fit."""
    if not path.exists():
        return None
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(_SCHEMA)
        try:
            row = db.execute("SELECT taken_ms, fingerprint, sha256, size FROM snapshot").fetchone()
            if row is None:
                return None
            body = b"".join(
                part for (part,) in db.execute("SELECT body FROM snapshot_part ORDER BY seq")
            )
            return _restore(row, body, detector, seen, streets, now_ms)
        finally:
            # Taken back once: a crash after this start must not bring it back again.
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM snapshot_part")
            db.execute("DELETE FROM snapshot")
            db.execute("COMMIT")


def _restore(
    row: tuple[int, str, str, int],
    body: bytes,
    detector: Detector,
    seen: SeqWindow,
    streets: Sequence[str],
    now_ms: int,
) -> Restored | None:
    taken_ms, taken_for, digest, size = row
    if taken_for != fingerprint(detector, streets):
        log.warning(
            "the detection snapshot was taken by other code, for other streets or other "
            "registry sites; "
            "starting from InfluxDB instead"
        )
        return None
    if len(body) != size or hashlib.sha256(body).hexdigest() != digest:
        log.error("the detection snapshot is damaged; starting from InfluxDB instead")
        return None
    fresh_detector, fresh_seen = detector.export_state(), seen.export_state()
    try:
        state = pickle.loads(body)
        detector.import_state(state["detector"])
        seen.import_state(state["seen"])
    except Exception:
        log.exception("the detection snapshot could not be restored; starting from InfluxDB")
        detector.import_state(fresh_detector)
        seen.import_state(fresh_seen)
        return None
    detector.offline.restarted(now_ms)
    return Restored(taken_ms, len(detector.offline), detector.book.open_count, size)
