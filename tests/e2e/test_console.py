"""The operator's web console in a real headless Chromium, against the real API and database.

One scratch TimescaleDB database for the module (migrated, seeded by SQL), the
application of ``lumeau api run`` under uvicorn on a loopback port, tokens made
by the code of ``lumeau api token create``, and Debian's Chromium driven by
Playwright. Alerts and their history are written by SQL, as the engine writes
them, so the history trigger announces them on ``lumeau_alert`` and the API's
event stream carries them to the open page.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.api.queries.auth import IssuedToken, issue_token
from backend.assets.sample import sample_town
from backend.settings import Settings
from backend.storage import migrate
from backend.storage.scratch import scratch_database
from tests.e2e.browser import CHROMIUM_FLAGS, ApiServer, require_chromium, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
WAIT_MS = 30_000  # Playwright's waits: generous, the machine is shared
CABINET = "cab-1"
SENSOR = "leak-1"

SEED = f"""
INSERT INTO device (device_id, role, site, first_seen, last_seen, last_message_at,
                    last_boot_id, last_status, last_status_at, fw)
VALUES ('{CABINET}', 'cabinet', 'nord', now() - interval '30 days', now() - interval '2 minutes',
        now() - interval '2 minutes', 'b00t0001', 'online', now() - interval '3 hours', '1.4.2'),
       ('{SENSOR}', 'leak_sensor', 'sud', now() - interval '30 days', now() - interval '2 days',
        now() - interval '2 days', 'b00t0002', 'offline', now() - interval '2 days', '0.9.0'),
       ('gw-1', 'gateway', 'nord', NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- power_w of the cabinet in the last 24 h: channel 0 in 5 separate hours,
-- channel 1 in 2 (two readings in one of them): 7 buckets of 15 minutes.
INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq) VALUES
  (now() - interval '1 hour', '{CABINET}', 0, 'power_w', 810, 'b00t0001', 1),
  (now() - interval '2 hours', '{CABINET}', 0, 'power_w', 790, 'b00t0001', 2),
  (now() - interval '3 hours', '{CABINET}', 0, 'power_w', 805, 'b00t0001', 3),
  (now() - interval '4 hours', '{CABINET}', 0, 'power_w', 0, 'b00t0001', 4),
  (now() - interval '5 hours', '{CABINET}', 0, 'power_w', 0, 'b00t0001', 5),
  (now() - interval '1 hour', '{CABINET}', 1, 'power_w', 400, 'b00t0001', 1),
  (now() - interval '2 hours', '{CABINET}', 1, 'power_w', 390, 'b00t0001', 2),
  (now() - interval '2 hours' + interval '1 second', '{CABINET}', 1, 'power_w', 394, 'b00t0001', 6),
  (now() - interval '1 hour', '{CABINET}', 0, 'voltage_v', 231, 'b00t0001', 1),
  -- outside the default 24 h window
  (now() - interval '3 days', '{CABINET}', 0, 'power_w', 700, 'b00t0001', 7);
"""

# Two of the sample town's devices have been heard from; the upload of the
# asset register adds rows for the others (never heard from yet).
TOWN_CABINET = "cab-0001"  # cabinet cab-01
TOWN_DEVICES = f"""
INSERT INTO device (device_id, role, site, first_seen, last_seen, last_message_at,
                    last_boot_id, last_status, last_status_at, fw)
VALUES ('{TOWN_CABINET}', 'cabinet', 'bourg', now() - interval '9 days',
        now() - interval '1 minute', now() - interval '1 minute', 'b00t0011', 'online',
        now() - interval '6 hours', '1.4.2'),
       ('leak-0002', 'leak_sensor', 'bourg', now() - interval '9 days', now() - interval '3 hours',
        now() - interval '3 hours', 'b00t0012', 'online', now() - interval '9 days', '0.9.0');
