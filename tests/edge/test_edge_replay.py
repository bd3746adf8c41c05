"""The edge's backlog pacing without servers: the rate limit, the backlog's message size,
the spool's id bounds, and the [edge] replay_rate_limit setting."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edge.agent import EdgeAgent, EdgePlace, ReplayPace, replay_batch_size
from edge.drivers import DriverSample
from edge.spool import Spool
from jiayuan import config as cfg
from jiayuan.catalogue import Kind
from jiayuan.config import Config, ConfigError


def test_the_pace_lets_a_message_go_then_waits_for_its_readings_at_the_rate() -> None:
    pace = ReplayPace(100.0)
    assert pace.wait(10.0) <= 0  # the first message goes at once
    pace.spend(50, 10.0)
    assert pace.wait(10.0) == pytest.approx(0.5)
    assert pace.wait(10.25) == pytest.approx(0.25)
    pace.spend(50, 10.5)  # sent on time: the next waits its own half second
    assert pace.wait(10.5) == pytest.approx(0.5)
    pace.spend(10, 20.0)  # after a quiet spell no credit is saved up beyond one message
    assert pace.wait(20.0) == pytest.approx(0.1)


def test_no_limit_never_waits() -> None:
    pace = ReplayPace(0.0)
    pace.spend(10_000, 1.0)
    assert pace.wait(1.0) <= 0


def test_backlog_messages_are_a_second_at_the_rate() -> None:
    assert replay_batch_size(500, 50.0) == 50
    assert replay_batch_size(500, 10_000.0) == 500
    assert replay_batch_size(500, 0.5) == 1
    assert replay_batch_size(500, 0.0) == 500  # no limit: full messages


def test_the_spool_bounds_a_peek_by_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    assert spool.last_id() == 0
    samples = [
        DriverSample("W1", Kind.WATERLOGGING, "B1", 1000 + i, {"depth": i}, None) for i in range(10)
    ]
    spool.append("e1", samples)
    assert spool.last_id() == 10
    assert [i for i, _ in spool.peek_raw(100, 3, up_to_id=6)] == [4, 5, 6]
    assert [i for i, _ in spool.peek_raw(2, 0, up_to_id=6)] == [1, 2]
    spool.remove(list(range(1, 11)))
    assert spool.last_id() == 0  # empty; ids still never come back (AUTOINCREMENT)
    spool.append("e1", samples[:1])
    assert spool.last_id() == 11
    spool.close()


def test_replay_rate_limit_from_file_and_environment(tmp_path: Path) -> None:
    assert cfg.load(environ={}).edge.replay_rate_limit == 50.0
    path = tmp_path / "c.toml"
    path.write_text("[edge]\nreplay_rate_limit = 250\n", encoding="utf-8")
    config = cfg.load(path, environ={})
    assert config.edge.replay_rate_limit == 250.0
    assert isinstance(config.edge.replay_rate_limit, float)
    env = {"JIAYUAN_EDGE_REPLAY_RATE_LIMIT": "0"}
    assert cfg.load(path, environ=env).edge.replay_rate_limit == 0.0
    with pytest.raises(ConfigError, match=r"JIAYUAN_EDGE_REPLAY_RATE_LIMIT.*not a number"):
        cfg.load(path, environ={"JIAYUAN_EDGE_REPLAY_RATE_LIMIT": "fast"})


def test_a_negative_replay_rate_limit_is_refused(tmp_path: Path) -> None:
    config: Config = cfg.load(environ={})
    edge = replace(config.edge, replay_rate_limit=-1.0)

    class Silent:
        def poll(self, now_ms: int) -> list[DriverSample]:
            return []

    with pytest.raises(ValueError, match=r"edge.replay_rate_limit must be at least 0"):
        EdgeAgent(
            config.mqtt, edge, EdgePlace("d", "s", "e", "e1"), Silent(), tmp_path / "s.sqlite"
        )
