"""The panel reference in docs/dashboards.md, generated from the dashboards themselves.

``tests/dashboards/test_dashboards.py`` checks that the document holds exactly this text, so the
queries people read there are the ones Grafana runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboards.emptiness import empty_is_healthy, empty_means
from dashboards.transform import ROW_SUM

BEGIN = "<!-- BEGIN generated panel reference: python -m dashboards.reference -->"
END = "<!-- END generated panel reference -->"


def _lines(panel: dict[str, Any]) -> str:
    if panel["type"] != "timeseries":
        return ""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    steps = [s["value"] for s in defaults.get("thresholds", {}).get("steps", [])]
    values = [f"{v:g}" for v in steps if v is not None]
    return f"; lines at {', '.join(values)}" if values else ""


def reference(models: Sequence[dict[str, Any]]) -> str:
    out = [BEGIN, ""]
    for model in models:
        variables = " → ".join(f"`${v['name']}`" for v in model["templating"]["list"])
        out += [f"### {model['title']} (`{model['uid']}`)", ""]
        out += [f"{model['description']} Variables: {variables}.", ""]
        out += ["| panel | type | InfluxQL |", "|---|---|---|"]
        for panel in model["panels"]:
            kind = panel["type"] + _lines(panel)
            if panel.get("timeFrom"):
                kind += f"; panel time `{panel['timeFrom']}`"
            for step in panel.get("transformations") or []:
                if step.get("id") == ROW_SUM:
                    kind += f"; each row summed as `{step['options']['alias']}`"
            if empty_is_healthy(panel):
                kind += f"; empty: {empty_means(panel)}"
            for target in panel["targets"]:
                query = target["query"].replace("|", "\\|")
                out.append(f"| {panel['title']} | {kind} | `{query}` |")
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    from dashboards.collection import all_dashboards

    print(reference(all_dashboards()), end="")
