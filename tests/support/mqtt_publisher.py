"""A plain MQTT publisher for the tests that drive the real gateway (the ``publisher``
fixture in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jiayuan.contract import Envelope, Reading, batch_topic, encode

PLACE = ("songjiang", "fangsong", "e1")
EDGE = "edge1"


class Publisher:
    """A plain paho client publishing QoS 1 and waiting for each PUBACK."""

    def __init__(self, url_port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:6]}"
        )
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def readings(self, readings: Sequence[Reading], edge: str = EDGE) -> None:
        self.send(
            batch_topic(*PLACE, edge), encode(Envelope(v=1, edge=edge, readings=list(readings)))
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
