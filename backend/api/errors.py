"""Error bodies in the style of RFC 9457 (problem details), and their handlers.

Every error the API answers is ``application/problem+json``::

    {"type": "https://lumeau.dev/problems/forbidden", "title": "Forbidden",
     "status": 403, "detail": "role 'planner' may not ...", "instance": "/api/v1/..."}

Validation errors add ``errors``: one entry per bad input, with where it is
(``query.bucket``) and what is wrong. Nothing here ever shows a stack trace,
a SQL statement or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TYPE_BASE: Final = "https://lumeau.dev/problems/"


class FieldError(BaseModel):
    """One rejected input."""

    location: str = Field(examples=["query.bucket"])
    message: str = Field(examples=["Input should be '1m', '5m', '15m', '1h', '6h' or '1d'"])


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://lumeau.dev/problems/unauthorized",
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": "token expired at 2026-01-31T00:00:00+00:00",
                    "instance": "/api/v1/devices",
                }
            ]
        }
    )

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class ApiError(Exception):
    """Raised by handlers and dependencies; becomes a problem+json answer."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors else None


def unauthorized(detail: str) -> ApiError:
    # RFC 6750 section 3: a bearer challenge, with the reason when a token was sent.
    return ApiError(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="lumeau", error="invalid_token"'},
    )


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not-found", detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, "conflict", detail)


def unprocessable(detail: str, location: str | None = None) -> ApiError:
    errors = [FieldError(location=location, message=detail)] if location else None
    return ApiError(422, "validation-error", detail, errors=errors)


def unavailable(detail: str) -> ApiError:
    return ApiError(503, "service-unavailable", detail, headers={"Retry-After": "5"})


_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=_TYPE_BASE + kind,
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=list(errors) if errors else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    # Pydantic prefixes the text of a ValueError raised by a validator.
    return message.removeprefix("Value error, ")


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    return [
        FieldError(location=_location(error.get("loc", ())), message=_message(error))
        for error in exc.errors()
    ]


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(
        request, exc.status, exc.kind, exc.detail, errors=exc.errors, headers=exc.headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    detail = "; ".join(f"{e.location}: {e.message}" for e in errors) or "invalid request"
    return problem_response(request, 422, "validation-error", detail, errors=errors)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed", 413: "content-too-large"}.get(
        exc.status_code, "http-error"
    )
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(request, exc.status_code, kind, detail, headers=exc.headers)


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return problem_response(
        request,
        503,
        "database-unavailable",
        "the database cannot be reached; try again shortly",
        headers={"Retry-After": "5"},
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request, 500, "internal-error", "internal error; the server log has the details"
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(psycopg.OperationalError, _on_database_down)
    app.add_exception_handler(Exception, _on_unexpected)


def _problem_doc(description: str) -> dict[str, Any]:
    return {
        "model": Problem,
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# OpenAPI documentation of the errors every authenticated route can answer.
AUTH_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: _problem_doc("No token, a malformed, unknown, expired or revoked token"),
    403: _problem_doc("The token's role does not hold the route's permission"),
    422: _problem_doc("A parameter is invalid; `errors` says which and why"),
    503: _problem_doc("The database cannot be reached"),
}
