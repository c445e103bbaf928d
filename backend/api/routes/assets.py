"""``/api/v1/assets``: sites, lighting and water-network assets as GeoJSON. Writes are audited."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal
from backend.api.queries import assets as queries
from backend.api.schemas_assets import (
    ASSET_KEY_PATTERN,
    GEOJSON_MEDIA_TYPE,
    UPLOAD_OPENAPI,
    AssetsQuery,
    AssetsWritten,
    FeatureCollectionOut,
    FeatureOut,
)
from backend.assets.features import ParsedFeature, Problem, parse_collection, row_to_feature
from backend.assets.kinds import ASSET_ID_PATTERN, MAX_CHANNEL, AssetKind

MAX_BODY_BYTES: Final = 32 * 1024 * 1024  # 10,000 features of a few KiB each
MAX_LISTED_PROBLEMS: Final = 1000
_JSON_MEDIA_TYPES: Final = frozenset({GEOJSON_MEDIA_TYPE, "application/json"})
_ASSET_ID: Final = re.compile(ASSET_ID_PATTERN)

router = APIRouter(prefix="/assets", tags=["assets"])


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON_MEDIA_TYPE


KindPath = Annotated[AssetKind, Path(description="asset kind", examples=["pipe"])]
AssetIdPath = Annotated[
    str,
    Path(
        pattern=ASSET_KEY_PATTERN,
        description="the asset's id; a circuit's is `<cabinet_id>:<channel>`",
        examples=["p-03", "cab-01:2"],
    ),
]


def _checked_key(kind: AssetKind, asset_id: str) -> str:
    """``asset_id`` if it can name an asset of ``kind``, else a 422 saying why."""
    if kind is AssetKind.CIRCUIT:
        cabinet_id, _, channel = asset_id.rpartition(":")
        if (
            _ASSET_ID.fullmatch(cabinet_id)
            and channel.isdigit()
            and 1 <= int(channel) <= MAX_CHANNEL
        ):
            return asset_id
        raise errors.unprocessable(
            f"a circuit id is <cabinet_id>:<channel 1..{MAX_CHANNEL}>, not {asset_id!r}",
            "path.asset_id",
        )
    if not _ASSET_ID.fullmatch(asset_id):
        raise errors.unprocessable(
            f"{asset_id!r} is not a {kind.value} id (':' only appears in circuit ids)",
            "path.asset_id",
        )
    return asset_id


def _feature(kind: str, row: dict[str, Any]) -> FeatureOut:
    return FeatureOut.model_validate(row_to_feature(AssetKind(kind), row))


@router.get(
    "",
    response_model=FeatureCollectionOut,
    response_class=GeoJSONResponse,
    summary="Assets as a GeoJSON FeatureCollection (filtered, paginated)",
    description=(
        "Filters combine: `kind` (repeatable), `site`, and `bbox` (WGS84"
        " `minlon,minlat,maxlon,maxlat`: assets whose bounding box meets it, edges"
        " included; a circuit is where its cabinet is). Ordered by kind (site, cabinet,"
        " circuit, luminaire, node, pipe, sensor), then id."
    ),
)
async def list_assets(conn: Conn, query: Annotated[AssetsQuery, Query()]) -> FeatureCollectionOut:
    rows, total = await queries.list_assets(
        conn,
        kinds=query.kind,
        site=query.site,
        bbox=query.box,
        limit=query.limit,
        offset=query.offset,
    )
    return FeatureCollectionOut(
        features=[_feature(row["kind"], row["row"]) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.get(
    "/{kind}/{asset_id}",
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    summary="One asset as a GeoJSON Feature",
    responses={404: {"model": errors.Problem, "description": "No such asset"}},
)
async def read_asset(conn: Conn, kind: KindPath, asset_id: AssetIdPath) -> FeatureOut:
    key = _checked_key(kind, asset_id)
    row = await queries.get_asset(conn, kind, key)
    if row is None:
        raise errors.not_found(f"no {kind.value} {key!r}")
    return _feature(kind.value, row)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _parse_upload(body: bytes) -> tuple[list[ParsedFeature], list[Problem]]:
    """The body's features checked one by one (CPU-bound: run off the event loop)."""
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        return [], [Problem(None, "bad_json", f"the body is not valid JSON: {message[:200]}")]
    return parse_collection(document)


