"""The demo's protocol hops: registers written as a profile reads them, and the estates
chosen for the hops."""

from __future__ import annotations

import time

import pytest

from edge.fastdecode import ProfileDecoder
from edge.profile import load_profile
from edge.readplan import plan_reads
from jiayuan.catalogue import Kind
from simulators.driver import SimulatedDriver
from simulators.faults import plan_faults
from simulators.registry import build_registry
from tools.demo_devices import PROFILES, REGISTERS, encode_registers, hop_estates


@pytest.mark.parametrize("kind", sorted(PROFILES))
def test_simulated_values_come_back_through_their_profile(kind: Kind) -> None:
    profile = load_profile(PROFILES[kind])
    registry = build_registry(2, 5)
    estate = registry.estates[0]
    device = estate.of_kind(kind)[0]
    driver = SimulatedDriver(registry, estate.id, [], int(time.time() * 1000), 5)
    samples = [s for s in driver.poll(int(time.time() * 1000) + 60_000) if s.device == device.id]
    assert samples
    blocks = plan_reads(profile)
    decoder = ProfileDecoder(profile, blocks)
    words = [0] * REGISTERS
    for sample in samples:
        encode_registers(profile, sample.values, words)
        reading = decoder.decode([words[b.address : b.end] for b in blocks])
        assert reading.problems == []
        for name, value in sample.values.items():
            # float32 keeps about 7 digits; decimals keep what the register can hold.
            assert reading.values[name] == pytest.approx(value, rel=1e-6, abs=0.0051), name


def test_hops_go_to_healthy_devices_only() -> None:
    registry = build_registry(3, 11)
    plan = plan_faults(registry, int(time.time() * 1000), 60, 11)
    faulty = {fault.device for fault in plan.faults}
    chosen = hop_estates(registry.estates, faulty)
    assert any(modbus for modbus, _ in chosen.values())
    assert any(fire for _, fire in chosen.values())
    for estate in registry.estates:
        if estate.id in chosen:
            modbus, fire = chosen[estate.id]
            healthy = [d for d in estate.devices if d.id not in faulty]
            assert not modbus or any(d.kind in PROFILES for d in healthy)
            assert not fire or any(d.kind is Kind.FIRE for d in healthy)
