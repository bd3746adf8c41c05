"""Site models in the gateway (gateway.detection.sites): the registry's sites, signals
aligned on a slot grid, learnt from the first rows, one anomaly per broken relation."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import tracemalloc
from contextlib import closing
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from gateway.detection.detector import Detector
from gateway.detection.sites import (
    GATEWAY_SITE_PARAMS,
    SiteDetectors,
    SiteSignal,
    SiteSpec,
    load_sites,
    site_specs,
)
from gateway.detection.statistics.site_model import SiteModel
from jiayuan.anomaly import CLOSED, OPEN, Anomaly
from jiayuan.catalogue import Kind, Severity, family
from jiayuan.contract import Reading
from jiayuan.places import Place
from jiayuan.registry.sources import read_registry
from jiayuan.registry.store import RegistryStore
from simulators.registry import build_registry
from tests.support.pump_room import CYCLE_S, PERIOD_S, T0, pump_room, tank_id
from tools.registry_generate import generate_registry

ESTATE = "kangle-huayuan"
PLACES = (
    Place("songjiang", "yongfeng", ESTATE, "pumproom", "water_tank", tank_id(ESTATE, "W01")),
    Place("songjiang", "yongfeng", ESTATE, "pumproom", "water_tank", tank_id(ESTATE, "W02")),
)
LEARNT_S = 240 * PERIOD_S + 60  # the learning rows and a little more
LEARN_ROWS = 240
FLOAT_SIGNALS = [s for s in family(Kind.WATER_TANK).signals if s.type.value == "float"]
HOUR_S = 3600


def spec() -> SiteSpec:
    signals = tuple(
        SiteSignal(place.device, s.name, Kind.WATER_TANK, s.unit)
        for place in PLACES
        for s in family(Kind.WATER_TANK).signals
        if s.type.value == "float"
    )
    return SiteSpec.of("pumproom", PLACES[0], signals, PERIOD_S * 1000)


def replace_place(place: Place, estate: str) -> Place:
    """The same tank in another estate."""
    return Place(
        place.district,
        place.street,
        estate,
        place.building,
        place.kind,
        tank_id(estate, place.device[-3:]),
    )


def judge(detector: Detector, readings: list[Reading]) -> list[Anomaly]:
    places = {p.device: p for p in PLACES}
    changed: list[Anomaly] = []
    for first in range(0, len(readings), 50):  # batches, as the gateway's
        chunk = readings[first : first + 50]
        changed += detector.readings([(places[r.device], r, r.ts) for r in chunk])
    return changed


def site_anomalies(changed: list[Anomaly]) -> list[Anomaly]:
    return [a for a in changed if a.code == "water_tank.relation_broken"]


def test_a_site_keeping_its_healthy_relations_raises_nothing() -> None:
    detector = Detector(sites=SiteDetectors([spec()]))
    changed = judge(detector, list(pump_room(PLACES, 6 * HOUR_S, seed=3)))
    assert detector.sites is not None and detector.sites.learnt() == 1
    assert site_anomalies(changed) == []


def test_one_broken_relation_opens_one_anomaly_naming_its_signal_and_closes() -> None:
    detector = Detector(sites=SiteDetectors([spec()]))
    broken = (LEARNT_S + 1800, LEARNT_S + 1800 + CYCLE_S)
    readings = list(pump_room(PLACES, LEARNT_S + 3 * HOUR_S, seed=4, broken=broken))
    # Every value of the broken signal stays inside the range it had while learning.
    pressure = np.array(
        [r.values["supply_pressure"] for r in readings if r.device == PLACES[0].device]
    )
    times = np.array([(r.ts - T0) // 1000 for r in readings if r.device == PLACES[0].device])
    healthy = pressure[times < LEARNT_S]
    faulty = pressure[(times >= broken[0]) & (times < broken[1])]
    assert healthy.min() <= faulty.min() and faulty.max() <= healthy.max()

    judged = judge(detector, readings)
    changed = site_anomalies(judged)
    assert changed == judged  # no single signal left its own band
    assert [a.state for a in changed] == [OPEN, CLOSED]
    opened, closed = changed
    assert (opened.device, opened.kind, opened.estate) == (PLACES[0].device, "water_tank", ESTATE)
    assert opened.severity == Severity.WARNING.value
    assert (opened.title_zh, opened.title_en) == (
        "多信号关系异常",
        "Broken relation between a site's signals",
    )
    assert broken[0] * 1000 <= opened.start_ms - T0 <= broken[0] * 1000 + 300_000
    assert broken[1] * 1000 <= closed.end_ms - T0 <= broken[1] * 1000 + 600_000
    # The first signal named is the one whose relation broke, Chinese first.
    assert opened.detail.startswith("站点 site pumproom"), opened.detail
    first_named = opened.detail.split(": ", 1)[1]
    assert first_named.startswith("W01 出水压力 supply_pressure"), opened.detail
    assert "健康关系推算" in first_named and "healthy relations predict" in first_named
    assert 0.22 < opened.value < 0.28 and 0.22 < opened.threshold < 0.28


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_learning_rows_kept_in_float16_give_the_model_of_the_exact_rows(seed: int) -> None:
    # The learning rows are kept as float16 differences from the first row (half the
    # bytes while every site learns at once): the model learnt must be that of the rows
    # as they came (as float32, the site's latest values), its limits within a percent.
    readings = list(pump_room(PLACES, LEARNT_S, seed=seed))
    sites = SiteDetectors([spec()])
    places = {p.device: p for p in PLACES}
    sites.evaluate_many([(places[r.device], r) for r in readings])
    (state,) = sites.export_state()["_states"]
    assert state.learnt is not None
    fields = [s.name for s in FLOAT_SIGNALS]
    by_slot: dict[int, dict[str, list[float]]] = {}
    for r in readings:
        row = by_slot.setdefault((r.ts - T0) // (PERIOD_S * 1000), {})
        row[r.device] = [float(np.float32(r.values[f])) for f in fields]
    rows = np.array(
        [by_slot[k][PLACES[0].device] + by_slot[k][PLACES[1].device] for k in range(LEARN_ROWS)]
    )
    exact = SiteModel(rows, [str(j) for j in range(rows.shape[1])], GATEWAY_SITE_PARAMS)
    learnt = state.learnt
    assert learnt[0] == pytest.approx(exact.q_limit, rel=0.01)
    assert list(learnt[3:5]) == pytest.approx(exact.chart_limits, rel=0.01)
    assert state.basis == rows.shape[1] * 2 - exact.components  # the residual space kept


@pytest.mark.slow
def test_the_learning_rows_file_is_emptied_once_every_site_learnt_restarted_or_not() -> None:
    # Freed site by site into the heap, the rows of a city's sites kept the learning peak
    # resident for good: they live in shared maps, unmapped once their sites learnt.
    estates = [f"estate-{k:03d}" for k in range(60)]  # more sites than one map holds
    specs, places = [], {}
    for estate in estates:
        pair = tuple(replace_place(p, estate) for p in PLACES)
        places.update({p.device: p for p in pair})
        signals = tuple(
            SiteSignal(p.device, s.name, Kind.WATER_TANK, s.unit)
            for p in pair
            for s in FLOAT_SIGNALS
        )
        specs.append(SiteSpec.of("pumproom", pair[0], signals, PERIOD_S * 1000))
    readings = list(pump_room(PLACES, LEARNT_S, seed=5))
    half = next(i for i, r in enumerate(readings) if r.ts - T0 >= LEARNT_S * 500)

    def feed(sites: SiteDetectors, part: list[Reading]) -> None:
        for r in part:
            tanks = [tank_id(e, r.device[-3:]) for e in estates]
            sites.evaluate_many(
                [(places[t], Reading(t, r.kind, r.seq, r.ts, r.values, r.building)) for t in tanks]
            )

    straight = SiteDetectors(specs)
    feed(straight, readings[:half])
    assert straight.learning() == len(specs) and straight.learning_file_bytes() > 0
    # A restart while learning: the rows taken back go to the scratch file too.
    restarted = SiteDetectors(specs)
    restarted.import_state(pickle.loads(pickle.dumps(straight.export_state())))
    assert restarted.learning() == len(specs) and restarted.learning_file_bytes() > 0
    for sites in (straight, restarted):
        feed(sites, readings[half:])
        assert sites.learnt() == len(specs) and sites.learning() == 0
        assert sites.learning_file_bytes() == 0
    pairs = zip(
        straight.export_state()["_states"], restarted.export_state()["_states"], strict=True
    )
    for a, b in pairs:
        assert np.array_equal(a.values, b.values) and np.array_equal(a.numbers, b.numbers)


# A fresh interpreter with the gateway's malloc settings: a city's sites learning (each
# site's full learning rows are taken at its first row), saved and taken back as at a
# restart; how much the glibc heap's free space grew, against the rows' bytes.
_RESTART_PROBE = """
import ctypes, gc, json, pickle, sys
from gateway.detection.sites import SiteDetectors, SiteSignal, SiteSpec
from gateway.heap import trim_heap, tune_malloc
from jiayuan.contract import Reading
from tests.gateway.test_sites import PLACES, spec, replace_place

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = Mallinfo2
tune_malloc(128 << 10, 2)
sites_n = int(sys.argv[1])
one = spec()
specs, readings = [], []
for k in range(sites_n):
    pair = [replace_place(p, f"estate-{k:04d}") for p in PLACES]
    signals = tuple(SiteSignal(pair[c.member].device, c.field, c.kind, c.unit)
                    for c in one.columns)
    specs.append(SiteSpec.of(one.name, pair[0], signals, one.slot_ms))
    for slot in range(3):
        for p in pair:
            values = {c.field: 1.0 + slot for c in one.columns}
            reading = Reading(p.device, p.kind, slot, slot * one.slot_ms, values, p.building)
            readings.append((p, reading))
