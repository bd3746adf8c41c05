"""Device identity: where a device is, as every stage names it (rules, points, alerts).

Names that repeat across devices are interned, because the gateway keeps a Place per
device and makes one per reading.
"""

from __future__ import annotations

import sys

DeviceKey = tuple[str, str, str, str, str]


def _shared(name: str) -> str:
    """The interned copy of a name that repeats across devices (an enum member such as a
    ``Kind`` is one object already, and ``sys.intern`` takes plain strings only)."""
    return sys.intern(name) if type(name) is str else name


EstateNames = tuple[str, str, str]  # district, street, estate, interned


def estate_names(district: str, street: str, estate: str) -> EstateNames:
    """The names of an estate interned, for ``Place.within``."""
    return (_shared(district), _shared(street), _shared(estate))


class Place:
    """Where a device is; ``key`` leaves out the building, which is a label, not identity.

    Held as its key and building only: the offline check keeps a Place per device, and
    the key tuple is the one every per-device table is keyed by (one tuple per device, not
    a copy per table), so at 100,000 devices a Place costs a tuple and 48 bytes.  The names
    that repeat across devices (district, street, estate, building, kind) are interned: a
    Place made from each decoded message would otherwise keep its own copies of them."""

    __slots__ = ("building", "key")
    key: DeviceKey
    building: str

    def __init__(
        self, district: str, street: str, estate: str, building: str, kind: str, device: str
    ) -> None:
        key = (_shared(district), _shared(street), _shared(estate), _shared(kind), device)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "building", _shared(building))

    @classmethod
    def within(cls, estate: EstateNames, building: str, kind: str, device: str) -> Place:
        """A device's Place in an estate whose names ``estate_names`` interned already:
        the pipeline makes a Place a reading and interns its message's topic names once."""
        place = object.__new__(cls)
        object.__setattr__(place, "key", (*estate, _shared(kind), device))
        object.__setattr__(place, "building", _shared(building))
        return place

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Place is immutable: cannot set {name}")

    @property
    def district(self) -> str:
        return self.key[0]

    @property
    def street(self) -> str:
        return self.key[1]

    @property
    def estate(self) -> str:
        return self.key[2]

    @property
    def kind(self) -> str:
        return self.key[3]

    @property
    def device(self) -> str:
        return self.key[4]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Place):
            return NotImplemented
        return self.key == other.key and self.building == other.building

    def __hash__(self) -> int:
        return hash((self.key, self.building))

    def __reduce__(self) -> tuple[type[Place], tuple[str, str, str, str, str, str]]:
        # Through __init__ (which interns the names), not attribute by attribute.
        district, street, estate, kind, device = self.key
        return Place, (district, street, estate, self.building, kind, device)

    def __repr__(self) -> str:
        district, street, estate, kind, device = self.key
        return (
            f"Place(district={district!r}, street={street!r}, estate={estate!r}, "
            f"building={self.building!r}, kind={kind!r}, device={device!r})"
        )
