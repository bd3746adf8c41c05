"""The durable outbox (real SQLite files) and the backoff schedule."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.delivery import backoff_s
from alerts.outbox import MessageState, Outbox


def test_one_message_per_key_ever(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        assert outbox.enqueue("workorder", "wo:a", "http://127.0.0.1:1/x", b"{}", {}, now_ms=1000)
        assert not outbox.enqueue("workorder", "wo:a", "http://127.0.0.1:1/x", b"{2}", now_ms=2)
        [message] = outbox.due(now_ms=1000)
        assert message.body == b"{}"
        outbox.mark_delivered(message.id, now_ms=1500)
        # Delivered long ago is still "already queued": a replayed event sends nothing.
        assert not outbox.enqueue("workorder", "wo:a", "http://127.0.0.1:1/x", b"{}")
        assert outbox.counts() == {"pending": 0, "delivered": 1, "parked": 0}


def test_due_follows_the_next_attempt_time(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for key in ("k1", "k2", "k3"):
            outbox.enqueue("workorder", key, "http://127.0.0.1:1/x", key.encode(), now_ms=1000)
        first = outbox.due(now_ms=1000)
        assert [m.key for m in first] == ["k1", "k2", "k3"]
        outbox.mark_failed(first[0].id, next_attempt_ms=5000, error="ConnectError: refused")
        assert [m.key for m in outbox.due(now_ms=4999)] == ["k2", "k3"]
        assert [m.key for m in outbox.due(now_ms=5000)] == ["k1", "k2", "k3"]
        again = outbox.get("k1")
        assert again is not None
        assert (again.attempts, again.last_error) == (1, "ConnectError: refused")
        assert again.state is MessageState.PENDING
        assert outbox.next_due_ms() == 1000


def test_a_new_outbox_on_the_same_file_resumes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    outbox.enqueue("email", "pm:1", "a@example.com", b"mail", now_ms=10)
    outbox.enqueue("workorder", "wo:1", "http://127.0.0.1:1/x", b"{}", {"H": "v"}, now_ms=10)
    outbox.mark_delivered(outbox.due(now_ms=10)[0].id)
    outbox.close()

    reopened = Outbox(path)
    pending = reopened.due(now_ms=10)
    assert [(m.key, m.headers) for m in pending] == [("wo:1", {"H": "v"})]
    assert reopened.counts()["delivered"] == 1
    assert not reopened.enqueue("email", "pm:1", "a@example.com", b"mail")
    reopened.close()


def test_parked_messages_stay_visible_until_retried(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        outbox.enqueue("workorder", "wo:x", "http://127.0.0.1:1/x", b"{}", now_ms=0)
        outbox.enqueue("workorder", "wo:y", "http://127.0.0.1:1/x", b"{}", now_ms=0)
        for message in outbox.due(now_ms=0):
            outbox.park(message.id, "HTTP 422: schema")
        assert outbox.due(now_ms=10**12) == []
        [_newest, parked_x] = outbox.messages(MessageState.PARKED)
        assert (parked_x.key, parked_x.last_error) == ("wo:x", "HTTP 422: schema")
        assert outbox.retry_parked("wo:x", now_ms=50) == 1
        assert [m.key for m in outbox.due(now_ms=50)] == ["wo:x"]
        assert outbox.retry_parked(now_ms=60) == 1
        assert outbox.counts() == {"pending": 2, "delivered": 0, "parked": 0}


def test_bad_messages_are_refused_with_the_reason(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        with pytest.raises(ValueError, match="idempotency key"):
            outbox.enqueue("workorder", "", "http://127.0.0.1:1/x", b"{}")
        with pytest.raises(ValueError, match="no channel"):
            outbox.enqueue("", "k", "http://127.0.0.1:1/x", b"{}")
        with pytest.raises(KeyError, match="no outbox message with id 99"):
            outbox.mark_delivered(99)


def test_concurrent_enqueues_keep_one_message_per_key(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    accepted: list[str] = []
    lock = threading.Lock()

    def producer(offset: int) -> None:
        for n in range(50):
            key = f"wo:{(n + offset) % 60}"
            if outbox.enqueue("workorder", key, "http://127.0.0.1:1/x", b"{}"):
                with lock:
                    accepted.append(key)

    threads = [threading.Thread(target=producer, args=(i * 7,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(accepted) == sorted(set(accepted))
    assert outbox.counts()["pending"] == len(accepted) == 60
    outbox.close()


def test_backoff_doubles_up_to_the_cap() -> None:
    upper = [backoff_s(n, 1.0, 300.0, jitter=0.999999) for n in range(1, 12)]
    lower = [backoff_s(n, 1.0, 300.0, jitter=0.0) for n in range(1, 12)]
    assert [round(x) for x in upper] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert lower == [x / 2 for x in [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]]


@given(
    attempts=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0.01, max_value=60),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_never_shrinks_and_never_passes_the_cap(
    attempts: int, initial: float, jitter: float
) -> None:
    delay = backoff_s(attempts, initial, 300.0, jitter)
    assert initial / 2 <= delay <= 300.0
    assert backoff_s(attempts + 1, initial, 300.0, jitter) >= delay


def test_a_batch_commits_together_or_not_at_all(tmp_path: Path) -> None:
    path, url = tmp_path / "outbox.sqlite", "http://127.0.0.1:1/x"
    with Outbox(path) as outbox, Outbox(path) as reader:
        with outbox.batch():
            assert outbox.enqueue("workorder", "wo:1", url, b"1", now_ms=10)
            with outbox.batch():  # nested: part of the outer one
                assert outbox.enqueue("workorder", "wo:2", url, b"2", now_ms=10)
            assert not outbox.enqueue("workorder", "wo:1", url, b"again", now_ms=10)
            assert reader.due(now_ms=10) == []  # not committed yet
        assert [m.key for m in reader.due(now_ms=10)] == ["wo:1", "wo:2"]
        with pytest.raises(RuntimeError), outbox.batch():
            outbox.enqueue("workorder", "wo:3", url, b"3", now_ms=10)
            raise RuntimeError("the batch failed")
        assert [m.key for m in reader.due(now_ms=10)] == ["wo:1", "wo:2"]
        assert outbox.enqueue("workorder", "wo:3", url, b"3", now_ms=10)  # nothing kept of it


def test_an_outbox_file_from_before_config_digests_opens_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "outbox.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE message (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,"
        " channel TEXT NOT NULL, destination TEXT NOT NULL, body BLOB NOT NULL,"
        " headers TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_ms INTEGER NOT NULL, last_error TEXT NOT NULL DEFAULT '',"
        " created_ms INTEGER NOT NULL, delivered_ms INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO message (key, channel, destination, body, headers, state, attempts,"
        " next_attempt_ms, last_error, created_ms) VALUES ('wo:old', 'workorder', '', x'7b7d',"
        " '{}', 'parked', 1, 0, 'no destination URL', 0);"
    )
    old.commit()
    old.close()
    with Outbox(path) as outbox:
        parked = outbox.get("wo:old")
        assert parked is not None and parked.state is MessageState.PARKED
        assert parked.config_digest == ""  # never noted: the next start retries it
        outbox.park(parked.id, "still nowhere", "abc")
        assert outbox.get_id(parked.id) == replace(
            parked, attempts=2, last_error="still nowhere", config_digest="abc"
        )


def test_key_prefixes_are_literal_not_patterns(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for key in ("wo:a_b:reopen:1", "wo:a_b:reopen:2", "wo:aXb:reopen:1", "wo:a_b%", "wo:a_c"):
            outbox.enqueue("workorder", key, "", b"{}", now_ms=1)
        assert [m.key for m in outbox.with_key_prefix("wo:a_b:reopen:")] == [
            "wo:a_b:reopen:1",
            "wo:a_b:reopen:2",
        ]
        assert [m.key for m in outbox.with_key_prefix("wo:a_b")] == [
            "wo:a_b:reopen:1",
            "wo:a_b:reopen:2",
            "wo:a_b%",
        ]


def test_retrying_named_messages_is_all_or_nothing(tmp_path: Path) -> None:
    from alerts.outbox import NotParked, UnknownMessage

    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for key in ("k1", "k2"):
            outbox.enqueue("workorder", key, "", b"{}", now_ms=1)
        first = outbox.get("k1")
        assert first is not None
        outbox.park(first.id, "HTTP 400")
        with pytest.raises(UnknownMessage, match="404, nope"):
            outbox.retry_named([404], ["nope", "k1"])
        with pytest.raises(NotParked, match="k2 \\(pending\\)"):
            outbox.retry_named([first.id], ["k2"])
        assert outbox.counts()["parked"] == 1
        assert outbox.retry_named([first.id], ["k1"], now_ms=5) == 1  # one message, named twice
        assert [m.key for m in outbox.due(now_ms=5)] == ["k1", "k2"]
