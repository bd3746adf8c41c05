"""The gateway's collector thresholds (gateway/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.collector import GATEWAY_THRESHOLDS, tune_collector


@pytest.fixture
def restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_thresholds")
def test_the_gateway_collects_generation_0_far_less_often() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    tune_collector()
    assert gc.get_threshold() == GATEWAY_THRESHOLDS
    assert GATEWAY_THRESHOLDS[0] >= 10 * 700


@pytest.mark.usefixtures("restore_thresholds")
def test_a_higher_threshold_set_by_the_host_is_kept() -> None:
    gc.set_threshold(2 * GATEWAY_THRESHOLDS[0], 5, 20)
    tune_collector()
    assert gc.get_threshold() == (2 * GATEWAY_THRESHOLDS[0], GATEWAY_THRESHOLDS[1], 20)
