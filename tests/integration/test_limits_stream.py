"""``GET /api/v1/stream`` is bounded by its token and shared fairly between users.

On a real uvicorn server (a thread of this process) and the real database,
with a short keepalive and token re-check. Each test has users and tokens of
its own (revoking or disabling them must not touch the others'). Waits are
bounded by counting keepalives, a safety net against hanging, never a speed
requirement.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backend.api.app import create_app
from backend.api.live import APPLICATION_NAME, StreamConfig, end_event, next_window
from backend.api.permissions import Role
from backend.api.queries.auth import IssuedToken
from tests.integration.api_kit import (
    issue,
    migrated_database,
    served_over_http,
    settings_for,
    sql,
)

pytestmark = pytest.mark.services

KEEPALIVE_S = 0.1
RECHECK_S = 0.3
PER_USER = 2
PATIENCE = 600  # keepalives (or polls) before giving up: ~60 s


@contextmanager
def serve(url: str, config: StreamConfig) -> Iterator[str]:
    """The API on a free loopback port, served by uvicorn in a thread; its base URL."""
    with served_over_http(
        create_app(settings_for(url, "api-stream-limits"), streams=config)
    ) as base:
        yield base


@dataclass
class Served:
    base: str
    url: str = field(repr=False)  # holds a password
    admin: IssuedToken = field(repr=False)

    def new_token(self, role: Role = Role.OPERATOR) -> IssuedToken:
        """A token of a user of its own."""
        return issue(self.url, f"viewer-{uuid.uuid4().hex[:8]}", role)

    @contextmanager
    def stream(self, token: IssuedToken) -> Iterator[httpx.Response]:
        with (
            httpx.Client(base_url=self.base, timeout=30) as client,
            client.stream(
                "GET", "/api/v1/stream", headers={"Authorization": f"Bearer {token.token}"}
            ) as response,
        ):
            yield response

    def stream_connections(self) -> int:
        rows = sql(
            self.url,
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            APPLICATION_NAME,
        )
        n: int = rows[0]["n"]
        return n

    def wait_for_stream_connections(self, count: int) -> None:
        for _ in range(PATIENCE):
            if self.stream_connections() == count:
                return
            time.sleep(KEEPALIVE_S)
        pytest.fail(f"{self.stream_connections()} stream connections, never {count}")


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[str]:
    with migrated_database(stack, "t_stream_limits") as url:
        yield url


@pytest.fixture(scope="module")
def served(database: str) -> Iterator[Served]:
    config = StreamConfig(
        max_streams=10,
        keepalive_s=KEEPALIVE_S,
        recheck_s=RECHECK_S,
        max_streams_per_user=PER_USER,
    )
    with serve(database, config) as base:
        yield Served(base, database, issue(database, "stream-admin", Role.ADMIN))


def end_of(lines: Iterator[str]) -> tuple[list[str], dict[str, Any] | None]:
    """The frames' kinds ("keepalive", or the event's name) until the answer ends
    (at most PATIENCE frames), and the ``end`` event's data if one came."""
    kinds: list[str] = []
    frame: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            kinds.append(line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")
        elif frame:
            kinds.append(frame.get("event", "message"))
            if frame.get("event") == "end":
                data: dict[str, Any] = json.loads(frame["data"])
                rest = list(lines)
                assert rest == [], "the answer went on after its end event"
                return kinds, data
            frame = {}
        if len(kinds) > PATIENCE:
            break
    return kinds, None


# --- the token is checked again while the stream is open -------------------------------------


def test_a_revoked_token_ends_the_stream_with_the_reason(served: Served) -> None:
    token = served.new_token()
    with served.stream(token) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == ": keepalive"  # open and live
        revoked = httpx.delete(
            f"{served.base}/api/v1/tokens/{token.token_id}",
            headers={"Authorization": f"Bearer {served.admin.token}"},
        )
        assert revoked.status_code == 204, revoked.text
        kinds, end = end_of(lines)
    assert end is not None, f"the stream went on after the revocation: {kinds[-5:]}"
    assert end["reason"].startswith(f"token {token.token_id} was revoked at")
    again = httpx.get(
        f"{served.base}/api/v1/stream", headers={"Authorization": f"Bearer {token.token}"}
    )
    assert again.status_code == 401


def test_a_disabled_user_loses_the_stream(served: Served) -> None:
    token = served.new_token(Role.TECHNICIAN)
    with served.stream(token) as response:
        lines = response.iter_lines()
        assert next(lines) == ": keepalive"
        sql(
            served.url,
            "UPDATE api_user SET disabled_at = now()"
            " WHERE user_id = (SELECT user_id FROM api_token WHERE token_id = %s)",
            token.token_id,
        )
        _, end = end_of(lines)
    assert end is not None and end["reason"].endswith("is disabled")


def test_the_stream_ends_at_the_tokens_expiry(database: str) -> None:
    # No re-check during the test: the expiry alone must end it.
    config = StreamConfig(keepalive_s=KEEPALIVE_S, recheck_s=3600)
    with serve(database, config) as base:
        served = Served(base, database, issue(database, "stream-admin", Role.ADMIN))
        token = served.new_token()
        sql(
            database,
            "UPDATE api_token SET expires_at = now() + interval '2 seconds' WHERE token_id = %s",
            token.token_id,
        )
        with served.stream(token) as response:
            assert response.status_code == 200
            kinds, end = end_of(response.iter_lines())
        assert end is not None, f"the stream outlived its token: {kinds[-5:]}"
        assert end["reason"].startswith("the token expired at")
        assert kinds.count("keepalive") >= 2  # it was live until then
        served.wait_for_stream_connections(0)


# --- one user cannot take every slot ---------------------------------------------------------


def test_one_user_holds_at_most_its_share_of_the_streams(served: Served) -> None:
    served.wait_for_stream_connections(0)
    alice = served.new_token()
    alice_again = issue(served.url, alice.user, Role.OPERATOR, label="second tab")
    bob = served.new_token()
    with served.stream(alice) as one, served.stream(alice_again) as two:
        assert [one.status_code, two.status_code] == [200, 200]
        refused = httpx.get(
            f"{served.base}/api/v1/stream", headers={"Authorization": f"Bearer {alice.token}"}
        )
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"]
        detail = refused.json()["detail"]
        assert f"user {alice.user!r} already has {PER_USER} live streams open" in detail
        with served.stream(bob) as other:
            assert other.status_code == 200  # another user still gets one
    served.wait_for_stream_connections(0)
    with served.stream(alice) as later:
        assert later.status_code == 200  # the slots came back


# --- the pieces --------------------------------------------------------------------------------


def test_the_wait_ends_at_the_nearest_deadline() -> None:
    assert next_window(100.0, 15.0) == 15.0
    assert next_window(100.0, 15.0, 103.5, None) == 3.5
    assert next_window(100.0, 15.0, None, 160.0) == 15.0
    assert next_window(100.0, 15.0, 190.0, 101.0) == 1.0


def test_the_end_event_has_no_id() -> None:
    event = end_event("token 3 was revoked").decode()
    assert event == 'event: end\ndata: {"reason":"token 3 was revoked"}\n\n'
