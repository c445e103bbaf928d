"""``GET /api/v1/stream`` on a real uvicorn server and the real TimescaleDB.

The application is served by uvicorn on a free loopback port (in a thread of
this process) with a short keepalive and small limits; clients are httpx
streaming requests, read line by line as a browser's ``fetch()`` reader
would. History rows are inserted with SQL (the engine's way) or made by the
API's own actions, and reach the stream through ``pg_notify``.

Waits here are bounded by counting keepalives (every ``KEEPALIVE_S``), a
safety net against hanging, never a speed requirement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import httpx
import psycopg
import pytest

from backend.api.app import create_app
from backend.api.live import APPLICATION_NAME, StreamConfig
from backend.api.permissions import Role
from backend.api.queries.auth import IssuedToken
from tests.integration.alerts_kit import add_history, make_alert, new_site
from tests.integration.api_kit import (
    migrated_database,
    served_over_http,
    settings_for,
    sql,
    tokens_per_role,
)

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

KEEPALIVE_S = 0.25
MAX_STREAMS = 3
REPLAY_LIMIT = 4
PATIENCE = 400  # keepalives (or polls) before a test gives up waiting: ~100 s


@dataclass
class Event:
    """One frame of the stream: its fields, or a comment."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        assert self.data is not None
        data: dict[str, Any] = json.loads(self.data)
        return data


def frames(response: httpx.Response) -> Iterator[Event]:
    """The SSE frames of ``response`` as they arrive (HTML's event-stream rules,
    restricted to the fields this server sends)."""
    current = Event()
    for line in response.iter_lines():
        if line == "":
            yield current
            current = Event()
        elif line.startswith(":"):
            current.comment = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            setattr(current, name, value.removeprefix(" "))


