"""A schedule's delete and its deployment at the same time, on the real database.

The race is made to happen, not hoped for: a second connection opens the
other side's transaction and keeps it open, the request under test runs on
a thread, and the test commits only once PostgreSQL shows the request
waiting for that transaction's row lock (``pg_stat_activity``). A request
that never waits finishes instead, and its answer shows the race was lost.

Commands are recorded, not published (a ``CommandPublisher`` that only
records): what is under test is which of the two wins in the database.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from backend.api.app import create_app
from backend.api.permissions import Role
from tests.integration.api_kit import (
    InProcessApi,
    RecordingBroker,
    migrated_database,
    problem,
    settings_for,
)

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
CABINET = f"cab-race-{RUN}"
SITE = f"lyon-race-{RUN}"
API = "/api/v1"
POLL_S = 0.05
PATIENCE = 1200  # polls (~60 s) before giving up: a safety net, not a speed requirement

PROGRAM: dict[str, Any] = {
    "v": 1,
    "id": "race",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {"std": ["dusk", 100, "22:30", 50, "dawn", 0]},
    "circuits": {"1": {"week": "std"}},
}
POINT = '{"type": "Point", "coordinates": [4.84, 45.76]}'
SEED = f"""
INSERT INTO device (device_id, role, site, last_status, last_status_at) VALUES
  ('{CABINET}', 'cabinet', 'lyon', 'online', now());
INSERT INTO site (site_id, name, timezone, centre_lon, centre_lat, geometry,
                  min_lon, min_lat, max_lon, max_lat, updated_by) VALUES
  ('{SITE}', 'Lyon', 'Europe/Paris', 4.84, 45.76, '{POINT}', 4.84, 45.76, 4.84, 45.76, 'seed');
INSERT INTO cabinet (cabinet_id, site_id, device_id, lon, lat, geometry, updated_by) VALUES
  ('c-race-{RUN}', '{SITE}', '{CABINET}', 4.84, 45.76, '{POINT}', 'seed');
"""


class RecordingPublisher:
    """Confirms every command at once (no broker), keeping what it was given."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, expiry_s: int) -> None:
        self.published.append(topic)


class Api(InProcessApi):
    prefix = API


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    with migrated_database(stack, "t_race", SEED) as url:
        app = create_app(
            settings_for(url, "api-race"),
            broker_admin=RecordingBroker(),
            command_publisher=RecordingPublisher(),
        )
        with Api.serving(url, app, f"race-{RUN}") as served:
            yield served


def new_schedule(api: Api) -> int:
    name = f"race-{uuid.uuid4().hex[:8]}"
    response = api.request(
        "POST", "/schedules", Role.PLANNER, json={"name": name, "program": PROGRAM}
    )
    assert response.status_code == 201, response.text
    schedule_id: int = response.json()["schedule_id"]
    return schedule_id


def lock_waiters(api: Api) -> int:
    rows = api.sql(
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    n: int = rows[0]["n"]
    return n


def race(
    api: Api,
    other_side: Callable[[psycopg.Connection[Any]], None],
    call: Callable[[], httpx.Response],
) -> httpx.Response:
    """``call`` on a thread while ``other_side``'s transaction is open; that
    transaction is committed once the request waits for its lock (or the
    request has finished without ever waiting)."""
    answers: list[httpx.Response] = []
    with psycopg.connect(api.url) as other:
        other_side(other)  # a transaction begins: psycopg does not autocommit here
        thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
        thread.start()
        for _ in range(PATIENCE):
            if not thread.is_alive() or lock_waiters(api) > 0:
                break
            time.sleep(POLL_S)
        other.commit()
    thread.join(PATIENCE * POLL_S)
    assert answers, "the request never finished"
    return answers[0]


def test_a_deployment_during_a_delete_is_refused_and_records_nothing(api: Api) -> None:
    schedule_id = new_schedule(api)

    def delete_in_progress(conn: psycopg.Connection[Any]) -> None:
        # What the delete's transaction does to the row, not yet committed.
        conn.execute(
            "UPDATE dimming_schedule SET deleted_at = now(), deleted_by = 'racer'"
            " WHERE schedule_id = %s",
            (schedule_id,),
        )

    def deploy() -> httpx.Response:
        return api.request(
            "POST",
            f"/schedules/{schedule_id}/deployments",
            Role.PLANNER,
            json={"cabinets": [CABINET]},
        )

    body = problem(race(api, delete_in_progress, deploy), 404)
    assert f"no schedule {schedule_id}" in body["detail"] and "deleted" in body["detail"]
    assert api.sql("SELECT 1 FROM schedule_deployment WHERE schedule_id = %s", schedule_id) == []
    assert (
        api.sql(
            "SELECT 1 FROM api_audit WHERE action = 'schedule.deploy' AND target = %s",
            f"schedule:{schedule_id}",
        )
        == []
    )


def test_a_delete_during_a_deployment_waits_for_it_and_is_refused(api: Api) -> None:
    """The other side is what a deployment's transaction does since this fix:
    the schedule row read ``FOR SHARE``, then its deployment, command and target."""
    schedule_id = new_schedule(api)
    command_id = f"c-race-{uuid.uuid4().hex[:12]}"

    def deployment_in_progress(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT version FROM dimming_schedule"
            " WHERE schedule_id = %s AND deleted_at IS NULL FOR SHARE",
            (schedule_id,),
        )
        row = conn.execute(
            "INSERT INTO schedule_deployment (schedule_id, version, target, created_by,"
            " expires_at) VALUES (%s, 1, 'cabinets', 'racer', now() + interval '1 day')"
            " RETURNING deployment_id",
            (schedule_id,),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO command (command_id, device_id, name, args, issued_by, issued_at,"
            " expires_at, topic) VALUES (%s, %s, 'set_schedule', '{}', 'racer', now(),"
            " now() + interval '1 day', %s)",
            (command_id, CABINET, f"lumeau/v1/dev/{CABINET}/down/cmd"),
        )
        conn.execute(
            "INSERT INTO deployment_target (deployment_id, device_id, command_id)"
            " VALUES (%s, %s, %s)",
            (row[0], CABINET, command_id),
        )

    def delete() -> httpx.Response:
        return api.request("DELETE", f"/schedules/{schedule_id}", Role.PLANNER)

    body = problem(race(api, deployment_in_progress, delete), 409)
    assert f"its set_schedule to {CABINET} may still arrive" in body["detail"]
    assert api.sql(
        "SELECT 1 FROM dimming_schedule WHERE schedule_id = %s AND deleted_at IS NULL",
        schedule_id,
    )


def test_without_a_race_deploy_and_delete_still_work(api: Api) -> None:
    schedule_id = new_schedule(api)
    deployed = api.request(
        "POST", f"/schedules/{schedule_id}/deployments", Role.PLANNER, json={"cabinets": [CABINET]}
    )
    assert deployed.status_code == 202, deployed.text
    refused = problem(api.request("DELETE", f"/schedules/{schedule_id}", Role.PLANNER), 409)
    assert CABINET in refused["detail"]
    idle = new_schedule(api)
    assert api.request("DELETE", f"/schedules/{idle}", Role.PLANNER).status_code == 204
    problem(api.request("GET", f"/schedules/{idle}", Role.PLANNER), 404)
