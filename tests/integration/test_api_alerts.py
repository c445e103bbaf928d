"""The alerts routes against the real TimescaleDB: lists, one alert, people's actions.

A migrated scratch database per module; alerts and their history are made
with SQL (``make_alert``) as the rule engine would leave them, and each test
works on a site of its own so the tests do not see each other's alerts. The
application runs in process (FastAPI's TestClient).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.notify.message import ALERT_FIELDS
from tests.integration.alerts_kit import BASE, make_alert, new_site
from tests.integration.api_kit import InProcessApi, issue, migrated_database, problem, settings_for

if TYPE_CHECKING:
    import httpx


pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]


# --- the application --------------------------------------------------------------------


class Api(InProcessApi):
    def get(self, path: str, as_: Role = Role.OPERATOR, **params: Any) -> httpx.Response:
        return self.request("GET", path, as_, params=params)

    def post(self, path: str, body: Any = None, as_: Role = Role.OPERATOR) -> httpx.Response:
        if body is None:
            return self.request("POST", path, as_)
        # json.dumps escapes to ASCII, so a lone surrogate can be sent as JSON does.
        return self.request(
            "POST",
            path,
            as_,
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )

    def ids(self, **params: Any) -> list[int]:
        response = self.get("/api/v1/alerts", **params)
        assert response.status_code == 200, response.text
        return [item["alert_id"] for item in response.json()["items"]]


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    with (
        migrated_database(stack, "t_alerts") as url,
        Api.serving(url, create_app(settings_for(url)), RUN) as api,
    ):
        yield api


def user(api: Api, role: Role) -> str:
    return api.tokens[role].user


# --- lists --------------------------------------------------------------------------------


def test_list_defaults_to_live_alerts_newest_started_first(api: Api) -> None:
    site = new_site()
    older = make_alert(api.url, site=site, started_at=BASE)
    resolved = make_alert(api.url, site=site, state="resolved", started_at=BASE + timedelta(1))
    newer = make_alert(api.url, site=site, state="acknowledged", started_at=BASE + timedelta(2))
    body = api.get("/api/v1/alerts", site=site).json()
    assert [a["alert_id"] for a in body["items"]] == [newer, older]
    assert (body["limit"], body["offset"]) == (100, 0)
    assert api.ids(site=site, state="resolved") == [resolved]
    assert api.ids(site=site, state=["open", "resolved"]) == [resolved, older]
    assert api.ids(site=site, state=["open", "acknowledged", "resolved"]) == [
        newer,
        resolved,
        older,
    ]
    item = body["items"][0]
    # An alert is its whole row: every column of the migrated table, as the
    # webhook's copy of the alert (ALERT_FIELDS) has them too.
    columns = api.sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'alert'::regclass"
        " AND attnum > 0 AND NOT attisdropped"
    )
    assert set(item) == {c["attname"] for c in columns} == set(ALERT_FIELDS)
    assert item["state"] == "acknowledged" and item["acknowledged_by"] == "night-op"
    assert item["detail"] == {"n": 1} and item["occurrences"] == 1
    assert datetime.fromisoformat(item["started_at"]) == BASE + timedelta(2)


def test_list_filters_and_pagination(api: Api) -> None:
    site = new_site()
    assignee = user(api, Role.TECHNICIAN)
    leak = make_alert(api.url, site=site, started_at=BASE, assignee=assignee)
    door = make_alert(
        api.url,
        site=site,
        rule="door_open",
        device_id="cab-9",
        severity="warning",
        channel=2,
        started_at=BASE + timedelta(hours=1),
    )
    info = make_alert(
        api.url, site=site, rule="battery_low", severity="info", started_at=BASE + timedelta(2)
    )
    assert api.ids(site=site, severity="warning") == [door]
    assert api.ids(site=site, severity=["info", "critical"]) == [info, leak]
    assert api.ids(site=site, device_id="cab-9") == [door]
    assert api.ids(site=site, rule="battery_low") == [info]
    assert api.ids(site=site, assignee=assignee) == [leak]
    window = {"start": (BASE + timedelta(hours=1)).isoformat(), "end": BASE + timedelta(days=1)}
    assert api.ids(site=site, **window) == [door]  # start inclusive, end exclusive
    assert api.ids(site=site, limit=2) == [info, door]
    assert api.ids(site=site, limit=2, offset=2) == [leak]
    assert api.ids(site=site, offset=3) == []
    assert api.ids(site=new_site()) == []
    row = api.get(f"/api/v1/alerts/{door}").json()
    assert (row["channel"], row["device_id"], row["rule"]) == (2, "cab-9", "door_open")


def test_equal_start_times_are_ordered_by_id(api: Api) -> None:
    site = new_site()
    first = make_alert(api.url, site=site)
    second = make_alert(api.url, site=site)
    assert api.ids(site=site) == [second, first]


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"state": "closed"}, "query.state.0"),
        ({"severity": "fatal"}, "query.severity.0"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"rule": "Leak!"}, "query.rule"),
        ({"assignee": "a b"}, "query.assignee"),
        ({"device_id": "X" * 80}, "query.device_id"),
        ({"site": "a\x00b"}, "query.site"),
        ({"start": "2026-01-10T00:00:00"}, "query.start"),  # no offset
        ({"states": "open"}, "query.states"),
    ],
)
def test_bad_list_parameters_are_a_422_naming_them(
    api: Api, params: dict[str, Any], location: str
) -> None:
    body = problem(api.get("/api/v1/alerts", **params), 422)
    assert location in [e["location"] for e in body["errors"]], body


def test_window_out_of_order_is_a_422(api: Api) -> None:
    body = problem(
        api.get("/api/v1/alerts", start="2026-01-11T00:00:00Z", end="2026-01-10T00:00:00Z"), 422
    )
    assert "'start' (2026-01-11T00:00:00+00:00) must be before 'end'" in body["detail"]


# --- one alert ----------------------------------------------------------------------------


def test_one_alert_with_its_history_oldest_first(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site(), state="resolved")
    body = api.get(f"/api/v1/alerts/{alert_id}", as_=Role.PLANNER).json()
    assert body["alert_id"] == alert_id and body["state"] == "resolved"
    assert body["resolved_by"] == "engine"
    history = body["history"]
    assert [h["action"] for h in history] == ["opened", "acknowledged", "resolved"]
    assert [h["history_id"] for h in history] == sorted(h["history_id"] for h in history)
    assert history[0] == {
        "history_id": history[0]["history_id"],
        "at": history[0]["at"],
        "action": "opened",
        "actor": "engine",
        "from_state": None,
        "to_state": "open",
        "severity": "critical",
        "note": None,
        "detail": {},
    }


def test_unknown_and_malformed_alert_ids(api: Api) -> None:
    body = problem(api.get("/api/v1/alerts/999999999"), 404)
    assert body["detail"] == "no alert 999999999"
    body = problem(api.post("/api/v1/alerts/999999999/acknowledge", {}), 404)
    assert body["detail"] == "no alert 999999999"
    problem(api.post("/api/v1/alerts/999999999/comments", {"text": "hello"}), 404)
    for bad in ("0", "abc", str(2**63)):
        body = problem(api.get(f"/api/v1/alerts/{bad}"), 422)
        assert body["errors"][0]["location"] == "path.alert_id"


# --- people's actions ---------------------------------------------------------------------


def _audit(api: Api, alert_id: int) -> list[dict[str, Any]]:
    return api.sql(
        "SELECT actor, actor_token_id, action, detail FROM api_audit WHERE target = %s"
        " ORDER BY audit_id",
        f"alert:{alert_id}",
    )


def test_acknowledge_then_resolve_with_history_and_audit(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    operator = api.tokens[Role.OPERATOR]
    response = api.post(f"/api/v1/alerts/{alert_id}/acknowledge", {"note": "crew\non the way"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", operator.user)
    assert body["acknowledged_at"] is not None and body["resolved_at"] is None
    last = body["history"][-1]
    assert (last["action"], last["actor"], last["from_state"], last["to_state"]) == (
        "acknowledged",
        operator.user,
        "open",
        "acknowledged",
    )
    assert (last["note"], last["severity"]) == ("crew\non the way", "critical")
    assert datetime.fromisoformat(body["updated_at"]) == datetime.fromisoformat(
        body["acknowledged_at"]
    )

    technician = api.tokens[Role.TECHNICIAN]
    response = api.post(f"/api/v1/alerts/{alert_id}/resolve", None, as_=Role.TECHNICIAN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["resolved_by"]) == ("resolved", technician.user)
    assert body["acknowledged_by"] == operator.user  # kept
    assert [h["action"] for h in body["history"]] == ["opened", "acknowledged", "resolved"]
    assert body["history"][-1]["from_state"] == "acknowledged"
    assert body["history"][-1]["note"] is None

    # The answer is what is stored.
    assert api.get(f"/api/v1/alerts/{alert_id}").json() == body
    history_ids = [h["history_id"] for h in body["history"][1:]]
    assert [(a["actor"], a["actor_token_id"], a["action"]) for a in _audit(api, alert_id)] == [
        (operator.user, operator.token_id, "alert.acknowledge"),
        (technician.user, technician.token_id, "alert.resolve"),
    ]
    audit = _audit(api, alert_id)
    assert [a["detail"]["history_id"] for a in audit] == history_ids
    assert audit[1]["detail"]["from_state"] == "acknowledged"
    assert audit[1]["detail"]["to_state"] == "resolved"


def test_an_open_alert_can_be_resolved_directly(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    body = api.post(f"/api/v1/alerts/{alert_id}/resolve", {"note": "false alarm"}).json()
    assert body["state"] == "resolved" and body["acknowledged_at"] is None
    assert body["history"][-1]["from_state"] == "open"
    assert body["history"][-1]["note"] == "false alarm"


def test_refused_transitions_are_409_with_the_reason_and_change_nothing(api: Api) -> None:
    acknowledged = make_alert(api.url, site=new_site(), state="acknowledged")
    body = problem(api.post(f"/api/v1/alerts/{acknowledged}/acknowledge"), 409)
    assert body["detail"].startswith(
        f"alert {acknowledged} is already acknowledged (by night-op at "
    )
    resolved = make_alert(api.url, site=new_site(), state="resolved")
    before = api.get(f"/api/v1/alerts/{resolved}").json()
    audit_before = _audit(api, resolved)
    cases = [
        ("acknowledge", {}, "it cannot be acknowledged"),
        ("resolve", {}, "it cannot be resolved again"),
        ("assign", {"assignee": None}, "it cannot be assigned"),
    ]
    for action, payload, reason in cases:
        body = problem(api.post(f"/api/v1/alerts/{resolved}/{action}", payload), 409)
        assert body["detail"].startswith(f"alert {resolved} is resolved (by engine at ")
        assert body["detail"].endswith(reason)
    assert api.get(f"/api/v1/alerts/{resolved}").json() == before
    assert _audit(api, resolved) == audit_before == []


def test_concurrent_acknowledgements_one_wins_one_is_refused(api: Api) -> None:
    """Both requests wait on the alert's row lock (held here), then run one after the other."""
    alert_id = make_alert(api.url, site=new_site())
    path = f"/api/v1/alerts/{alert_id}/acknowledge"
    with psycopg.connect(api.url) as blocker:
        blocker.execute("SELECT 1 FROM alert WHERE alert_id = %s FOR UPDATE", (alert_id,))
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(api.post, path, {"note": role.value}, role)
                for role in (Role.OPERATOR, Role.TECHNICIAN)
            ]
            _wait_for_lock_waiters(api, 2)
            blocker.commit()
            responses = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    loser = next(r for r in responses if r.status_code == 409).json()
    assert f"already acknowledged (by {winner['acknowledged_by']} at" in loser["detail"]
    stored = api.get(f"/api/v1/alerts/{alert_id}").json()
    assert [h["action"] for h in stored["history"]] == ["opened", "acknowledged"]
    assert len(_audit(api, alert_id)) == 1


