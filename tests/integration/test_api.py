"""API v1 against the real TimescaleDB: the permission matrix, every route, tokens, audit.

One scratch database for the module, migrated with ``backend.storage.migrate``
and seeded with SQL; the application runs in process (FastAPI's TestClient)
with a token per role made by the same code as ``lumeau api token create``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest

from backend.api.app import api_routes, create_app
from backend.api.permissions import MATRIX, PUBLIC, ROUTES, Permission, Role
from tests.integration import api_kit
from tests.integration.api_kit import TestClient, issue, problem, settings_for

if TYPE_CHECKING:
    import httpx

    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
BASE = datetime(2026, 1, 10, tzinfo=UTC)
CABINET = "cab-1"
SENSOR = "leak-1"
_PARIS = timezone(timedelta(hours=1))


SEED = f"""
INSERT INTO device (device_id, role, site, first_seen, last_seen, last_message_at,
                    last_boot_id, last_status, last_status_at, fw)
VALUES ('{CABINET}', 'cabinet', 'nord', '{BASE}', '{BASE + timedelta(hours=3)}',
        '{BASE + timedelta(hours=3)}', 'b00t0001', 'online', '{BASE}', '1.4.2'),
       ('{SENSOR}', 'leak_sensor', 'sud', '{BASE}', '{BASE}', '{BASE}', 'b00t0002',
        'offline', '{BASE}', '0.9.0'),
       ('gw-1', 'gateway', 'nord', NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- power_w of cab-1: hour 0 on channel 0 = 10, 20, 60 (avg 30), channel 1 = 100;
-- hour 1 = 1, 2, 4 (avg 7/3); 02:00 is outside [00:00, 02:00).
INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq) VALUES
  ('{BASE}', '{CABINET}', 0, 'power_w', 10, 'b00t0001', 1),
  ('{BASE + timedelta(minutes=20)}', '{CABINET}', 0, 'power_w', 20, 'b00t0001', 2),
  ('{BASE + timedelta(minutes=40)}', '{CABINET}', 0, 'power_w', 60, 'b00t0001', 3),
  ('{BASE + timedelta(minutes=10)}', '{CABINET}', 1, 'power_w', 100, 'b00t0001', 1),
  ('{BASE + timedelta(minutes=65)}', '{CABINET}', 0, 'power_w', 1, 'b00t0001', 4),
  ('{BASE + timedelta(minutes=70)}', '{CABINET}', 0, 'power_w', 2, 'b00t0001', 5),
  ('{BASE + timedelta(minutes=119, seconds=59)}', '{CABINET}', 0, 'power_w', 4, 'b00t0001', 6),
  ('{BASE + timedelta(hours=2)}', '{CABINET}', 0, 'power_w', 1000, 'b00t0001', 7),
  ('{BASE}', '{CABINET}', 0, 'voltage_v', 231, 'b00t0001', 1);

INSERT INTO event (time, device_id, boot_id, seq, code, severity, channel, active, detail) VALUES
  ('{BASE}', '{SENSOR}', 'b00t0002', 10, 'leak_suspected', 'critical', NULL, true,
   '{{"score": 0.93}}'),
  ('{BASE + timedelta(hours=1)}', '{SENSOR}', 'b00t0002', 11, 'leak_suspected', 'critical',
   NULL, false, NULL),
  ('{BASE}', '{CABINET}', 'b00t0001', 8, 'door_open', 'warning', 0, true, NULL);

INSERT INTO dead_letter (received_at, topic, payload, code, reason, field, device_id, source)
VALUES ('{BASE}', 'lumeau/v1/dev/{SENSOR}/up/telemetry', '\\x7b2276223a397d', 'bad_version',
        'v must be 1', 'v', '{SENSOR}', 'device');

-- seq 1, 2, 5: 3..4 never arrived.
INSERT INTO uplink_message (time, device_id, boot_id, seq, kind) VALUES
  ('{BASE}', '{SENSOR}', 'b00t0002', 1, 'telemetry'),
  ('{BASE + timedelta(minutes=1)}', '{SENSOR}', 'b00t0002', 2, 'telemetry'),
  ('{BASE + timedelta(minutes=5)}', '{SENSOR}', 'b00t0002', 5, 'telemetry');
