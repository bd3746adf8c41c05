"""The edge agent of one estate: driver → spool → MQTT, losing nothing while the uplink is down.

Two tasks share the spool.  The poller reads the driver every ``poll_interval_s`` and
appends what it returns; it never waits for the network.  The uplink connects (with a
retained last will ``offline``), announces ``online`` (retained), and publishes the spool
as batched envelopes with QoS 1, several messages awaiting PUBACK at once.  A reading
leaves the spool only once the broker has acknowledged its message.  A clean stop
announces ``stopped`` (retained) before disconnecting, so the gateway tells planned
maintenance from an outage.

Live first, backlog paced.  What was spooled while the uplink was down (or by an earlier
run) is the connection's backlog, unless it spans at most ``IN_ORDER_BACKLOG_MS`` (15
minutes) of device time: a short outage's readings go out first, in order, and the gateway
judges all of them.  What is spooled once the connection is up is live.  Live readings go
out as soon as they are spooled, oldest first; the backlog, oldest first, at most
``[edge] replay_rate_limit`` readings a second, with one in-flight slot kept for live
messages, and marked ``"replay": true`` so the gateway queues it behind live traffic
(docs/protocol.md).  A fire alarm during the replay of an hour's backlog is therefore
sent at once, and a district's edges reconnecting together do not bury the gateway.

When the connection fails, everything in flight is abandoned and the next connection
starts again with everything still spooled as its backlog: messages the broker received
but did not acknowledge are sent again (the gateway drops the repeated readings).  Within
the backlog and within the live readings each device's readings reach the broker in
order; a device's live readings overtake its backlog, and the gateway's duplicate windows
and detection expect that (docs/detection.md, "Replayed readings").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import msgspec

from edge.drivers import BackgroundDriver, Driver
from edge.spool import Spool
from edge.uplink_client import UplinkClient
from jiayuan.broker_auth import client_tls_context
from jiayuan.config import EdgeConfig, MqttConfig
from jiayuan.contract import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    SCHEMA_VERSION,
    EdgeState,
    EdgeStatus,
    batch_topic,
    edge_status_topic,
    encode,
)

log = logging.getLogger(__name__)

# Room for the envelope around the readings, so a batch never exceeds MAX_PAYLOAD_BYTES.
_ENVELOPE_ROOM = 200


# A short outage's backlog is sent before the live readings, in order and not marked as a
# replay, so the gateway judges all of it (a fault that began and ended while the uplink
# was down still raises its alert); a longer one goes live first, its backlog paced, stored
# and judged only for its events (docs/detection.md, "Replayed readings").
IN_ORDER_BACKLOG_MS = 15 * 60_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class EdgePlace:
    """Where an edge agent sits; its topics carry all four."""

    district: str
    street: str
    estate: str
    edge_id: str


@dataclass(slots=True)
class EdgeStats:
    samples_read: int = 0  # samples returned by the driver
    readings_spooled: int = 0  # readings appended to the spool by this agent
    readings_acked: int = 0  # readings whose message the broker acknowledged
    readings_replayed: int = 0  # of those, readings sent as a connection's backlog
    messages_acked: int = 0
    connects: int = 0  # successful connections, the first included
    reconnects: int = 0  # successful connections after the first
    connection_errors: int = 0  # failed attempts and lost connections
    readings_dropped: int = 0  # dropped because the spool's budget was reached
    spool_bytes: int = 0  # bytes of readings in the spool (what edge.spool_max_bytes bounds)
    spool_budget_warning: bool = False  # the spool holds edge.spool_warn_fraction of its budget
    pending: int = 0  # readings in the spool, in flight included
    connected: bool = False


def envelope_payload(edge_id: str, bodies: Sequence[bytes], *, replay: bool = False) -> bytes:
    """The JSON of ``Envelope(v, edge, readings, replay)`` built from readings already
    encoded.

    Spooled readings are stored encoded, so a batch is spliced, not decoded and re-encoded.
    The replay marker comes before the readings, where the gateway's network thread looks
    for it without decoding the message (gateway.transport.inbox).
    """
    return b"".join(
        (
            b'{"v":',
            str(SCHEMA_VERSION).encode(),
            b',"replay":true' if replay else b"",
            b',"edge":',
            msgspec.json.encode(edge_id),
            b',"readings":[',
            b",".join(bodies),
            b"]}",
        )
    )


class EdgeAgent:
    """One estate's agent.  ``run`` may be called once: it closes the spool when it ends."""

    def __init__(
        self,
        mqtt: MqttConfig,
        edge: EdgeConfig,
        place: EdgePlace,
        driver: Driver,
        spool_path: Path,
        clock: Callable[[], int] = wall_clock_ms,
        poll_interval_s: float = 1.0,
        *,
        drain_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        keepalive_s: int = 30,
        publish_timeout_s: float = 10.0,
        spool_max_readings: int | None = None,
    ) -> None:
        self._mqtt = mqtt
        # Built once, so a missing CA or key file fails here rather than on every reconnect.
        self._tls = client_tls_context(mqtt)
        self._batch_max = max(1, min(edge.batch_max_readings, MAX_READINGS_PER_MESSAGE))
        self._max_inflight = max(1, edge.max_inflight_messages)
        if edge.replay_rate_limit < 0:
            raise ValueError(
                "edge.replay_rate_limit must be at least 0 (0: no limit), "
                f"not {edge.replay_rate_limit}"
            )
        self._replay_rate = edge.replay_rate_limit
        self._replay_batch = replay_batch_size(self._batch_max, edge.replay_rate_limit)
        # One slot stays free for live messages while the backlog is sent.
        self._max_backlog_inflight = max(1, self._max_inflight - 1)
        self.place = place
        self._driver = driver
        self._clock = clock
        self._poll_interval = poll_interval_s
        self._drain_timeout = drain_timeout_s
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._keepalive = keepalive_s
        self._publish_timeout = publish_timeout_s
        self._spool = Spool(
            spool_path,
            max_readings=spool_max_readings,
            max_bytes=edge.spool_max_bytes or None,
            warn_fraction=edge.spool_warn_fraction,
        )
        self._stats = EdgeStats(pending=self._spool.pending())
        # An earlier run's spool is the first connection's backlog.
        self._backlog_to = self._spool.last_id()
        self._backlog_inflight = 0
        self._topic = batch_topic(place.district, place.street, place.estate, place.edge_id)
        self._status_topic = edge_status_topic(
            place.district, place.street, place.estate, place.edge_id
        )
        self._client: aiomqtt.Client | None = None
        self._inflight = 0
        self._wake = asyncio.Event()  # new readings spooled, a message acked, or stopping
        self._acked = asyncio.Event()  # for wait_until_empty
        self._draining = asyncio.Event()  # stop was set and the final poll is done
        self._drain_deadline: float | None = None
        self._deadline_scopes: set[asyncio.Timeout] = set()
        self._started = False
        self._failures = 0  # failed connection attempts since the last good connection

    @property
    def stats(self) -> EdgeStats:
        """A snapshot of the counters."""
        return dataclasses.replace(
            self._stats,
            spool_bytes=self._spool.bytes_stored(),
            spool_budget_warning=self._spool.warning,
        )

    # ---- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, spool and publish until ``stop`` is set; then poll once more, drain the
        spool for at most ``drain_timeout_s``, announce ``stopped`` and disconnect."""
        if self._started:
            raise RuntimeError("an EdgeAgent runs once; make a new one on the same spool")
        self._started = True
        try:
            async with asyncio.TaskGroup() as tasks:
                if isinstance(self._driver, BackgroundDriver):
                    tasks.create_task(self._driver.run(stop))
                tasks.create_task(self._poll_loop(stop))
                tasks.create_task(self._uplink())
        finally:
            self._stats.connected = False
            self._client = None
            self._spool.close()
            log.info("edge %s stopped: %s", self.place.edge_id, self._stats)

    async def wait_until_empty(self, timeout: float | None = None) -> bool:
        """Wait until every spooled reading has been acknowledged; False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._stats.pending > 0 or self._inflight > 0:
                    self._acked.clear()
                    await self._acked.wait()
                return True
        return False

    def abort_connection(self) -> None:
        """Cut the broker connection without a DISCONNECT, as a crash or a cut cable would:
        the broker publishes the last will and the agent reconnects.  For tests and drills."""
        client = self._client
        if client is None:
            return
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ---- the poller -----------------------------------------------------------------------

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        while True:
            stopping = stop.is_set()
            self._poll_once()
            if stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_interval)
        self._drain_deadline = asyncio.get_running_loop().time() + self._drain_timeout
        for scope in self._deadline_scopes:
            scope.reschedule(self._drain_deadline)
        self._draining.set()
        self._wake.set()

    def _poll_once(self) -> None:
        try:
            samples = self._driver.poll(self._clock())
        except Exception:
            # A driver fault must not stop the agent; the next poll tries again.
            log.exception("edge %s: driver poll failed", self.place.edge_id)
            return
        self._stats.samples_read += len(samples)
        if not samples:
            return
        dropped = self._spool.dropped
        readings = self._spool.append(self.place.edge_id, samples)
        self._stats.readings_spooled += len(readings)
        self._stats.readings_dropped += self._spool.dropped - dropped
        self._stats.pending = self._spool.pending()
        self._wake.set()

    # ---- the uplink -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _until_drain_deadline(self) -> AsyncIterator[None]:
        """Raise TimeoutError in the block once the drain time after stop is spent."""
        async with asyncio.timeout(self._drain_deadline) as scope:
            self._deadline_scopes.add(scope)
            try:
                yield
            finally:
                self._deadline_scopes.discard(scope)

    def _drain_time_left(self) -> float:
        if self._drain_deadline is None:
            return float("inf")
        return self._drain_deadline - asyncio.get_running_loop().time()

    async def _uplink(self) -> None:
        backoff = self._backoff_initial
        while True:
            connects = self._stats.connects
            try:
                await self._session()
                return  # stopped cleanly
            except Exception as error:
                # A TaskGroup reports a child's error rather than our own cancellation when
                # both happen at once: never swallow a cancel (a stop or a test's crash).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from error
                # The broker is away, the connection dropped, or a PUBACK never came.
                self._stats.connection_errors += 1
                self._failures += 1
                # Loud once per outage, quiet while it lasts.
                log.log(
                    logging.WARNING if self._failures == 1 else logging.INFO,
                    "edge %s: uplink down (%s); spooling continues, retrying",
                    self.place.edge_id,
                    _describe(error),
                )
            finally:
                self._stats.connected = False
                self._client = None
            if self._stats.connects > connects:
                backoff = self._backoff_initial
            if self._drain_time_left() <= 0:
                log.warning(
                    "edge %s: stopped with %d readings still spooled",
                    self.place.edge_id,
                    self._spool.pending(),
                )
                return
            # Jitter spreads the reconnects of many edges after a broker restart.
            delay = min(backoff * random.uniform(0.5, 1.0), self._drain_time_left())
            if self._draining.is_set():
                await asyncio.sleep(delay)
            else:
                # A stop cuts a long back-off short: one more try to drain before exiting.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._draining.wait(), delay)
            backoff = min(backoff * 2, self._backoff_max)

    def _status(self, state: EdgeState) -> bytes:
        return encode(EdgeStatus(SCHEMA_VERSION, self.place.edge_id, state, self._clock()))

    def _new_client(self) -> UplinkClient:
        # The will's timestamp is the time of connecting: the broker sends it unchanged.
        will = aiomqtt.Will(self._status_topic, self._status("offline"), qos=1, retain=True)
        client = UplinkClient(
            self._mqtt.host,
            self._mqtt.port,
            username=self._mqtt.username or None,
            password=self._mqtt.password or None,
            tls_context=self._tls,
            identifier=f"jiayuan-edge-{self.place.edge_id}",
            # The spool, not the broker session, is what keeps unsent readings.
            clean_session=True,
            will=will,
            keepalive=self._keepalive,
            timeout=self._publish_timeout,
            max_inflight_messages=self._max_inflight,
        )
        # aiomqtt warns above 10 pending calls; we keep up to max_inflight on purpose.
        client.pending_calls_threshold = self._max_inflight + 2
        return client

    async def _session(self) -> None:
        """One connection: returns after a clean stop, raises when the connection fails.

        A fresh client each time: a reused paho client would resend its unacknowledged
        messages on reconnect, beside our own replay from the spool.
        """
        client = self._new_client()
        try:
            await self._connected_session(client)
        finally:
            # aiomqtt stores a lost connection's error in a future nobody may await; read it
            # so asyncio does not log "Future exception was never retrieved".
            lost = client._disconnected
            if lost.done() and not lost.cancelled():
                lost.exception()
            # A connect cut short (a stop, or a driver failing at start) can leave paho's
            # socket open, or open it later from aiomqtt's connect thread; paho closes it
            # when the client is collected, after the loop is gone, and aiomqtt's socket
            # callbacks then fail on the closed loop (aiomqtt issue 377).  Close it now,
            # while the loop runs, and detach the callbacks from this discarded client.
            # paho-mqtt 2.2 has no public call that only closes the socket: disconnect()
            # sends DISCONNECT and leaves the socket to the network loop, and
            # reinitialise() (undocumented since 2.0) also re-runs __init__, racing that
            # connect thread.  Closing the socket without __del__ was asked for as a public
            # API in paho issue 453 (closed unresolved); hence its private _reset_sockets().
            paho = client._client
            paho._reset_sockets()
            paho.on_socket_open = None
            paho.on_socket_close = None
            paho.on_socket_register_write = None
            paho.on_socket_unregister_write = None

    async def _connected_session(self, client: aiomqtt.Client) -> None:
        async with contextlib.AsyncExitStack() as stack:
            async with self._until_drain_deadline():
                await stack.enter_async_context(client)
            self._client = client
            self._stats.connects += 1
            if self._stats.connects > 1:
                self._stats.reconnects += 1
            self._stats.connected = True
            self._backlog_to = self._backlog_at_connect()
            await client.publish(self._status_topic, self._status("online"), qos=1, retain=True)
            log.log(
                logging.WARNING if self._failures else logging.INFO,
                "edge %s: connected to %s after %d failed attempts, %d readings spooled",
                self.place.edge_id,
                self._mqtt.url,
                self._failures,
                self._spool.pending(),
            )
            self._failures = 0
            try:
                async with self._until_drain_deadline():
                    await self._pump(client)
            except TimeoutError:
                if self._drain_time_left() > 0:
                    raise
                log.warning(
                    "edge %s: drain time spent, %d readings stay spooled",
                    self.place.edge_id,
                    self._spool.pending(),
                )
            # A clean stop is not an outage: the gateway tells "stopped" from the will's
            # "offline" and sends no work order for it.
            await client.publish(
                self._status_topic, self._status("stopped"), qos=1, retain=True, timeout=2.0
            )
            # Leaving the stack sends DISCONNECT: the broker discards the last will.

    def _backlog_at_connect(self) -> int:
        """The last spool id of the new connection's backlog (0: none): what was spooled
        while the uplink was down or before a first connection that failed, or, on a first
        connection made at once, what an earlier run left.  A backlog spanning at most
        ``IN_ORDER_BACKLOG_MS`` of device time is no backlog: it goes out first, in order
        and unmarked, so the gateway judges every reading of a short outage."""
        if self._failures or self._stats.connects > 1:
            last = self._spool.last_id()
        else:
            last = self._backlog_to
        if last and self._spool.span_ms(last) <= IN_ORDER_BACKLOG_MS:
            return 0
        return last

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish the spool, live readings first and the backlog paced, until it is empty
        after stop; raise when the connection fails."""
        slots = asyncio.Semaphore(self._max_inflight)
        backlog_to = self._backlog_to  # readings up to this id are the backlog
        live_cursor = backlog_to  # the last live spool id handed to this connection
        backlog_cursor = 0  # the last backlog spool id handed to this connection
        pace = ReplayPace(self._replay_rate)
        clock = asyncio.get_running_loop().time
        max_bytes = MAX_PAYLOAD_BYTES - _ENVELOPE_ROOM - len(self.place.edge_id)
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(self._watch_connection(client))
            while True:
                await slots.acquire()
                self._wake.clear()
                batch = self._spool.peek_raw(self._batch_max, live_cursor, max_bytes)
                if batch:
                    live_cursor = batch[-1][0]
                    self._inflight += 1
                    tasks.create_task(self._publish(client, batch, slots, replay=False))
                    continue
                wait: float | None = None  # until a reading is spooled or a message acked
                if backlog_cursor < backlog_to and (
                    self._backlog_inflight < self._max_backlog_inflight
                ):
                    wait = pace.wait(clock())
                    if wait <= 0:
                        batch = self._spool.peek_raw(
                            self._replay_batch, backlog_cursor, max_bytes, up_to_id=backlog_to
                        )
                        if batch:
                            backlog_cursor = batch[-1][0]
                            pace.spend(len(batch), clock())
                            self._inflight += 1
                            self._backlog_inflight += 1
                            tasks.create_task(self._publish(client, batch, slots, replay=True))
                            continue
                        backlog_cursor = backlog_to
                        wait = None
                slots.release()
                if backlog_cursor >= backlog_to:
                    self._backlog_to = 0  # all handed out: nothing of it waits for pacing
                    if self._draining.is_set() and self._inflight == 0:
                        break
                if wait is None:
                    await self._wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
            watcher.cancel()

    async def _publish(
        self,
        client: aiomqtt.Client,
        batch: list[tuple[int, bytes]],
        slots: asyncio.Semaphore,
        *,
        replay: bool,
    ) -> None:
        try:
            payload = envelope_payload(
                self.place.edge_id, [body for _, body in batch], replay=replay
            )
            # QoS 1: aiomqtt 2.x returns only once paho has seen the PUBACK.
            await client.publish(self._topic, payload, qos=1)
            self._spool.remove([id_ for id_, _ in batch])
            self._stats.readings_acked += len(batch)
            if replay:
                self._stats.readings_replayed += len(batch)
            self._stats.messages_acked += 1
            self._stats.pending = self._spool.pending()
        finally:
            self._inflight -= 1
            if replay:
                self._backlog_inflight -= 1
            slots.release()
            self._wake.set()
            self._acked.set()

    @staticmethod
    async def _watch_connection(client: aiomqtt.Client) -> None:
        """Raise as soon as the connection drops.

        aiomqtt 2.x leaves a publish waiting for its PUBACK until its timeout when the
        connection is lost; its message iterator is what fails at once, so watch that.
        """
        async for _ in client.messages:
            pass  # nothing is subscribed
        raise aiomqtt.MqttError("connection closed")


def replay_batch_size(batch_max: int, rate: float) -> int:
    """Readings in one backlog message: a second's worth at the rate limit (at most
    ``batch_max``, at least one).  Not less: the gateway's cost is largely per message,
    and a district's replaying edges in messages of a few readings cost it several times
    what the same readings in full messages do (bench/replay_scenario.py)."""
    if rate <= 0:
        return batch_max
    return max(1, min(batch_max, int(rate)))


class ReplayPace:
    """The backlog's rate limit: ``rate`` readings a second on average (0: no limit), a
    message at a time (a message may go once the previous ones' readings have been paid
    for at that rate)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._free_at = float("-inf")

    def wait(self, now: float) -> float:
        """Seconds until the next backlog message may go (0 or less: now)."""
        return 0.0 if self._rate <= 0 else self._free_at - now

    def spend(self, readings: int, now: float) -> None:
        if self._rate > 0:
            self._free_at = max(self._free_at, now) + readings / self._rate


def _describe(error: BaseException) -> str:
    """The error itself rather than a TaskGroup's wrapper around one error."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"
