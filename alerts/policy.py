"""Severity policy: what an event code's alert must do, by when, and how noise is held down.

Defaults come from the code's severity in the catalogue (``SEVERITY_DEFAULTS``); any code can
be overridden from a YAML or TOML file (``AlertsConfig.policy_file``).  ``docs/alerts.md``
explains the numbers.  Critical safety events (``NEVER_AUTO_RESOLVE``) never end by
themselves: someone must go and check, so an override that tries is refused.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from jiayuan.catalogue import FAMILIES, Severity

MINUTE_S, HOUR_S = 60.0, 3600.0

# A trapped passenger, a fire, a charger burning: a cleared signal is not proof of safety.
NEVER_AUTO_RESOLVE = frozenset(
    {
        "lift.trapped",
        "lift.door_open_moving",
        "lift.overtravel_top",
        "lift.overtravel_bottom",
        "lift.overspeed",
        "fire.alarm",
        "ebike_charger.over_temperature",
        "ebike_charger.smoke",
    }
)


class PolicyError(ValueError):
    """A policy file or override that cannot be used; the message names file, code and key."""


@dataclass(frozen=True, slots=True)
class CodePolicy:
    """What the alert of one event code does."""

    code: str
    severity: Severity
    raise_alert: bool  # False: the anomaly is recorded in InfluxDB, no alert is raised
    work_order: bool  # send a work order to the operations centre
    notify_manager: bool  # tell the estate's property manager
    ack_deadline_s: float  # 0 = no deadline
    resolve_deadline_s: float
    auto_resolve: bool  # the alert may end by itself when its condition clears


@dataclass(frozen=True, slots=True)
class NoisePolicy:
    """Grouping and flapping settings, the same for every code."""

    # Alerts of one building whose conditions start within this window share an incident.
    incident_window_s: float = 10 * MINUTE_S
    # More than flap_cycles open/clear cycles of one condition within flap_window_s: flapping.
    flap_cycles: int = 3
    flap_window_s: float = 30 * MINUTE_S
    # Alert storms (docs/alerts.md): a device's offline alert waits storm_window_s before
    # its work order goes out; if meanwhile storm_fraction of its estate's devices (at
    # least storm_min_devices) fell silent, or building_fraction of its building's (at
    # least building_min_devices), one group alert stands for them all.  0 = no grouping.
    storm_window_s: float = 30.0
    storm_fraction: float = 0.5
    storm_min_devices: int = 3
    building_fraction: float = 1.0
    building_min_devices: int = 2


# Per severity: (raise, work order, notify manager, ack deadline, resolve deadline, auto-resolve)
SEVERITY_DEFAULTS: Mapping[Severity, tuple[bool, bool, bool, float, float, bool]] = {
    Severity.CRITICAL: (True, True, True, 5 * MINUTE_S, 2 * HOUR_S, False),
    Severity.HIGH: (True, True, True, 15 * MINUTE_S, 24 * HOUR_S, False),
    Severity.WARNING: (True, False, True, 2 * HOUR_S, 72 * HOUR_S, True),
    Severity.INFO: (False, False, False, 0.0, 0.0, True),
}

# High-severity codes whose clearing is itself the fix: the device is back, the water gone.
AUTO_RESOLVING_HIGH_SUFFIXES = (".offline", ".power_loss")
AUTO_RESOLVING_HIGH_CODES = frozenset(
    {"waterlogging.depth_30", "estate.uplink_down", "estate.building_down"}
)

_OVERRIDABLE = frozenset(f.name for f in fields(CodePolicy)) - {"code"}


def default_for(code: str, severity: Severity) -> CodePolicy:
    raise_alert, work_order, notify, ack_s, resolve_s, auto = SEVERITY_DEFAULTS[severity]
    if severity is Severity.HIGH and (
        code.endswith(AUTO_RESOLVING_HIGH_SUFFIXES) or code in AUTO_RESOLVING_HIGH_CODES
    ):
        auto = True
    if code in NEVER_AUTO_RESOLVE:
        auto = False
    return CodePolicy(code, severity, raise_alert, work_order, notify, ack_s, resolve_s, auto)


def _catalogue_severities() -> dict[str, Severity]:
    return {event.code: event.severity for fam in FAMILIES.values() for event in fam.events}


class AlertPolicy:
    """The policy of every event code: catalogue defaults plus overrides."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        noise: NoisePolicy | None = None,
        source: str = "overrides",
    ) -> None:
        self.noise = noise or NoisePolicy()
        self._severities = _catalogue_severities()
        self._by_code: dict[str, CodePolicy] = {
            code: default_for(code, severity) for code, severity in self._severities.items()
        }
        for code, changes in (overrides or {}).items():
            self._by_code[code] = _apply_override(self._by_code.get(code), code, changes, source)

    def for_code(self, code: str, severity: str = Severity.WARNING.value) -> CodePolicy:
        """The policy of ``code``; a code the catalogue does not know gets its severity's
        defaults (``severity`` is the anomaly's own)."""
        found = self._by_code.get(code)
        if found is not None:
            return found
        try:
            chosen = Severity(severity)
        except ValueError:
            chosen = Severity.WARNING
        return default_for(code, chosen)

    def table(self) -> list[CodePolicy]:
        """Every known code's policy, for docs and the API."""
        return [self._by_code[code] for code in sorted(self._by_code)]

    @classmethod
    def from_file(cls, path: str | Path) -> AlertPolicy:
        """Read overrides from YAML (``.yaml``/``.yml``) or TOML (``.toml``)::

        noise: {incident_window_s: 600, flap_cycles: 3, flap_window_s: 1800}
        codes:
          lift.power_loss: {severity: critical, ack_deadline_s: 300}
        """
        where = str(path)
        data = _read_mapping(Path(path))
        unknown = set(data) - {"noise", "codes"}
        if unknown:
            raise PolicyError(f"{where}: unknown section(s) {sorted(unknown)}; known: codes, noise")
        codes = data.get("codes", {})
        if not isinstance(codes, dict):
            raise PolicyError(f"{where}: 'codes' must be a mapping of event code to settings")
        for code, changes in codes.items():
            if not isinstance(changes, dict):
                raise PolicyError(f"{where}: codes.{code} must be a mapping of settings")
        return cls(codes, _noise(data.get("noise", {}), where), where)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read policy file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise PolicyError(f"{path}: not UTF-8 text: {error.reason}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise PolicyError(f"{path}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: the policy file must hold a mapping at the top level")
    return data


def _noise(values: Any, where: str) -> NoisePolicy:
    if not isinstance(values, dict):
        raise PolicyError(f"{where}: 'noise' must be a mapping")
    known = {f.name for f in fields(NoisePolicy)}
    unknown = set(values) - known
    if unknown:
        raise PolicyError(
            f"{where}: noise: unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    settings: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("flap_cycles", "storm_min_devices", "building_min_devices"):
            settings[key] = _number(value, f"{where}: noise.{key}", integer=True)
        else:
            settings[key] = _number(value, f"{where}: noise.{key}")
    for key in ("storm_fraction", "building_fraction"):
        if key in settings and not 0 < settings[key] <= 1:
            raise PolicyError(f"{where}: noise.{key}: {settings[key]!r} is not in (0, 1]")
    return NoisePolicy(**settings)


def _apply_override(
    base: CodePolicy | None, code: str, changes: Mapping[str, Any], source: str
) -> CodePolicy:
    where = f"{source}: codes.{code}"
    unknown = set(changes) - set(_OVERRIDABLE)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_OVERRIDABLE)}"
        )
    if base is None:
        if "severity" not in changes:
            raise PolicyError(f"{where}: not a catalogue event code, so give its severity")
        base = default_for(code, _severity(changes["severity"], f"{where}.severity"))
    elif "severity" in changes:
        # A new severity brings that severity's defaults; the other keys refine them.
        base = default_for(code, _severity(changes["severity"], f"{where}.severity"))
    settings: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "severity":
            continue
        if key in ("ack_deadline_s", "resolve_deadline_s"):
            settings[key] = _number(value, f"{where}.{key}")
        elif not isinstance(value, bool):
            raise PolicyError(f"{where}.{key}: {value!r} is not true or false")
        else:
            settings[key] = value
    chosen = replace(base, **settings)
    if chosen.auto_resolve and code in NEVER_AUTO_RESOLVE:
        raise PolicyError(
            f"{where}.auto_resolve: {code} is a critical safety event and never resolves by "
            "itself; someone must check it"
        )
    return chosen


def _severity(value: Any, where: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        known = ", ".join(s.value for s in Severity)
        raise PolicyError(f"{where}: {value!r} is not a severity; known: {known}") from None


def _number(value: Any, where: str, *, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(f"{where}: {value!r} is not a non-negative number")
    if integer:
        if not float(value).is_integer():
            raise PolicyError(f"{where}: {value!r} is not a whole number")
        return int(value)
    return float(value)
