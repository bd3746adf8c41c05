"""Grafana's query macros and template variables, filled in the way Grafana fills them.

Previews and tests run panel queries against InfluxDB without Grafana, so they need the
same substitutions Grafana's InfluxDB datasource makes: ``$timeFilter`` (and the SQL-style
``$__timeFilter``), ``$__interval``/``$__interval_ms``, and ``$var``/``${var}``/``[[var]]``.
Every dashboard here uses its variables inside regular expressions (``=~ /^$estate$/``),
because that is where Grafana's "All" (``.*``) works; Grafana escapes a value there, and so
does :func:`expand`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Grafana's own names, longest first so ``$__interval_ms`` is not read as ``$__interval``.
TIME_FILTER_MACROS = ("$__timeFilter", "$timeFilter")
INTERVAL_MACROS = ("$__interval_ms", "$__interval")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)")
# Grafana aims at about this many points per panel (a panel's maxDataPoints default).
MAX_DATA_POINTS = 300
# The datasource's minimum interval (provisioned as its timeInterval): the gateway's
# gauges (alert_open) are written every 10 s, so a finer bucket would show gaps.
MIN_INTERVAL_MS = 10_000
ALL = ".*"


class UnknownVariable(KeyError):
    """A query names a template variable the dashboard does not define."""


def interval_ms(start_ms: int, end_ms: int, minimum_ms: int = MIN_INTERVAL_MS) -> int:
    """The ``$__interval`` Grafana picks for a range: about MAX_DATA_POINTS buckets,
    rounded to a whole second, never under the panel's minimum interval."""
    raw = max(end_ms - start_ms, 0) // MAX_DATA_POINTS
    return max(minimum_ms, (raw // 1000) * 1000)


def expand(
    query: str,
    variables: Mapping[str, str],
    start_ms: int,
    end_ms: int,
    step_ms: int | None = None,
) -> str:
    """The query as InfluxDB receives it from Grafana.

    ``variables`` maps names to chosen values (``ALL`` for every value; anything else is
    regex-escaped).  Raises UnknownVariable naming any ``$name`` the mapping lacks.
    """
    step = step_ms if step_ms is not None else interval_ms(start_ms, end_ms)
    text = query
    time_filter = f"time >= {start_ms}ms AND time <= {end_ms}ms"
    for macro in TIME_FILTER_MACROS:
        text = text.replace(macro, time_filter)
    text = text.replace("$__interval_ms", str(step)).replace("$__interval", f"{step // 1000}s")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise UnknownVariable(
                f"query uses ${name}, which is not one of the variables "
                f"{sorted(variables) or 'none'}: {query}"
            )
        value = variables[name]
        return value if value == ALL else re.escape(value)

    return _VARIABLE.sub(substitute, text)


def variable_names(query: str) -> set[str]:
    """The template variables a query uses (Grafana's built-in macros left out)."""
    text = query
    for macro in (*TIME_FILTER_MACROS, *INTERVAL_MACROS):
        text = text.replace(macro, "")
    return {m.group(1) or m.group(2) or m.group(3) for m in _VARIABLE.finditer(text)}