sites = SiteDetectors(specs)
sites.evaluate_many(readings)
assert sites.learning() == sites_n
rows = sites.learning_file_bytes()
body = pickle.dumps(sites.export_state(), pickle.HIGHEST_PROTOCOL)
del sites, readings
gc.collect(); trim_heap()
before = mallinfo2().fordblks
restarted = SiteDetectors(specs)
restarted.import_state(pickle.loads(body))
gc.collect(); trim_heap()
assert restarted.learning() == sites_n
print(json.dumps({"free_grown": mallinfo2().fordblks - before, "rows": rows}))
"""


@pytest.mark.slow
def test_a_restart_while_learning_leaves_no_free_heap_where_the_rows_were_taken_back() -> None:
    # Taken back site by site, the rows' transient copies were freed between the blocks
    # the restore allocated around them: their space stayed in the heap, as much again as
    # the rows (100,000 devices: some 20 MiB).
    done = subprocess.run(
        [sys.executable, "-c", _RESTART_PROBE, "1000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    probe = json.loads(done.stdout.splitlines()[-1])
    assert probe["rows"] > 4_000_000
    assert probe["free_grown"] < probe["rows"] // 10, probe


def test_a_site_whose_signals_share_no_healthy_relation_raises_nothing() -> None:
    # Every signal wanders on its own: the model keeps every component and Q has nothing
    # to judge (its limit is ~1e-29); a row's rounding must not count as a broken relation.
    sites = SiteDetectors([spec()])
    rng = np.random.default_rng(8)
    opened = []
    for k in range(LEARN_ROWS + 100):
        items = [
            (
                place,
                Reading(
                    place.device,
                    place.kind,
                    k + 1,
                    T0 + k * PERIOD_S * 1000 + 3000 * n,
                    {s.name: float(rng.normal(1.0, 0.1)) for s in FLOAT_SIGNALS},
                ),
            )
            for n, place in enumerate(PLACES)
        ]
        opened += [change for _, change in sites.evaluate_many(items) if change.opened]
    assert sites.learnt() == 1
    assert opened == []


def test_a_slot_without_every_signal_is_neither_learnt_nor_judged() -> None:
    sites = SiteDetectors([spec()])
    detector = Detector(sites=sites)
    # Tank 2 misses every third slot for the whole run.
    skip = frozenset(range(0, 6 * HOUR_S // PERIOD_S, 3))
    changed = judge(detector, list(pump_room(PLACES, 6 * HOUR_S, seed=5, skip=skip)))
    assert site_anomalies(changed) == []
    # Learnt from complete rows only: 240 of them took 360 slots.
    state = sites.export_state()["_states"][0]
    assert state.learnt is not None


def test_devices_outside_every_site_are_not_looked_at() -> None:
    assert Detector().sites is None
    assert Detector(sites=SiteDetectors([])).sites is None
    sites = SiteDetectors([spec()])
    lift = Place("songjiang", "yongfeng", ESTATE, "b01", "lift", f"{ESTATE}-L01")
    reading = Reading(lift.device, "lift", 1, T0, {"speed": 1.0})
    assert sites.evaluate_many([(lift, reading)]) == []
    assert sites.export_state()["_states"][0].slot == -1


def test_the_registry_names_the_sites_and_their_first_device() -> None:
    registry = generate_registry(build_registry(6, seed=2), seed=2, as_of=date(2026, 6, 1))
    specs = site_specs(registry)
    assert len(specs) == len(registry.estates)
    for spec_ in specs:
        record = registry.record(spec_.estate)
        tanks = record.of_kind(Kind.WATER_TANK)
        assert spec_.name == "pumproom" and spec_.anchor.device == tanks[0].id
        assert spec_.anchor.street == record.estate.street
        assert len(spec_.signals) == 5 * len(tanks)
        assert spec_.slot_ms == 180_000 and spec_.code == "water_tank.relation_broken"
    # The slot is the slowest member's heartbeat where that is longer.
    assert {s.slot_ms for s in site_specs(registry, min_slot_s=0.0)} == {10_000}
    # A charging pile has one numeric signal of its own (per-port ones are not judged
    # together): a site of one pile has nothing to relate and gets no model.
    estate = registry.estates[0].id
    devices = tuple(
        replace(d, site="bikeshed") if d.kind is Kind.EBIKE_CHARGER else replace(d, site=None)
        for d in registry.devices
        if d.estate == estate
    )
    one_pile = (
        tuple(d for d in devices if d.kind is not Kind.EBIKE_CHARGER)
        + tuple(d for d in devices if d.kind is Kind.EBIKE_CHARGER)[:1]
    )
    assert site_specs(replace(registry, devices=one_pile)) == []
    two_piles = tuple(d for d in devices if d.kind is Kind.EBIKE_CHARGER)
    if len(two_piles) >= 2:
        assert [len(s.signals) for s in site_specs(replace(registry, devices=two_piles))] == [
            len(two_piles)
        ]


def test_sites_of_one_make_up_share_their_columns_and_keep_their_own_devices(
    tmp_path: Path,
) -> None:
    registry = generate_registry(build_registry(12, seed=2), seed=2, as_of=date(2026, 6, 1))
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(registry)
    # As the gateway loads them (a copy made once the registry is freed): the sharing holds.
    specs = load_sites(path).specs
    by_make_up: dict[tuple[object, ...], list[SiteSpec]] = {}
    for spec_ in specs:
        by_make_up.setdefault(tuple(spec_.columns), []).append(spec_)
    assert any(len(same) > 1 for same in by_make_up.values())
    for same in by_make_up.values():
        assert all(s.columns is same[0].columns for s in same)
    for spec_ in specs:
        tanks = registry.record(spec_.estate).of_kind(Kind.WATER_TANK)
        assert spec_.devices == tuple(t.id for t in tanks)
        assert [(s.device, s.field) for s in spec_.signals] == [
            (t.id, s.name) for t in tanks for s in FLOAT_SIGNALS
        ]


def test_a_snapshot_keeps_the_learnt_model_and_a_different_site_refuses_it() -> None:
    readings = list(pump_room(PLACES, LEARNT_S + HOUR_S, seed=6, broken=(LEARNT_S + 1800, 10**9)))
    cut = next(i for i, r in enumerate(readings) if r.ts - T0 >= (LEARNT_S + 600) * 1000)
    straight = Detector(sites=SiteDetectors([spec()]))
    expected = site_anomalies(judge(straight, readings))
    assert [a.state for a in expected] == [OPEN]

    first = Detector(sites=SiteDetectors([spec()]))
    assert site_anomalies(judge(first, readings[:cut])) == []
    state = pickle.loads(pickle.dumps(first.export_state()))
    second = Detector(sites=SiteDetectors([spec()]))
    assert second.layout() == first.layout()
    second.import_state(state)
    assert second.sites is not None and second.sites.learnt() == 1  # not learning again
    assert site_anomalies(judge(second, readings[cut:])) == expected

    other = spec()
    smaller = SiteSpec.of(other.name, other.anchor, other.signals[:5], other.slot_ms)
    assert Detector(sites=SiteDetectors([smaller])).layout() != first.layout()
    assert Detector().layout() != first.layout()


def test_the_gateway_takes_its_streets_sites_from_the_stored_registry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = generate_registry(build_registry(6, seed=2), seed=2, as_of=date(2026, 6, 1))
    path = tmp_path / "registry.sqlite"
    assert not load_sites(path)  # no registry: no site models
    with RegistryStore(path) as store:
        store.replace(registry)
    assert len(load_sites(path).specs) == len(registry.estates)
    street = registry.estates[0].street
    owned = load_sites(path, (street,))
    assert {s.anchor.street for s in owned.specs} == {street}
    assert len(owned.specs) == sum(1 for e in registry.estates if e.street == street)
    junk = tmp_path / "junk.txt"
    junk.write_text("not a registry", encoding="utf-8")
    assert not load_sites(junk)
    assert "no site models" in caplog.text and "not a registry" in caplog.text


def test_the_gateway_reads_only_the_sites_devices_of_a_stored_registry(tmp_path: Path) -> None:
    """The sites come from the store without the whole registry as objects: a district's
    registry read whole was the peak of the gateway's memory (bench/throughput.py
    --memory-devices)."""
    registry = generate_registry(build_registry(40, seed=3), seed=3, as_of=date(2026, 6, 1))
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(registry)
    street = registry.estates[0].street
    for streets, owned in (("+",), registry), ((street,), registry.on_streets((street,))):
        assert list(load_sites(path, streets).specs) == site_specs(owned)
    tracemalloc.start()
    try:
        read_registry(path)
        whole = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        load_sites(path)
        sites_only = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sites_only < whole / 4, (sites_only, whole)


def test_a_stored_site_device_of_an_unknown_kind_leaves_the_gateway_without_site_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = generate_registry(build_registry(3, seed=3), seed=3, as_of=date(2026, 6, 1))
    path = tmp_path / "registry.sqlite"
    with RegistryStore(path) as store:
        store.replace(registry)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE devices SET kind = 'teapot' WHERE site IS NOT NULL")
    assert not load_sites(path)
    assert "no site models" in caplog.text and "teapot" in caplog.text


def _open_files_in(directory: Path) -> list[str]:
    """The files this process has open in ``directory`` (an unlinked one ends in
    " (deleted)")."""
    links = (p.readlink() for p in Path("/proc/self/fd").iterdir() if p.is_symlink())
    return [str(link) for link in links if str(link).startswith(str(directory))]


def test_learning_rows_wait_in_a_scratch_file_of_the_rows_dir_until_learnt(
    tmp_path: Path,
) -> None:
    rows_dir = tmp_path / "state"
    sites = SiteDetectors([spec()], rows_dir=str(rows_dir))
    places = {p.device: p for p in PLACES}
    readings = list(pump_room(PLACES, LEARNT_S, seed=5))
    half = len(readings) // 2
    sites.evaluate_many([(places[r.device], r) for r in readings[:half]])
    assert sites.learning() == 1
    assert sites.learning_file_bytes() == LEARN_ROWS * len(FLOAT_SIGNALS) * len(PLACES) * 2
    (scratch,) = _open_files_in(rows_dir)
    assert scratch.endswith(" (deleted)")  # gone with the process, whatever its end
    # Taken back over the rows it holds, a snapshot's rows replace them.
    held = sites.learning_file_bytes()
    sites.import_state(pickle.loads(pickle.dumps(sites.export_state())))
    assert sites.learning() == 1 and sites.learning_file_bytes() == held
    sites.evaluate_many([(places[r.device], r) for r in readings[half:]])
    assert sites.learnt() == 1 and sites.learning() == 0
    assert sites.learning_file_bytes() == 0 and _open_files_in(rows_dir) == []


def test_a_rows_dir_that_cannot_be_made_leaves_the_site_unlearnt_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    sites = SiteDetectors([spec()], rows_dir=str(blocked / "state"))
    places = {p.device: p for p in PLACES}
    readings = list(pump_room(PLACES, LEARNT_S, seed=6))
    sites.evaluate_many([(places[r.device], r) for r in readings])  # raises nothing
    assert (sites.learnt(), sites.learning(), sites.learning_file_bytes()) == (0, 0, 0)
    (said,) = [r for r in caplog.records if "site model not learnt" in r.getMessage()]
    assert said.levelname == "ERROR"
    assert "模型无法学习" in said.getMessage() and str(blocked) in said.getMessage()
