"""The edge's MQTT client at the end of a connection: a socket paho closes before the
event loop has registered it for writing is left alone, not handed to the selector."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import aiomqtt
import pytest

from edge.uplink_client import UplinkClient
from jiayuan.config import Config


async def _loop_failures_when_closed_mid_registration(
    client_class: type[aiomqtt.Client], config: Config
) -> list[dict[str, Any]]:
    """What the event loop reports when paho asks for a write (a publish) and closes the
    socket in the same turn of the loop, as when the connection ends while a message goes
    out (seen at the end of a district's replay: one traceback an edge)."""
    failures: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    client = client_class(
        config.mqtt.host,
        config.mqtt.port,
        identifier=f"jiayuan-test-{uuid.uuid4().hex[:8]}",
    )
    with contextlib.suppress(aiomqtt.MqttError):
        async with client:
            paho = client._client
            sock = paho.socket()
            assert sock is not None
            paho.publish("jiayuan/test/uplink", b"x", qos=0)  # asks for the write registration
            sock.close()
            await asyncio.sleep(0.05)
    return failures


@pytest.mark.servers
def test_a_socket_closed_before_its_write_registration_runs_is_left_alone(config: Config) -> None:
    assert asyncio.run(_loop_failures_when_closed_mid_registration(UplinkClient, config)) == []


@pytest.mark.servers
def test_aiomqtts_own_client_still_hands_the_closed_socket_to_the_selector(
    config: Config,
) -> None:
    """The reason for UplinkClient: when aiomqtt stops doing this, it can go."""
    failures = asyncio.run(_loop_failures_when_closed_mid_registration(aiomqtt.Client, config))
    assert [type(f.get("exception")) for f in failures] == [OSError]
