"""MQTT ingest: a persistent session that hands messages to the processing thread.

paho-mqtt 2.x, MQTT v5 (or 3.1.1: ``[mqtt] gateway_protocol``), ``manual_ack=True``: a QoS 1
message is acknowledged only once its readings are durable, so a crash loses nothing (the
broker redelivers).  The session is persistent (fixed client id; v5: clean start off and a
long session expiry; 3.1.1: clean session off, expiry as the broker is configured), so the
broker queues QoS 1 messages while the gateway is down.  ``on_message`` only enqueues: no
work on the network thread.  The client runs on the gateway's own network loop
(``gateway.transport.mqtt_loop``), which reconnects and sends a batch's acknowledgements together;
every (re)connect subscribes again.

Scale-out (docs/scaling.md): an instance owns the streets in ``[mqtt] street_filter`` ("+"
for all, or "a,b"), one subscription per street, so every message of a device reaches the
one instance that holds its detector state.  Each instance needs its own
``gateway_client_id``: a second one connecting with the same id takes the session over;
where the broker says so (MQTT v5 reason 0x8E: EMQX, HiveMQ; Mosquitto 2.0 just closes the
connection) the first stops with an error instead of taking it back in a loop.  Where it
does not, connections that keep ending within seconds of being made
(``gateway.transport.mqtt_flaps``) are reported as an error and make ``/health`` degraded.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from time import time_ns
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.pipeline import Message, wall_ms
from gateway.transport.inbox import Inbox
from gateway.transport.mqtt_flaps import ShortConnections
from gateway.transport.mqtt_loop import NetworkLoop
from gateway.transport.paho_client import GatewayClient
from gateway.transport.paho_publish import install as install_fast_publish_decoding
from jiayuan.broker_auth import client_tls_context
from jiayuan.config import ConfigError, MqttConfig
from jiayuan.contract import subscription

log = logging.getLogger(__name__)

# A week: long enough to ride out any outage we plan for, bounded so an abandoned
# gateway id does not make the broker queue messages forever.
SESSION_EXPIRY_S = 7 * 24 * 3600
# How many unacknowledged messages the broker may send us: bounds our memory while
# InfluxDB is down (the rest waits in the broker's queue).
RECEIVE_MAXIMUM = 1000
# And how many bytes of payload may wait for the processing thread before the network loop
# stops reading (gateway.transport.inbox): a few processor batches of edge messages (5,000 readings
# are about 1.4 MB), where a thousand of them would be 28 MB.
MAX_WAITING_BYTES = 4 * 1024 * 1024
KEEPALIVE_S = 30
ALL_STREETS = "+"
# The contract's rule for one topic segment (jiayuan/contract.py parse_topic).
_STREET = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# MQTT v5 DISCONNECT reason: another client connected with our client id.
SESSION_TAKEN_OVER = 142


def owned_streets(street_filter: str) -> tuple[str, ...]:
    """The streets in a ``street_filter`` ("+" or "a,b"), in order, each once.

    Raises ConfigError naming the bad part: an empty name, a character a topic segment may
    not hold (an MQTT wildcard would silently take other instances' streets), or "+" mixed
    with named streets.
    """
    parts = [part.strip() for part in street_filter.split(",")]
    if parts == [ALL_STREETS]:
        return (ALL_STREETS,)
    if ALL_STREETS in parts:
        raise ConfigError(
            f"[mqtt] street_filter {street_filter!r}: '+' means every street; "
            "give it alone or name the streets"
        )
    for part in parts:
        if not _STREET.fullmatch(part):
            raise ConfigError(
                f"[mqtt] street_filter {street_filter!r}: {part!r} is not a street id "
                "(1-64 of A-Z a-z 0-9 _ . -, separated by commas)"
            )
    return tuple(dict.fromkeys(parts))


def street_subscriptions(street_filter: str) -> tuple[str, ...]:
    """One MQTT topic filter per owned street (streets never overlap: no double delivery)."""
    return tuple(subscription(street) for street in owned_streets(street_filter))


class MqttIngest:
    def __init__(self, config: MqttConfig, inbox: Inbox) -> None:
        self.config = config
        # ("+",) for every street; the gateway resumes only these streets' devices.
        self.streets = owned_streets(config.street_filter)
        self._filtered = ALL_STREETS not in self.streets  # messages of other streets may come
        self.topic_filters = street_subscriptions(config.street_filter)
        self._inbox = inbox
        self._session = 0
        self._taken_over = threading.Event()
        self.short_connections = ShortConnections()
        # Streets given up since an earlier run (see _drop_stale_street), and those whose
        # unsubscription the broker has confirmed.
        self._stale: dict[int, str] = {}
        self.unsubscribed: set[str] = set()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._v5 = config.gateway_protocol == "5"
        if self._v5:
            install_fast_publish_decoding()
        client = GatewayClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.gateway_client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            # MQTT 3.1.1: a persistent session is one without a clean session.
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        tls = client_tls_context(config)
        if tls is not None:
            client.tls_set_context(tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.deliver_publish = self._deliver
        self._client = client
        self._loop = NetworkLoop(
            client,
            self._live_session,
            held_back=lambda: inbox.held_back(MAX_WAITING_BYTES),
            min_delay_s=1,
            max_delay_s=10,
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def topic_filter(self) -> str:
        """The subscriptions as one line, for logs and the start banner."""
        return " ".join(self.topic_filters)

    @property
    def taken_over(self) -> bool:
        """Another client connected with this client id; this one has stopped for good."""
        return self._taken_over.is_set()

    @property
    def unstable(self) -> bool:
        """Connections keep ending within seconds of being made: another instance with
        this client id, or a failing link (``gateway.transport.mqtt_flaps``)."""
        return self.short_connections.unstable

    @property
    def session(self) -> int:
        """Counts connections; a message is acknowledged only on the one that delivered it."""
        return self._session

    def start(self) -> None:
        # Asynchronous: a broker that is down at start is retried by the network thread.
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
            self._client.connect_async(
                self.config.host,
                self.config.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=properties,
            )
        else:
            self._client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE_S)
        self._loop.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def ack(self, messages: Sequence[Message]) -> int:
        """Acknowledge messages, in order; how many will be.  One whose connection is gone
        is not: the broker redelivers it.  The network loop sends them all at once."""
        session = self._live_session()
        # The subscriptions are QoS 1, so the broker sends nothing above it; QoS 0 needs
        # no acknowledgement.
        pairs = [(m.session, m.mid) for m in messages if m.qos == 1 and m.session == session]
        if pairs:
            self._loop.ack(pairs)
        return len(pairs) + sum(1 for m in messages if m.qos == 0)

    def stop(self) -> None:
        """Send the acknowledgements queued, disconnect cleanly; the session (and anything
        unacknowledged) stays at the broker."""
        self._loop.stop()
        self._connected.clear()

    def _live_session(self) -> int:
        """The connection messages are acknowledged on; -1 while there is none."""
        return self._session if self._connected.is_set() else -1

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
        self._loop.connected()
        self.short_connections.connected()
        self._connected.set()
        log.info(
            "connected to MQTT broker %s (session present: %s)",
            self.config.url,
            flags.session_present,
        )
        if ALL_STREETS not in self.streets:
            # An earlier run of this session may have owned every street: let that go.
            client.unsubscribe(subscription(ALL_STREETS))
        client.subscribe([(topic_filter, 1) for topic_filter in self.topic_filters])

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
        if reason_code == SESSION_TAKEN_OVER:
            # Reconnecting would take the session back and the two would alternate for
            # ever, each getting part of the traffic: stop, and say why.
            self._taken_over.set()
            log.error(
                "another gateway connected to %s with the same client id %r and took over "
                "its session; this instance stops receiving. Give every instance its own "
                "gateway_client_id (--client-id)",
                self.config.url,
                self.config.gateway_client_id,
            )
            self._loop.end()
            client.disconnect()
            return
        if not reason_code.is_failure:
            return
        if self.short_connections.lost():
            flaps = self.short_connections
            log.error(
                "the MQTT broker %s closed this gateway's connection within %g s of making it "
                "%d times in %g s. Another gateway is probably using the client id %r: the "
                "broker gives the session to the newest connection, so the two replace "
                "each other and each judges only part of every device's readings. Give "
                "every instance its own gateway_client_id (--client-id). Otherwise the "
                "link to the broker keeps failing",
                self.config.url,
                flaps.short_s,
                flaps.recent,
                flaps.window_s,
                self.config.gateway_client_id,
            )
        else:
            # Who ended it tells a keep-alive the broker missed (nothing sent for 1.5
            # keep-alives) from one this gateway missed (nothing read for a keep-alive).
            side = "said by the broker" if flags.is_disconnect_packet_from_server else "found here"
            log.warning(
                "lost the MQTT broker %s (%s, %s); reconnecting", self.config.url, reason_code, side
            )

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        street = self._stale.pop(mid, None)
        if street is not None:
            self.unsubscribed.add(street)

    def _drop_stale_street(self, topic: str) -> None:
        """Unsubscribe from a street this instance no longer owns.

        The session is persistent, so the broker keeps the subscriptions of an earlier run
        with other streets (or "+").  What that session queued is still processed here (it
        is in no other instance's queue); the unsubscription stops the rest.
        """
        if ALL_STREETS in self.streets:
            return
        parts = topic.split("/")
        if len(parts) < 4:
            return
        street = parts[3]
        if street in self.streets or street in self._stale.values() or street in self.unsubscribed:
            return
        log.warning(
            "received street %r, which this gateway no longer owns (a subscription kept by "
            "the persistent session %r); unsubscribing",
            street,
            self.config.gateway_client_id,
        )
        result, mid = self._client.unsubscribe([subscription(street), subscription(ALL_STREETS)])
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._stale[mid] = street

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker should refuse these; keep the evidence
            topic = message._topic.decode("utf-8", "replace")
        self._drop_stale_street(topic)
        self._inbox.put(
            Message(
                topic, bytes(message.payload), message.mid, message.qos, wall_ms(), self._session
            )
        )

    def _deliver(self, topic: bytes, payload: bytes, mid: int, qos: int) -> bool:
        """A PUBLISH from the client's own read (``GatewayClient.deliver_publish``): what
        ``_on_message`` does with paho's message; False once the network loop should stop
        reading (the inbox over its budget)."""
        try:
            text = topic.decode()
        except UnicodeDecodeError:  # the broker should refuse these; keep the evidence
            text = topic.decode("utf-8", "replace")
        if self._filtered:
            self._drop_stale_street(text)
        received_ms = time_ns() // 1_000_000  # wall_ms(), without a call for every message
        message = Message(text, payload, mid, qos, received_ms, self._session)
        return self._inbox.put(message, MAX_WAITING_BYTES)
