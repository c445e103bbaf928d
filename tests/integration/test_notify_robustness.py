"""The notifier service where the real world is unkind: a database not there
yet when the service starts, and a webhook that redirects with its secret in
the new address. On the real database and a real local HTTP server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from backend.notify.cli import serve
from backend.notify.dispatcher import DispatcherConfig
from backend.notify.senders import post_webhook
from backend.notify.settings import SmtpSettings
from backend.storage.migrate import migrate
from backend.storage.scratch import create_database, drop_database, new_name, with_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sql(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def make_channel_and_alert(url: str, hook: str) -> None:
    """A webhook channel, then an alert opened after it (as the engine writes it)."""
    sql(
        url,
        "INSERT INTO notification_channel (name, kind, url, secret, audience_role, created_by)"
        " VALUES ('pager', 'webhook', %s, 's3cret-for-test', 'operator', 'test')",
        (hook,),
    )
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO alert (rule, dedup_key, device_id, site, severity, state, title,"
            " started_at, last_seen_at) VALUES ('mains_loss', 'mains_loss:cab-1', 'cab-1',"
            " 'nord', 'critical', 'open', 'Mains power lost at cab-1', %s, %s)"
            " RETURNING alert_id",
            (now, now),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alert_history (alert_id, at, action, actor, to_state, severity)"
            " VALUES (%s, %s, 'opened', 'engine', 'open', 'critical')",
            (row[0], now),
        )


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll; a generous bound turns a hang into a failure (not a speed limit)."""
    for _ in range(1200):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


def test_the_dispatcher_waits_for_a_database_that_is_not_there_at_start(
    stack: object, caplog: pytest.LogCaptureFixture
) -> None:
    services = cast("Stack", stack)
    name = new_name("t_notrob")
    url = with_database(services.database_url, name)
    config = DispatcherConfig(conninfo=url, smtp=SmtpSettings())
    hook = f"http://127.0.0.1:{closed_port()}/hooks/lumeau"
    caplog.set_level(logging.WARNING, logger="backend.notify.dispatcher")

    def attempted() -> bool:
        rows = sql(url, "SELECT attempts, last_error FROM notification_delivery")
        return bool(rows) and rows[0]["attempts"] >= 1

    async def go() -> None:
        stop = asyncio.Event()
        service = asyncio.create_task(serve(config, 0.2, stop))
        await eventually(lambda: "database unavailable" in caplog.text)
        assert not service.done()  # it waits; before the fix it ended here
        await asyncio.to_thread(
            create_database, services.admin_database_url, services.database_url, name=name
        )
        await asyncio.to_thread(migrate, url)
        await asyncio.to_thread(make_channel_and_alert, url, hook)
        await eventually(attempted)  # fanned out and sent (to a closed port: retry)
        stop.set()
        await asyncio.wait_for(service, 60)

    try:
        asyncio.run(go())
    finally:
        drop_database(services.admin_database_url, name)


def test_the_dispatcher_stops_while_the_database_stays_down(stack: object) -> None:
    services = cast("Stack", stack)
    url = with_database(services.database_url, new_name("t_never"))
    config = DispatcherConfig(conninfo=url, smtp=SmtpSettings())

    async def go() -> None:
        stop = asyncio.Event()
        service = asyncio.create_task(serve(config, 0.2, stop))
        await asyncio.sleep(1.5)  # a few failed connections
        assert not service.done()
        stop.set()  # what SIGTERM does
        await asyncio.wait_for(service, 60)

    asyncio.run(go())


# --- a redirect with a secret in its Location ---------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b"Moved\r\nX-Injected: yes\x1b[31m\r\n" + b"a" * 5000
        self.send_response(302)
        self.send_header("Location", "https://user:pw@new.example:8443/hooks/T0KEN123?key=ABC")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_redirect_records_only_where_it_points_not_its_path_or_query(
    redirecting: str,
) -> None:
    async def go() -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            return await post_webhook(client, redirecting, b"{}", {})

    result = asyncio.run(go())
    assert result.status_code == 302 and result.verdict.value == "dead"
    assert result.error is not None
    assert "https://new.example" in result.error
    for secret in ("T0KEN123", "key=ABC", "user", "pw@", "8443"):
        assert secret not in result.error
    # the answer's start, on one line, without control characters, bounded
    assert "\n" not in result.error and "\r" not in result.error and "\x1b" not in result.error
    assert "Moved X-Injected: yes" in result.error
    assert len(result.error) < 400
