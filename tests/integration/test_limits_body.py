"""Request bodies and bearer headers at the gate, on a real uvicorn server.

The application is served by uvicorn on a free loopback port (in a thread of
this process). Oversized bodies are never sent: the client declares a large
``Content-Length``, or streams chunks past the limit without ever ending the
body, then reads the answer. A server that waited for the rest of the body
would never answer; the socket timeout below is a safety net for that, not a
speed requirement.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from backend.api.app import create_app
from backend.api.gate import DEFAULT_MAX_BODY_BYTES, MIB
from backend.api.permissions import Role
from backend.api.queries.auth import IssuedToken
from backend.api.routes.assets import MAX_BODY_BYTES as ASSETS_MAX_BODY_BYTES
from tests.integration.api_kit import (
    PROBLEM,
    RecordingBroker,
    migrated_database,
    settings_for,
    tokens_per_role,
)

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
SOCKET_TIMEOUT_S = 60.0
CHUNK = 64 * 1024


@dataclass
class Served:
    host: str
    port: int
    tokens: dict[Role, IssuedToken] = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def bearer(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role].token}"}

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=SOCKET_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(stack: object) -> Iterator[Served]:
    with migrated_database(stack, "t_gate") as url:
        tokens = tokens_per_role(url, f"gate-{RUN}")
        app = create_app(settings_for(url, "api-gate"), broker_admin=RecordingBroker())
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        try:
            yield Served("127.0.0.1", port, tokens)
        finally:
            server.should_exit = True
            thread.join()


def answer(conn: http.client.HTTPConnection) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = conn.getresponse()
    body = json.loads(response.read())
    headers = {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, body


def declared_only(
    served: Served, method: str, path: str, length: int, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Headers announcing ``length`` bytes of JSON, and not one byte of the body."""
    conn = served.connection()
    try:
        conn.putrequest(method, path)
        for name, value in {
            **headers,
            "Content-Type": "application/json",
            "Content-Length": str(length),
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        return answer(conn)
    finally:
        conn.close()


def chunked_without_end(
    served: Served, method: str, path: str, size: int, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``size`` bytes sent chunked (no Content-Length), the body never ended."""
    conn = served.connection()
    try:
        conn.putrequest(method, path)
        for name, value in {
            **headers,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        sent = 0
        try:
            while sent < size:
                conn.send(b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK))
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        return answer(conn)
    finally:
        conn.close()


# --- size -----------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_unread(served: Served) -> None:
    status, headers, body = declared_only(
        served, "POST", "/api/v1/tokens", 200_000_000, served.bearer()
    )
    assert status == 413
    assert headers["content-type"] == PROBLEM
    assert body["title"] == "Content Too Large"
    assert body["type"].endswith("/content-too-large")
    assert body["detail"] == (
        "the request body is larger than 1 MiB, the most POST /api/v1/tokens accepts"
    )
    assert body["instance"] == "/api/v1/tokens"


def test_a_chunked_body_is_counted_and_reading_stops_at_the_limit(served: Served) -> None:
    status, headers, body = chunked_without_end(
        served, "POST", "/api/v1/tokens", DEFAULT_MAX_BODY_BYTES + 4 * CHUNK, served.bearer()
    )
    assert status == 413, body
    assert headers["content-type"] == PROBLEM
    assert body["type"].endswith("/content-too-large")
    assert "larger than 1 MiB" in body["detail"] and "POST /api/v1/tokens" in body["detail"]


def test_the_asset_upload_keeps_its_own_larger_limit(served: Served) -> None:
    assert ASSETS_MAX_BODY_BYTES == 32 * MIB
    status, _, body = declared_only(
        served, "PUT", "/api/v1/assets", ASSETS_MAX_BODY_BYTES + 1, served.bearer()
    )
    assert status == 413
    assert "larger than 32 MiB, the most PUT /api/v1/assets accepts" in body["detail"]
    # Over the default limit, under its own: it reaches the route, which reads it.
    padding = " " * (2 * DEFAULT_MAX_BODY_BYTES)
    upload = httpx.put(
        f"{served.base}/api/v1/assets",
        content=f'{{"type": "FeatureCollection", "features": []{padding}}}',
        headers={**served.bearer(), "Content-Type": "application/geo+json"},
        timeout=SOCKET_TIMEOUT_S,
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["written"] == 0


def test_a_chunked_body_under_the_limit_is_served(served: Served) -> None:
    def pieces() -> Iterator[bytes]:
        yield b'{"user": "chunky-' + RUN.encode() + b'", '
        yield b'"role": "operator", "expires_in_days": 1}'

    created = httpx.post(
        f"{served.base}/api/v1/tokens",
        content=pieces(),
        headers={**served.bearer(), "Content-Type": "application/json"},
        timeout=SOCKET_TIMEOUT_S,
    )
    assert created.status_code == 201, created.text


# --- the bearer header comes first ----------------------------------------------------------


def test_no_token_is_401_before_a_huge_body_is_read(served: Served) -> None:
    status, headers, body = declared_only(served, "POST", "/api/v1/tokens", 200_000_000, {})
    assert status == 401
    assert headers["content-type"] == PROBLEM
    assert headers["www-authenticate"] == 'Bearer realm="lumeau", error="invalid_token"'
    assert body["detail"] == "missing bearer token: send 'Authorization: Bearer <token>'"


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "missing bearer token"),
        ("Basic dXNlcjpwdw==", "missing bearer token"),
        ("Bearer not-a-token", "malformed bearer token"),
    ],
)
def test_a_broken_body_without_a_usable_token_is_401_not_422(
    served: Served, authorization: str | None, detail: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(
        f"{served.base}/api/v1/devices/cab-1/commands/lighting-override",
        content=b'{"channel": 1, "level_pct":',
        headers=headers,
    )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert detail in response.json()["detail"]


def test_with_a_token_a_broken_body_is_still_a_422(served: Served) -> None:
    response = httpx.post(
        f"{served.base}/api/v1/tokens",
        content=b'{"user": ',
        headers={**served.bearer(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


def test_public_pages_and_unknown_paths_are_left_to_the_application(served: Served) -> None:
    assert httpx.get(f"{served.base}/api/v1/health").status_code == 200
    assert httpx.get(f"{served.base}/api/v1/openapi.json").status_code == 200
    assert httpx.get(f"{served.base}/console/").status_code == 200
    unknown = httpx.get(f"{served.base}/api/v1/no-such-route")
    assert unknown.status_code == 404
    assert "no route for GET /api/v1/no-such-route" in unknown.json()["detail"]
    wrong_method = httpx.patch(f"{served.base}/api/v1/me")
    assert wrong_method.status_code == 405
