"""The fast decoder of MQTT 5 PUBLISH packets without properties
(gateway/transport/paho_publish.py).

It sits in front of paho's own decoder for every paho client in the process, so it must
decode exactly as paho does: compared here on generated packets, with and without
properties, well-formed and not; and on the real Mosquitto, a gateway ingest receives
messages with and without properties.
"""

from __future__ import annotations

import uuid

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.transport import paho_publish
from gateway.transport.inbox import Inbox
from gateway.transport.ingest import MqttIngest
from jiayuan.config import MqttConfig
from tools.servers import RunningServers

assert paho_publish.install(), "the installed paho-mqtt is not one the fast path was checked on"
_paho_decode = paho_publish._paho_decode
assert _paho_decode is not None

PROTOCOLS = st.sampled_from([MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])


@st.composite
def publish_properties(draw: st.DrawFn) -> Properties | None:
    if draw(st.booleans()):
        return None  # the common case: an empty section
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if draw(st.booleans()):
        properties.ContentType = draw(st.text(max_size=20))
    if draw(st.booleans()):
        properties.MessageExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        properties.UserProperty = (draw(st.text(max_size=8)), draw(st.text(max_size=8)))
    return properties


@st.composite
def publish_packets(draw: st.DrawFn) -> tuple[int, bytearray | bytes, MQTTProtocolVersion]:
    """(fixed header byte, variable header and payload, protocol) as paho's reader has them."""
    protocol = draw(PROTOCOLS)
    qos = draw(st.integers(0, 2))
    header = 0x30 | draw(st.integers(0, 1)) << 3 | qos << 1 | draw(st.integers(0, 1))
    topic = draw(st.text(min_size=1, max_size=80)).encode()
    packet = bytearray(len(topic).to_bytes(2, "big") + topic)
    if qos:
        packet += draw(st.integers(1, 65535)).to_bytes(2, "big")
    if protocol == MQTTProtocolVersion.MQTTv5:
        properties = draw(publish_properties())
        packet += b"\0" if properties is None else properties.pack()
    packet += draw(st.binary(max_size=300))
    return header, packet if draw(st.booleans()) else bytes(packet), protocol


def same_decoding(header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion) -> None:
    try:
        expected = _paho_decode(header, bytes(packet), protocol)
    except Exception as error:  # paho refuses it: so must the fast path, alike
        try:
            paho_publish.decode_publish(header, packet, protocol)
        except Exception as fast_error:
            assert (type(fast_error), str(fast_error)) == (type(error), str(error))
            return
        raise AssertionError(f"paho refused it ({error!r}); the fast path did not") from None
    got = paho_publish.decode_publish(header, packet, protocol)
    assert got._replace(properties=None) == expected._replace(properties=None)
    assert [type(field) for field in got] == [type(field) for field in expected]
    if expected.properties is None:
        assert got.properties is None
    else:
        assert got.properties is not None
        assert vars(got.properties) == vars(expected.properties)


@settings(max_examples=600, deadline=None)
@given(publish_packets())
def test_a_publish_decodes_as_paho_decodes_it(
    case: tuple[int, bytearray | bytes, MQTTProtocolVersion],
) -> None:
    same_decoding(*case)


@settings(max_examples=600, deadline=None)
@given(st.integers(0x30, 0x3F), st.binary(max_size=40), PROTOCOLS)
def test_any_bytes_decode_or_fail_as_paho_does(
    header: int, packet: bytes, protocol: MQTTProtocolVersion
) -> None:
    same_decoding(header, bytearray(packet), protocol)


def test_it_stands_in_front_of_paho_and_makes_fresh_properties() -> None:
    assert _packet.decode_publish is paho_publish.decode_publish
    packet = bytearray(b"\x00\x01t\x00\x07\x00payload")
    first = paho_publish.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
    assert (first.topic, first.mid, first.payload) == (b"t", 7, b"payload")
    assert first.properties is not None and first.properties.isEmpty()
    first.properties.ContentType = "text/plain"  # a caller may set what it likes on it
    second = paho_publish.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
    assert second.properties is not None and second.properties.isEmpty()
    assert paho_publish.install()  # a second install changes nothing
    assert paho_publish._paho_decode is _paho_decode


def test_an_ingest_receives_messages_with_and_without_properties(
    servers: RunningServers,
) -> None:
    inbox: Inbox = Inbox()
    config = MqttConfig(url=servers.mqtt_url, gateway_client_id=f"fast-{uuid.uuid4().hex[:8]}")
    ingest = MqttIngest(config, inbox)
    ingest.start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert ingest.wait_subscribed(10)
        publisher.connect("127.0.0.1", servers.mqtt_port)
        publisher.loop_start()
        topic = "jiayuan/v1/songjiang/fangsong/e1/lift/l1/telemetry"
        with_properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        with_properties.ContentType = "application/json"
        with_properties.UserProperty = ("vendor", "acme")
        for payload, properties in ((b"plain", None), (b"with", with_properties)):
            publisher.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)
        got = [inbox.get(timeout=10) for _ in range(2)]
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            (topic, b"plain", 1),
            (topic, b"with", 1),
        ]
        assert ingest.ack(got) == 2
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        ingest.stop()