"""


class Api(api_kit.InProcessApi):
    def get(self, path: str, as_: Role | None = Role.ADMIN, **params: Any) -> httpx.Response:
        return self.request("GET", path, as_, params=params)


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    services = cast("Stack", stack)
    with api_kit.migrated_database(stack, "t_api", SEED) as url:
        app = api_kit.app_with_real_commands(services, url)
        with Api.serving(url, app, RUN, days=30) as api:
            yield api


# --- the permission matrix: every route x every role ----------------------------------


def _app_routes() -> set[tuple[str, str]]:
    app = create_app(settings_for("postgresql://nobody@127.0.0.1:1/none"))
    return {(method, path) for method, path, _ in api_routes(app)}


# The union: a route served without a matrix entry, or an entry without a route,
# shows up as a case and fails.
ROUTE_CASES = sorted(_app_routes() | set(ROUTES))


def _sample_request(api: Api, method: str, path: str) -> tuple[str, dict[str, Any]]:
    """A request the route accepts when the role may call it."""
    if (method, path) == ("DELETE", "/api/v1/tokens/{token_id}"):
        victim = issue(api.url, f"victim-{uuid.uuid4().hex[:8]}", Role.PLANNER, days=30)
        return path.format(token_id=victim.token_id), {}
    if (method, path) == ("POST", "/api/v1/devices"):
        # The seeded cabinet, rotated: no new device for the listing tests to see.
        device = {"device_id": CABINET, "role": "cabinet"}
        return path, {"json": device, "params": {"rotate": "true"}}
    if (method, path) == ("POST", "/api/v1/tokens"):
        return path, {"json": {"user": f"new-{uuid.uuid4().hex[:8]}", "role": "planner"}}
    if path.endswith("/commands/lighting-override"):
        body = {"channel": 1, "level_pct": 40, "duration_s": 600}
        return path.format(device_id=CABINET), {"json": body}
    if path.endswith("/commands/recording"):
        return path.format(device_id=SENSOR), {"json": {"action": "get", "rec": "r-1"}}
    if (method, path) == ("GET", "/api/v1/commands/{command_id}"):
        issued = api.client.post(
            f"/api/v1/devices/{CABINET}/commands/lighting-override",
            headers=api.headers(Role.ADMIN),
            json={"channel": None, "level_pct": 100, "duration_s": 60},
        )
        assert issued.status_code == 202, issued.text
        return path.format(command_id=issued.json()["command_id"]), {}
    if path.startswith("/api/v1/assets"):
        # A site of its own: PUT writes it; GET reads, DELETE removes one an admin wrote.
        site = f"site-{uuid.uuid4().hex[:8]}"
        feature = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.83, 45.76]},
            "properties": {
                "kind": "site",
                "site_id": site,
                "name": "S",
                "timezone": "Europe/Paris",
            },
        }
        upload = {"json": {"type": "FeatureCollection", "features": [feature]}}
        if method == "PUT":
            return path, upload
        created = api.client.put("/api/v1/assets", headers=api.headers(Role.ADMIN), **upload)
        assert created.status_code == 200, created.text
        return path.format(kind="site", asset_id=site), {}
    if path.startswith("/api/v1/alerts/{alert_id}"):
        # A new open alert per request: acknowledging or resolving it is allowed once.
        alert_id = api.sql(
            "INSERT INTO alert (rule, dedup_key, device_id, site, severity, state, title,"
            " started_at, last_seen_at) VALUES ('leak', %s, %s, 'sud', 'critical', 'open',"
            " 'leak', now(), now()) RETURNING alert_id",
            f"leak:{SENSOR}:{uuid.uuid4().hex[:8]}",
            SENSOR,
        )[0]["alert_id"]
        bodies: dict[str, Any] = {"assign": {"assignee": None}, "comments": {"text": "seen"}}
        body = bodies.get(path.rpartition("/")[2], {}) if method == "POST" else None
        return path.format(alert_id=alert_id), {} if body is None else {"json": body}
    if path.startswith("/api/v1/notification-channels"):
        # A channel of its own per request: POST makes it, PATCH disables it, DELETE removes it.
        name = f"ch-{uuid.uuid4().hex[:8]}"
        channel = {"name": name, "kind": "email", "recipients": ["night@city.example"]}
        if method == "POST":
            return path, {"json": {**channel, "audience_role": "operator"}}
        channel_id = api.sql(
            "INSERT INTO notification_channel (name, kind, recipients, audience_role,"
            " created_by) VALUES (%s, 'email', %s, 'operator', 'test-suite') RETURNING channel_id",
            name,
            channel["recipients"],
        )[0]["channel_id"]
        patch = {"json": {"enabled": False}} if method == "PATCH" else {}
        return path.format(channel_id=channel_id), patch
    if path.startswith(("/api/v1/schedules", "/api/v1/deployments")):
        # A schedule of its own per request (DELETE removes one no cabinet runs).
        program = {
            "v": 1,
            "id": "matrix",
            "tz": {"std": 60, "dst": "eu"},
            "plans": {"std": ["dusk", 100, "vmid", 50, "dawn", 0]},
            "circuits": {"1": {"week": "std"}},
        }
        write = {"json": {"name": f"sched-{uuid.uuid4().hex[:8]}", "program": program}}
        if (method, path) == ("POST", "/api/v1/schedules"):
            return path, write
        created = api.client.post("/api/v1/schedules", headers=api.headers(Role.ADMIN), **write)
        assert created.status_code == 201, created.text
        schedule_id = created.json()["schedule_id"]
        if path == "/api/v1/deployments/{deployment_id}":
            deployed = api.client.post(
                f"/api/v1/schedules/{schedule_id}/deployments",
                headers=api.headers(Role.ADMIN),
                json={"cabinets": [CABINET]},
            )
            assert deployed.status_code == 202, deployed.text
            return path.format(deployment_id=deployed.json()["deployment_id"]), {}
        kwargs: dict[str, Any] = {}
        if method == "PUT":
            kwargs = write
        elif path.endswith("/preview"):
            kwargs = {"params": {"date": "2026-01-15", "lat": 45.76, "lon": 4.84}}
        elif method == "POST":
            kwargs = {"json": {"cabinets": [CABINET]}}
        return path.format(schedule_id=schedule_id), kwargs
    if path == "/api/v1/stream":
        # Replay only, then the answer ends (a live stream never would here).
        return path, {"params": {"follow": "false", "after": "0"}}
    params = {"metric": "power_w"} if path.endswith("/telemetry") else {}
    return path.format(device_id=CABINET), {"params": params}


@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r.value if r else "anonymous")
@pytest.mark.parametrize("route", ROUTE_CASES, ids=lambda r: f"{r[0]} {r[1]}")
def test_permission_matrix(api: Api, route: tuple[str, str], role: Role | None) -> None:
    method, template = route
    assert route in ROUTES, f"{method} {template} is served but has no entry in ROUTES"
    assert route in _app_routes(), f"{method} {template} is in ROUTES but not served"
    path, kwargs = _sample_request(api, method, template)
    response = api.client.request(method, path, headers=api.headers(role), **kwargs)
    permission = ROUTES[route]
    if permission is PUBLIC:
        assert response.status_code == 200, response.text
    elif role is None:
        body = problem(response, 401)
        assert "missing bearer token" in body["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    elif role in MATRIX[permission]:
        assert 200 <= response.status_code < 300, response.text
    else:
        body = problem(response, 403)
        assert (
            f"role {role.value!r} does not have permission {permission.value!r}" in (body["detail"])
        )


def test_matrix_covers_every_permission_and_route() -> None:
    assert set(MATRIX) == set(Permission)
    assert _app_routes() == set(ROUTES)
    assert MATRIX[Permission.DEAD_LETTERS_READ] == {Role.TECHNICIAN, Role.ADMIN}
    assert MATRIX[Permission.TOKENS_WRITE] == {Role.ADMIN}


# --- health, me -------------------------------------------------------------------------


def test_health_needs_no_token_and_sees_the_database(api: Api) -> None:
    response = api.get("/api/v1/health", as_=None)
    assert response.status_code == 200
    assert response.json()["database"] == "reachable"


def test_me_names_user_role_and_permissions(api: Api) -> None:
    body = api.get("/api/v1/me", as_=Role.PLANNER).json()
    assert body["user"] == f"planner-{RUN}"
    assert body["role"] == "planner"
    assert body["token_id"] == api.tokens[Role.PLANNER].token_id
    assert "dead_letters:read" not in body["permissions"]
    assert "devices:read" in body["permissions"]


# --- devices --------------------------------------------------------------------------


def test_devices_are_filtered_and_paginated(api: Api) -> None:
    body = api.get("/api/v1/devices").json()
    assert [d["device_id"] for d in body["items"]] == [CABINET, "gw-1", SENSOR]
    assert body["total"] == 3
    assert [d["device_id"] for d in api.get("/api/v1/devices", site="nord").json()["items"]] == [
        CABINET,
        "gw-1",
    ]
    assert [
        d["device_id"] for d in api.get("/api/v1/devices", role="leak_sensor").json()["items"]
    ] == [SENSOR]
    assert [
        d["device_id"] for d in api.get("/api/v1/devices", status="unknown").json()["items"]
    ] == ["gw-1"]
    page = api.get("/api/v1/devices", limit=1, offset=1).json()
    assert [d["device_id"] for d in page["items"]] == ["gw-1"]
    assert page["total"] == 3 and page["limit"] == 1 and page["offset"] == 1


def test_device_shows_presence_last_seen_and_fw(api: Api) -> None:
    body = api.get(f"/api/v1/devices/{CABINET}", as_=Role.OPERATOR).json()
    assert body["presence"] == "online"
    assert body["fw"] == "1.4.2"
    assert datetime.fromisoformat(body["last_seen"]) == BASE + timedelta(hours=3)
    assert api.get("/api/v1/devices/gw-1").json()["presence"] == "unknown"
    body = problem(api.get("/api/v1/devices/nope"), 404)
    assert "no device 'nope'" in body["detail"]


# --- telemetry --------------------------------------------------------------------------


def _points(api: Api, **params: Any) -> list[tuple[datetime, int, int, float, float, float]]:
    response = api.get(f"/api/v1/devices/{CABINET}/telemetry", **params)
    assert response.status_code == 200, response.text
    return [
        (datetime.fromisoformat(p["time"]), p["channel"], p["count"], p["avg"], p["min"], p["max"])
        for p in response.json()["points"]
    ]


def test_telemetry_hourly_buckets_match_hand_computed_values(api: Api) -> None:
    window = {"from": BASE.isoformat(), "to": (BASE + timedelta(hours=2)).isoformat()}
    points = _points(api, metric="power_w", bucket="1h", **window)
    assert points[0] == (BASE, 0, 3, 30.0, 10.0, 60.0)
    assert points[1] == (BASE, 1, 1, 100.0, 100.0, 100.0)
    hour = points[2]
    assert hour[:3] == (BASE + timedelta(hours=1), 0, 3)
    assert hour[3] == pytest.approx(7 / 3)
    assert hour[4:] == (1.0, 4.0)
    assert len(points) == 3  # 02:00 is excluded: 'to' is exclusive


def test_telemetry_smaller_buckets_channel_filter_and_other_timezones(api: Api) -> None:
    window: dict[str, Any] = {
        "from": (BASE - timedelta(hours=1)).astimezone(_PARIS).isoformat(),  # same instant
        "to": (BASE + timedelta(hours=1)).isoformat(),
    }
    points = _points(api, metric="power_w", bucket="15m", channel=0, **window)
    assert [(p[0] - BASE, p[3]) for p in points] == [
        (timedelta(0), 10.0),
        (timedelta(minutes=15), 20.0),
        (timedelta(minutes=30), 60.0),
    ]
    body = api.get(f"/api/v1/devices/{CABINET}/telemetry", metric="power_w", **window).json()
    assert body["bucket"] == "1h" and set(body) >= {"from", "to", "points"}
    assert _points(api, metric="voltage_v", bucket="1d", **window) == [
        (BASE, 0, 1, 231.0, 231.0, 231.0)
    ]


TELEMETRY = f"/api/v1/devices/{CABINET}/telemetry"


@pytest.mark.parametrize(
    ("params", "location", "message"),
    [
        ({"metric": "power_w", "bucket": "2m"}, "query.bucket", "Input should be '1m', '5m'"),
        (
            {"metric": "power_w", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "query",
            "'from' (2026-01-02T00:00:00+00:00) must be before 'to'",
        ),
        (
            {"metric": "power_w", "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "query",
            "must be before 'to'",
        ),
        (
            {
                "metric": "power_w",
                "bucket": "1m",
                "from": "2020-01-01T00:00:00Z",
                "to": "2026-01-01T00:00:00Z",
            },
            "query",
            "buckets of 1m between 'from' and 'to'; at most 10000 per query",
        ),
        ({"metric": "power_w", "from": "2026-01-01T00:00:00"}, "query.from", "timezone"),
        ({"metric": "power_w", "from": "yesterday"}, "query.from", "datetime"),
        (
            {"metric": "power_w", "from": "1900-01-01T00:00:00Z", "to": "1900-01-02T00:00:00Z"},
            "query",
            "'from' must be between 1970-01-01",
        ),
        ({"metric": "Power W"}, "query.metric", "should match pattern"),
        ({"metric": "power_w\x00"}, "query.metric", "should match pattern"),
        ({}, "query.metric", "Field required"),
        ({"metric": "power_w", "channel": "-1"}, "query.channel", "greater than or equal to 0"),
        ({"metric": "power_w", "buckets": "1h"}, "query.buckets", "Extra inputs are not permitted"),
    ],
)
def test_hostile_telemetry_queries_get_a_specific_422(
    api: Api, params: dict[str, str], location: str, message: str
) -> None:
    body = problem(api.client.get(TELEMETRY, params=params, headers=api.headers(Role.ADMIN)), 422)
    assert message in body["detail"], body
    assert any(e["location"] == location for e in body["errors"]), body["errors"]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/devices", {"limit": "0"}, "greater than or equal to 1"),
        ("/api/v1/devices", {"limit": "501"}, "less than or equal to 500"),
        ("/api/v1/devices", {"offset": str(2**70)}, "less than or equal to 1000000"),
        ("/api/v1/devices", {"status": "asleep"}, "'online', 'offline' or 'unknown'"),
        ("/api/v1/devices", {"site": "a\x00b"}, "should match pattern"),
        ("/api/v1/devices/UPPER", {}, "should match pattern"),
        ("/api/v1/events", {"severity": "fatal"}, "'info', 'warning' or 'critical'"),
        ("/api/v1/events", {"active": "maybe"}, "valid boolean"),
        (
            "/api/v1/sequence-gaps",
            {"from": "2025-01-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
            "longer than 31 days",
        ),
        ("/api/v1/dead-letters", {"source": "x\x01"}, "should match pattern"),
    ],
)
def test_bad_parameters_get_a_specific_422(
    api: Api, path: str, params: dict[str, str], message: str
) -> None:
    body = problem(api.client.get(path, params=params, headers=api.headers(Role.ADMIN)), 422)
    assert message in body["detail"], body


def test_unknown_device_telemetry_is_404(api: Api) -> None:
    problem(api.get("/api/v1/devices/nope/telemetry", metric="power_w"), 404)


# --- events, dead letters, gaps -----------------------------------------------------------


def test_events_filters(api: Api) -> None:
    items = api.get("/api/v1/events", as_=Role.PLANNER).json()["items"]
    assert [(e["device_id"], e["seq"]) for e in items] == [
        (SENSOR, 11),
        (CABINET, 8),
        (SENSOR, 10),
    ]
    active = api.get("/api/v1/events", device_id=SENSOR, active="true").json()["items"]
    assert [e["seq"] for e in active] == [10]
    assert active[0]["detail"] == {"score": 0.93}
    assert [e["code"] for e in api.get("/api/v1/events", site="nord").json()["items"]] == [
        "door_open"
    ]
    assert [e["seq"] for e in api.get("/api/v1/events", severity="warning").json()["items"]] == [8]
    window = api.get(
        "/api/v1/events",
        **cast(
            "dict[str, Any]",
            {"from": BASE.isoformat(), "to": (BASE + timedelta(minutes=1)).isoformat()},
        ),
    ).json()["items"]
    assert sorted(e["seq"] for e in window) == [8, 10]


def test_dead_letters_show_the_payload_to_technicians(api: Api) -> None:
    items = api.get("/api/v1/dead-letters", as_=Role.TECHNICIAN, device_id=SENSOR).json()["items"]
    assert len(items) == 1
    letter = items[0]
    assert base64.b64decode(letter["payload_base64"]) == b'{"v":9}'
    assert letter["payload_size"] == 7 and not letter["payload_truncated"]
    assert (letter["code"], letter["field"], letter["source"]) == ("bad_version", "v", "device")
    problem(api.get("/api/v1/dead-letters", as_=Role.OPERATOR), 403)


def test_sequence_gaps_in_a_window(api: Api) -> None:
    window: dict[str, Any] = {
        "from": BASE.isoformat(),
        "to": (BASE + timedelta(hours=1)).isoformat(),
    }
    body = api.get("/api/v1/sequence-gaps", as_=Role.OPERATOR, **window).json()
    assert [
        (g["device_id"], g["first_missing"], g["last_missing"], g["missing"]) for g in body["items"]
    ] == [(SENSOR, 3, 4, 2)]
    assert datetime.fromisoformat(body["from"]) == BASE
    assert api.get("/api/v1/sequence-gaps", device_id=CABINET, **window).json()["items"] == []
    # Outside the default window (the last 24 h): nothing.
    assert api.get("/api/v1/sequence-gaps").json()["items"] == []


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing bearer token"),
        ("Basic dXNlcjpwdw==", "missing bearer token"),
        ("Bearer short", "malformed bearer token"),
        ("Bearer lmu_" + "A" * 43, "unknown token"),
    ],
)
def test_bad_credentials_are_401(api: Api, header: str | None, message: str) -> None:
    headers = {} if header is None else {"Authorization": header}
    body = problem(api.client.get("/api/v1/me", headers=headers), 401)
    assert message in body["detail"]


def test_expired_token_is_refused(api: Api) -> None:
    issued = issue(api.url, f"late-{RUN}", Role.OPERATOR, days=1)
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert api.client.get("/api/v1/me", headers=headers).status_code == 200
    api.sql(
        "UPDATE api_token SET created_at = now() - interval '2 days',"
        " expires_at = now() - interval '1 second' WHERE token_id = %s RETURNING 1",
        issued.token_id,
    )
    body = problem(api.client.get("/api/v1/me", headers=headers), 401)
    assert f"token {issued.token_id} expired at" in body["detail"]


# --- tokens and the audit log -----------------------------------------------------------------


def _all_text(api: Api) -> str:
    """Every row of every table of the public schema, as text."""
    tables = [
        row["tablename"]
        for row in api.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    return "\n".join(
        str(row["t"])
        for table in tables
        for row in api.sql(f'SELECT t::text AS t FROM "{table}" t')
    )


def test_token_create_use_revoke_and_audit(api: Api) -> None:
    admin = api.headers(Role.ADMIN)
    user = f"carol-{RUN}"
    response = api.client.post(
        "/api/v1/tokens",
        headers=admin,
        json={"user": user, "role": "technician", "expires_in_days": 7, "label": "field tablet"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    token, token_id = created["token"], created["token_id"]
    assert created["role"] == "technician"
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)

    # Hashed at rest: the database holds the SHA-256, and the token nowhere.
    stored = api.sql("SELECT token_sha256 FROM api_token WHERE token_id = %s", token_id)
    assert bytes(stored[0]["token_sha256"]) == hashlib.sha256(token.encode()).digest()
    everything = _all_text(api)
    assert token not in everything and token.removeprefix("lmu_") not in everything

    mine = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/me", headers=mine).json()["user"] == user
    listed = api.get("/api/v1/tokens").json()["items"]
    assert {"token_id": token_id, "state": "active"}.items() <= next(
        t for t in listed if t["token_id"] == token_id
    ).items()
    assert all("token" not in t for t in listed)

    assert api.client.delete(f"/api/v1/tokens/{token_id}", headers=admin).status_code == 204
    body = problem(api.client.get("/api/v1/me", headers=mine), 401)
    assert f"token {token_id} was revoked at" in body["detail"]
    body = problem(api.client.delete(f"/api/v1/tokens/{token_id}", headers=admin), 409)
    assert "already revoked" in body["detail"]
    problem(api.client.delete("/api/v1/tokens/999999999", headers=admin), 404)
    problem(api.client.delete(f"/api/v1/tokens/{2**63}", headers=admin), 422)

    audit = api.sql(
        "SELECT actor, actor_token_id, action, target, detail FROM api_audit"
        " WHERE target IN (%s, %s) ORDER BY audit_id",
        f"user:{user}",
        f"token:{token_id}",
    )
    admin_token = api.tokens[Role.ADMIN]
    assert [(a["actor"], a["actor_token_id"], a["action"]) for a in audit] == [
        (admin_token.user, admin_token.token_id, "user.create"),
        (admin_token.user, admin_token.token_id, "token.create"),
        (admin_token.user, admin_token.token_id, "token.revoke"),
    ]
    assert audit[1]["detail"]["label"] == "field tablet"


def test_token_requests_naming_users_wrongly(api: Api) -> None:
    admin = api.headers(Role.ADMIN)
    body = problem(
        api.client.post(
            "/api/v1/tokens", headers=admin, json={"user": f"operator-{RUN}", "role": "admin"}
        ),
        409,
    )
    assert "has role 'operator', not 'admin'" in body["detail"]
    body = problem(
        api.client.post("/api/v1/tokens", headers=admin, json={"user": f"ghost-{RUN}"}), 422
    )
    assert "does not exist; give a role" in body["detail"]
    body = problem(
        api.client.post("/api/v1/tokens", headers=admin, json={"user": "a b", "role": "admin"}),
        422,
    )
    assert "body.user" in body["detail"]
    # An existing user without a role: a second token with the same role.
    response = api.client.post("/api/v1/tokens", headers=admin, json={"user": f"operator-{RUN}"})
    assert response.status_code == 201 and response.json()["role"] == "operator"


def test_failed_and_read_requests_write_no_audit_rows(api: Api) -> None:
    before = api.sql("SELECT count(*) AS n FROM api_audit")[0]["n"]
    api.client.post(
        "/api/v1/tokens", headers=api.headers(Role.OPERATOR), json={"user": "x", "role": "admin"}
    )
    api.get("/api/v1/tokens")
    assert api.sql("SELECT count(*) AS n FROM api_audit")[0]["n"] == before


def test_audit_log_is_append_only(api: Api) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        api.sql("DELETE FROM api_audit")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        api.sql("UPDATE api_audit SET actor = 'someone else'")


def test_cli_token_create_prints_the_token_once(
    api: Api, monkeypatch: pytest.MonkeyPatch, stack: object
) -> None:
    import argparse

    from backend.api import cli

    services = cast("Stack", stack)
    monkeypatch.setenv("LUMEAU_DATABASE_URL", api.url)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "api",
            "token",
            "create",
            "--user",
            f"dave-{RUN}",
            "--role",
            "planner",
            "--run-dir",
            str(services.run_dir),
        ]
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.func(args) == 0
    token = out.getvalue().strip()
    assert token.startswith("lmu_") and len(token) == 47
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["user"], me["role"]) == (f"dave-{RUN}", "planner")
    actors = api.sql(
        "SELECT actor FROM api_audit WHERE action = 'token.create' AND detail->>'user' = %s",
        f"dave-{RUN}",
    )
    assert [a["actor"].startswith("cli:") for a in actors] == [True]
    assert token not in _all_text(api)


def test_database_down_is_a_503_problem(api: Api) -> None:
    app = create_app(settings_for("postgresql://nobody:nopass1@127.0.0.1:1/none"))
    with TestClient(app) as client:
        health = client.get("/api/v1/health")
        assert health.status_code == 503 and health.json()["database"] == "unreachable"
        token = api.tokens[Role.ADMIN].token
        body = problem(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 503)
        assert "database cannot be reached" in body["detail"]
