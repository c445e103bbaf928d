"""Live updates: the LISTEN side of ``lumeau_alert`` and the Server-Sent Events it becomes.

Every ``alert_history`` insert is announced by its trigger (migration 0009)
on channel ``lumeau_alert`` with a small JSON object. Each client of
``GET /api/v1/stream`` gets its own connection (never a pooled one: a
connection that LISTENs must not serve other requests), which LISTENs, then
replays the rows the client missed, then forwards the notifications as they
come, with a keepalive comment every ``keepalive_s`` so proxies and browsers
keep the idle response open. ``StreamSlots`` bounds how many such
connections exist at once, and how many one user holds.

A stream outlives the request that authorized it, so it ends by itself
(a last ``event: end`` saying why, then the response closes) at the token's
expiry, and when a re-check of the token every ``recheck_s`` (a short query
on a pooled connection) finds it revoked, expired or its user disabled.

Order matters for not losing a row: LISTEN first, replay second. A row
committed in between is both replayed and announced, so announcements of
rows already replayed are dropped (by id: ids are not committed in order,
so "at most the last replayed id" would drop a slower transaction's row).
psycopg keeps the notifications that arrive while the replay query runs and
hands them to the next ``notifies()``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from backend.api.db import AsyncConn
from backend.api.queries import alerts as queries

log = logging.getLogger(__name__)

CHANNEL: Final = "lumeau_alert"
APPLICATION_NAME: Final = "lumeau-api-stream"  # how pg_stat_activity shows stream connections
DEFAULT_MAX_STREAMS: Final = 20
DEFAULT_MAX_STREAMS_PER_USER: Final = 3  # a few console tabs; never all the slots
DEFAULT_KEEPALIVE_S: Final = 15.0
DEFAULT_RECHECK_S: Final = 60.0
REPLAY_LIMIT: Final = 1000
CONNECT_TIMEOUT_S: Final = 5

SEVERITY_RANK: Final = {"info": 0, "warning": 1, "critical": 2}
KEEPALIVE: Final = b": keepalive\n\n"

# Why the stream's token no longer holds (revoked, expired, user disabled), or None.
Recheck = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class StreamConfig:
    """How many streams at once (in all, per user), how often a keepalive and a
    re-check of the token, how many rows a replay sends."""

    max_streams: int = DEFAULT_MAX_STREAMS
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    replay_limit: int = REPLAY_LIMIT
    max_streams_per_user: int = DEFAULT_MAX_STREAMS_PER_USER
    recheck_s: float = DEFAULT_RECHECK_S

    def __post_init__(self) -> None:
        if self.max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        if self.max_streams_per_user < 1:
            raise ValueError("max_streams_per_user must be at least 1")
        if self.recheck_s <= 0:
            raise ValueError("recheck_s must be positive")
        if self.keepalive_s <= 0:
            raise ValueError("keepalive_s must be positive")
        if self.replay_limit < 1:
            raise ValueError("replay_limit must be at least 1")


@dataclass(frozen=True)
class AlertNotice:
    """One history row as announced on ``lumeau_alert`` (field order of the trigger)."""

    history_id: int
    alert_id: int
    action: str
    state: str
    severity: str
    rule: str
    device_id: str | None
    site: str | None

    @classmethod
    def from_mapping(cls, data: Any) -> AlertNotice:
        """From the trigger's JSON or a replay row; ``ValueError`` if a field is off."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            notice = cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        for name in ("history_id", "alert_id"):
            value = getattr(notice, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} is not an integer")
        if notice.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {notice.severity!r}")
        return notice

    def event(self) -> bytes:
        """The Server-Sent Event: ``id``, ``event: alert`` and the JSON on one line."""
        data = json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.history_id}\nevent: alert\ndata: {data}\n\n".encode()


def parse_notice(payload: str) -> AlertNotice:
    """The notice in a notification's payload; ``ValueError`` if it is not one."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    return AlertNotice.from_mapping(data)


def severities_from(min_severity: str | None) -> list[str] | None:
    """The severities at or above ``min_severity`` (None: no filter)."""
    if min_severity is None:
        return None
    floor = SEVERITY_RANK[min_severity]
    return [name for name, rank in SEVERITY_RANK.items() if rank >= floor]


def wanted(notice: AlertNotice, *, site: str | None, min_severity: str | None) -> bool:
    """Whether a client that asked for ``site`` and ``min_severity`` gets ``notice``."""
    if site is not None and notice.site != site:
        return False
    return min_severity is None or SEVERITY_RANK[notice.severity] >= SEVERITY_RANK[min_severity]


def truncation_event(after: int, first_sent: int | None, limit: int) -> bytes:
    """Tells the client that the replay skipped rows: reload ``GET /alerts``.

    No ``id`` line, so the client's Last-Event-ID is left as it was.
    """
    data = json.dumps(
        {"after": after, "first_history_id": first_sent, "limit": limit}, separators=(",", ":")
    )
    return f"event: replay_truncated\ndata: {data}\n\n".encode()


def end_event(reason: str) -> bytes:
    """The stream's last event: why the server ends it (no ``id``, as for truncation)."""
    data = json.dumps({"reason": reason}, separators=(",", ":"), ensure_ascii=False)
    return f"event: end\ndata: {data}\n\n".encode()


