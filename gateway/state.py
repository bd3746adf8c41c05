"""Detection state as plain data: what a gateway snapshot carries across a clean restart.

Each class holding per-device state names the attributes that make it up; the rest of the
object (its definitions: checks, thresholds, parameters) is rebuilt from the code and the
configuration at start.  ``layout`` says what the state's shape depends on, so a snapshot
taken by other code or another configuration is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class SnapshotMismatch(ValueError):
    """A snapshot that does not fit the detector it is given to."""


class Stateful:
    STATE: ClassVar[tuple[str, ...]] = ()

    def export_state(self) -> dict[str, Any]:
        """The state attributes themselves (not copies): take it while nothing runs."""
        return {name: getattr(self, name) for name in self.STATE}

    def import_state(self, state: Mapping[str, Any]) -> None:
        missing = [name for name in self.STATE if name not in state]
        if missing:
            raise SnapshotMismatch(f"{type(self).__name__}: the snapshot lacks {missing}")
        for name in self.STATE:
            object.__setattr__(self, name, state[name])

    def layout(self) -> object:
        """What the state's shape depends on besides the code's own class."""
        return type(self).__qualname__
