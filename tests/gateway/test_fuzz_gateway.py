"""A short run of ``bench/fuzz.py`` against the real Mosquitto and InfluxDB: a few thousand
generated good and bad messages through the real gateway, every one accounted for."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

from jiayuan.config import Config

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def _bench_fuzz() -> ModuleType:
    # bench/ is scripts, not a package: load the runner from its file.
    spec = importlib.util.spec_from_file_location("bench_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz = _bench_fuzz()


def test_generated_traffic_is_all_accounted_for(config: Config) -> None:
    traffic = fuzz.Traffic(seed=11, now_ms=int(time.time() * 1000))
    messages = list(traffic.messages(3000))
    report = fuzz.run(config, messages, timeout_s=120)
    expected = report.expected
    # The mix really holds every family of defect, and plenty of good traffic.
    assert {"bad_payload", "bad_reading", "bad_status", "bad_topic", "duplicate"} <= set(
        expected.labels
    )
    assert expected.valid_messages > 1000 and expected.invalid_messages > 1000
    assert report.stored == dict(expected.stored)
    assert report.dead == dict(expected.dead)
    assert report.duplicates == expected.duplicates > 0
    assert report.messages_seen == expected.messages
    assert report.unaccounted == 0
    assert report.alive


def test_expected_outcomes_follow_from_how_messages_were_made() -> None:
    traffic = fuzz.Traffic(seed=3, now_ms=1_764_000_000_000)
    messages = list(traffic.messages(400))
    expected = fuzz.expect(messages)
    assert expected.messages == 400
    assert expected.valid_messages + expected.invalid_messages == 400
    # Each invalid message says how many dead letters it must make, each valid one none.
    assert all(bool(m.dead) != m.valid for m in messages)
    assert sum(expected.dead.values()) == expected.invalid_messages
