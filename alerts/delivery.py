"""The deliverer: a thread that sends what the outbox holds, and never gives up silently.

Channels: ``workorder`` and ``manager_webhook`` are signed HTTP POSTs (httpx); ``email``
goes through SMTP (stdlib smtplib).  A 2xx (or an accepted mail) marks a message
delivered.  A connection error, a timeout, 408, 429 or 5xx (SMTP 4xx) is retried with
exponential backoff and jitter from ``retry_initial_s`` up to ``retry_max_s``, for as long
as it takes: the attempts and the last error stay visible in the outbox.  Any other 4xx
(SMTP 5xx), or no destination or secret configured, means retrying will not help: the
message is parked with the reason and a digest of the configuration it failed under.  It
is tried again when someone retries it (API, ``jiayuan alerts outbox retry``) or when the
gateway starts with a different configuration for its channel (``requeue_reconfigured``).

The clock and the random source are parameters, so tests can let an hour pass at once.
"""

from __future__ import annotations

import json
import logging
import random
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from alerts.contacts import COMPANY_PREFIX, STREET_PREFIX, Contact, ContactBook, ContactSource
from alerts.destinations import (
    EMAIL,
    MANAGER_WEBHOOK,
    WORKORDER,
    DestinationCheck,
    channel_digest,
    check_destinations,
)
from alerts.links import LinkSigner
from alerts.model import Alert, AlertAction
from alerts.notify import notification_messages
from alerts.outbox import MessageState, Outbox, OutboxMessage, StoredMessage
from alerts.robot_delivery import RobotOutcome, RobotSender, RobotSettings
from alerts.robot_ledger import RobotLedger, robot_ledger_path
from alerts.robots import DINGTALK, FEISHU, ROBOT_CHANNELS, WECOM, robot_id
from alerts.signing import SIGNATURE_HEADER, sign
from alerts.workorder import ACTION_TYPES, UPDATES, opening_keys, workorder_message
from jiayuan.config import AlertsConfig
from jiayuan.http_responses import released
from jiayuan.state import OUTBOX_FILE, ROBOT_LEDGER_FILE

log = logging.getLogger(__name__)


HTTP_CHANNELS = frozenset({WORKORDER, MANAGER_WEBHOOK})
EMAIL_CHANNEL = EMAIL
RETRYABLE_HTTP = frozenset({408, 425, 429})
ATTEMPT_HEADER = "X-Jiayuan-Attempt"


@dataclass(frozen=True)
class DeliverySettings:
    webhook_secret: str
    smtp_url: str = ""
    smtp_from: str = "jiayuan@localhost"
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    timeout_s: float = 10.0
    # Where work orders are sent now (also those queued before it was set or changed);
    # empty: to the URL each was queued with.
    workorder_url: str = ""
    # Group robots (WeCom, DingTalk, Feishu): base URLs, signing secrets, rate limits.
    robots: RobotSettings = field(default_factory=RobotSettings)
    # The robots' rate ledger (``alerts.robot_ledger``); empty: beside the outbox.  Every
    # instance that sends to the same robots names the same file (``--workers``).
    robot_ledger_db: str = ""

    def workorder_destination(self, queued_with: str) -> str:
        return self.workorder_url or queued_with

    def config_digest(self, channel: str, destination: str) -> str:
        """What decides whether a message of ``channel`` to ``destination`` goes out."""
        if channel == WORKORDER:
            target = self.workorder_destination(destination)
            return channel_digest(channel, target, {"secret": self.webhook_secret})
        if channel == MANAGER_WEBHOOK:
            return channel_digest(channel, destination, {"secret": self.webhook_secret})
        if channel == EMAIL:
            mail = {"smtp_url": self.smtp_url, "smtp_from": self.smtp_from}
            return channel_digest(channel, destination, mail)
        if channel in ROBOT_CHANNELS:
            robot = {
                "base_url": self.robots.base_url(channel),
                "secret": self.robots.secret(channel, destination),
            }
            return channel_digest(channel, destination, robot)
        return channel_digest(channel, destination, {})


