"""What a running gateway logs at INFO: its own throughput once a minute, not a line from a
library for every InfluxDB write."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from gateway.service import Gateway
from jiayuan import cli_support
from jiayuan.config import Config
from jiayuan.contract import batch_topic
from tests.gateway.test_gateway import lift_reading, now_ms, wait_for
from tests.support.mqtt_publisher import EDGE, PLACE, Publisher

LIBRARIES = ("httpx", "httpcore", "urllib3", "uvicorn", "paho", "aiomqtt")


@pytest.fixture
def logging_as_the_cli_sets_it(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """``gateway run``'s logging at INFO, the libraries' levels put back afterwards."""
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    caplog.set_level(logging.INFO)
    cli_support.setup_logging("INFO")
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_library_requests_are_not_logged_at_info(
    logging_as_the_cli_sets_it: None,
    config: Config,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Gateway(config) as gateway:
        assert gateway.wait_ready(10)
        for seq in range(1, 6):  # five batches, five writes to InfluxDB
            publisher.readings([lift_reading(seq, now_ms() - 10_000 + seq)])
            wait_for(lambda seq=seq: gateway.stats.readings_stored == seq)  # type: ignore[misc]
    chatter = [r for r in caplog.records if r.name.split(".")[0] in LIBRARIES]
    assert [r.getMessage() for r in chatter if r.levelno < logging.WARNING] == []
    # The gateway's own lines are still there.
    assert any(r.name.startswith("gateway") and r.levelno == logging.INFO for r in caplog.records)


THROUGHPUT = re.compile(
    r"(\d+) readings received, (\d+) stored, (\d+) dead letters, (\d+) duplicates"
)


def test_the_gateway_logs_its_throughput_each_interval(
    logging_as_the_cli_sets_it: None,
    config: Config,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(config, serve_api=False)
    assert gateway.throughput_log.interval_s == 60.0  # a minute, in service
    gateway.throughput_log.interval_s = 0.5
    with gateway:
        assert gateway.wait_ready(10)
        first = lift_reading(1, now_ms() - 10_000)
        publisher.readings([first, lift_reading(2, now_ms() - 9_000)])
        publisher.readings([first])  # a redelivery
        publisher.send(batch_topic(*PLACE, EDGE), b"not json")
        wait_for(lambda: gateway.stats.duplicates == 1 and gateway.stats.dead_letters == 1)
        gateway.wait_idle()
        lines = lambda: [  # noqa: E731
            r.getMessage() for r in caplog.records if r.name == "gateway.throughput_log"
        ]
        totals = lambda: [  # noqa: E731
            sum(int(match[i]) for match in map(THROUGHPUT.search, lines()) if match)
            for i in (1, 2, 3, 4)
        ]
        # Each interval's line counts that interval only: together, everything.
        wait_for(lambda: totals() == [3, 2, 1, 1])
        count = len(lines())
        wait_for(lambda: len(lines()) >= count + 2)  # a line every interval, quiet or not
    assert all(THROUGHPUT.search(line) for line in lines())
    assert lines()[-1].startswith("吞吐 throughput")