def _wait_for_lock_waiters(api: Api, count: int) -> None:
    """Until ``count`` sessions of this database wait on a lock (a safety bound, not a
    speed check: the requests are already sent)."""
    for _ in range(600):
        rows = api.sql(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if rows[0]["n"] >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"{count} requests never waited on the alert's lock")


def test_assign_and_unassign(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    technician = user(api, Role.TECHNICIAN)
    body = api.post(
        f"/api/v1/alerts/{alert_id}/assign", {"assignee": technician, "note": "yours"}
    ).json()
    assert (body["assignee"], body["state"]) == (technician, "open")
    last = body["history"][-1]
    assert (last["action"], last["from_state"], last["to_state"], last["note"]) == (
        "assigned",
        "open",
        "open",
        "yours",
    )
    assert last["detail"] == {"assignee": technician, "previous_assignee": None}
    assert api.ids(assignee=technician, site=body["site"]) == [alert_id]
    # An acknowledged alert can be reassigned; null unassigns.
    api.post(f"/api/v1/alerts/{alert_id}/acknowledge")
    body = api.post(f"/api/v1/alerts/{alert_id}/assign", {"assignee": None}).json()
    assert body["assignee"] is None and body["state"] == "acknowledged"
    assert body["history"][-1]["detail"] == {"assignee": None, "previous_assignee": technician}
    assert [a["action"] for a in _audit(api, alert_id)] == [
        "alert.assign",
        "alert.acknowledge",
        "alert.assign",
    ]


def test_assignee_must_be_an_existing_enabled_user(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    path = f"/api/v1/alerts/{alert_id}/assign"
    body = problem(api.post(path, {"assignee": f"ghost-{RUN}"}), 422)
    assert body["detail"] == f"no user 'ghost-{RUN}': an assignee must be an API user"
    assert body["errors"] == [{"location": "body.assignee", "message": body["detail"]}]
    gone = f"gone-{RUN}"
    issue(api.url, gone, Role.TECHNICIAN)
    api.sql("UPDATE api_user SET disabled_at = now() WHERE name = %s RETURNING 1", gone)
    body = problem(api.post(path, {"assignee": gone}), 422)
    assert body["detail"] == f"user {gone!r} is disabled"
    body = problem(api.post(path, {"assignee": "not a name"}), 422)
    assert body["errors"][0]["location"] == "body.assignee"
    problem(api.post(path, {}), 422)  # the assignee must be said, even if null
    stored = api.get(f"/api/v1/alerts/{alert_id}").json()
    assert stored["assignee"] is None and len(stored["history"]) == 1
    assert _audit(api, alert_id) == []


def test_comments_in_any_state_even_resolved(api: Api) -> None:
    resolved = make_alert(api.url, site=new_site(), state="resolved")
    response = api.post(
        f"/api/v1/alerts/{resolved}/comments",
        {"text": "valve 12 closed\n\tpressure normal"},
        as_=Role.PLANNER,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    last = body["history"][-1]
    assert (last["action"], last["actor"], last["from_state"], last["to_state"]) == (
        "commented",
        user(api, Role.PLANNER),
        "resolved",
        "resolved",
    )
    assert last["note"] == "valve 12 closed\n\tpressure normal"
    assert body["state"] == "resolved" and body["resolved_by"] == "engine"
    assert [a["action"] for a in _audit(api, resolved)] == ["alert.comment"]
    opened = make_alert(api.url, site=new_site())
    assert api.post(f"/api/v1/alerts/{opened}/comments", {"text": "x"}).status_code == 201


@pytest.mark.parametrize(
    ("action", "payload", "location", "message"),
    [
        ("comments", {"text": ""}, "body.text", "at least 1 character"),
        ("comments", {"text": "   \n "}, "body.text", "not only white space"),
        ("comments", {"text": "x" * 4001}, "body.text", "at most 4000 characters"),
        ("comments", {"text": "a\x00b"}, "body.text", "control character U+0000 at position 1"),
        ("comments", {"text": "a\ud800"}, "body.text", "unicode string"),
        ("acknowledge", {"note": "a\udfff"}, "body.note", "unicode string"),
        ("comments", {}, "body.text", "Field required"),
        ("comments", {"text": "ok", "extra": 1}, "body.extra", "Extra inputs"),
        ("acknowledge", {"note": "x" * 4001}, "body.note", "at most 4000 characters"),
        ("resolve", {"note": "bell\x07"}, "body.note", "control character U+0007"),
        ("assign", {"assignee": None, "note": "\x1b[31m"}, "body.note", "U+001B"),
    ],
)
def test_bad_bodies_are_a_422_naming_the_field(
    api: Api, action: str, payload: dict[str, Any], location: str, message: str
) -> None:
    alert_id = make_alert(api.url, site=new_site())
    body = problem(api.post(f"/api/v1/alerts/{alert_id}/{action}", payload), 422)
    error = next(e for e in body["errors"] if e["location"] == location)
    assert message in error["message"], body
    assert len(api.get(f"/api/v1/alerts/{alert_id}").json()["history"]) == 1


def test_a_4000_character_comment_is_kept_whole(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    text = "é" * 4000
    response = api.post(f"/api/v1/alerts/{alert_id}/comments", {"text": text})
    assert response.status_code == 201, response.text
    assert response.json()["history"][-1]["note"] == text


def test_planners_read_and_comment_but_do_not_act(api: Api) -> None:
    alert_id = make_alert(api.url, site=new_site())
    for action, payload in (("acknowledge", {}), ("resolve", {}), ("assign", {"assignee": None})):
        body = problem(api.post(f"/api/v1/alerts/{alert_id}/{action}", payload, Role.PLANNER), 403)
        assert "does not have permission 'alerts:act'" in body["detail"]
    assert api.get(f"/api/v1/alerts/{alert_id}", as_=Role.PLANNER).status_code == 200
    comment = api.post(f"/api/v1/alerts/{alert_id}/comments", {"text": "seen"}, Role.PLANNER)
    assert comment.status_code == 201