class _Retry(Exception):
    """This attempt failed; try again later."""


class _Park(Exception):
    """The receiver refused the message for good."""


class _Defer(Exception):
    """Not tried now (a robot's rate limit): due again at ``until_ms``, no attempt counted."""

    def __init__(self, reason: str, until_ms: int) -> None:
        super().__init__(reason)
        self.until_ms = until_ms


# What an attempt came to: delivered (None), to retry, parked with the reason, or deferred.
_Outcome = _Retry | _Park | _Defer | None


def _robot_outcome(outcome: RobotOutcome) -> _Outcome:
    if outcome.verb == "delivered":
        return None
    if outcome.verb == "retry":
        return _Retry(outcome.reason)
    if outcome.verb == "park":
        return _Park(outcome.reason)
    return _Defer(outcome.reason, outcome.until_ms)


# While sending a round, the outcomes so far are recorded at least this often.
RECORD_EVERY_S = 1.0


@dataclass
class DeliveryStats:
    attempts: int = 0
    delivered: int = 0
    retries: int = 0
    parked: int = 0
    last_error: str = ""


def backoff_s(attempts: int, initial_s: float, max_s: float, jitter: float) -> float:
    """Delay before the next try after ``attempts`` failures; ``jitter`` in [0, 1).

    Doubling from ``initial_s``, capped at ``max_s``, then spread over its upper half so
    that many messages failing together do not all come back at the same instant.
    """
    base = min(max_s, initial_s * 2.0 ** min(attempts - 1, 62))
    return base * (0.5 + jitter / 2)


def smtp_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ValueError(f"[alerts] smtp_url {url!r} is not smtp://host[:port]")
    return parts.hostname, parts.port or 25


