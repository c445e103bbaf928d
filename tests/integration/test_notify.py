"""The notification dispatcher on the real database, a real HTTP receiver and a real SMTP server.

Alerts and their history are inserted with SQL (as the engine does: one
transaction, the history row announced by the 0009 trigger). The dispatcher
runs one pass at a time with a clock the test moves, or as its real loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from typing import Any, cast

import psycopg
import pytest
from aiosmtpd.controller import Controller

from backend.notify import signing
from backend.notify.backoff import RetryPolicy
from backend.notify.dispatcher import Attempt, Dispatcher, DispatcherConfig
from backend.notify.settings import SmtpSettings
from tests.integration import alerts_kit
from tests.integration.alerts_kit import make_alert
from tests.integration.api_kit import migrated_database, sql

pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- a webhook receiver -------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server; ``script[path]`` lists its answers, then 200 for ever.

    An answer is a status, ``(status, headers)``, or ``"hang"``: wait until
    ``release`` is set (longer than the dispatcher's timeout).
    """

    script: dict[str, list[Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                answers = receiver.script.get(self.path, [])
                answer = answers.pop(0) if answers else 200
            if answer == "hang":
                receiver.hanging.set()
                receiver.release.wait(60)
                answer = 200
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the dispatcher gave up waiting (timeout): nobody reads this

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    # Two dispatchers open up to 16 connections at once; the default listen
    # backlog of 5 makes a loaded machine refuse some (a real receiver's is larger).
    request_queue_size = 64


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = _Server(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


# --- an SMTP server ---------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def subject(self) -> str:
        return str(message_from_bytes(self.content, policy=default_policy)["Subject"])

    @property
    def text(self) -> str:
        parsed = message_from_bytes(self.content, policy=default_policy)
        return cast("Any", parsed).get_content()


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, SmtpSettings]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings = SmtpSettings(
        host="127.0.0.1", port=port, sender="lumeau@city.example", starttls=False
    )
    yield box, settings
    controller.stop()


# --- database, alerts, channels -----------------------------------------------------------


@dataclass
class Db:
    url: str = field(repr=False)

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return sql(self.url, query, *params)


@pytest.fixture(scope="module")
def module_db(stack: object) -> Iterator[Db]:
    with migrated_database(stack, "t_notify") as url:
        yield Db(url)


@pytest.fixture
def db(module_db: Db) -> Iterator[Db]:
    yield module_db
    # Each test's channels (and their deliveries) go, so the next test's
    # history rows reach only its own channels.
    module_db.sql("DELETE FROM notification_channel")


def add_webhook(db: Db, url: str, **filters: Any) -> tuple[int, str]:
    secret = signing.new_secret()
    row = _add_channel(db, "webhook", url=url, secret=secret, **filters)
    return row, secret


def add_email(db: Db, recipients: list[str], **filters: Any) -> int:
    return _add_channel(db, "email", recipients=recipients, **filters)


def _add_channel(
    db: Db,
    kind: str,
    *,
    url: str | None = None,
    recipients: list[str] | None = None,
    secret: str | None = None,
    role: str = "operator",
    sites: list[str] | None = None,
    min_severity: str = "info",
    rules: list[str] | None = None,
) -> int:
    rows = db.sql(
        "INSERT INTO notification_channel (name, kind, url, recipients, secret, audience_role,"
        " sites, min_severity, rules, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " 'test') RETURNING channel_id",
        f"ch-{uuid.uuid4().hex[:8]}",
        kind,
        url,
        recipients,
        secret,
        role,
        sites,
        min_severity,
        rules,
    )
    channel_id: int = rows[0]["channel_id"]
    return channel_id


def open_alert(
    db: Db,
    *,
    rule: str = "door_open",
    device: str = "cab-0042",
    site: str | None = "nord",
    severity: str = "critical",
) -> tuple[int, int]:
    """An alert opened by the engine just now: (alert_id, history_id)."""
    alert_id = make_alert(
        db.url,
        site=site,
        rule=rule,
        device_id=device,
        severity=severity,
        started_at=None,
        title="Cabinet door open",
        detail={"door": 1},
    )
    [opened] = db.sql("SELECT history_id FROM alert_history WHERE alert_id = %s", alert_id)
    return alert_id, opened["history_id"]


def add_history(
    db: Db, alert_id: int, action: str, to_state: str, severity: str = "critical"
) -> int:
    return alerts_kit.add_history(db.url, alert_id, action, to_state=to_state, severity=severity)


def deliveries(db: Db, channel_id: int) -> list[dict[str, Any]]:
    return db.sql(
        "SELECT * FROM notification_delivery WHERE channel_id = %s ORDER BY delivery_id", channel_id
    )


# --- running the dispatcher -----------------------------------------------------------------


class Clock:
    """The dispatcher's time, moved by the test (starts at the real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def config(db: Db, smtp_settings: SmtpSettings | None = None, **overrides: Any) -> DispatcherConfig:
    return DispatcherConfig(
        conninfo=db.url,
        smtp=smtp_settings or SmtpSettings(host=None),
        **overrides,
    )


def run_once(cfg: DispatcherConfig, clock: Clock) -> list[Attempt]:
    async def go() -> list[Attempt]:
        async with Dispatcher(cfg, clock=clock) as dispatcher:
            return await dispatcher.run_once()

    return asyncio.run(go())


# --- tests ------------------------------------------------------------------------------------


def test_webhook_is_signed_and_email_reaches_its_recipients(
    db: Db, receiver: Receiver, smtp: tuple[Mailbox, SmtpSettings]
) -> None:
    box, smtp_settings = smtp
    hook, secret = add_webhook(db, receiver.url("/hook"))
    mail = add_email(db, ["night@city.example", "chief@city.example"])
    alert_id, history_id = open_alert(db)
    clock = Clock()

    attempts = run_once(config(db, smtp_settings), clock)

    assert sorted(a.state for a in attempts) == ["sent", "sent"]
    [request] = receiver.bodies("/hook")
    assert signing.verify(secret, request.headers["Lumeau-Signature"], request.body, time.time())
    [delivery] = deliveries(db, hook)
    assert request.headers["Lumeau-Delivery"] == str(delivery["delivery_id"])
    assert request.headers["Lumeau-Event"] == "alert.opened"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body["event"] == "alert.opened" and body["history_id"] == history_id
    assert body["alert"]["alert_id"] == alert_id
    assert body["alert"]["device_id"] == "cab-0042" and body["alert"]["detail"] == {"door": 1}
    assert (delivery["state"], delivery["attempts"], delivery["last_status_code"]) == (
        "sent",
        1,
        200,
    )

    [email] = box.mails
    assert email.mail_from == "lumeau@city.example"
    assert email.rcpt_tos == ["night@city.example", "chief@city.example"]
    assert email.subject == "[Lumeau][critical] door_open cab-0042 (nord)"
    assert f"Alert {alert_id} opened (critical)" in email.text
    assert [d["state"] for d in deliveries(db, mail)] == ["sent"]

    # Nothing is sent twice: another pass finds nothing to do.
    assert run_once(config(db, smtp_settings), clock) == []
    assert len(receiver.received) == 1 and len(box.mails) == 1


def test_503_is_retried_with_backoff_until_it_succeeds_once(db: Db, receiver: Receiver) -> None:
    receiver.script["/flaky"] = [503, 503]
    hook, secret = add_webhook(db, receiver.url("/flaky"))
    open_alert(db)
    clock = Clock()
    cfg = config(db)

    [first] = run_once(cfg, clock)
    assert (first.state, first.result.status_code) == ("pending", 503)
    [row] = deliveries(db, hook)
    wait = (row["next_attempt_at"] - clock.now).total_seconds()
    assert 8 <= wait <= 12  # 10 s +- 20 %
    assert row["last_error"].startswith("HTTP 503")

    clock.advance(5)  # not due yet
    assert run_once(cfg, clock) == []
    clock.advance(8)
    [second] = run_once(cfg, clock)
    assert (second.state, second.attempts) == ("pending", 2)
    [row] = deliveries(db, hook)
    assert 24 <= (row["next_attempt_at"] - clock.now).total_seconds() <= 36  # 30 s +- 20 %

    clock.advance(40)
    [third] = run_once(cfg, clock)
    assert (third.state, third.attempts) == ("sent", 3)
    clock.advance(3600)
    assert run_once(cfg, clock) == []
    requests = receiver.bodies("/flaky")
    assert len(requests) == 3
    # the same body each time, re-signed at each attempt
    assert len({r.body for r in requests}) == 1
    assert all(
        signing.verify(secret, r.headers["Lumeau-Signature"], r.body, time.time()) for r in requests
    )
    [row] = deliveries(db, hook)
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 3, None)


def test_410_is_dead_at_once_and_429_honours_retry_after(db: Db, receiver: Receiver) -> None:
    receiver.script["/gone"] = [410]
    receiver.script["/busy"] = [(429, {"Retry-After": "300"})]
    gone, _ = add_webhook(db, receiver.url("/gone"))
    busy, _ = add_webhook(db, receiver.url("/busy"))
    open_alert(db)
    clock = Clock()

    run_once(config(db), clock)

    [dead] = deliveries(db, gone)
    assert (dead["state"], dead["attempts"], dead["last_status_code"]) == ("dead", 1, 410)
    assert dead["last_error"].startswith("HTTP 410")
    [waiting] = deliveries(db, busy)
    assert waiting["state"] == "pending" and waiting["last_status_code"] == 429
    assert (waiting["next_attempt_at"] - clock.now).total_seconds() >= 300
    clock.advance(3600)
    run_once(config(db), clock)
    assert len(receiver.bodies("/gone")) == 1  # never tried again
    assert [d["state"] for d in deliveries(db, busy)] == ["sent"]


def test_dead_after_max_attempts(db: Db, receiver: Receiver) -> None:
    receiver.script["/down"] = [503] * 10
    hook, _ = add_webhook(db, receiver.url("/down"))
    open_alert(db)
    clock = Clock()
    cfg = config(db, policy=RetryPolicy(max_attempts=3))

    for _ in range(6):
        run_once(cfg, clock)
        clock.advance(3600)

    [row] = deliveries(db, hook)
    assert (row["state"], row["attempts"]) == ("dead", 3)
    assert row["next_attempt_at"] is None
    assert row["last_error"].startswith("gave up after 3 attempts; last: HTTP 503")
    assert len(receiver.bodies("/down")) == 3


def test_a_hanging_receiver_times_out_and_is_retried(db: Db, receiver: Receiver) -> None:
    receiver.script["/slow"] = ["hang"]
    hook, _ = add_webhook(db, receiver.url("/slow"))
    open_alert(db)
    clock = Clock()
    cfg = config(db, http_timeout_s=0.5)

    [first] = run_once(cfg, clock)
    assert first.state == "pending"
    assert first.result.error is not None and first.result.error.startswith("timeout")
    receiver.release.set()
    clock.advance(60)
    [second] = run_once(cfg, clock)
    assert second.state == "sent"
    assert [d["attempts"] for d in deliveries(db, hook)] == [2]


def test_filters_per_role_site_and_severity(db: Db, receiver: Receiver) -> None:
    pager, _ = add_webhook(db, receiver.url("/pager"), role="operator", min_severity="critical")
    nord, _ = add_webhook(db, receiver.url("/nord"), role="technician", sites=["nord"])
    leaks, _ = add_webhook(db, receiver.url("/leaks"), role="planner", rules=["leak"])
    warning_nord, _ = open_alert(db, severity="warning", site="nord")
    open_alert(db, rule="leak", device="leak-7", severity="critical", site="sud")
    add_history(db, warning_nord, "acknowledged", "acknowledged", "warning")  # not a default action
    add_history(db, warning_nord, "resolved", "resolved", "warning")

    run_once(config(db), Clock())

    def events(path: str) -> list[tuple[str, str]]:
        # In history order: a channel's sends run in parallel, so they may arrive
        # in any order (docs/notifications.md).
        received = [json.loads(r.body) for r in receiver.bodies(path)]
        bodies = sorted(received, key=itemgetter("history_id"))
        return [(body["event"], body["alert"]["site"]) for body in bodies]

    assert events("/pager") == [("alert.opened", "sud")]
    assert events("/nord") == [("alert.opened", "nord"), ("alert.resolved", "nord")]
    assert events("/leaks") == [("alert.opened", "sud")]
    assert len(deliveries(db, pager)) == 1 and len(deliveries(db, nord)) == 2
    assert len(deliveries(db, leaks)) == 1


def test_a_row_committed_late_with_a_smaller_id_is_not_skipped(db: Db, receiver: Receiver) -> None:
    add_webhook(db, receiver.url("/late"))
    alert_id, _ = open_alert(db)
    clock = Clock()
    cfg = config(db, gap_min_age=timedelta(0))
    run_once(cfg, clock)
    with psycopg.connect(db.url) as slow:
        # The slow transaction takes its id first and commits last.
        late_id = slow.execute(
            "INSERT INTO alert_history (alert_id, action, actor, to_state, severity)"
            " VALUES (%s, 'escalated', 'engine', 'open', 'critical') RETURNING history_id",
            (alert_id,),
        ).fetchone()
        assert late_id is not None
        early_id = add_history(db, alert_id, "resolved", "resolved")
        assert early_id > late_id[0]
        run_once(cfg, clock)  # sees the larger id only; the cursor passes the smaller
        assert db.sql("SELECT history_id FROM notifier_gap") == [{"history_id": late_id[0]}]
    run_once(cfg, clock)
    events = sorted(json.loads(r.body)["event"] for r in receiver.bodies("/late"))
    assert events == ["alert.escalated", "alert.opened", "alert.resolved"]
    assert db.sql("SELECT history_id FROM notifier_gap") == []


def test_a_rolled_back_id_is_forgotten(db: Db, receiver: Receiver) -> None:
    add_webhook(db, receiver.url("/rb"))
    alert_id, _ = open_alert(db)
    cfg = config(db, gap_min_age=timedelta(0))
    with psycopg.connect(db.url) as conn:
        conn.execute(
            "INSERT INTO alert_history (alert_id, action, actor, to_state, severity)"
            " VALUES (%s, 'escalated', 'engine', 'open', 'critical')",
            (alert_id,),
        )
        add_history(db, alert_id, "resolved", "resolved")
        run_once(cfg, Clock())
        assert len(db.sql("SELECT * FROM notifier_gap")) == 1
        conn.rollback()
    run_once(cfg, Clock())
    assert db.sql("SELECT * FROM notifier_gap") == []
    assert sorted(json.loads(r.body)["event"] for r in receiver.bodies("/rb")) == [
        "alert.opened",
        "alert.resolved",
    ]


def test_two_dispatchers_never_send_a_delivery_twice(db: Db, receiver: Receiver) -> None:
    add_webhook(db, receiver.url("/a"))
    add_webhook(db, receiver.url("/b"))
    for n in range(15):
        open_alert(db, device=f"cab-{n:04d}")
    clock = Clock()

    async def both() -> list[list[Attempt]]:
        async with (
            Dispatcher(config(db), clock=clock) as one,
            Dispatcher(config(db), clock=clock) as two,
        ):
            return list(await asyncio.gather(one.run_once(), two.run_once()))

    first, second = asyncio.run(both())
    assert len(first) + len(second) == 30
    ids = [a.delivery_id for a in first + second]
    assert len(set(ids)) == 30
    assert first and second  # both took a share
    assert len(receiver.received) == 30
    bodies = [(r.path, json.loads(r.body)["history_id"]) for r in receiver.received]
    assert len(set(bodies)) == 30


def test_an_unreachable_webhook_does_not_delay_the_email(
    db: Db, receiver: Receiver, smtp: tuple[Mailbox, SmtpSettings]
) -> None:
    """The real loop, woken by NOTIFY (its interval is an hour): mail sent while hooks hang."""
    box, smtp_settings = smtp
    receiver.script["/stuck"] = ["hang"] * 5
    for _ in range(5):
        add_webhook(db, receiver.url("/stuck"))
    add_email(db, ["night@city.example"])
    cfg = config(db, smtp_settings, http_timeout_s=60.0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def serve() -> None:
        async def go() -> None:
            halt = asyncio.Event()

            async def watch() -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.05)
                halt.set()

            async with Dispatcher(cfg) as dispatcher:
                watcher = asyncio.create_task(watch())
                await dispatcher.run(interval_s=3600, stop=halt)
                await watcher

        try:
            asyncio.run(go())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        time.sleep(0.5)  # the loop's first pass (nothing to do), then it sleeps for an hour
        open_alert(db)
        assert receiver.hanging.wait(60), "the webhooks were never called"
        assert box.arrived.wait(60), "the first e-mail never came"
        # A second alert while five webhooks still hang: its e-mail does not wait for them.
        box.arrived.clear()
        open_alert(db, rule="leak", device="leak-7")
        assert box.arrived.wait(60), "the second e-mail never came"
        assert not receiver.release.is_set()
        # the first alert's five still hang (the second alert's may have started
        # too: a channel may have four requests in flight)
        assert 5 <= len(receiver.bodies("/stuck")) <= 10
        assert [m.subject for m in box.mails] == [
            "[Lumeau][critical] door_open cab-0042 (nord)",
            "[Lumeau][critical] leak leak-7 (nord)",
        ]
        assert box.mails[0].rcpt_tos == ["night@city.example"]
    finally:
        receiver.release.set()
        stop.set()
        thread.join(120)
    assert not failures
    assert not thread.is_alive()