"""
TOWN_DEVICE_IDS = {
    f["properties"]["device_id"]
    for f in sample_town()["features"]
    if f["properties"].get("device_id")
}
SEEDED_DEVICES = 3 + len(TOWN_DEVICE_IDS)  # SEED's three and the town's


def settings_for(url: str, services: Stack) -> Settings:
    """The settings ``lumeau api run`` gets from the stack, on the scratch database."""
    return Settings(
        run_dir=services.run_dir,
        database_url=url,  # type: ignore[arg-type]
        mqtt_host=services.mqtt_host,
        mqtt_port=services.mqtt_port,
        mqtt_username=services.mqtt_username,
        mqtt_password=services.mqtt_password,  # type: ignore[arg-type]
    )


def issue(url: str, user: str, role: Role) -> IssuedToken:
    async def run() -> IssuedToken:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await issue_token(
                conn,
                user=user,
                role=role,
                expires_in_days=1,
                label="console test",
                actor="test-suite",
                actor_token_id=None,
            )

    # Its own thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, run()).result()


@dataclass
class Console:
    """The running API, its database and a token per role."""

    db_url: str = field(repr=False)
    services: Stack = field(repr=False)
    server: ApiServer
    tokens: dict[Role, IssuedToken] = field(repr=False)

    @property
    def page_url(self) -> str:
        return f"{self.server.base_url}/console/"

    def user(self, role: Role) -> str:
        return self.tokens[role].user

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def call(self, role: Role, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The API as any client sees it (to compare with what the page shows)."""
        headers = {
            **kwargs.pop("headers", {}),
            "Authorization": f"Bearer {self.tokens[role].token}",
        }
        return httpx.request(
            method, f"{self.server.base_url}/api/v1{path}", headers=headers, **kwargs
        )

    def raise_alert(
        self,
        *,
        rule: str,
        device_id: str,
        site: str,
        severity: str,
        title: str,
        state: str = "open",
    ) -> tuple[int, int]:
        """An alert and its history, in one transaction, as the engine writes them.

        Returns (alert_id, the last history_id); the history trigger announces
        each row on ``lumeau_alert`` at commit.
        """
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO alert (rule, dedup_key, device_id, site, severity, state, title,"
                " detail, started_at, last_seen_at, acknowledged_at, acknowledged_by,"
                " resolved_at, resolved_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), now(),"
                " CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'night-lead' END,"
                " CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'engine' END)"
                " RETURNING alert_id",
                (
                    rule,
                    f"{rule}:{device_id}:{uuid.uuid4().hex[:8]}",
                    device_id,
                    site,
                    severity,
                    state,
                    title,
                    psycopg.types.json.Jsonb({"source": "console test"}),
                    state == "acknowledged",
                    state == "acknowledged",
                    state == "resolved",
                    state == "resolved",
                ),
            ).fetchone()
            assert row is not None
            alert_id = int(row["alert_id"])
            steps: list[tuple[str, str, str | None, str]] = [("opened", "engine", None, "open")]
            if state == "acknowledged":
                steps.append(("acknowledged", "night-lead", "open", "acknowledged"))
            if state == "resolved":
                steps.append(("resolved", "engine", "open", "resolved"))
            history_id = 0
            for action, actor, from_state, to_state in steps:
                history = conn.execute(
                    "INSERT INTO alert_history (alert_id, action, actor, from_state, to_state,"
                    " severity) VALUES (%s, %s, %s, %s, %s, %s) RETURNING history_id",
                    (alert_id, action, actor, from_state, to_state, severity),
                ).fetchone()
                assert history is not None
                history_id = int(history["history_id"])
        return alert_id, history_id


@pytest.fixture(scope="module")
def console(stack: object) -> Iterator[Console]:
    services = cast("Stack", stack)
    with scratch_database(services.admin_database_url, services.database_url, "t_console") as url:
        migrate(url)
        with psycopg.connect(url) as conn:
            conn.execute(SEED)
            conn.execute(TOWN_DEVICES)
        tokens = {role: issue(url, f"{role.value}-{RUN}", role) for role in Role}
        server = ApiServer(create_app(settings_for(url, services)))
        server.start()
        try:
            console = Console(url, services, server, tokens)
            # The sample town, uploaded as a planner does it.
            uploaded = console.call(
                Role.PLANNER,
                "PUT",
                "/assets",
                content=json.dumps(sample_town()),
                headers={"Content-Type": "application/geo+json"},
            )
            assert uploaded.status_code == 200, uploaded.text
            yield console
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("the Python package playwright is not installed")
        raise
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage); uncaught script errors fail the test."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert script_errors == [], f"the console's scripts failed: {script_errors}"


