"""``/api/v1/alerts``: what the rule engine raised, and people's actions on it (audited)."""

from __future__ import annotations

from typing import Annotated, Any, Final, NoReturn

from fastapi import APIRouter, Path, Query

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal, Principal
from backend.api.queries import alerts as queries
from backend.api.schemas import MAX_ID
from backend.api.schemas_alerts import (
    AlertAssignBody,
    AlertCommentBody,
    AlertNoteBody,
    AlertPublic,
    AlertsPublic,
    AlertsQuery,
    AlertWithHistory,
)

router = APIRouter(prefix="/alerts", tags=["alerts"])

AlertIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="alert id", examples=[12])]

_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": errors.Problem, "description": "No such alert"}
}
_REFUSED: Final[dict[int | str, dict[str, Any]]] = {
    409: {"model": errors.Problem, "description": "The alert's state refuses the action"}
}


@router.get(
    "",
    response_model=AlertsPublic,
    summary="Alerts, newest started first (default: the live ones, open and acknowledged)",
)
async def list_alerts(conn: Conn, query: Annotated[AlertsQuery, Query()]) -> AlertsPublic:
    rows = await queries.list_alerts(
        conn,
        states=sorted({state.value for state in query.state}),
        severities=sorted({s.value for s in query.severity}) if query.severity else None,
        site=query.site,
        device_id=query.device_id,
        rule=query.rule,
        assignee=query.assignee,
        start=query.start,
        end=query.end,
        limit=query.limit,
        offset=query.offset,
    )
    return AlertsPublic(
        items=[AlertPublic.model_validate(row) for row in rows],
        limit=query.limit,
        offset=query.offset,
    )


@router.get(
    "/{alert_id}",
    response_model=AlertWithHistory,
    summary="One alert with its history, oldest first",
    responses=_NOT_FOUND,
)
async def read_alert(conn: Conn, alert_id: AlertIdPath) -> AlertWithHistory:
    row = await queries.get_alert(conn, alert_id)
    if row is None:
        raise errors.not_found(f"no alert {alert_id}")
    return AlertWithHistory.model_validate(row)


async def _act(
    conn: Conn,
    principal: Principal,
    alert_id: int,
    action: queries.Action,
    **fields: Any,
) -> AlertWithHistory:
    try:
        row = await queries.act(
            conn,
            alert_id,
            action,
            actor=queries.Actor(principal.actor, principal.token_id),
            **fields,
        )
    except queries.AlertProblem as exc:
        _refuse(exc)
    return AlertWithHistory.model_validate(row)


def _refuse(exc: queries.AlertProblem) -> NoReturn:
    if exc.kind == "unknown_alert":
        raise errors.not_found(exc.detail) from None
    if exc.kind == "bad_assignee":
        raise errors.unprocessable(exc.detail, "body.assignee") from None
    raise errors.conflict(exc.detail) from None


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertWithHistory,
    summary="Acknowledge an open alert (open -> acknowledged)",
    responses={**_NOT_FOUND, **_REFUSED},
)
async def acknowledge_alert(
    conn: Conn,
    principal: CurrentPrincipal,
    alert_id: AlertIdPath,
    body: AlertNoteBody | None = None,
) -> AlertWithHistory:
    note = body.note if body else None
    return await _act(conn, principal, alert_id, "acknowledge", note=note)


@router.post(
    "/{alert_id}/assign",
    response_model=AlertWithHistory,
    summary="Assign a live alert to a user (null: unassign)",
    description="The assignee must be an existing, enabled API user (422 otherwise).",
    responses={**_NOT_FOUND, **_REFUSED},
)
async def assign_alert(
    conn: Conn, principal: CurrentPrincipal, alert_id: AlertIdPath, body: AlertAssignBody
) -> AlertWithHistory:
    return await _act(conn, principal, alert_id, "assign", assignee=body.assignee, note=body.note)


@router.post(
    "/{alert_id}/comments",
    response_model=AlertWithHistory,
    status_code=201,
    summary="Comment on an alert, in any state",
    responses=_NOT_FOUND,
)
async def comment_alert(
    conn: Conn, principal: CurrentPrincipal, alert_id: AlertIdPath, body: AlertCommentBody
) -> AlertWithHistory:
    return await _act(conn, principal, alert_id, "comment", note=body.text)


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertWithHistory,
    summary="Resolve an open or acknowledged alert",
    description=(
        "The engine does not raise the same alert again while its condition"
        " stays true; it does once the condition has cleared and come back."
    ),
    responses={**_NOT_FOUND, **_REFUSED},
)
async def resolve_alert(
    conn: Conn,
    principal: CurrentPrincipal,
    alert_id: AlertIdPath,
    body: AlertNoteBody | None = None,
) -> AlertWithHistory:
    note = body.note if body else None
    return await _act(conn, principal, alert_id, "resolve", note=note)
