"""Maintenance silences: while one is active, alerts raised in its scope are recorded, not
routed (no work order, no notification).

A silence covers one estate, one building of an estate, or one device of an estate:
building and device ids are only unique within their estate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SilenceScope(StrEnum):
    ESTATE = "estate"
    BUILDING = "building"
    DEVICE = "device"


class SilenceError(ValueError):
    """A silence that cannot be set; the message says which value was wrong."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    scope: SilenceScope
    estate: str
    building: str  # set for scope building; empty otherwise
    device: str  # set for scope device; empty otherwise
    starts_ms: int  # wall clock
    until_ms: int  # wall clock; the silence ends here
    actor: str
    note: str
    created_ms: int

    def active_at(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.until_ms

    def covers(self, estate: str, building: str, device: str) -> bool:
        if estate != self.estate:
            return False
        if self.scope is SilenceScope.BUILDING:
            return building == self.building
        if self.scope is SilenceScope.DEVICE:
            return device == self.device
        return True

    @property
    def target(self) -> str:
        """Human-readable target: ``estate``, ``estate/building`` or ``estate/device``."""
        if self.scope is SilenceScope.BUILDING:
            return f"{self.estate}/{self.building}"
        if self.scope is SilenceScope.DEVICE:
            return f"{self.estate}/{self.device}"
        return self.estate


def check_silence(
    scope: str, estate: str, building: str, device: str, starts_ms: int, until_ms: int, actor: str
) -> SilenceScope:
    """The scope as an enum, or SilenceError naming what is missing or wrong."""
    try:
        chosen = SilenceScope(scope)
    except ValueError:
        known = ", ".join(s.value for s in SilenceScope)
        raise SilenceError(f"scope {scope!r} is not one of: {known}") from None
    if not estate:
        raise SilenceError("a silence needs the estate it applies to")
    if chosen is SilenceScope.BUILDING and not building:
        raise SilenceError("a building silence needs the building id")
    if chosen is SilenceScope.DEVICE and not device:
        raise SilenceError("a device silence needs the device id")
    if chosen is SilenceScope.ESTATE and (building or device):
        raise SilenceError("an estate silence takes no building or device; choose another scope")
    if chosen is SilenceScope.BUILDING and device:
        raise SilenceError("a building silence takes no device; use scope device")
    if until_ms <= starts_ms:
        raise SilenceError(f"until_ms {until_ms} must be after the start {starts_ms}")
    if not actor.strip():
        raise SilenceError("a silence needs the actor who set it")
    return chosen