def sign_in(page: Page, console: Console, role: Role) -> None:
    from playwright.sync_api import expect

    page.goto(console.page_url)
    page.get_by_label("API token").fill(console.tokens[role].token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(f"{console.user(role)} · {role.value}")


def alert_row(page: Page, alert_id: int) -> Any:
    return page.locator(f'#alerts-body tr[data-alert-id="{alert_id}"]')


# --- sign-in -------------------------------------------------------------------------


def test_sign_in_shows_the_user_and_role_keeps_the_token_in_the_tab_and_loads_only_local_files(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(console.page_url)
    assert response is not None and response.ok
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy

    page.get_by_label("API token").fill(console.tokens[Role.OPERATOR].token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(f"{console.user(Role.OPERATOR)} · operator")
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()

    storage = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert storage == [1, 0, ""]
    assert page.evaluate("() => Object.values(sessionStorage)") == [
        console.tokens[Role.OPERATOR].token
    ]
    # Every file and call goes to the API's own origin: no CDN, nothing external.
    assert requested
    assert all(url.startswith(console.server.base_url + "/") for url in requested), requested
    assert any(url.endswith("/api/v1/me") for url in requested)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_a_bad_token_shows_the_apis_401_detail(page: Page, console: Console) -> None:
    from playwright.sync_api import expect

    unknown = "lmu_" + "A" * 43  # well formed, never issued
    answer = httpx.get(
        f"{console.server.base_url}/api/v1/me", headers={"Authorization": f"Bearer {unknown}"}
    )
    assert answer.status_code == 401
    detail = answer.json()["detail"]

    page.goto(console.page_url)
    page.get_by_label("API token").fill(unknown)
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    expect(error).to_have_text(f"401 Unauthorized: {detail}")
    expect(page.locator("#session")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_a_token_revoked_during_the_shift_returns_to_sign_in_with_the_reason(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    token = issue(console.db_url, f"revoked-{RUN}", Role.OPERATOR)
    page.goto(console.page_url)
    page.get_by_label("API token").fill(token.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"revoked-{RUN}")
    # Revoked once the page's first calls are answered (the list, the stream),
    # so the click below is the call that meets the 401.
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#alerts-count")).to_contain_text("alert")

    revoked = console.call(Role.ADMIN, "DELETE", f"/tokens/{token.token_id}")
    assert revoked.status_code == 204, revoked.text
    page.get_by_role("link", name="Devices").click()  # the next call gets a 401
    expect(page.locator("#signin-error")).to_contain_text(
        re.compile(rf"^401 Unauthorized: token {token.token_id} was revoked at ")
    )
    expect(page.get_by_label("API token")).to_be_visible()


# --- alerts board --------------------------------------------------------------------


def test_the_board_lists_alerts_with_their_severity_in_words_and_filters_them(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    leak, _ = console.raise_alert(
        rule="leak",
        device_id=SENSOR,
        site="sud",
        severity="critical",
        title=f"Leak suspected near valve 12 ({RUN})",
    )
    door, _ = console.raise_alert(
        rule="door_open",
        device_id=CABINET,
        site="nord",
        severity="warning",
        title=f"Cabinet door open ({RUN})",
        state="acknowledged",
    )
    gone, _ = console.raise_alert(
        rule="battery_low",
        device_id=SENSOR,
        site="sud",
        severity="info",
        title=f"Battery low ({RUN})",
        state="resolved",
    )
    sign_in(page, console, Role.OPERATOR)

    expect(alert_row(page, leak).locator(".sev")).to_have_text("▲CRITICAL")
    expect(alert_row(page, leak)).to_contain_text(f"Leak suspected near valve 12 ({RUN})")
    expect(alert_row(page, leak)).to_contain_text("open")
    expect(alert_row(page, door).locator(".sev")).to_have_text("◆WARNING")
    expect(alert_row(page, door)).to_contain_text("acknowledged")
    expect(alert_row(page, gone)).to_have_count(0)  # live alerts only, by default

    page.get_by_role("group", name="State").get_by_label("resolved").check()
    expect(alert_row(page, gone).locator(".sev")).to_have_text("●INFO")

    page.get_by_role("group", name="Severity").get_by_label("warning").uncheck()
    page.get_by_role("group", name="Severity").get_by_label("info").uncheck()
    expect(alert_row(page, door)).to_have_count(0)
    expect(alert_row(page, leak)).to_have_count(1)

    page.get_by_role("group", name="Severity").get_by_label("warning").check()
    page.get_by_label("Site").fill("nord")
    page.get_by_role("button", name="Apply").click()
    expect(alert_row(page, leak)).to_have_count(0)
    expect(alert_row(page, door)).to_have_count(1)


def test_acknowledging_in_the_browser_changes_the_alert_and_its_history(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    alert_id, _ = console.raise_alert(
        rule="circuit_failure",
        device_id=CABINET,
        site="nord",
        severity="critical",
        title=f"Circuit 2 failed ({RUN})",
    )
    operator = console.user(Role.OPERATOR)
    sign_in(page, console, Role.OPERATOR)
    alert_row(page, alert_id).get_by_role("button").click()
    detail = page.locator("#alert-detail")
    expect(detail.locator("#detail-state")).to_have_text("open")
    expect(detail.locator("#detail-history li")).to_have_count(1)

    detail.locator("#act-acknowledge").get_by_label("Note").fill("crew on the way")
    detail.get_by_role("button", name="Acknowledge").click()
    expect(detail.locator("#detail-state")).to_have_text("acknowledged")
    expect(detail.locator('#detail-history li[data-action="acknowledged"]')).to_contain_text(
        f"acknowledged by {operator} open → acknowledged"
    )
    expect(alert_row(page, alert_id)).to_contain_text("acknowledged")
    expect(detail.get_by_role("button", name="Acknowledge")).to_be_hidden()

    [row] = console.sql("SELECT state, acknowledged_by FROM alert WHERE alert_id = %s", alert_id)
    assert row == {"state": "acknowledged", "acknowledged_by": operator}
    history = console.sql(
        "SELECT action, actor, from_state, to_state, note FROM alert_history"
        " WHERE alert_id = %s ORDER BY history_id",
        alert_id,
    )
    assert history[-1] == {
        "action": "acknowledged",
        "actor": operator,
        "from_state": "open",
        "to_state": "acknowledged",
        "note": "crew on the way",
    }
    assert [h["action"] for h in history] == ["opened", "acknowledged"]


def test_a_planner_sees_the_alert_but_no_acknowledge_button(page: Page, console: Console) -> None:
    from playwright.sync_api import expect

    alert_id, _ = console.raise_alert(
        rule="day_burning",
        device_id=CABINET,
        site="nord",
        severity="warning",
        title=f"Lights on in daylight ({RUN})",
    )
    sign_in(page, console, Role.PLANNER)
    alert_row(page, alert_id).get_by_role("button").click()
    detail = page.locator("#alert-detail")
    expect(detail.locator("#detail-state")).to_have_text("open")
    # Planners comment; they do not act on alerts (alerts:act).
    expect(detail.get_by_role("button", name="Add comment")).to_be_visible()
    for name in ("Acknowledge", "Assign", "Resolve"):
        expect(detail.get_by_role("button", name=name)).to_be_hidden()
    me = console.call(Role.PLANNER, "GET", "/me").json()
    assert "alerts:comment" in me["permissions"] and "alerts:act" not in me["permissions"]


def test_a_refused_action_shows_the_apis_detail(page: Page, console: Console) -> None:
    from playwright.sync_api import expect

    alert_id, _ = console.raise_alert(
        rule="mains_loss",
        device_id=CABINET,
        site="nord",
        severity="critical",
        title=f"Mains lost ({RUN})",
    )
    sign_in(page, console, Role.OPERATOR)
    alert_row(page, alert_id).get_by_role("button").click()
    detail = page.locator("#alert-detail")
    expect(detail.get_by_role("button", name="Acknowledge")).to_be_visible()
    # Resolved behind the page's back, without a history row (so no stream event):
    # the page still offers "Acknowledge", the API refuses it.
    console.sql(
        "UPDATE alert SET state = 'resolved', resolved_at = now(), resolved_by = 'engine'"
        " WHERE alert_id = %s",
        alert_id,
    )
    detail.get_by_role("button", name="Acknowledge").click()
    refused = console.call(Role.OPERATOR, "POST", f"/alerts/{alert_id}/acknowledge", json={})
    assert refused.status_code == 409
    expect(detail.locator("#detail-error")).to_have_text(
        f"409 Conflict: {refused.json()['detail']}"
    )


# --- live updates ----------------------------------------------------------------------


def test_a_new_critical_alert_appears_in_the_open_page_with_a_toast(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    sign_in(page, console, Role.OPERATOR)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloads

    alert_id, _ = console.raise_alert(
        rule="leak",
        device_id=SENSOR,
        site="sud",
        severity="critical",
        title=f"Leak at hydrant 7 ({RUN})",
    )
    expect(alert_row(page, alert_id).locator(".sev")).to_have_text("▲CRITICAL")
    expect(alert_row(page, alert_id)).to_contain_text(f"Leak at hydrant 7 ({RUN})")
    toast = page.locator(f'#toasts .toast[data-alert-id="{alert_id}"]')
    expect(toast).to_contain_text(f"New critical alert: leak ({SENSOR}, sud)")

    # A change made elsewhere (another operator) refreshes the row too.
    other = console.call(
        Role.TECHNICIAN,
        "POST",
        f"/alerts/{alert_id}/assign",
        json={"assignee": console.user(Role.TECHNICIAN), "note": None},
    )
    assert other.status_code == 200, other.text
    expect(alert_row(page, alert_id)).to_contain_text(console.user(Role.TECHNICIAN))
    assert page.evaluate("() => window.sameDocument") is True

    toast.get_by_role("button", name="Open").click()
    expect(page.locator("#alert-detail #detail-title")).to_contain_text(
        f"Leak at hydrant 7 ({RUN})"
    )


def test_the_stream_resumes_after_an_api_restart_with_last_event_id(
    page: Page, console: Console
) -> None:
    """Changes made while the API was down reach the page when it comes back."""
    from playwright.sync_api import Request, expect

    server = ApiServer(create_app(settings_for(console.db_url, console.services)))
    server.start()
    streams: list[Request] = []
    page.on("request", lambda r: streams.append(r) if r.url.endswith("/api/v1/stream") else None)
    try:
        page.goto(f"{server.base_url}/console/")
        page.get_by_label("API token").fill(console.tokens[Role.OPERATOR].token)
        page.get_by_role("button", name="Sign in").click()
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")

        before, seen = console.raise_alert(
            rule="cabinet_offline",
            device_id=CABINET,
            site="nord",
            severity="warning",
            title=f"Cabinet silent ({RUN})",
        )
        expect(alert_row(page, before)).to_have_count(1)

        server.stop()
        expect(live).not_to_have_attribute("data-state", "live")
        missed, _ = console.raise_alert(
            rule="leak",
            device_id=SENSOR,
            site="sud",
            severity="critical",
            title=f"Leak while the API was down ({RUN})",
        )
        server.start()  # the same port: the page reconnects by itself

        expect(live).to_have_attribute("data-state", "live")
        expect(alert_row(page, missed)).to_contain_text(f"Leak while the API was down ({RUN})")
        # The replayed history row (not a list reload) raised the toast.
        expect(page.locator(f'#toasts .toast[data-alert-id="{missed}"]')).to_be_visible()
        resumed = [r.all_headers().get("last-event-id") for r in streams]
        assert resumed[0] is None
        assert str(seen) in resumed[1:], resumed
    finally:
        page.close()
        server.stop()


# --- devices ---------------------------------------------------------------------------


def test_the_devices_page_lists_presence_and_draws_the_telemetry_chart(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    sign_in(page, console, Role.OPERATOR)
    page.get_by_role("link", name="Devices").click()
    rows = page.locator("#devices-body tr")
    expect(rows).to_have_count(SEEDED_DEVICES)
    cabinet = page.locator(f'#devices-body tr[data-device-id="{CABINET}"]')
    expect(cabinet).to_contain_text("online")
    expect(cabinet).to_contain_text("cabinet")
    expect(cabinet).to_contain_text("nord")
    expect(cabinet).to_contain_text("1.4.2")
    expect(page.locator(f'#devices-body tr[data-device-id="{SENSOR}"]')).to_contain_text("offline")
    expect(page.locator('#devices-body tr[data-device-id="gw-1"]')).to_contain_text("unknown")

    cabinet.get_by_role("button", name=CABINET).click()
    chart = page.locator("#telemetry-chart")
    # The seed: 5 buckets on channel 0 and 2 on channel 1 in the last 24 h, 15-minute buckets.
    expect(chart.locator("circle.point")).to_have_count(7)
    expect(chart.locator('g.series[data-channel="0"] circle.point')).to_have_count(5)
    expect(chart.locator('g.series[data-channel="1"] circle.point')).to_have_count(2)
    expect(chart.locator("polyline.line")).to_have_count(2)
    expect(page.locator("#telemetry-caption")).to_have_text(
        f"power_w of {CABINET}: 7 buckets of 15m on 2 channels, from 0 to 810"
    )
    answer = console.call(
        Role.OPERATOR,
        "GET",
        f"/devices/{CABINET}/telemetry",
        params={"metric": "power_w", "bucket": "15m"},
    )
    assert len(answer.json()["points"]) == 7

    # Another metric and a wider bucket, from the form.
    form = page.locator("#telemetry-form")
    form.get_by_label("Metric").fill("voltage_v")
    form.get_by_label("Bucket").select_option("1h")
    form.get_by_role("button", name="Show").click()
    expect(chart.locator("circle.point")).to_have_count(1)
    form.get_by_label("Metric").fill("no such metric!")
    form.get_by_role("button", name="Show").click()
    expect(page.locator("#telemetry-error")).to_contain_text(
        "422 Unprocessable Content: query.metric"
    )


# --- map -------------------------------------------------------------------------------


def town(console: Console) -> list[dict[str, Any]]:
    """The features the API serves (what the map must draw)."""
    answer = console.call(Role.OPERATOR, "GET", "/assets", params={"limit": 10_000})
    assert answer.status_code == 200, answer.text
    collection = answer.json()
    assert collection["total"] == len(collection["features"])
    return cast("list[dict[str, Any]]", collection["features"])


def open_map(page: Page, console: Console) -> None:
    from playwright.sync_api import expect

    sign_in(page, console, Role.OPERATOR)
    page.get_by_role("link", name="Map").click()
    expect(page.get_by_role("heading", name="Map", exact=True)).to_be_visible()
    expect(page.locator("#map-status")).to_contain_text("device")  # assets and alerts read


def marker(page: Page, name: str) -> Locator:
    return page.locator("#map-svg").get_by_role("button", name=name, exact=True)


def test_the_map_draws_the_asset_register_and_marks_a_sensor_with_a_critical_leak(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    console.raise_alert(
        rule="leak",
        device_id="leak-0002",
        site="bourg",
        severity="critical",
        title=f"Leak suspected at hydrant n-06 ({RUN})",
    )
    features = town(console)
    kinds = Counter(f["properties"]["kind"] for f in features)
    assert kinds["cabinet"] == 3 and kinds["sensor"] == 4 and kinds["pipe"] == 9
    open_map(page, console)

    svg = page.locator("#map-svg")
    expect(page.get_by_role("group", name=re.compile(r"^Map of Le Bourg"))).to_be_visible()
    expect(svg.locator("g.device.cabinet")).to_have_count(kinds["cabinet"])
    expect(svg.locator("g.device.sensor")).to_have_count(kinds["sensor"])
    expect(svg.locator("polyline.pipe")).to_have_count(kinds["pipe"])
    expect(svg.locator("circle.luminaire")).to_have_count(kinds["luminaire"])
    expect(svg.locator("circle.node")).to_have_count(kinds["node"])
    expect(svg.locator("path.site")).to_have_count(kinds["site"])  # a Polygon: its outline

    leak = marker(page, "sensor s-02 (leak-0002): critical alert")
    expect(leak).to_have_attribute("data-severity", "critical")
    expect(leak.locator(".ring")).to_have_count(1)
    expect(leak.locator(".alert-label")).to_have_text("▲ CRITICAL")  # not colour alone
    quiet = marker(page, "sensor s-01 (leak-0001): no live alert")
    expect(quiet).not_to_have_attribute("data-severity", re.compile(".*"))
    expect(quiet.locator(".ring")).to_have_count(0)

    # Every cabinet and sensor sits where its coordinates say: the same scale
    # east-west (lon·cos(lat0)) and north-south (lat), north up.
    points = [f for f in features if f["properties"]["kind"] in ("cabinet", "sensor")]
    drawn = svg.locator("g.device .body").evaluate_all(
        """bodies => bodies.map(b => {
            const r = b.getBoundingClientRect();
            const g = b.closest("g.device");
            const key = g.dataset.kind + ":" + g.dataset.assetId;
            return [key, r.x + r.width / 2, r.y + r.height / 2];
        })"""
    )
    screen = {key: (x, y) for key, x, y in drawn}
    lats = [lat for f in features for _, lat in positions(f["geometry"])]
    k = math.cos(math.radians((min(lats) + max(lats)) / 2))
    origin = points[0]
    lon0, lat0 = origin["geometry"]["coordinates"]
    x0, y0 = screen[origin["id"]]
    pairs = []  # (projected offset, drawn offset), both axes
    for f in points[1:]:
        lon, lat = f["geometry"]["coordinates"]
        x, y = screen[f["id"]]
        pairs += [((lon - lon0) * k, x - x0), (lat - lat0, y0 - y)]
    scale = sum(p * d for p, d in pairs) / sum(p * p for p, _ in pairs)
    assert scale > 0
    misplaced = [(p * scale, d) for p, d in pairs if abs(p * scale - d) > 1.5]
    assert misplaced == [], f"drawn offsets off the projection by more than 1.5 px: {misplaced}"


def positions(geometry: dict[str, Any] | None) -> list[tuple[float, float]]:
    if geometry is None:
        return []
    found: list[tuple[float, float]] = []

    def walk(value: Any) -> None:
        if isinstance(value[0], int | float):
            found.append((float(value[0]), float(value[1])))
        else:
            for inner in value:
                walk(inner)

    walk(geometry["coordinates"])
    return found


def test_a_new_alert_recolours_its_device_on_the_open_map_through_the_stream(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    streams: list[str] = []
    page.on(
        "request", lambda r: streams.append(r.url) if r.url.endswith("/api/v1/stream") else None
    )
    open_map(page, console)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloads
    expect(marker(page, "cabinet cab-02 (cab-0002): no live alert")).to_be_visible()

    alert_id, _ = console.raise_alert(
        rule="door_open",
        device_id="cab-0002",
        site="bourg",
        severity="warning",
        title=f"Cabinet door open, Rue des Tilleuls ({RUN})",
    )
    warned = marker(page, "cabinet cab-02 (cab-0002): warning alert")
    expect(warned).to_have_attribute("data-severity", "warning")
    expect(warned.locator(".alert-label")).to_have_text("◆ WARNING")

    acknowledged = console.call(Role.OPERATOR, "POST", f"/alerts/{alert_id}/acknowledge", json={})
    assert acknowledged.status_code == 200, acknowledged.text
    expect(
        marker(page, "cabinet cab-02 (cab-0002): warning alert, acknowledged")
    ).to_have_attribute("data-state", "acknowledged")

    resolved = console.call(Role.TECHNICIAN, "POST", f"/alerts/{alert_id}/resolve", json={})
    assert resolved.status_code == 200, resolved.text
    calm = marker(page, "cabinet cab-02 (cab-0002): no live alert")
    expect(calm.locator(".ring")).to_have_count(0)
    assert page.evaluate("() => window.sameDocument") is True
    assert len(streams) == 1, f"the map opened a stream of its own: {streams}"


def test_clicking_a_cabinet_shows_its_device_and_alerts_and_opens_the_alert(
    page: Page, console: Console
) -> None:
    from playwright.sync_api import expect

    title = f"Mains lost at Place de l'Église ({RUN})"
    alert_id, _ = console.raise_alert(
        rule="mains_loss", device_id=TOWN_CABINET, site="bourg", severity="critical", title=title
    )
    open_map(page, console)
    marker(page, f"cabinet cab-01 ({TOWN_CABINET}): critical alert").click()

    panel = page.locator("#map-detail")
    expect(panel.locator("#map-detail-title")).to_have_text("cabinet cab-01 · Place de l'Église")
    expect(panel.locator("#map-detail-fields")).to_contain_text(TOWN_CABINET)
    expect(panel.locator("#map-detail-presence")).to_contain_text("online since")
    expect(panel.locator("#map-detail-seen time")).to_have_count(1)
    item = panel.locator(f'#map-detail-alerts li[data-alert-id="{alert_id}"]')
    expect(item.locator(".sev")).to_have_text("▲CRITICAL")
    expect(item).to_contain_text("(open)")

    item.get_by_role("link", name=title).click()
    expect(page.locator("#alert-detail #detail-title")).to_contain_text(title)
    expect(page.locator("#alert-detail #detail-state")).to_have_text("open")
    assert page.evaluate("() => location.hash") == "#alerts"

    # From the keyboard: a sensor whose device has never been heard from.
    page.get_by_role("link", name="Map").click()
    sensor = marker(page, "sensor s-03 (leak-0003): no live alert")
    sensor.focus()
    page.keyboard.press("Enter")
    expect(panel.locator("#map-detail-title")).to_have_text("sensor s-03")
    expect(panel.locator("#map-detail-fields")).to_contain_text("node n-08")
    expect(panel.locator("#map-detail-presence")).to_have_text("unknown")
    expect(panel.locator("#map-detail-seen")).to_have_text("never heard from")
    expect(panel.locator("#map-detail-alerts")).to_have_text("no live alert")


# --- the event-stream parser, in the browser -----------------------------------------


def test_the_stream_parser_reads_events_split_anywhere(page: Page, console: Console) -> None:
    page.goto(console.page_url)
    stream = (
        ": keepalive\r\n\r\n"
        'id: 41\nevent: alert\ndata: {"alert_id": 7,\ndata:  "action": "opened"}\n\n'
        "retry: 2500\nid: 42\r\nevent: alert\r\ndata: {}\r\n\r\n"
        "data: no id\n\n"
        "id: 43\nevent: alert\n\n"  # no data: not dispatched, but the id counts
    )
    events = page.evaluate(
        """async (text) => {
            const { SseParser } = await import("./sse.js");
            const runs = [];
            for (let size = 1; size <= text.length; size++) {
                const parser = new SseParser();
                const got = [];
                for (let i = 0; i < text.length; i += size) {
                    got.push(...parser.push(text.slice(i, i + size)));
                }
                runs.push(JSON.stringify([got, parser.lastEventId, parser.retry]));
            }
            return [...new Set(runs)];
        }""",
        stream,
    )
    assert len(events) == 1, "the result depends on where the chunks were split"
    got, last_id, retry = json.loads(events[0])
    assert got == [
        {"id": "41", "event": "alert", "data": '{"alert_id": 7,\n "action": "opened"}'},
        {"id": "42", "event": "alert", "data": "{}"},
        {"id": "42", "event": "message", "data": "no id"},
    ]
    assert (last_id, retry) == ("43", 2500)


# --- without a browser -------------------------------------------------------------------


def test_the_console_cannot_be_mounted_inside_the_api_prefix() -> None:
    from fastapi import FastAPI

    from backend.console.mount import mount_console

    with pytest.raises(ValueError, match="under the API prefix /api/v1"):
        mount_console(FastAPI(), "/api/v1/console")


@pytest.mark.parametrize("ci", ["", "1"], ids=["local", "ci"])
def test_a_missing_chromium_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str
) -> None:
    monkeypatch.delenv("LUMEAU_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no chromium anywhere
    monkeypatch.setenv("CI", ci)
    if ci:
        with pytest.raises(RuntimeError, match="scripts/install-chromium"):
            require_chromium()
    else:
        with pytest.raises(pytest.skip.Exception, match="no Chromium on PATH"):
            require_chromium()
