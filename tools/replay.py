"""Simulator samples as the gateway sees them, without MQTT in between.

The evaluation, the benchmarks and the tests feed simulated traffic straight into the
detection core; this numbers each device's readings the way an edge agent does and gives
each one the ``Place`` the gateway would derive from its topic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from edge.drivers import DriverSample
from jiayuan.contract import Reading
from jiayuan.places import Place
from simulators.registry import Estate


def as_gateway_input(
    samples: Iterable[tuple[Estate, DriverSample]],
) -> Iterator[tuple[Estate, Place, Reading]]:
    """Each sample with its place and as a contract reading, seq 1, 2, … per device."""
    seqs: dict[str, int] = defaultdict(int)
    for estate, sample in samples:
        seqs[sample.device] += 1
        place = Place(
            estate.district, estate.street, estate.id, sample.building, sample.kind, sample.device
        )
        reading = Reading(
            device=sample.device,
            kind=sample.kind.value,
            seq=seqs[sample.device],
            ts=sample.ts,
            values=sample.values,
            building=sample.building,
            event=sample.event,
        )
        yield estate, place, reading
