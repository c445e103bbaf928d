"""``/api/v1/dead-letters`` and ``/api/v1/sequence-gaps``: data-path problems."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import Conn
from backend.api.queries import diagnostics as queries
from backend.api.schemas import (
    DeadLetterPublic,
    DeadLettersPublic,
    DeadLettersQuery,
    SequenceGapPublic,
    SequenceGapsPublic,
    SequenceGapsQuery,
)

router = APIRouter(tags=["diagnostics"])


@router.get(
    "/dead-letters",
    response_model=DeadLettersPublic,
    summary="Rejected input, newest first (technician, admin)",
)
async def list_dead_letters(
    conn: Conn, query: Annotated[DeadLettersQuery, Query()]
) -> DeadLettersPublic:
    rows = await queries.list_dead_letters(
        conn,
        device_id=query.device_id,
        code=query.code,
        source=query.source,
        start=query.start,
        end=query.end,
        limit=query.limit,
        offset=query.offset,
    )
    items = [
        DeadLetterPublic(
            id=row["id"],
            received_at=row["received_at"],
            topic=row["topic"],
            code=row["code"],
            reason=row["reason"],
            field=row["field"],
            device_id=row["device_id"],
            source=row["source"],
            payload_size=row["payload_size"],
            payload_base64=base64.b64encode(row["payload_head"]).decode("ascii"),
            payload_truncated=row["payload_size"] > len(row["payload_head"]),
        )
        for row in rows
    ]
    return DeadLettersPublic(items=items, limit=query.limit, offset=query.offset)


@router.get(
    "/sequence-gaps",
    response_model=SequenceGapsPublic,
    response_model_by_alias=True,
    summary="Missing sequence ranges per device and boot within a window (max 31 days)",
)
async def list_sequence_gaps(
    conn: Conn, query: Annotated[SequenceGapsQuery, Query()]
) -> SequenceGapsPublic:
    assert query.start is not None and query.end is not None  # filled by the model
    rows = await queries.sequence_gaps(
        conn, device_id=query.device_id, start=query.start, end=query.end, limit=query.limit
    )
    return SequenceGapsPublic(
        start=query.start,
        end=query.end,
        items=[SequenceGapPublic.model_validate(row) for row in rows],
    )
