"""The edge's MQTT client: aiomqtt's, registering a socket for writing only while it is
open.

aiomqtt (2.5) answers paho's "register this socket for writing" by scheduling
``loop.add_writer`` with the socket's file number as it was when paho asked (paho may ask
from aiomqtt's connect thread, hence the scheduling).  When paho closes the socket before
that runs — the connection ending in the same turn of the loop as a publish — the
selector is handed a closed descriptor, and asyncio logs an ``EBADF`` traceback for it (at
the end of a district's replay, one an edge).  Here the registration looks at the socket
when it runs, and leaves a closed one alone: there is nothing left to write to.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt


class UplinkClient(aiomqtt.Client):
    def _on_socket_register_write(
        self,
        client: mqtt.Client,
        userdata: Any,
        sock: Any,
    ) -> None:
        def write_ready() -> None:
            # As aiomqtt's own: a failing write means the connection broke.
            try:
                client.loop_write()
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register_if_open() -> None:
            fileno = sock.fileno()  # -1 once closed
            if fileno >= 0:
                self._loop.add_writer(fileno, write_ready)

        self._loop.call_soon_threadsafe(register_if_open)
