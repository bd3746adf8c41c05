"""``GET /dead-letters`` filters: reason, kind, estate, since/until (gateway/api.py).

A filter the API does not know, or a value it cannot use, is answered 400/422 with what
was wrong: a misspelt filter silently ignored would show everything and look like an
answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.metrics import GatewayMetrics, GatewayStats
from gateway.storage.deadletters import DeadLetter, DeadLetterStore, Reason, StoredDeadLetter
from jiayuan.anomaly import Anomaly

T0 = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC
MINUTE = 60_000


def topic(estate: str, kind: str = "lift", device: str = "L1") -> str:
    return f"jiayuan/v1/pudong/zhangjiang/{estate}/{kind}/{device}/telemetry"


@dataclass
class Source:
    letters: DeadLetterStore

    @property
    def stats(self) -> GatewayStats:
        return GatewayMetrics().snapshot()

    @property
    def mqtt_connected(self) -> bool:
        return True

    @property
    def mqtt_unstable(self) -> bool:
        return False

    @property
    def uptime_s(self) -> float:
        return 1.0

    def influx_reachable(self) -> bool:
        return True

    def anomalies(
        self,
        active: bool | None = None,
        kind: str | None = None,
        estate: str | None = None,
        limit: int = 100,
    ) -> list[Anomaly]:
        return []

    def dead_letters(self, limit: int = 100, where: Any = None) -> list[StoredDeadLetter]:
        # ``where``: the store's DeadLetterFilter, passed on as the API made it.
        return self.letters.recent(limit) if where is None else self.letters.recent(limit, where)

    def metrics_exposition(self) -> bytes:
        return b""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = DeadLetterStore(tmp_path / "dead.sqlite")
    bad_fire_reading = msgspec.json.encode({"device": "F9", "kind": "fire", "seq": 1})
    store.add_many(
        [
            DeadLetter(T0, topic("e1"), Reason.BAD_PAYLOAD, "not JSON", b"{"),
            DeadLetter(T0 + MINUTE, topic("e2"), Reason.BAD_PAYLOAD, "not JSON", b"["),
            DeadLetter(
                T0 + 2 * MINUTE, topic("e1", "water_tank", "W1"), Reason.BAD_READING, "x", b"{}"
            ),
            DeadLetter(
                T0 + 3 * MINUTE,
                topic("e2", "batch", "edge-e2"),
                Reason.BAD_READING,
                "seq 0",
                bad_fire_reading,
            ),
            DeadLetter(T0 + 4 * MINUTE, "nonsense/topic", Reason.BAD_TOPIC, "no place", b"x"),
        ]
    )
    with TestClient(create_app(Source(store))) as test_client:
        yield test_client
    store.close()


def ids(client: TestClient, **params: str | list[str]) -> list[int]:
    response = client.get("/dead-letters", params=params)
    assert response.status_code == 200, response.text
    return [letter["id"] for letter in response.json()]


def test_no_filter_lists_all_newest_first(client: TestClient) -> None:
    assert ids(client) == [5, 4, 3, 2, 1]


def test_filter_by_reason_one_or_several(client: TestClient) -> None:
    assert ids(client, reason="bad_payload") == [2, 1]
    assert ids(client, reason=["bad_topic", "bad_reading"]) == [5, 4, 3]


def test_filter_by_estate_and_kind(client: TestClient) -> None:
    assert ids(client, estate="e1") == [3, 1]
    assert ids(client, kind="lift") == [2, 1]
    # A bad reading from an edge's batch is filed under the reading's own kind.
    assert ids(client, kind="fire") == [4]
    assert ids(client, estate="e2", reason="bad_reading") == [4]


def test_filter_by_time_range(client: TestClient) -> None:
    since = "2026-05-28T20:27:40Z"  # T0 + 1 minute
    until = "2026-05-29T04:29:40+08:00"  # T0 + 3 minutes, in Shanghai time
    assert ids(client, since=since) == [5, 4, 3, 2]
    assert ids(client, since=since, until=until) == [4, 3, 2]
    assert ids(client, until=str(T0 + MINUTE)) == [2, 1]  # epoch milliseconds too


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"reasn": "bad_payload"}, "reasn"),
        ({"reason": "bad_paylod"}, "bad_paylod"),
        ({"kind": "lfit"}, "lfit"),
        ({"estate": "e 1"}, "estate"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-05-28T20:00:00"}, "time zone"),
        ({"since": "2026-05-29T00:00:00Z", "until": "2026-05-28T00:00:00Z"}, "until"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_unknown_filters_and_bad_values_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], said: str
) -> None:
    response = client.get("/dead-letters", params=params)
    assert response.status_code in (400, 422), response.text
    assert said in response.text


def test_other_routes_refuse_unknown_query_parameters_too(client: TestClient) -> None:
    response = client.get("/anomalies", params={"actve": "true"})
    assert response.status_code == 400
    assert "actve" in response.text and "active" in response.text
