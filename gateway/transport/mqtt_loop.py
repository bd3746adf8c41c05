"""The gateway's MQTT network loop: paho's client on a thread of our own.

paho's own loop (``loop_start``) reads one packet per ``select`` and, for every
acknowledgement another thread sends, writes a byte to a socket pair to wake the network
thread, which then competes for the GIL with the thread that acknowledges.  The gateway
acknowledges a whole batch at once after it is durable (up to the receive maximum, 1,000
messages), so that costs it a wake-up, a system call and a thread switch per message.
This loop drives the same client through paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc``): each wake-up reads every packet already waiting on the
socket, and a batch's acknowledgements are handed over in one call and sent from this
thread, with one wake-up per batch (bench/throughput.py's (a') measures this ingest).  The
client (``gateway.transport.paho_client``) reads the socket in chunks, hands the PUBLISH
packets in a chunk over straight from it, and writes a batch's acknowledgements in one
call (bench/transport.py measures what a message costs this thread).

While the processing thread is behind (``held_back()``: the inbox holds more payload than
its budget), it leaves the socket unread (and the client's chunk, at most a few hundred
KB, unparsed), so the broker keeps the rest (TCP's own flow control) and the gateway's
memory is bounded by bytes, not only by the receive maximum's count of messages; for at
most ``max_hold_s`` at a time, because the broker's answer to the keep-alive goes unread
too.

It reconnects as ``loop_forever`` does: after a lost connection it waits, doubling the
wait from ``min_delay_s`` to ``max_delay_s``, and starts again from ``min_delay_s`` once a
connection has been accepted.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt

from gateway.transport.paho_client import GatewayClient

log = logging.getLogger(__name__)

# Packets read per wake-up before the loop turns to acknowledgements and keep-alive.
READS_PER_WAKE = 256
# The longest the loop sleeps in select(): how soon it notices the keep-alive is due.
IDLE_S = 1.0
# At a stop, how long to wait for the broker to close its side after our DISCONNECT.
LINGER_S = 2.0
# Holding back: how often to look whether the processing thread has caught up, and the
# longest hold (a third of the gateway's 30 s keep-alive: paho closes a connection whose
# PINGRESP is not read within a keep-alive of the PINGREQ).
HOLD_POLL_S = 0.01
MAX_HOLD_S = 10.0


class NetworkLoop:
    """Runs ``client``'s network I/O on one thread until ``stop``.

    ``connect_async`` must have been called on the client.  Acknowledgements come in
    through ``ack`` as (connection, mid) pairs, from any thread; only those of the
    connection ``current_connection()`` names when they are sent go out, so a message
    delivered on a connection that has since been lost is left for the broker to resend.
    """

    def __init__(
        self,
        client: GatewayClient,
        current_connection: Callable[[], int],
        *,
        held_back: Callable[[], bool] = lambda: False,
        max_hold_s: float | None = None,
        min_delay_s: float = 1.0,
        max_delay_s: float = 10.0,
        name: str = "gateway-mqtt",
    ) -> None:
        self._client = client
        self._current_connection = current_connection
        self._held_back = held_back
        self._max_hold_s = MAX_HOLD_S if max_hold_s is None else max_hold_s
        self._held_since: float | None = None
        self._min_delay_s = min_delay_s
        self._max_delay_s = max_delay_s
        self._delay_s = min_delay_s
        self._tried = False  # the first connection is tried at once
        self._acks: deque[tuple[int, int]] = deque()
        # A socket pair, not a pipe: a wake after stop() meets a closed socket object,
        # never a file descriptor number the process has since given to something else.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._ended = threading.Event()  # no more connections: stop() or end()
        # With this set, paho queues what other threads send and leaves the writing to us.
        client.on_socket_register_write = self._wanted_write
        client.on_socket_close = self._closing
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ack(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Queue (connection, mid) acknowledgements, in order, and wake the loop once."""
        self._acks.extend(pairs)
        self._wake()

    def connected(self) -> None:
        """A connection was accepted (call from ``on_connect``): the next wait is short."""
        self._delay_s = self._min_delay_s

    def end(self) -> None:
        """Make no more connections (from a callback: the caller disconnects)."""
        self._ended.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send the queued acknowledgements, disconnect, and end the thread."""
        self._stopping.set()
        self._ended.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the MQTT network loop did not end within %g s", timeout_s)
            return
        self._wake_r.close()
        self._wake_w.close()

    # --- the loop thread --------------------------------------------------------------------

    def _wake(self) -> None:
        # Full: the loop is awake already.  Closed: it has ended.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _wanted_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._wake()

    def _closing(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Before paho closes the socket after our DISCONNECT: close our side only, and wait
        for the broker to close its own.  Closed at once, Mosquitto 2.0 was seen to drop
        the last dozens of acknowledgements written just before the DISCONNECT (their
        messages came back at the next start); it closes its side only after it has read
        everything before the DISCONNECT."""
        if not self._stopping.is_set():
            return
        deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                if select.select([sock], [], [], left)[0] and not sock.recv(4096):
                    return  # the broker has closed its side

    def _run(self) -> None:
        client = self._client
        disconnecting = False
        while True:
            if self._stopping.is_set() and not disconnecting:
                self._send_acks()
                disconnecting = True
                client.disconnect()  # queues DISCONNECT; paho closes once it is written
            sock = client.socket()
            if sock is None:
                if self._ended.is_set():
                    return
                self._reconnect()
                continue
            self._turn(sock)

    def _read_ahead(self, sock: Any) -> int:
        """Bytes already read from the socket, waiting in a TLS socket (``pending()``) or
        in the client's chunk (``GatewayClient.buffered()``): ``select`` does not see
        them."""
        pending = getattr(sock, "pending", None)
        return self._client.buffered() + (pending() if pending is not None else 0)

    def _turn(self, sock: Any) -> None:
        """One wake-up: read what is waiting, send acknowledgements and what is queued."""
        client = self._client
        holding = self._holding()
        buffered = not holding and self._read_ahead(sock) > 0
        reads = [self._wake_r] if holding else [sock, self._wake_r]
        writes = [sock] if client.want_write() else []
        wait = HOLD_POLL_S if holding else 0.0 if buffered else IDLE_S
        try:
            readable, _, _ = select.select(reads, writes, [], wait)
        except (OSError, ValueError):  # closed under us: paho notices on the next call
            readable = [] if holding else [sock]
        if sock in readable or buffered:
            self._read(sock)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        self._send_acks()
        if client.want_write():
            client.loop_write()
        client.loop_misc()

    def _read(self, sock: Any) -> None:
        """Every packet already waiting, up to ``READS_PER_WAKE``."""
        client = self._client
        for _ in range(READS_PER_WAKE):
            # A lost connection closes the socket (only this thread makes a new one).
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None:
                return
            if self._held_back():
                return
            if self._read_ahead(sock) > 0:
                continue
            try:
                if not select.select([sock], [], [], 0.0)[0]:
                    return
            except (OSError, ValueError):
                return

    def _holding(self) -> bool:
        """Leave the socket unread this turn: held back, and not for ``max_hold_s`` yet."""
        if not self._held_back():
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since < self._max_hold_s

    def _send_acks(self) -> None:
        acks, mids = self._acks, []
        connection = self._current_connection()
        while acks:
            delivered_on, mid = acks.popleft()
            if delivered_on == connection:
                mids.append(mid)
        if mids:
            self._client.ack_many(mids)

    def _reconnect(self) -> None:
        """Wait (unless this is the first attempt), then connect again."""
        if self._ended.wait(self._delay_s if self._tried else 0.0):
            return
        if self._tried:  # the next wait is twice as long, unless a connection is accepted
            self._delay_s = min(self._delay_s * 2, self._max_delay_s)
        self._tried = True
        try:
            self._client.reconnect()
        except OSError as error:
            log.debug("MQTT connection failed (%s); retrying", error)