@dataclass
class Served:
    base: str
    url: str = field(repr=False)  # holds a password
    admin_url: str = field(repr=False)
    tokens: dict[Role, IssuedToken] = field(repr=False)

    def headers(self, role: Role = Role.OPERATOR) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role].token}"}

    @contextmanager
    def stream(
        self, role: Role = Role.OPERATOR, headers: dict[str, str] | None = None, **params: Any
    ) -> Iterator[httpx.Response]:
        with (
            httpx.Client(base_url=self.base, timeout=30) as client,
            client.stream(
                "GET",
                "/api/v1/stream",
                headers={**self.headers(role), **(headers or {})},
                params=params,
            ) as response,
        ):
            yield response

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return sql(self.url, query, *params)

    def stream_connections(self) -> int:
        rows = self.sql(
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


@contextmanager
def serve(url: str, config: StreamConfig) -> Iterator[str]:
    """The API on a free loopback port, served by uvicorn in a thread; its base URL."""
    with served_over_http(create_app(settings_for(url), streams=config)) as base:
        yield base


@pytest.fixture(scope="module")
def served(stack: object) -> Iterator[Served]:
    services = cast("Stack", stack)
    with migrated_database(stack, "t_stream") as url:
        tokens = tokens_per_role(url, "stream")
        config = StreamConfig(
            max_streams=MAX_STREAMS, keepalive_s=KEEPALIVE_S, replay_limit=REPLAY_LIMIT
        )
        with serve(url, config) as base:
            yield Served(base, url, services.admin_database_url, tokens)


def next_alert(events: Iterator[Event]) -> Event:
    """The next ``alert`` (or other named) event, skipping keepalives (a bounded number)."""
    for _, frame in zip(range(PATIENCE), events, strict=False):
        if frame.comment is None:
            return frame
    pytest.fail(f"no event after {PATIENCE} keepalives")


def history(
    served: Served, alert_id: int, action: str = "commented", severity: str = "info"
) -> int:
    """One more history row for ``alert_id`` (committed), keeping its state; its id."""
    return add_history(served.url, alert_id, action, severity=severity)


# --- live events --------------------------------------------------------------------------


def test_a_row_inserted_after_connecting_arrives_as_the_notification_said(
    served: Served,
) -> None:
    site = new_site()
    with (
        psycopg.connect(served.url, autocommit=True) as listener,
        served.stream(site=site) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        listener.execute("LISTEN lumeau_alert")
        # The headers arrived: the server's connection already LISTENs.
        alert_id = make_alert(served.url, site=site, rule="door_open", device_id="cab-7")
        events = frames(response)
        event = next_alert(events)
        opened = served.sql("SELECT history_id FROM alert_history WHERE alert_id = %s", alert_id)[
            0
        ]["history_id"]
        assert (event.id, event.event) == (str(opened), "alert")
        notified = next(
            json.loads(n.payload)
            for n in listener.notifies(timeout=30)
            if json.loads(n.payload)["history_id"] == opened
        )
        assert (
            event.json()
            == notified
            == {
                "history_id": opened,
                "alert_id": alert_id,
                "action": "opened",
                "state": "open",
                "severity": "critical",
                "rule": "door_open",
                "device_id": "cab-7",
                "site": site,
            }
        )
        # A person's action through the API reaches the stream the same way.
        acked = httpx.post(
            f"{served.base}/api/v1/alerts/{alert_id}/acknowledge",
            headers=served.headers(Role.TECHNICIAN),
            json={"note": "on it"},
        )
        assert acked.status_code == 200, acked.text
        event = next_alert(events)
        assert event.json()["action"] == "acknowledged"
        assert event.json()["state"] == "acknowledged"
        assert int(event.id or 0) == acked.json()["history"][-1]["history_id"]


def test_keepalive_comments_while_idle(served: Served) -> None:
    with served.stream(site=new_site()) as response:
        events = frames(response)
        first, second = next(events), next(events)
    assert first.comment == second.comment == "keepalive"
    assert first.id is first.event is first.data is None


def test_min_severity_and_site_filters(served: Served) -> None:
    site = new_site()
    warning = make_alert(served.url, site=site, severity="warning")
    critical = make_alert(served.url, site=site, severity="critical")
    elsewhere = make_alert(served.url, site=new_site(), severity="critical")
    with served.stream(site=site, min_severity="critical") as response:
        # Committed in this order, announced in this order: if the filters let the
        # first two through, they would arrive before the third.
        history(served, warning, severity="warning")
        history(served, elsewhere, severity="critical")
        wanted = history(served, critical, severity="critical")
        event = next_alert(frames(response))
    assert int(event.id or 0) == wanted
    assert event.json()["site"] == site and event.json()["severity"] == "critical"


# --- replay ---------------------------------------------------------------------------------


def test_replay_after_last_event_id_then_live(served: Served) -> None:
    site = new_site()
    alert_id = make_alert(served.url, site=site)  # history: opened
    missed = [history(served, alert_id), history(served, alert_id)]
    first = served.sql(
        "SELECT min(history_id) AS id FROM alert_history WHERE alert_id = %s", alert_id
    )[0]["id"]
    with served.stream(headers={"Last-Event-ID": str(first)}, site=site) as response:
        events = frames(response)
        replayed = [next_alert(events), next_alert(events)]
        assert [int(e.id or 0) for e in replayed] == missed
        assert all(e.json()["action"] == "commented" for e in replayed)
        live = history(served, alert_id)
        assert int(next_alert(events).id or 0) == live


def test_after_parameter_and_header_precedence(served: Served) -> None:
    site = new_site()
    alert_id = make_alert(served.url, site=site)
    a, b = history(served, alert_id), history(served, alert_id)
    with served.stream(site=site, after=a, follow="false") as response:
        assert [int(e.id or 0) for e in frames(response)] == [b]
    # An EventSource reconnecting keeps ?after= of its first URL; its header is newer.
    with served.stream(
        headers={"Last-Event-ID": str(b)}, site=site, after=0, follow="false"
    ) as response:
        assert list(frames(response)) == []


def test_replay_is_capped_and_says_so(served: Served) -> None:
    site = new_site()
    alert_id = make_alert(served.url, site=site)
    start = history(served, alert_id)
    rows = [history(served, alert_id) for _ in range(REPLAY_LIMIT + 2)]
    with served.stream(site=site, after=start, follow="false") as response:
        got = list(frames(response))
    assert got[0].event == "replay_truncated" and got[0].id is None
    assert got[0].json() == {
        "after": start,
        "first_history_id": rows[-REPLAY_LIMIT],
        "limit": REPLAY_LIMIT,
    }
    assert [int(e.id or 0) for e in got[1:]] == rows[-REPLAY_LIMIT:]  # the latest, in order


def test_replay_applies_the_filters(served: Served) -> None:
    site = new_site()
    alert_id = make_alert(served.url, site=site, severity="warning")
    start = history(served, alert_id)
    history(served, alert_id, severity="info")
    kept = history(served, alert_id, severity="warning")
    history(served, make_alert(served.url, site=new_site()), severity="critical")
    with served.stream(site=site, after=start, min_severity="warning", follow="false") as r:
        assert [int(e.id or 0) for e in frames(r)] == [kept]


# --- limits, errors, clean-up -------------------------------------------------------------


def test_disconnected_clients_leave_no_connection(served: Served) -> None:
    served.wait_for_stream_connections(0)
    with served.stream(site=new_site()) as one, served.stream(site=new_site()) as two:
        # Keep the readers: a reader thrown away closes its response.
        readers = [frames(one), frames(two)]
        assert [next(reader).comment for reader in readers] == ["keepalive"] * 2
        assert served.stream_connections() == 2
        rows = served.sql(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s",
            APPLICATION_NAME,
        )
        assert [r["query"] for r in rows] == ["LISTEN lumeau_alert"] * 2
    served.wait_for_stream_connections(0)


def test_a_client_going_away_is_noticed_without_waiting_for_a_keepalive(
    served: Served,
) -> None:
    """With an hour between keepalives, only the server's own disconnect
    notice can close the stream's connection soon after the client leaves."""
    served.wait_for_stream_connections(0)
    with serve(served.url, StreamConfig(keepalive_s=3600)) as base:
        quiet = replace(served, base=base)
        with quiet.stream(site=new_site()) as response:
            assert response.status_code == 200
            quiet.wait_for_stream_connections(1)
        quiet.wait_for_stream_connections(0)


def test_streams_beyond_the_limit_are_refused_with_503(served: Served) -> None:
    served.wait_for_stream_connections(0)
    with (
        served.stream(site=new_site()) as a,
        served.stream(site=new_site()) as b,
        served.stream(site=new_site()) as c,
    ):
        assert [r.status_code for r in (a, b, c)] == [200] * MAX_STREAMS
        refused = httpx.get(f"{served.base}/api/v1/stream", headers=served.headers())
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert f"all {MAX_STREAMS} live streams are open" in refused.json()["detail"]
        assert refused.headers["retry-after"]
    served.wait_for_stream_connections(0)
    with served.stream(site=new_site()) as again:
        assert again.status_code == 200


def test_a_lost_database_connection_ends_the_stream(served: Served) -> None:
    served.wait_for_stream_connections(0)
    with served.stream(site=new_site()) as response:
        events = frames(response)
        next(events)
        with psycopg.connect(served.admin_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = %s",
                (APPLICATION_NAME, served.sql("SELECT current_database() AS d")[0]["d"]),
            ).fetchall()
        assert killed == [(True,)]
        # The response ends (the client would reconnect with its Last-Event-ID).
        rest = list(events)
        assert all(e.comment == "keepalive" for e in rest)
    refreshed = httpx.get(
        f"{served.base}/api/v1/stream", headers=served.headers(), params={"follow": "false"}
    )
    assert refreshed.status_code == 200


@pytest.mark.parametrize(
    ("params", "headers", "location"),
    [
        ({"min_severity": "fatal"}, {}, "query.min_severity"),
        ({"after": "-1"}, {}, "query.after"),
        ({"after": str(2**63)}, {}, "query.after"),
        ({"site": "x" * 200}, {}, "query.site"),
        ({"follow": "maybe"}, {}, "query.follow"),
        ({"sites": "nord"}, {}, "query.sites"),
        ({}, {"Last-Event-ID": "abc"}, "header.last-event-id"),
        ({}, {"Last-Event-ID": "-5"}, "header.last-event-id"),
    ],
)
def test_bad_parameters_are_a_422_naming_them(
    served: Served, params: dict[str, str], headers: dict[str, str], location: str
) -> None:
    response = httpx.get(
        f"{served.base}/api/v1/stream",
        headers={**served.headers(), **headers},
        params=params,
    )
    assert response.status_code == 422, response.text
    assert location in [e["location"] for e in response.json()["errors"]]


def test_bearer_token_required_and_every_role_may_listen(served: Served) -> None:
    anonymous = httpx.get(f"{served.base}/api/v1/stream")
    assert anonymous.status_code == 401
    assert "missing bearer token" in anonymous.json()["detail"]
    bad = httpx.get(
        f"{served.base}/api/v1/stream", headers={"Authorization": "Bearer lmu_" + "A" * 43}
    )
    assert bad.status_code == 401 and bad.json()["detail"] == "unknown token"
    for role in Role:
        with served.stream(role, follow="false") as response:
            assert response.status_code == 200
