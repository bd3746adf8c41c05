"""MQTT ingest: a persistent session that hands messages to the processing thread.

paho-mqtt 2.x, MQTT v5, ``manual_ack=True``: a QoS 1 message is acknowledged only once its
readings are durable, so a crash loses nothing (the broker redelivers).  The session is
persistent (fixed client id, clean start off, a long session expiry), so the broker queues
QoS 1 messages while the gateway is down.  ``on_message`` only enqueues: no work on the
network thread.  paho reconnects by itself; every (re)connect subscribes again.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.pipeline import Message, wall_ms
from jiayuan.broker_auth import client_tls_context
from jiayuan.config import MqttConfig
from jiayuan.contract import subscription

log = logging.getLogger(__name__)

# A week: long enough to ride out any outage we plan for, bounded so an abandoned
# gateway id does not make the broker queue messages forever.
SESSION_EXPIRY_S = 7 * 24 * 3600
# How many unacknowledged messages the broker may send us: bounds our memory while
# InfluxDB is down (the rest waits in the broker's queue).
RECEIVE_MAXIMUM = 1000
KEEPALIVE_S = 30


class MqttIngest:
    def __init__(self, config: MqttConfig, inbox: queue.SimpleQueue[Message]) -> None:
        self.config = config
        self.topic_filter = subscription(config.street_filter)
        self._inbox = inbox
        self._session = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.gateway_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        tls = client_tls_context(config)
        if tls is not None:
            client.tls_set_context(tls)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def session(self) -> int:
        """Counts connections; a message is acknowledged only on the one that delivered it."""
        return self._session

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        # Asynchronous: a broker that is down at start is retried by the network thread.
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def ack(self, message: Message) -> bool:
        """Acknowledge a message; False when its connection is gone (it will be redelivered)."""
        if message.qos == 0:
            return True
        if message.session != self._session or not self._connected.is_set():
            return False
        result = self._client.ack(message.mid, message.qos)
        return result == mqtt.MQTT_ERR_SUCCESS

    def stop(self) -> None:
        """Disconnect cleanly; the session (and anything unacknowledged) stays at the broker."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # --- callbacks, on paho's network thread -----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.config.url, reason_code)
            return
        self._session += 1
        self._connected.set()
        log.info(
            "connected to MQTT broker %s (session present: %s)",
            self.config.url,
            flags.session_present,
        )
        client.subscribe(self.topic_filter, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error(
                "MQTT broker refused the subscription to %s: %s", self.topic_filter, reason_codes
            )
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if reason_code.is_failure:
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.config.url, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker should refuse these; keep the evidence
            topic = message._topic.decode("utf-8", "replace")
        self._inbox.put(
            Message(
                topic, bytes(message.payload), message.mid, message.qos, wall_ms(), self._session
            )
        )
