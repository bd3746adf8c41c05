"""A faster decode of MQTT 5 PUBLISH packets that carry no properties, for paho-mqtt 2.2.

For every MQTT 5 PUBLISH, paho builds a ``Properties`` object (whose constructor fills its
tables of every property name and type afresh) and parses the packet's property section,
even when that section is empty, as it is in everything edges and devices send here.  That
made decoding an MQTT 5 PUBLISH several times the cost of the same packet under MQTT 3.1.1,
a large share of what the gateway spends on a one-reading message (bench/README.md).

``install()`` puts a decoder in front of paho's own ``decode_publish``: a PUBLISH whose
property section is empty it decodes itself, into the same ``PublishPacket`` field for
field, with a fresh empty ``Properties`` copied from a pristine one (its tables, which
paho only reads, are shared); every other packet, and anything malformed, goes to paho's
decoder as before.  It is installed only on the paho versions it was checked against
(``VERIFIED``): ``tests/gateway/test_paho_publish.py`` compares the two decoders on generated
packets, so a paho release that changes what a PUBLISH decodes to fails there first.
It affects every paho client in the process, which is why it must decode exactly as paho.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt
from paho.mqtt import _packet
from paho.mqtt._packet import PublishPacket
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

VERIFIED = ("2.2.",)

Decoder = Callable[[int, bytes | bytearray, MQTTProtocolVersion], PublishPacket]
_paho_decode: Decoder | None = None
_pristine = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def empty_publish_properties() -> Properties:
    """What ``Properties(PacketTypes.PUBLISH)`` makes, without building its tables again."""
    properties: Properties = Properties.__new__(Properties)
    properties.__dict__.update(_pristine.__dict__)
    return properties


def install() -> bool:
    """Put the fast decoder in front of paho's (once); False where it was not checked."""
    global _paho_decode
    if _paho_decode is not None:
        return True
    if not paho.mqtt.__version__.startswith(VERIFIED):
        log.info(
            "paho-mqtt %s: MQTT 5 PUBLISH packets decoded by paho alone (the fast path is "
            "checked against %s)",
            paho.mqtt.__version__,
            ", ".join(f"{v}x" for v in VERIFIED),
        )
        return False
    _paho_decode = _packet.decode_publish
    _packet.decode_publish = decode_publish
    return True


def decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> PublishPacket:
    """paho's ``decode_publish``, with the common MQTT 5 case done here."""
    assert _paho_decode is not None, "install() first"
    if protocol == MQTTProtocolVersion.MQTTv5:
        qos = (header & 0x06) >> 1
        size = len(packet)
        if size >= 2:
            topic_end = 2 + ((packet[0] << 8) | packet[1])
            properties_at = topic_end + 2 if qos else topic_end
            # One zero byte: a property section of length 0.
            if properties_at < size and packet[properties_at] == 0:
                with memoryview(packet) as view:
                    return PublishPacket(
                        dup=(header & 0x08) != 0,
                        qos=qos,
                        retain=(header & 0x01) != 0,
                        topic=bytes(view[2:topic_end]),
                        mid=(packet[topic_end] << 8) | packet[topic_end + 1] if qos else 0,
                        properties=empty_publish_properties(),
                        payload=bytes(view[properties_at + 1 :]),
                    )
    return _paho_decode(header, packet, protocol)
