"""``RequestGate``: what a request must pass before a route reads its body.

FastAPI reads and parses a JSON body before it runs any dependency,
``authorize`` included. Without a gate, anyone could make the API read a body
of any size (200 MB with no token: 870 MB of memory, then a 401), and a
request with no token and a broken body learnt "JSON decode error" (422)
instead of 401. The gate is pure ASGI (``BaseHTTPMiddleware`` would buffer
the event stream) and looks at the headers only:

- on an authenticated ``/api/v1`` route, no ``Authorization: Bearer`` with a
  well-formed token is the API's own 401 problem, before any byte of the
  body is read (whether the token is valid is still ``deps.authorize``'s
  job: it needs the database);
- a ``Content-Length`` over the route's limit is a 413 problem, unread; a
  body without one (chunked) is counted as the route reads it, and reading
  stops with a 413 at the first chunk past the limit.

The route is found as the router finds it (the first with the request's
method and a path matching its template), among the API routes
``create_app`` lists with whether they need a token; the public routes
(``permissions.PUBLIC``), the OpenAPI pages, the console, unknown paths
(404) and other methods (405) are left to the application.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api import errors
from backend.api.deps import bearer_refusal

MIB: Final = 1024 * 1024
DEFAULT_MAX_BODY_BYTES: Final = MIB  # a command, a schedule or an alert note is a few KiB
# The connection cannot serve another request: the rest of the body was never read.
_CLOSE: Final = {"Connection": "close"}


def size_text(n: int) -> str:
    """``n`` bytes as people write a limit: "1 MiB", "32 MiB", or "1500 bytes"."""
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n} bytes"


class BodyTooLarge(StarletteHTTPException):
    """A body without Content-Length grew past the limit while the route read it.

    An ``HTTPException``, so that FastAPI's body reading lets it through to the
    API's problem handler (it turns other errors into a 400).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail=detail, headers=_CLOSE)


@dataclass(frozen=True)
class GatedRoute:
    """An API route as the gate sees it: how to match it and what it requires."""

    method: str
    path: str  # the template, e.g. /api/v1/devices/{device_id}
    pattern: re.Pattern[str]
    needs_token: bool
    max_body_bytes: int


def route_path(scope: Scope) -> str:
    """The path the router matches (without the ASGI ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestGate:
    """Checks the bearer header and the body's size before the route runs.

    ``routes`` are the API's routes as (method, path template, needs a
    token), in the router's order; ``body_limits`` maps (method, path
    template) to a route's own limit; every other request gets
    ``default_max_body_bytes``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[tuple[str, str, bool]],
        body_limits: Mapping[tuple[str, str], int] | None = None,
        default_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if default_max_body_bytes < 1:
            raise ValueError("default_max_body_bytes must be positive")
        limits = dict(body_limits or {})
        self.app = app
        self.default_max_body_bytes = default_max_body_bytes
        self.routes = [
            GatedRoute(
                method,
                path,
                compile_path(path)[0],
                needs_token,
                limits.get((method, path), default_max_body_bytes),
            )
            for method, path, needs_token in routes
        ]

    def matched(self, scope: Scope) -> GatedRoute | None:
        """The route the router will run (the first with this method and path)."""
        method = scope["method"]
        path = route_path(scope)
        for route in self.routes:
            if route.method == method and route.pattern.match(path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.matched(scope)
        if route is not None and route.needs_token:
            refusal = bearer_refusal(Headers(scope=scope).get("authorization"))
            if refusal is not None:
                await _answer(scope, receive, send, errors.unauthorized(refusal))
                return
        limit = self.default_max_body_bytes if route is None else route.max_body_bytes
        where = "this route" if route is None else f"{route.method} {route.path}"
        detail = f"the request body is larger than {size_text(limit)}, the most {where} accepts"
        declared = _content_length(Headers(scope=scope))
        if declared is not None and declared > limit:
            problem = errors.ApiError(413, "content-too-large", detail, headers=_CLOSE)
            await _answer(scope, receive, send, problem)
            return
        await self._run_counted(scope, receive, send, limit, detail)

    async def _run_counted(
        self, scope: Scope, receive: Receive, send: Send, limit: int, detail: str
    ) -> None:
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(detail)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            # Read outside FastAPI's handlers (a route reading the stream itself
            # normally has it answered by them); too late once the answer began.
            if started:
                raise
            problem = errors.ApiError(413, "content-too-large", exc.detail, headers=_CLOSE)
            await _answer(scope, receive, send, problem)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    # The server has checked the framing; a value it let through that is not a
    # number leaves the body to be counted instead.
    return int(value) if value is not None and value.isdigit() else None


async def _answer(scope: Scope, receive: Receive, send: Send, problem: errors.ApiError) -> None:
    response = errors.problem_response(
        Request(scope), problem.status, problem.kind, problem.detail, headers=problem.headers
    )
    await response(scope, receive, send)