def next_window(now: float, keepalive_s: float, *deadlines: float | None) -> float:
    """Seconds to wait for notifications: until the next keepalive or deadline."""
    return min([keepalive_s, *(d - now for d in deadlines if d is not None)])


class StreamsFull(Exception):
    """Every stream slot is taken."""


class UserStreamsFull(Exception):
    """The user holds as many streams as one user may."""


class StreamSlots:
    """At most ``limit`` live streams, ``per_user`` of them for one user; a stream
    over a limit is refused, not queued."""

    def __init__(self, limit: int, per_user: int | None = None) -> None:
        self.limit = limit
        self.per_user = per_user if per_user is not None else limit
        self.active = 0
        self.by_user: dict[str, int] = {}

    @contextmanager
    def hold(self, user: str = "") -> Iterator[None]:
        if self.active >= self.limit:
            raise StreamsFull(f"all {self.limit} live streams are open")
        held = self.by_user.get(user, 0)
        if held >= self.per_user:
            raise UserStreamsFull(
                f"user {user!r} already has {held} live streams open, the most one user may"
            )
        self.active += 1
        self.by_user[user] = held + 1
        try:
            yield
        finally:
            self.active -= 1
            left = self.by_user[user] - 1
            if left:
                self.by_user[user] = left
            else:
                del self.by_user[user]


@dataclass
class LiveStreams:
    """What the stream route needs: where the database is, the limits, the slots."""

    conninfo: str = field(repr=False)  # holds a password
    config: StreamConfig
    slots: StreamSlots = field(init=False)

    def __post_init__(self) -> None:
        self.slots = StreamSlots(self.config.max_streams, self.config.max_streams_per_user)


async def open_listener(conninfo: str) -> AsyncConn:
    """A new connection of its own that LISTENs on ``lumeau_alert``.

    TCP keepalives make a database that vanished without closing the socket
    end the stream within about a minute instead of never.
    """
    conn = await psycopg.AsyncConnection.connect(
        conninfo,
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=APPLICATION_NAME,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def alert_events(
    conn: AsyncConn,
    *,
    after: int | None,
    site: str | None,
    min_severity: str | None,
    follow: bool,
    config: StreamConfig,
    expires_at: datetime | None = None,
    recheck: Recheck | None = None,
) -> AsyncIterator[bytes]:
    """The bytes of the event stream on ``conn`` (which already LISTENs).

    Ends when ``follow`` is false and the replay is sent, or when the
    database connection fails (the client reconnects with Last-Event-ID);
    with an ``end`` event at ``expires_at`` (the token's expiry) and when
    ``recheck``, called every ``config.recheck_s``, gives a reason. The
    caller owns ``conn`` and closes it.
    """
    started = time.monotonic()
    expiry = (
        None if expires_at is None else started + (expires_at - datetime.now(UTC)).total_seconds()
    )
    next_check = None if recheck is None else started + config.recheck_s
    replayed: set[int] = set()
    try:
        if after is not None:
            rows, truncated = await queries.history_after(
                conn,
                after=after,
                site=site,
                severities=severities_from(min_severity),
                limit=config.replay_limit,
            )
            if truncated:
                first = rows[0]["history_id"] if rows else None
                yield truncation_event(after, first, config.replay_limit)
            for row in rows:
                notice = AlertNotice.from_mapping(row)
                replayed.add(notice.history_id)
                yield notice.event()
        if not follow:
            return
        while True:
            now = time.monotonic()
            if expiry is not None and now >= expiry:
                assert expires_at is not None
                yield end_event(f"the token expired at {expires_at.isoformat()}")
                return
            if recheck is not None and next_check is not None and now >= next_check:
                reason = await recheck()
                if reason is not None:
                    yield end_event(reason)
                    return
                next_check = time.monotonic() + config.recheck_s
            window = max(0.0, next_window(time.monotonic(), config.keepalive_s, expiry, next_check))
            # One keepalive per window: notifies() returns when the window ends.
            async with aclosing(conn.notifies(timeout=window)) as notifies:
                async for notify in notifies:
                    try:
                        notice = parse_notice(notify.payload)
                    except ValueError as exc:
                        log.warning("ignored a %s notification: %s", CHANNEL, exc)
                        continue
                    if notice.history_id in replayed:
                        replayed.discard(notice.history_id)
                        continue
                    if wanted(notice, site=site, min_severity=min_severity):
                        yield notice.event()
            yield KEEPALIVE
    except psycopg.OperationalError as exc:
        # The response has started: no problem+json any more. End the stream;
        # EventSource-style clients reconnect with their Last-Event-ID.
        log.warning("live stream ended: the database connection failed: %s", exc)
