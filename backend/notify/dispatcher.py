"""The dispatcher: fan out new history rows, send what is due, record, repeat.

Each delivery is sent in its own task and its outcome recorded as soon as it
is known, so a receiver that hangs until its timeout holds one slot, not the
others (at most ``per_channel`` slots per channel). Several dispatchers may
run against one database: claiming uses ``FOR UPDATE SKIP LOCKED`` and a
lease, fan-out locks the cursor row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final

import httpx
import psycopg

from backend.notify import message, signing, store
from backend.notify.backoff import RetryPolicy, SendResult, Verdict, decide
from backend.notify.senders import post_webhook, send_email
from backend.notify.settings import SmtpSettings

log = logging.getLogger(__name__)

NOTIFY_CHANNEL: Final = "lumeau_alert"
DEFAULT_INTERVAL_S: Final = 5.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DispatcherConfig:
    conninfo: str = field(repr=False)  # holds a password
    smtp: SmtpSettings
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    http_timeout_s: float = 10.0
    max_in_flight: int = 16
    per_channel: int = 4
    # Longer than any send can take (HTTP timeout, SMTP timeouts): a row is
    # only taken over from a dispatcher that died.
    lease: timedelta = timedelta(minutes=5)
    fan_out_batch: int = 500
    gap_min_age: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Attempt:
    """What one attempt of one delivery came to (for logs, tests and ``--once``)."""

    delivery_id: int
    channel: str
    attempts: int
    state: str  # the delivery's state afterwards
    result: SendResult
    recorded: bool


class Dispatcher:
    """Use as ``async with Dispatcher(config) as d: await d.run_once()`` or ``d.run(...)``."""

    def __init__(
        self,
        config: DispatcherConfig,
        *,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._conn: store.Conn | None = None  # fan-out and claims
        self._outcomes: store.Conn | None = None  # outcomes, one statement each
        self._outcome_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        self._in_flight: dict[asyncio.Task[Attempt], int] = {}
        self._wake = asyncio.Event()  # set by NOTIFY and by finished sends
        self._collect = False  # keep finished attempts in _results (dispatch_due)
        self._results: list[Attempt] = []

    async def __aenter__(self) -> Dispatcher:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open(self) -> None:
        self._conn = await store.connect(self.config.conninfo)
        self._outcomes = await store.connect(self.config.conninfo)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.http_timeout_s)

    async def close(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        for conn in (self._conn, self._outcomes):
            if conn is not None:
                await conn.close()
        self._conn = self._outcomes = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- one pass ---------------------------------------------------------------

    async def fan_out(self) -> int:
        """Fan out every new history row; the number of deliveries made."""
        assert self._conn is not None, "use the dispatcher in 'async with'"
        made = 0
        while True:
            report = await store.fan_out(
                self._conn,
                now=self._clock(),
                max_age=self.config.policy.max_age,
                batch=self.config.fan_out_batch,
                gap_min_age=self.config.gap_min_age,
            )
            made += report.deliveries
            if report.stale:
                log.warning(
                    "%d history rows older than %s not sent",
                    report.stale,
                    self.config.policy.max_age,
                )
            if not report.more:
                return made

    async def _claim_and_start(self) -> int:
        assert self._conn is not None
        counts: dict[int, int] = {}
        for channel_id in self._in_flight.values():
            counts[channel_id] = counts.get(channel_id, 0) + 1
        claimed = await store.claim(
            self._conn,
            now=self._clock(),
            limit=self.config.max_in_flight - len(self._in_flight),
            lease=self.config.lease,
            per_channel=self.config.per_channel,
            in_flight=counts,
        )
        for item in claimed:
            task = asyncio.create_task(self._deliver(item), name=f"delivery-{item.delivery_id}")
            self._in_flight[task] = item.channel_id
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[Attempt]) -> None:
        self._in_flight.pop(task, None)
        if self._collect and not task.cancelled() and task.exception() is None:
            self._results.append(task.result())
        self._wake.set()

    async def dispatch_due(self, *, patience: int = 50) -> list[Attempt]:
        """Send every delivery due now (by the clock), waiting for each outcome."""
        assert self._conn is not None, "use the dispatcher in 'async with'"
        self._collect, self._results = True, []
        idle = 0
        try:
            while True:
                await self._claim_and_start()
                if not self._in_flight:
                    # Nothing taken: finished, unless due rows are held by another
                    # dispatcher's claim at this instant (SKIP LOCKED passed them).
                    due = await store.due_count(self._conn, now=self._clock())
                    if idle >= patience or not due:
                        return list(self._results)
                    idle += 1
                    await asyncio.sleep(0.02)
                    continue
                idle = 0
                await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._collect = False

    async def run_once(self) -> list[Attempt]:
        await self.fan_out()
        return await self.dispatch_due()

    # --- sending ------------------------------------------------------------------

    async def _deliver(self, item: store.Claimed) -> Attempt:
        """Send one delivery and record the outcome; never raises."""
        try:
            result = await self._send(item)
        except Exception as exc:  # a bad row must not stop the dispatcher
            log.exception("delivery %d: unexpected error while sending", item.delivery_id)
            result = SendResult(Verdict.RETRY, error=f"internal error: {type(exc).__name__}")
        now = self._clock()
        decision = decide(
            result,
            attempts=item.attempts,
            created_at=item.created_at,
            now=now,
            policy=self.config.policy,
            rng=self._rng,
        )
        recorded = False
        try:
            async with self._outcome_lock:
                assert self._outcomes is not None
                recorded = await store.record(
                    self._outcomes, item, decision, status_code=result.status_code, now=now
                )
        except Exception as exc:
            # The lease ends and the delivery is tried again: at least once.
            log.warning("delivery %d: outcome not recorded: %s", item.delivery_id, exc)
        level = logging.INFO if decision.state == "sent" else logging.WARNING
        log.log(
            level,
            "delivery %d to %s (%s, attempt %d): %s%s",
            item.delivery_id,
            item.channel_name,
            item.kind,
            item.attempts,
            decision.state,
            f" ({decision.last_error})" if decision.last_error else "",
        )
        return Attempt(
            delivery_id=item.delivery_id,
            channel=item.channel_name,
            attempts=item.attempts,
            state=decision.state,
            result=result,
            recorded=recorded,
        )

    async def _send(self, item: store.Claimed) -> SendResult:
        if not item.enabled:
            return SendResult(Verdict.DEAD, error="channel disabled")
        notice = message.Notice(
            history_id=item.history_id,
            at=item.at,
            action=item.action,
            actor=item.actor,
            severity=item.severity,
            note=item.note,
            alert=item.alert,
        )
        if item.kind == "webhook":
            if item.url is None or item.secret is None:
                return SendResult(Verdict.DEAD, error="webhook channel without url or secret")
            body = message.webhook_body(notice)
            return await self.send_webhook(
                item.url,
                item.secret,
                body,
                event=message.event_name(item.action),
                delivery_id=item.delivery_id,
            )
        if item.kind == "email":
            if not item.recipients:
                return SendResult(Verdict.DEAD, error="e-mail channel without recipients")
            return await self.send_mail(
                item.recipients,
                message.email_subject(notice),
                message.email_text(notice),
                delivery_id=item.delivery_id,
            )
        return SendResult(Verdict.DEAD, error=f"unknown channel kind {item.kind!r}")

    async def send_webhook(
        self, url: str, secret: str, body: bytes, *, event: str, delivery_id: int | None
    ) -> SendResult:
        assert self._http is not None
        # Signed when sent: the timestamp is the time of this attempt.
        timestamp = int(utc_now().timestamp())
        headers = {
            signing.SIGNATURE_HEADER: signing.signature_header(secret, timestamp, body),
            "Lumeau-Event": event,
        }
        if delivery_id is not None:
            headers["Lumeau-Delivery"] = str(delivery_id)
        return await post_webhook(self._http, url, body, headers)

    async def send_mail(
        self, recipients: list[str], subject: str, text: str, *, delivery_id: int | None
    ) -> SendResult:
        smtp = self.config.smtp
        if smtp.sender is None:
            return SendResult(Verdict.RETRY, error="SMTP is not configured (LUMEAU_SMTP_HOST)")
        email = message.email_message(
            sender=smtp.sender,
            recipients=recipients,
            subject=subject,
            text=text,
            delivery_id=delivery_id,
        )
        return await asyncio.to_thread(send_email, smtp, email, recipients)

    # --- the loop -----------------------------------------------------------------

    async def run(
        self, interval_s: float = DEFAULT_INTERVAL_S, stop: asyncio.Event | None = None
    ) -> None:
        """Dispatch until ``stop`` is set.

        Wakes on NOTIFY 'lumeau_alert' (new history), when a send finishes (a
        slot is free), and every ``interval_s`` (retries that came due).
        """
        stop = stop or asyncio.Event()
        pause = 1.0
        while not stop.is_set():
            listener: asyncio.Task[None] | None = None
            try:
                if self._conn is None:
                    await self._open()
                listener = asyncio.create_task(self._listen(), name="notify-listener")
                pause = 1.0
                while not stop.is_set():
                    if listener.done():
                        raise psycopg.OperationalError("the LISTEN connection ended")
                    await self.fan_out()
                    await self._claim_and_start()
                    await self._wait(stop, interval_s)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("database unavailable (%s); retrying in %.0f s", exc, pause)
                await self._drop_connections()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 30.0)
            except Exception:
                # Never exit on a surprise: log it, reconnect, go on.
                log.exception("dispatcher pass failed; retrying in %.0f s", pause)
                await self._drop_connections()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 30.0)
            finally:
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await listener

    async def _wait(self, stop: asyncio.Event, interval_s: float) -> None:
        waiters = {
            asyncio.create_task(stop.wait()),
            asyncio.create_task(self._wake.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    async def _listen(self) -> None:
        conn = await store.connect(self.config.conninfo)
        try:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            async for _ in conn.notifies():
                self._wake.set()
        finally:
            await conn.close()

    async def _drop_connections(self) -> None:
        for conn in (self._conn, self._outcomes):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._conn = self._outcomes = None
