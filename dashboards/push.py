"""Upload the dashboards (and optionally the datasource) through Grafana's HTTP API.

Uses ``grafana-client``: the folder is created if missing, the datasource created or
updated by uid, and each dashboard saved with ``overwrite`` so a push replaces the
previous version.  Pointing the dashboards at another datasource uid rewrites every
panel's, target's and variable's reference.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.influxql import DATASOURCE_UID, INFLUXDB_TYPE
from dashboards.provisioning import FOLDER_TITLE, FOLDER_UID, datasource
from dashboards.validate import validate
from jiayuan.config import InfluxConfig

NOT_FOUND = 404
PUSH_MESSAGE = "jiayuan dashboards push"


class PushError(RuntimeError):
    """Grafana refused a step; the message names the step and Grafana's answer."""


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    url: str  # Grafana's path to the saved dashboard
    version: int


def with_datasource_uid(model: dict[str, Any], uid: str) -> dict[str, Any]:
    """A copy of the dashboard whose InfluxDB references all name datasource ``uid``."""
    copied = copy.deepcopy(model)

    def repoint(node: Any) -> None:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") == INFLUXDB_TYPE:
                source["uid"] = uid
            for value in node.values():
                repoint(value)
        elif isinstance(node, list):
            for value in node:
                repoint(value)

    repoint(copied)
    return copied


def _step(what: str, error: GrafanaException) -> PushError:
    return PushError(f"Grafana refused to {what} (HTTP {error.status_code}): {error.message}")


def _ensure_folder(api: Any, title: str, uid: str) -> None:
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as error:
        if error.status_code != NOT_FOUND:
            raise _step(f"read folder {uid!r}", error) from error
        try:
            api.folder.create_folder(title, uid=uid)
        except GrafanaException as create_error:
            raise _step(f"create folder {title!r}", create_error) from create_error


def _ensure_datasource(api: Any, model: dict[str, Any]) -> None:
    uid = model["uid"]
    try:
        api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as error:
        if error.status_code != NOT_FOUND:
            raise _step(f"read datasource {uid!r}", error) from error
        try:
            api.datasource.create_datasource(model)
        except GrafanaException as create_error:
            raise _step(f"create datasource {uid!r}", create_error) from create_error
        return
    try:
        api.datasource.update_datasource_by_uid(uid, model)
    except GrafanaException as error:
        raise _step(f"update datasource {uid!r}", error) from error


def push(
    models: Sequence[dict[str, Any]],
    url: str,
    token: str,
    *,
    folder_title: str = FOLDER_TITLE,
    folder_uid: str = FOLDER_UID,
    datasource_uid: str = DATASOURCE_UID,
    influx: InfluxConfig | None = None,
    timeout_s: float = 10.0,
) -> list[Pushed]:
    """Save every dashboard in the folder (overwriting); with ``influx``, the datasource
    too.  Raises PushError at the first step Grafana refuses."""
    for model in models:
        validate(model)
    # grafana-client has no type annotations: its API object is Any to mypy.
    api: Any = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    _ensure_folder(api, folder_title, folder_uid)
    if influx is not None:
        _ensure_datasource(api, {**datasource(influx, with_secrets=True), "uid": datasource_uid})
    pushed = []
    for model in models:
        board = with_datasource_uid(model, datasource_uid)
        board.pop("id", None)  # Grafana matches by uid; an id from elsewhere would clash
        try:
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": board,
                    "folderUid": folder_uid,
                    "overwrite": True,
                    "message": PUSH_MESSAGE,
                }
            )
        except GrafanaException as error:
            raise _step(f"save dashboard {board['uid']!r}", error) from error
        pushed.append(
            Pushed(
                uid=str(answer.get("uid", board["uid"])),
                title=str(board["title"]),
                url=str(answer.get("url", "")),
                version=int(answer.get("version", 0)),
            )
        )
    return pushed
