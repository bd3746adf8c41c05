"""A batch larger than one request is written in parts (gateway/storage/writer.py), against the
real InfluxDB: everything stored, one request per part, a refused line still found."""

from __future__ import annotations

import threading

import pytest

from gateway.metrics import GatewayMetrics
from gateway.pipeline import Pending
from gateway.storage.writer import MAX_LINES_PER_WRITE, BatchWriter
from jiayuan.config import Config
from jiayuan.influx import InfluxClient

PARTS_OF = 1_000


def points(count: int, bad_at: int | None = None) -> list[Pending]:
    """``count`` distinct points of one series; ``bad_at`` sends a string where the field
    is a float, which InfluxDB refuses (HTTP 400, field type conflict)."""
    lines = [
        f"probe,device=d1 value={index}.5,seq={index}i {1_000_000 + index}"
        for index in range(count)
    ]
    if bad_at is not None:
        lines[bad_at] = f'probe,device=d1 value="broken",seq={bad_at}i {1_000_000 + bad_at}'
    return [Pending(line, "t", line.encode(), 0, True) for line in lines]


def stored(config: Config) -> int:
    with InfluxClient(config.influx) as client:
        return client.count("probe", "seq")


def test_a_batch_of_several_parts_is_stored_whole_one_request_a_part(config: Config) -> None:
    metrics = GatewayMetrics()
    with InfluxClient(config.influx) as client:
        writer = BatchWriter(client, metrics, threading.Event(), max_lines_per_write=PARTS_OF)
        assert writer.write(points(2_500), retry_for_s=10) == []
    assert stored(config) == 2_500
    assert metrics.snapshot().batches == 3  # 1,000 + 1,000 + 500


def test_a_refused_line_is_found_within_its_part(config: Config) -> None:
    metrics = GatewayMetrics()
    batch = points(2_500, bad_at=1_700)
    with InfluxClient(config.influx) as client:
        # The field's type is float before the batch: the string in it is the conflict.
        client.write([batch[0].line])
        writer = BatchWriter(client, metrics, threading.Event(), max_lines_per_write=PARTS_OF)
        refused = writer.write(batch, retry_for_s=10)
    assert [p.line for p in refused] == [batch[1_700].line]
    assert stored(config) == 2_499


def test_the_default_part_holds_a_whole_normal_batch() -> None:
    from jiayuan.config import GatewayConfig

    assert GatewayConfig().batch_max_readings * 2 <= MAX_LINES_PER_WRITE


@pytest.mark.parametrize("lines", [0, -3])
def test_a_part_size_below_one_is_refused(config: Config, lines: int) -> None:
    with InfluxClient(config.influx) as client, pytest.raises(ValueError, match="at least 1"):
        BatchWriter(client, GatewayMetrics(), threading.Event(), max_lines_per_write=lines)
