"""``GET /api/v1/stream``: alert history as Server-Sent Events (``backend.api.live``).

Served on a router of its own (``create_app``): its authorization is the
same ``deps.authorize``, but on a connection that goes back to the pool as
soon as the token is checked, since a dependency's connection would
otherwise be held for the whole life of the stream. The stream's own
connection (``listener``) is a dependency with request scope: it is closed
when the response ends, whether the stream finished, failed or the client
went away (the server cancels the response then).

The stream is also bounded by its token: it ends (``event: end``) at the
token's expiry and when a re-check every ``StreamConfig.recheck_s``, on a
pooled connection taken for that query only, finds the token revoked or
expired or its user disabled. One user holds at most
``StreamConfig.max_streams_per_user`` streams (429 beyond).

Not in the OpenAPI document: a response that never ends cannot be described
there usefully, and the schema-driven fuzzer would wait on it forever;
``docs/api.md`` describes the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from backend.api import errors
from backend.api.db import AsyncConn, Database
from backend.api.deps import (
    DatabaseDep,
    Principal,
    authorize,
    bearer_token,
    required_permission,
    token_refusal,
)
from backend.api.live import LiveStreams, Recheck, alert_events, open_listener
from backend.api.permissions import Permission
from backend.api.queries import auth as auth_queries
from backend.api.schemas import MAX_ID
from backend.api.schemas_alerts import StreamQuery

router = APIRouter(tags=["live updates"])


async def authorize_briefly(
    request: Request,
    permission: Annotated[Permission, Depends(required_permission)],
    token: Annotated[str, Depends(bearer_token)],
    database: DatabaseDep,
) -> Principal:
    """``deps.authorize``, releasing its connection before the stream starts."""
    async with database.connection() as conn:
        return await authorize(request, permission, token, conn)


def get_live(request: Request) -> LiveStreams:
    live: LiveStreams = request.app.state.live
    return live


LiveDep = Annotated[LiveStreams, Depends(get_live)]
# The router's dependency: FastAPI runs it once per request and hands its result here too.
StreamPrincipal = Annotated[Principal, Depends(authorize_briefly)]
BearerToken = Annotated[str, Depends(bearer_token)]


def token_recheck(database: Database, token: str) -> Recheck:
    """Why ``token`` no longer holds, asked of the database on a pooled connection."""

    async def recheck() -> str | None:
        try:
            async with database.connection() as conn:
                record = await auth_queries.find_token(conn, token)
        except (errors.ApiError, psycopg.Error) as exc:
            # Fail closed: the client reconnects and is authorized afresh.
            detail = exc.detail if isinstance(exc, errors.ApiError) else "database error"
            return f"the token could not be checked again ({detail})"
        return token_refusal(record)

    return recheck


@dataclass(frozen=True)
class StreamRequest:
    after: int | None  # replay history rows after this id; None: live only
    site: str | None
    min_severity: str | None
    follow: bool


def stream_request(
    query: Annotated[StreamQuery, Query()],
    last_event_id: Annotated[
        int | None,
        Header(
            alias="last-event-id",
            ge=0,
            le=MAX_ID,
            description="the id of the last event received (sent by EventSource on reconnect)",
        ),
    ] = None,
) -> StreamRequest:
    # A reconnecting EventSource keeps its first URL (?after=) and sends its
    # progress in the header: the header is the newer of the two.
    after = last_event_id if last_event_id is not None else query.after
    return StreamRequest(
        after=after,
        site=query.site,
        min_severity=query.min_severity.value if query.min_severity else None,
        follow=query.follow,
    )


async def listener(
    live: LiveDep,
    principal: StreamPrincipal,
    _checked: Annotated[StreamRequest, Depends(stream_request)],
) -> AsyncIterator[AsyncConn]:
    """A slot and a LISTENing connection of its own, for the life of the response.

    Depends on the validated request so a bad parameter never opens one.
    """
    slots = live.slots
    if slots.active >= slots.limit:
        raise errors.unavailable(
            f"all {slots.limit} live streams are open; try again later"
            " (or close a console tab that is not in use)"
        )
    held = slots.by_user.get(principal.user, 0)
    if held >= slots.per_user:
        raise errors.ApiError(
            429,
            "too-many-streams",
            f"user {principal.user!r} already has {held} live streams open, the most one"
            " user may: close one (a console tab that is not in use) and try again",
            headers={"Retry-After": "5"},
        )
    with slots.hold(principal.user):
        conn = await open_listener(live.conninfo)
        try:
            yield conn
        finally:
            await conn.close()


@router.get(
    "/stream",
    include_in_schema=False,
    response_class=StreamingResponse,
    summary="Alert history as Server-Sent Events",
)
async def stream_alerts(
    live: LiveDep,
    wanted: Annotated[StreamRequest, Depends(stream_request)],
    principal: StreamPrincipal,
    token: BearerToken,
    database: DatabaseDep,
    conn: Annotated[AsyncConn, Depends(listener, scope="request")],
) -> StreamingResponse:
    events = alert_events(
        conn,
        after=wanted.after,
        site=wanted.site,
        min_severity=wanted.min_severity,
        follow=wanted.follow,
        config=live.config,
        expires_at=principal.token_expires_at,
        recheck=token_recheck(database, token),
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        # no-cache: never stored; X-Accel-Buffering: nginx must not hold events back.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
