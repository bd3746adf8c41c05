"""Check a dashboard's JSON against Grafana's dashboard model (the foundation SDK's types).

The SDK's ``from_json`` decodes a dashboard into typed models (panel options through each
panel plugin's own types, targets through the registered dataquery types) and drops what
the model does not know; encoding it again must give back exactly the same JSON.  On top
of that round trip come the checks Grafana would only show as a broken panel: a known
panel type, unique ids, a place on the 24-column grid, InfluxQL targets on our datasource,
and no query naming a variable the dashboard does not define.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import influxql
from dashboards.macros import variable_names

GRID_COLUMNS = 24


class DashboardInvalid(ValueError):
    """The dashboard JSON breaks Grafana's model; ``problems`` says where and how."""

    def __init__(self, uid: str, problems: list[str]) -> None:
        super().__init__(f"dashboard {uid!r} is not valid: " + "; ".join(problems))
        self.uid = uid
        self.problems = problems


def _register() -> None:
    plugins.register_default_plugins()
    influxql.register()


def _differences(before: Any, after: Any, path: str = "$") -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            if key not in after:
                yield f"{path}.{key}: not in Grafana's model"
            elif key not in before:
                yield f"{path}.{key}: added by the model ({after[key]!r})"
            else:
                yield from _differences(before[key], after[key], f"{path}.{key}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (left, right) in enumerate(zip(before, after, strict=True)):
            yield from _differences(left, right, f"{path}[{index}]")
    elif before != after or type(before) is not type(after):
        yield f"{path}: {before!r} became {after!r}"


def problems(model: dict[str, Any]) -> list[str]:
    """Everything wrong with the dashboard JSON; empty when it is valid."""
    _register()
    found: list[str] = []
    try:
        decoded = Dashboard.from_json(model)
        again = json.loads(json.dumps(decoded, cls=JSONEncoder))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [f"does not decode as a Grafana dashboard: {type(error).__name__}: {error}"]
    found += _differences(model, again)
    uid = model.get("uid")
    if not isinstance(uid, str) or not 8 <= len(uid) <= 40:
        found.append(f"uid {uid!r} must be a string of 8-40 characters")
    if not model.get("title"):
        found.append("no title")
    defined = {v.get("name") for v in model.get("templating", {}).get("list", [])}
    queries: list[tuple[str, str]] = [
        (f"variable {v.get('name')}", str(v.get("query", "")))
        for v in model.get("templating", {}).get("list", [])
    ]
    known_types = set(cogruntime.Runtime().panelcfg_variants)
    seen_ids: set[int] = set()
    for panel, built in zip(model.get("panels", []), decoded.panels or [], strict=False):
        name = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") not in known_types:
            found.append(f"{name}: unknown panel type {panel.get('type')!r}")
        if panel.get("id") in seen_ids:
            found.append(f"{name}: id used twice")
        seen_ids.add(panel.get("id", 0))
        grid = panel.get("gridPos") or {}
        if not grid or grid.get("x", 0) + grid.get("w", 0) > GRID_COLUMNS:
            found.append(f"{name}: gridPos {grid} is not on the {GRID_COLUMNS}-column grid")
        targets = getattr(built, "targets", None) or []
        if not targets:
            found.append(f"{name}: no queries")
        for target in targets:
            if not isinstance(target, influxql.InfluxQLQuery):
                found.append(f"{name}: target is not an InfluxQL query")
                continue
            if target.datasource.uid != influxql.DATASOURCE_UID:
                found.append(f"{name}: target uses datasource {target.datasource.uid!r}")
            queries.append((name, target.query))
    for where, query in queries:
        missing = variable_names(query) - defined
        if missing:
            found.append(f"{where}: query uses undefined variable(s) {sorted(missing)}")
    return found


def validate(model: dict[str, Any]) -> None:
    """Raise DashboardInvalid listing every problem, or return quietly."""
    found = problems(model)
    if found:
        raise DashboardInvalid(str(model.get("uid", "?")), found)
