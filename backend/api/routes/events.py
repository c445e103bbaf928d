"""``GET /api/v1/events``: device events, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import Conn
from backend.api.queries import events as queries
from backend.api.schemas import EventPublic, EventsPublic, EventsQuery

router = APIRouter(tags=["events"])


@router.get("/events", response_model=EventsPublic, summary="Device events (filtered, paginated)")
async def list_events(conn: Conn, query: Annotated[EventsQuery, Query()]) -> EventsPublic:
    rows = await queries.list_events(
        conn,
        device_id=query.device_id,
        site=query.site,
        code=query.code,
        severity=query.severity.value if query.severity else None,
        active=query.active,
        start=query.start,
        end=query.end,
        limit=query.limit,
        offset=query.offset,
    )
    return EventsPublic(
        items=[EventPublic.model_validate(row) for row in rows],
        limit=query.limit,
        offset=query.offset,
    )