class Deliverer:
    """Sends due outbox messages, in a thread (``start``/``stop``) or step by step."""

    def __init__(
        self,
        outbox: Outbox,
        settings: DeliverySettings,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        poll_s: float = 0.5,
    ) -> None:
        if settings.smtp_url:
            smtp_address(settings.smtp_url)  # a bad URL is a configuration error: say so now
        self.outbox = outbox
        self.settings = settings
        self.stats = DeliveryStats()
        self._clock = clock
        self._jitter = jitter
        self._poll_s = poll_s
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=False)
        ledger_path = settings.robot_ledger_db or outbox.path.parent / ROBOT_LEDGER_FILE
        self.robot_ledger = RobotLedger(ledger_path)
        self.robots = RobotSender(
            outbox, self.robot_ledger, settings.robots, self._http, self.now_ms
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # (level, outcome) → messages with it this round; the first is logged, the rest
        # summed up at the round's end: an outage queues thousands of messages at once.
        self._round: Counter[tuple[int, str]] | None = None

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def run_once(self) -> int:
        """Try every message due now once; how many were tried.

        The outcomes are recorded together (one commit synced to disk for up to a round of
        due messages or a second of sending, not one a message); a crash before that sends
        them again, which the receiver answers as a duplicate (the idempotency key)."""
        tried: set[int] = set()
        self._round = Counter()
        outcomes: list[tuple[StoredMessage, _Outcome]] = []
        try:
            while not self._stop.is_set():
                # A retry may be due again at once (tiny backoff): once per round is enough.
                batch = [m for m in self.outbox.due(self.now_ms()) if m.id not in tried]
                if not batch:
                    break
                since = time.monotonic()
                robot_due = [m for m in batch if m.channel in ROBOT_CHANNELS]
                for robot_outcome in self.robots.send_round(robot_due) if robot_due else []:
                    outcomes.append((robot_outcome.message, _robot_outcome(robot_outcome)))
                    tried.add(robot_outcome.message.id)
                for message in batch:
                    if message.channel in ROBOT_CHANNELS:
                        tried.add(message.id)
                        continue
                    outcomes.append((message, self._send(message)))
                    tried.add(message.id)
                    if time.monotonic() - since >= RECORD_EVERY_S:
                        self._record(outcomes)
                        since = time.monotonic()
                self._record(outcomes)
        finally:
            self._record(outcomes)
            for (level, outcome), count in self._round.items():
                if count > 1:
                    log.log(level, "%d more messages %s", count - 1, outcome)
            self._round = None
        return len(tried)

    def requeue_reconfigured(self) -> list[StoredMessage]:
        """Make due the parked messages whose channel is configured differently now from
        when they were parked (or whose configuration was never noted); those messages."""
        changed = [
            message
            for message in self.outbox.messages(MessageState.PARKED, limit=-1)
            if message.config_digest
            != self.settings.config_digest(message.channel, message.destination)
        ]
        with self.outbox.batch():
            for message in changed:
                self.outbox.retry_parked(message_id=message.id, now_ms=self.now_ms())
        if changed:
            self.wake()
        return changed

    def attempt(self, message: StoredMessage) -> None:
        """Try to send one message now and record the outcome in the outbox."""
        if message.channel in ROBOT_CHANNELS:
            robot = self.robots.send_round([message])
            self._record([(outcome.message, _robot_outcome(outcome)) for outcome in robot])
            return
        self._record([(message, self._send(message))])

    def _send(self, message: StoredMessage) -> _Outcome:
        self.stats.attempts += 1
        try:
            if message.channel in HTTP_CHANNELS:
                self._post(message)
            elif message.channel == EMAIL_CHANNEL:
                self._mail(message)
            else:
                raise _Park(f"unknown channel {message.channel!r}")
        except _Retry as failure:
            return failure
        except Exception as refusal:  # _Park, or anything unforeseen
            # Anything unforeseen (a header that cannot be encoded, say) parks the message
            # with the reason rather than failing every round without a trace.
            return refusal if isinstance(refusal, _Park) else _Park(f"internal: {refusal!r}")
        return None

    def _record(self, outcomes: list[tuple[StoredMessage, _Outcome]]) -> None:
        """Write the outcomes in one transaction and empty the list (first: should the
        write fail, those messages are sent again, never recorded twice)."""
        pending = list(outcomes)
        outcomes.clear()
        if not pending:
            return
        with self.outbox.batch():
            for message, outcome in pending:
                if outcome is None:
                    self.outbox.mark_delivered(message.id, self.now_ms())
                    self.stats.delivered += 1
                elif isinstance(outcome, _Retry):
                    self._retry_later(message, outcome)
                elif isinstance(outcome, _Defer):
                    self.outbox.defer(message.id, outcome.until_ms, str(outcome))
                else:
                    digest = self.settings.config_digest(message.channel, message.destination)
                    self.outbox.park(message.id, str(outcome), digest)
                    self.stats.parked += 1
                    self.stats.last_error = f"{message.key}: {outcome}"
                    self._log(logging.ERROR, f"暂存未发 parked: {outcome}", message.key, "")

    def _retry_later(self, message: StoredMessage, failure: _Retry) -> None:
        delay = backoff_s(
            message.attempts + 1,
            self.settings.retry_initial_s,
            self.settings.retry_max_s,
            self._jitter(),
        )
        error = f"attempt {message.attempts + 1}: {failure}"
        self.outbox.mark_failed(message.id, self.now_ms() + int(delay * 1000), error)
        self.stats.retries += 1
        self.stats.last_error = f"{message.key}: {error}"
        self._log(
            logging.WARNING,
            f"to {self._where(message)} failed, retried: {failure}",
            message.key,
            f" (attempt {message.attempts + 1}, next in {delay:.1f} s)",
        )

    @staticmethod
    def _where(message: StoredMessage) -> str:
        # A robot's destination is its credential: logs name the robot by a hash.
        if message.channel in ROBOT_CHANNELS:
            return robot_id(message.channel, message.destination)
        return message.destination or "(unset)"

    def _log(self, level: int, outcome: str, key: str, detail: str) -> None:
        """Log a message's outcome; within a round only the first with that outcome."""
        if self._round is not None:
            self._round[level, outcome] += 1
            if self._round[level, outcome] > 1:
                return
        log.log(level, "%s %s%s", key, outcome, detail)

    def _post(self, message: StoredMessage) -> None:
        destination = message.destination
        if message.channel == WORKORDER:
            destination = self.settings.workorder_destination(destination)
        if not destination:
            raise _Park(
                f"no destination URL for {message.channel} (is [alerts] opscentre_url set?)"
            )
        if not self.settings.webhook_secret:
            raise _Park("no [alerts] webhook_secret configured: cannot sign the request")
        headers = dict(message.headers)
        # Signed with the real wall clock (the receiver checks it against its own), not the
        # scheduling clock, which tests may move an hour ahead.
        headers[SIGNATURE_HEADER] = sign(self.settings.webhook_secret, message.body)
        headers[ATTEMPT_HEADER] = str(message.attempts + 1)
        try:
            response = released(self._http.post(destination, content=message.body, headers=headers))
        except httpx.HTTPError as error:
            raise _Retry(f"{type(error).__name__}: {error}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"HTTP {status}: {response.text[:300]}"
        if status >= 500 or status in RETRYABLE_HTTP:
            raise _Retry(reason)
        raise _Park(reason)

    def _mail(self, message: StoredMessage) -> None:
        if not self.settings.smtp_url:
            raise _Park("no [alerts] smtp_url configured")
        host, port = smtp_address(self.settings.smtp_url)
        try:
            with smtplib.SMTP(host, port, timeout=self.settings.timeout_s) as smtp:
                smtp.sendmail(self.settings.smtp_from, [message.destination], message.body)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            self._smtp_failure(code, text)
        except smtplib.SMTPResponseException as error:
            self._smtp_failure(error.smtp_code, error.smtp_error)
        except (OSError, smtplib.SMTPException) as error:
            raise _Retry(f"SMTP {type(error).__name__}: {error}") from None

    @staticmethod
    def _smtp_failure(code: int, text: bytes | str) -> None:
        detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        reason = f"SMTP {code}: {detail}"
        if 400 <= code < 500:
            raise _Retry(reason)
        raise _Park(reason)

    # --- the thread ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._http.close()
        self.robot_ledger.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait_s = self._poll_s
            try:
                self.run_once()
                wait_s = self._wait_s()
            except Exception:  # a bug or a broken database must not end delivery for good
                log.exception("outbox delivery round failed")
            self._wake.wait(wait_s)
            self._wake.clear()

    def _wait_s(self) -> float:
        next_ms = self.outbox.next_due_ms()
        if next_ms is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, (next_ms - self.now_ms()) / 1000))