def _refused(problems: list[Problem], total: int | None) -> errors.ApiError:
    listed = problems[:MAX_LISTED_PROBLEMS]
    first = "; ".join(f"{p.location}: {p.message}" for p in listed[:3])
    more = f" (and {len(problems) - 3} more in 'errors')" if len(problems) > 3 else ""
    features = len({p.index for p in problems if p.index is not None})
    head = (
        f"{features} of {total} features refused, nothing was written: "
        if total is not None and features
        else "nothing was written: "
    )
    return errors.ApiError(
        422,
        "validation-error",
        head + first + more,
        errors=[errors.FieldError(location=p.location, message=p.message) for p in listed],
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> errors.ApiError:
    return errors.ApiError(
        413,
        "content-too-large",
        f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB: split the upload",
    )


@router.put(
    "",
    response_model=AssetsWritten,
    summary="Create or replace assets from a GeoJSON FeatureCollection, all or nothing",
    description=(
        "Every feature is checked (kind, geometry type, WGS84 ranges, closed rings,"
        " values and units, references to the request or to stored assets, same site,"
        " pipe ends on their nodes, declared length against the geometry, duplicate"
        " ids and device ids), then all are written in one transaction, or none: the"
        " 422 lists each refused feature by index with its reason. At most 10,000"
        " features and 32 MiB per request. Audited (`asset.upsert`)."
    ),
    openapi_extra=UPLOAD_OPENAPI,
    responses={
        409: {"model": errors.Problem, "description": "A concurrent write changed these assets"},
        413: {"model": errors.Problem, "description": "More than 32 MiB"},
        415: {"model": errors.Problem, "description": "Not application/geo+json or JSON"},
    },
)
async def upsert_assets(request: Request, conn: Conn, principal: CurrentPrincipal) -> AssetsWritten:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in _JSON_MEDIA_TYPES:
        raise errors.ApiError(
            415,
            "unsupported-media-type",
            f"send the FeatureCollection as {GEOJSON_MEDIA_TYPE} or application/json,"
            f" not {media_type[:100] or 'no Content-Type'!r}",
        )
    body = await _read_body(request)
    features, problems = await run_in_threadpool(_parse_upload, body)
    total = len(features) + len({p.index for p in problems if p.index is not None})
    if problems:
        raise _refused(problems, total)
    try:
        written = await queries.upsert_assets(
            conn, features, actor=principal.actor, actor_token_id=principal.token_id
        )
    except queries.AssetProblems as exc:
        raise _refused(exc.problems, len(features)) from None
    except queries.ConcurrentChange as exc:
        raise errors.conflict(str(exc)) from None
    return AssetsWritten(written=len(features), inserted=written.inserted, updated=written.updated)


@router.delete(
    "/{kind}/{asset_id}",
    status_code=204,
    summary="Delete one asset that nothing refers to",
    description="Audited (`asset.delete`, with the deleted row but its geometry).",
    responses={
        404: {"model": errors.Problem, "description": "No such asset"},
        409: {"model": errors.Problem, "description": "Other assets refer to it"},
    },
)
async def delete_asset(
    conn: Conn, principal: CurrentPrincipal, kind: KindPath, asset_id: AssetIdPath
) -> Response:
    key = _checked_key(kind, asset_id)
    outcome, dependents = await queries.delete_asset(
        conn, kind, key, actor=principal.actor, actor_token_id=principal.token_id
    )
    if outcome == "unknown":
        raise errors.not_found(f"no {kind.value} {key!r}")
    if outcome == "referenced":
        raise errors.conflict(
            f"{kind.value} {key!r} is referred to by {', '.join(dependents)}:"
            " delete or re-point those first"
        )
    return Response(status_code=204)
