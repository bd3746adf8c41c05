"""Grafana provisioning files: the InfluxDB datasource, the dashboard provider, the JSON.

``build`` writes a directory a Grafana server can use as it is::

    OUT/provisioning/datasources/jiayuan.yaml   → /etc/grafana/provisioning/datasources/
    OUT/provisioning/dashboards/jiayuan.yaml    → /etc/grafana/provisioning/dashboards/
    OUT/dashboards/<uid>.json                   → the provider's path

Secrets never land in these files: the datasource refers to ``$JIAYUAN_INFLUX_PASSWORD``
or ``$JIAYUAN_INFLUX_TOKEN``, which Grafana expands from its own environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dashboards.influxql import DATASOURCE_UID, INFLUXDB_TYPE
from dashboards.macros import MIN_INTERVAL_MS
from dashboards.validate import validate
from jiayuan.config import InfluxConfig

DATASOURCE_NAME = "家园 Jiayuan InfluxDB"
FOLDER_TITLE = "家园 Jiayuan"
FOLDER_UID = "jiayuan"
PASSWORD_VARIABLE = "$JIAYUAN_INFLUX_PASSWORD"
TOKEN_VARIABLE = "$JIAYUAN_INFLUX_TOKEN"


def datasource(influx: InfluxConfig, *, with_secrets: bool = False) -> dict[str, Any]:
    """Grafana's InfluxDB datasource in InfluxQL mode, for the configured API.

    v1: database plus optional user/password (InfluxDB 1.x, or the v1 API of 2.x/3.x).
    v2: the bucket as database through the DBRP mapping, authorised by the token in an
    ``Authorization: Token`` header, which InfluxQL on 2.x and 3.x accepts.
    ``with_secrets`` puts the real password or token in (for the HTTP API push);
    otherwise an environment reference that provisioning expands.
    """
    json_data: dict[str, Any] = {
        "version": "InfluxQL",
        "httpMode": "POST",
        "timeInterval": f"{MIN_INTERVAL_MS // 1000}s",
    }
    secure: dict[str, str] = {}
    model: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": INFLUXDB_TYPE,
        "access": "proxy",
        "url": influx.url,
        "isDefault": True,
        "editable": False,
        "jsonData": json_data,
    }
    if influx.api == "v2":
        json_data["dbName"] = influx.bucket or influx.database
        json_data["httpHeaderName1"] = "Authorization"
        token = influx.token if with_secrets else TOKEN_VARIABLE
        secure["httpHeaderValue1"] = f"Token {token}"
    else:
        json_data["dbName"] = influx.database
        if influx.username:
            model["user"] = influx.username
            secure["password"] = influx.password if with_secrets else PASSWORD_VARIABLE
    if secure:
        model["secureJsonData"] = secure
    return model


def datasource_file(influx: InfluxConfig) -> dict[str, Any]:
    return {"apiVersion": 1, "datasources": [datasource(influx)]}


def provider_file(dashboards_path: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "jiayuan",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
            }
        ],
    }


def dashboard_text(model: dict[str, Any]) -> str:
    return json.dumps(model, ensure_ascii=False, indent=2) + "\n"


def build(
    out_dir: Path,
    influx: InfluxConfig,
    models: Sequence[dict[str, Any]],
    dashboards_path: str | None = None,
) -> list[Path]:
    """Validate every dashboard, then write them with the provisioning files."""
    for model in models:
        validate(model)
    board_dir = out_dir / "dashboards"
    datasource_dir = out_dir / "provisioning" / "datasources"
    provider_dir = out_dir / "provisioning" / "dashboards"
    for directory in (board_dir, datasource_dir, provider_dir):
        directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in models:
        path = board_dir / f"{model['uid']}.json"
        path.write_text(dashboard_text(model), encoding="utf-8")
        written.append(path)
    files = {
        datasource_dir / "jiayuan.yaml": datasource_file(influx),
        provider_dir / "jiayuan.yaml": provider_file(dashboards_path or str(board_dir.resolve())),
    }
    for path, content in files.items():
        path.write_text(
            yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        written.append(path)
    return written