@dataclass(frozen=True)
class DeliveryHealth:
    """What ``/health`` shows of delivery: degraded while a channel cannot deliver or
    messages are parked."""

    status: str  # ok | degraded
    status_zh: str
    problems: list[str]  # Chinese first, English beside it
    destinations: list[DestinationCheck]
    outbox: dict[str, int]  # messages per state
    parked_by_channel: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Dispatcher:
    """Turns one lifecycle step into outbox messages (a work order, notifications to the
    estate's property managers) and owns the deliverer that sends them.

    ``dispatch`` is what the alert engine's sink calls; it returns the keys it queued
    (empty when the step was queued before, e.g. replayed after a restart).
    """

    def __init__(
        self,
        outbox: Outbox,
        deliverer: Deliverer,
        contacts: ContactSource | None,
        *,
        opscentre_url: str,
        callback_url: str,
        links: LinkSigner | None = None,
        company_of: Callable[[str], str | None] | None = None,
    ) -> None:
        """``links``: signs each contact's link to the alert's page; ``company_of``: an
        estate's property company (its contacts hear of the estate's alerts too)."""
        self.outbox = outbox
        self.links = links
        self.company_of = company_of
        self.deliverer = deliverer
        self.contacts = contacts
        self.opscentre_url = opscentre_url
        self.callback_url = callback_url
        settings = deliverer.settings
        self.checks = check_destinations(
            opscentre_url=settings.workorder_destination(opscentre_url),
            webhook_secret=settings.webhook_secret,
            smtp_url=settings.smtp_url,
            contacts=contacts if isinstance(contacts, ContactBook) else None,
            robot_urls={channel: settings.robots.base_url(channel) for channel in ROBOT_CHANNELS},
        )

    @classmethod
    def from_config(
        cls, alerts: AlertsConfig, state_dir: str | Path, default_callback_url: str
    ) -> Dispatcher:
        """Outbox at ``{state_dir}/outbox.sqlite``; contacts from ``alerts.contacts_file``."""
        contacts = ContactBook.load(alerts.contacts_file) if alerts.contacts_file else None
        robots = RobotSettings(
            base_urls={
                WECOM: alerts.wecom_url,
                DINGTALK: alerts.dingtalk_url,
                FEISHU: alerts.feishu_url,
            },
            secrets=contacts.robot_secrets() if contacts is not None else {},
        )
        settings = DeliverySettings(
            robots=robots,
            webhook_secret=alerts.webhook_secret,
            smtp_url=alerts.smtp_url,
            smtp_from=alerts.smtp_from,
            retry_initial_s=alerts.retry_initial_s,
            retry_max_s=alerts.retry_max_s,
            timeout_s=alerts.delivery_timeout_s,
            workorder_url=alerts.opscentre_url,
            robot_ledger_db=str(robot_ledger_path(alerts, state_dir)),
        )
        outbox = Outbox(Path(state_dir) / OUTBOX_FILE)
        links = None
        if alerts.page_url and alerts.link_secret:
            links = LinkSigner(alerts.link_secret, alerts.page_url, alerts.link_ttl_s)
        elif alerts.page_url or alerts.link_secret:
            log.warning(
                "通知不带告警页面链接 notifications carry no alert-page links: [alerts] "
                "page_url and link_secret are both needed"
            )
        return cls(
            outbox,
            Deliverer(outbox, settings),
            contacts,
            opscentre_url=alerts.opscentre_url,
            callback_url=alerts.callback_url or default_callback_url,
            links=links,
        )

    def contacts_for(self, alert: Alert, *, estate: bool = True) -> list[Contact]:
        """Who hears of an alert: its estate's contacts, its street's and its estate's
        property company's (``estate`` False: the street's only)."""
        if self.contacts is None:
            return []
        people = self.contacts.for_estate(alert.estate) if estate else []
        people += self.contacts.for_estate(STREET_PREFIX + alert.street)
        company = self.company_of(alert.estate) if self.company_of and estate else None
        if company:
            people += self.contacts.for_estate(COMPANY_PREFIX + company)
        return people

    def link_maker(self, alert: Alert, at_ms: int) -> Callable[[Contact], str] | None:
        if self.links is None:
            return None
        signer = self.links
        return lambda contact: signer.link(alert.id, contact.name, at_ms / 1000)

    def ask_street(self, alert: Alert, at_ms: int, note: str) -> list[str]:
        """Tell the street's contacts that the estate asks for help; the keys queued."""
        messages = notification_messages(
            alert,
            AlertAction.NOTIFIED,
            self.contacts_for(alert, estate=False),
            at_ms=at_ms,
            sender=self.deliverer.settings.smtp_from,
            note=note,
            link=self.link_maker(alert, at_ms),
        )
        queued = [message.key for message in messages if self.outbox.put(message)]
        if queued:
            self.deliverer.wake()
        return queued

    def messages_for(
        self,
        alert: Alert,
        action: AlertAction,
        at_ms: int,
        note: str = "",
        *,
        work_order: bool = True,
        notify_manager: bool = True,
    ) -> list[OutboxMessage]:
        messages: list[OutboxMessage] = []
        if work_order:
            updates = ACTION_TYPES.get(action) in UPDATES
            order = workorder_message(
                alert,
                action,
                at_ms=at_ms,
                url=self.opscentre_url,
                callback_url=self.callback_url,
                note=note,
                order=self.undelivered_order(alert.id) if updates else None,
            )
            if order is not None:
                messages.append(order)
        if notify_manager and self.contacts is not None:
            sender = self.deliverer.settings.smtp_from
            messages += notification_messages(
                alert,
                action,
                self.contacts_for(alert),
                at_ms=at_ms,
                sender=sender,
                note=note,
                link=self.link_maker(alert, at_ms),
            )
        return messages

    def dispatch(
        self,
        alert: Alert,
        action: AlertAction,
        at_ms: int,
        note: str = "",
        *,
        work_order: bool = True,
        notify_manager: bool = True,
    ) -> list[str]:
        """Queue what this step sends; the keys newly queued."""
        messages = self.messages_for(
            alert, action, at_ms, note, work_order=work_order, notify_manager=notify_manager
        )
        queued = [message.key for message in messages if self.outbox.put(message)]
        if queued:
            self.deliverer.wake()
        return queued

    def undelivered_order(self, alert_id: str) -> dict[str, Any] | None:
        """The body of the message that opened the alert's current order (its latest
        ``reopen``, else its ``create``) while the receiver has not acknowledged it."""
        create_key, reopen_prefix = opening_keys(alert_id)
        opened = self.outbox.with_key_prefix(reopen_prefix)
        if not opened:
            created = self.outbox.get(create_key)
            opened = [created] if created is not None else []
        if not opened or opened[-1].state is MessageState.DELIVERED:
            return None
        order: dict[str, Any] = json.loads(opened[-1].body)
        return order

    def log_destinations(self) -> None:
        for check in self.checks:
            if check.problem:
                log.error("%s", check.problem)
            elif check.channel == WORKORDER:
                log.info("工单发往 work orders go to %s", check.destination)

    def requeue_reconfigured(self) -> int:
        """Parked messages whose channel's configuration changed are due again; how many."""
        requeued = self.deliverer.requeue_reconfigured()
        if requeued:
            channels = Counter(message.channel for message in requeued)
            log.warning(
                "暂存消息重新发送 parked messages requeued, their channel is configured "
                "differently now: %s",
                ", ".join(f"{channel} {count}" for channel, count in sorted(channels.items())),
            )
        parked = self.outbox.counts()[MessageState.PARKED.value]
        if parked:
            log.error(
                "%d 条消息仍暂存 messages remain parked: `jiayuan alerts outbox list`, "
                "GET /outbox?state=parked; retry with `jiayuan alerts outbox retry`",
                parked,
            )
        return len(requeued)

    def health(self) -> DeliveryHealth:
        counts = self.outbox.counts()
        per_channel = self.outbox.counts_by_channel()
        parked = {
            channel: states[MessageState.PARKED.value]
            for channel, states in sorted(per_channel.items())
            if states[MessageState.PARKED.value]
        }
        problems = [check.problem for check in self.checks if check.problem]
        if parked:
            problems.append(
                f"{sum(parked.values())} 条消息暂存未发送 messages parked "
                f"({', '.join(f'{c} {n}' for c, n in parked.items())}): "
                "GET /outbox?state=parked, `jiayuan alerts outbox list|retry`"
            )
        ok = not problems
        return DeliveryHealth(
            status="ok" if ok else "degraded",
            status_zh="正常" if ok else "降级",
            problems=problems,
            destinations=list(self.checks),
            outbox=counts,
            parked_by_channel=parked,
        )

    def start(self) -> None:
        """Say where messages go (loudly when nowhere), requeue the parked messages whose
        configuration changed since, and start sending."""
        self.log_destinations()
        self.requeue_reconfigured()
        self.deliverer.start()

    def stop(self) -> None:
        self.deliverer.stop()
        self.outbox.close()
