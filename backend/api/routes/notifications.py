"""``/api/v1/notification-channels`` and ``/api/v1/notification-deliveries``.

Channels are written by admins only (audited); the webhook signing secret is
in the answer of the creation, or of a PATCH with ``rotate_secret=true``, and
never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal
from backend.api.queries import notifications as queries
from backend.api.schemas import MAX_ID
from backend.api.schemas_notify import (
    ChannelCreate,
    ChannelKind,
    ChannelPublic,
    ChannelsPublic,
    ChannelUpdate,
    ChannelUpdateQuery,
    ChannelWithSecret,
    DeliveriesPublic,
    DeliveriesQuery,
    DeliveryPublic,
)
from backend.notify.signing import new_secret

router = APIRouter(tags=["notifications"])

ChannelIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="channel id", examples=[3])]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": errors.Problem, "description": "No such channel"}
}


def _problem(exc: queries.ChannelProblem) -> errors.ApiError:
    if exc.kind == "conflict":
        return errors.conflict(exc.detail)
    return errors.unprocessable(exc.detail, exc.field)


def _db_values(model: ChannelCreate | ChannelUpdate, fields: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(model, name)
        if name == "actions" and value is not None:
            value = [action.value for action in value]
        elif name in ("kind", "audience_role", "min_severity") and value is not None:
            value = value.value
        values[name] = value
    return values


@router.get(
    "/notification-channels",
    response_model=ChannelsPublic,
    summary="Notification channels (never their secrets)",
)
async def list_channels(conn: Conn) -> ChannelsPublic:
    rows = await queries.list_channels(conn)
    return ChannelsPublic(items=[ChannelPublic.model_validate(row) for row in rows])


@router.post(
    "/notification-channels",
    response_model=ChannelWithSecret,
    status_code=201,
    summary="Add a channel (a webhook's signing secret is shown once, here)",
    responses={409: {"model": errors.Problem, "description": "The name is taken"}},
)
async def create_channel(
    conn: Conn, principal: CurrentPrincipal, response: Response, body: ChannelCreate
) -> ChannelWithSecret:
    secret = new_secret() if body.kind is ChannelKind.WEBHOOK else None
    try:
        row = await queries.create_channel(
            conn,
            _db_values(body, set(type(body).model_fields)),
            secret=secret,
            actor=principal.actor,
            actor_token_id=principal.token_id,
        )
    except queries.ChannelProblem as exc:
        raise _problem(exc) from None
    response.headers["Cache-Control"] = "no-store"
    return ChannelWithSecret(**row, secret=secret)


@router.get(
    "/notification-channels/{channel_id}",
    response_model=ChannelPublic,
    summary="One notification channel",
    responses=_NOT_FOUND,
)
async def read_channel(conn: Conn, channel_id: ChannelIdPath) -> ChannelPublic:
    row = await queries.get_channel(conn, channel_id)
    if row is None:
        raise errors.not_found(f"no notification channel {channel_id}")
    return ChannelPublic.model_validate(row)


@router.patch(
    "/notification-channels/{channel_id}",
    response_model=ChannelWithSecret,
    summary="Change a channel; rotate_secret=true gives a webhook a new secret (shown once)",
    responses={
        **_NOT_FOUND,
        409: {"model": errors.Problem, "description": "The new name is taken"},
    },
)
async def update_channel(
    conn: Conn,
    principal: CurrentPrincipal,
    response: Response,
    channel_id: ChannelIdPath,
    body: ChannelUpdate,
    query: Annotated[ChannelUpdateQuery, Query()],
) -> ChannelWithSecret:
    secret = new_secret() if query.rotate_secret else None
    try:
        row = await queries.update_channel(
            conn,
            channel_id,
            _db_values(body, set(body.model_fields_set)),
            new_secret=secret,
            actor=principal.actor,
            actor_token_id=principal.token_id,
        )
    except queries.ChannelProblem as exc:
        raise _problem(exc) from None
    if row is None:
        raise errors.not_found(f"no notification channel {channel_id}")
    if secret is not None:
        response.headers["Cache-Control"] = "no-store"
    return ChannelWithSecret(**row, secret=secret)


@router.delete(
    "/notification-channels/{channel_id}",
    status_code=204,
    summary="Delete a channel and its delivery records",
    responses=_NOT_FOUND,
)
async def delete_channel(
    conn: Conn, principal: CurrentPrincipal, channel_id: ChannelIdPath
) -> Response:
    deleted = await queries.delete_channel(
        conn, channel_id, actor=principal.actor, actor_token_id=principal.token_id
    )
    if not deleted:
        raise errors.not_found(f"no notification channel {channel_id}")
    return Response(status_code=204)


@router.get(
    "/notification-deliveries",
    response_model=DeliveriesPublic,
    summary="What became of each notification (newest first)",
)
async def list_deliveries(
    conn: Conn, query: Annotated[DeliveriesQuery, Query()]
) -> DeliveriesPublic:
    rows = await queries.list_deliveries(
        conn,
        state=query.state.value if query.state else None,
        channel_id=query.channel_id,
        limit=query.limit,
        offset=query.offset,
    )
    return DeliveriesPublic(
        items=[DeliveryPublic.model_validate(row) for row in rows],
        limit=query.limit,
        offset=query.offset,
    )
