"""The InfluxQL query of a Grafana panel, as a type the foundation SDK understands.

The SDK (Grafana 11.6 types) ships dataquery types for Prometheus, Loki and others but none
for InfluxDB, so this module adds one: it builds the target JSON Grafana's InfluxDB
datasource stores for a raw InfluxQL query, and registers a decoder so that
``Dashboard.from_json`` turns such targets back into this type (the round trip that
``dashboards.validate`` relies on).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

INFLUXDB_TYPE = "influxdb"
# The uid provisioning gives the datasource; every panel and variable refers to it.
DATASOURCE_UID = "jiayuan-influxdb"
DATASOURCE = DataSourceRef(type_val=INFLUXDB_TYPE, uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target: what the query editor saves in "raw query" mode."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        result_format: ResultFormat = "time_series",
        alias: str = "",
        datasource: DataSourceRef | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format: ResultFormat = result_format
        self.alias = alias
        self.datasource = datasource if datasource is not None else DATASOURCE

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": self.datasource.to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        if data.get("rawQuery") is not True or not isinstance(data.get("query"), str):
            raise ValueError(f"target {data.get('refId', '?')}: not a raw InfluxQL query")
        result_format = data.get("resultFormat", "time_series")
        if result_format not in ("time_series", "table"):
            raise ValueError(f"target {data.get('refId', '?')}: resultFormat {result_format!r}")
        return cls(
            ref_id=str(data.get("refId", "A")),
            query=data["query"],
            result_format=result_format,
            alias=str(data.get("alias", "")),
            datasource=DataSourceRef.from_json(data.get("datasource") or {}),
        )


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for panels' ``with_target``: ``InfluxQL("SELECT …").ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self


def register() -> None:
    """Let the SDK decode InfluxDB targets (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=INFLUXDB_TYPE, from_json_hook=InfluxQLQuery.from_json)
    )


register()
