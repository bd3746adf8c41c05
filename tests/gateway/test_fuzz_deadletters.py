"""The dead-letter store keeps counting what it trims."""

from __future__ import annotations

from pathlib import Path

from gateway.storage.deadletters import DeadLetter, DeadLetterStore, Reason


def letter(reason: Reason, n: int) -> DeadLetter:
    return DeadLetter(n, "jiayuan/v1/x", reason, f"detail {n}", b"payload")


def test_totals_by_reason_survive_trimming_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "dead.sqlite"
    store = DeadLetterStore(path, keep=5)
    store.add_many([letter(Reason.BAD_TOPIC, n) for n in range(7)])
    store.add_many([letter(Reason.BAD_READING, n) for n in range(4)])
    assert store.count() == 5  # trimmed to the newest rows
    assert store.totals() == {"bad_topic": 7, "bad_reading": 4}
    store.close()
    reopened = DeadLetterStore(path, keep=5)
    reopened.add_many([letter(Reason.BAD_TOPIC, 99)])
    assert reopened.totals() == {"bad_topic": 8, "bad_reading": 4}
    assert reopened.recent(1)[0].detail == "detail 99"
    reopened.close()
