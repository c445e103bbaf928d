"""Notification channels and deliveries through the real API on the real database.

Channels are made through the API (admin), their secret checked against a
real webhook delivery made by the dispatcher; hostile input gets specific 422s;
every write is in the audit log without the secret.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest

from backend.api.permissions import Role
from backend.notify import signing
from backend.notify.dispatcher import Dispatcher, DispatcherConfig
from backend.notify.settings import SmtpSettings
from tests.integration import api_kit
from tests.integration.api_kit import problem
from tests.integration.test_notify import Receiver, receiver  # noqa: F401 - the fixture

if TYPE_CHECKING:
    import httpx

    from backend.devstack import Stack

pytestmark = pytest.mark.services

CHANNELS = "/api/v1/notification-channels"
DELIVERIES = "/api/v1/notification-deliveries"


class Api(api_kit.InProcessApi):
    def get(self, path: str, as_: Role | None = Role.ADMIN, **params: Any) -> httpx.Response:
        return self.request("GET", path, as_, params=params)


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    services = cast("Stack", stack)
    with api_kit.migrated_database(stack, "t_apin") as url:
        app = api_kit.app_with_real_commands(services, url)
        with Api.serving(url, app, uuid.uuid4().hex[:6], days=30) as api:
            yield api


def post(api: Api, body: dict[str, Any], as_: Role = Role.ADMIN) -> Any:
    return api.client.post(CHANNELS, headers=api.headers(as_), json=body)


def patch(api: Api, channel_id: int, body: dict[str, Any], **params: Any) -> Any:
    return api.client.patch(
        f"{CHANNELS}/{channel_id}", headers=api.headers(Role.ADMIN), json=body, params=params
    )


def webhook(url: str = "https://hooks.city.example/lumeau?key=abc", **extra: Any) -> dict[str, Any]:
    return {
        "name": f"hook-{uuid.uuid4().hex[:8]}",
        "kind": "webhook",
        "url": url,
        "audience_role": "operator",
        **extra,
    }


def email(recipients: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"mail-{uuid.uuid4().hex[:8]}",
        "kind": "email",
        "recipients": ["night@city.example"] if recipients is None else recipients,
        "audience_role": "technician",
        **extra,
    }


def audit_rows(api: Api, channel_id: int) -> list[dict[str, Any]]:
    return api.sql(
        "SELECT actor, action, detail FROM api_audit WHERE target = %s ORDER BY audit_id",
        f"notification_channel:{channel_id}",
    )


def test_create_shows_the_secret_once_and_audits_without_it(api: Api) -> None:
    response = post(api, webhook(sites=["nord"], min_severity="critical"))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) == 49
    assert created["sites"] == ["nord"] and created["min_severity"] == "critical"
    assert created["actions"] == ["opened", "escalated", "reopened", "resolved"]
    assert created["rules"] is None and created["enabled"] is True
    assert created["created_by"] == f"admin-{api.tokens[Role.ADMIN].user.split('-', 1)[1]}"
    channel_id = created["channel_id"]

    listed = api.get(CHANNELS).json()["items"]
    mine = [c for c in listed if c["channel_id"] == channel_id]
    assert len(mine) == 1 and "secret" not in mine[0]
    one = api.get(f"{CHANNELS}/{channel_id}").json()
    assert "secret" not in one and one["url"] == "https://hooks.city.example/lumeau?key=abc"
    assert one["secret_set_at"] is not None

    [row] = audit_rows(api, channel_id)
    assert row["action"] == "notification_channel.create"
    assert row["detail"]["url_origin"] == "https://hooks.city.example"
    assert secret not in json.dumps(row["detail"]) and "key=abc" not in json.dumps(row["detail"])


def test_email_channel_has_no_secret(api: Api) -> None:
    response = post(api, email(["a@city.example", "b@city.example"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"] is None and body["secret_set_at"] is None
    assert body["recipients"] == ["a@city.example", "b@city.example"]
    assert body["min_severity"] == "warning"


def test_a_taken_name_is_a_409(api: Api) -> None:
    first = email()
    assert post(api, first).status_code == 201
    body = problem(post(api, {**first, "recipients": ["other@city.example"]}), 409)
    assert f"a notification channel named {first['name']!r} exists" in body["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (webhook("ftp://files.city.example/x"), "url must start with https://"),
        (webhook("javascript:alert(1)"), "url must start with https://"),
        (webhook("https:///nohost"), "url has no host"),
        (webhook("https://a.example/x y"), "spaces or control characters"),
        (webhook("https://a.example:99999/"), "invalid port"),
        (email([f"u{n}@city.example" for n in range(21)]), "too many recipients: 21"),
        (email(["night@city.example, evil@example.org"]), "is not a plain e-mail address"),
        (email(["Night <night@city.example>"]), "is not a plain e-mail address"),
        (email(["a@city.example", "A@city.example"]), "is listed twice"),
        (email([]), "at least one address"),
        (webhook(sites=["nord*"]), "wildcards, commas and control characters are not supported"),
        (webhook(sites=["nord,sud"]), "wildcards, commas"),
        (webhook(sites=[]), "use null for every site"),
        (webhook(min_severity="urgent"), "body.min_severity"),
        (webhook(rules=["Door Open"]), "is not a rule name"),
        (webhook(actions=["exploded"]), "body.actions"),
        (webhook(actions=[]), "at least one action"),
        (webhook(audience_role="mayor"), "body.audience_role"),
        ({**webhook(), "recipients": ["a@city.example"]}, "a webhook channel has no recipients"),
        ({**email(), "url": "https://a.example/"}, "an e-mail channel has no url"),
        ({**webhook(), "url": None}, "a webhook channel needs a url"),
        ({**webhook(), "name": "Night Shift"}, "body.name"),
        ({**webhook(), "secret": "mine"}, "body.secret"),
    ],
)
def test_hostile_channels_are_refused_with_a_specific_422(
    api: Api, body: dict[str, Any], needle: str
) -> None:
    response = problem(post(api, body), 422)
    assert needle in response["detail"], response["detail"]


def test_patch_filters_disable_and_rotate_the_secret(api: Api) -> None:
    created = post(api, webhook()).json()
    channel_id, old_secret = created["channel_id"], created["secret"]

    changed = patch(api, channel_id, {"sites": ["nord", "est"], "min_severity": "info"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["sites"] == ["nord", "est"] and changed.json()["secret"] is None
    back = patch(api, channel_id, {"sites": None, "enabled": False}).json()
    assert back["sites"] is None and back["enabled"] is False and back["min_severity"] == "info"

    rotated = patch(api, channel_id, {}, rotate_secret="true")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    assert rotated.headers["cache-control"] == "no-store"
    [stored] = api.sql("SELECT secret FROM notification_channel WHERE channel_id = %s", channel_id)
    assert stored["secret"] == new_secret

    actions = [(r["action"], r["detail"]) for r in audit_rows(api, channel_id)]
    assert [a for a, _ in actions] == ["notification_channel.create"] + [
        "notification_channel.update"
    ] * 3
    assert actions[-1][1] == {"secret_rotated": True}
    assert all(new_secret not in json.dumps(d) for _, d in actions)


def test_patch_refusals(api: Api) -> None:
    mail = post(api, email()).json()
    hook = post(api, webhook()).json()
    body = problem(patch(api, mail["channel_id"], {}, rotate_secret="true"), 422)
    assert "an e-mail channel has no secret to rotate" in body["detail"]
    body = problem(patch(api, hook["channel_id"], {"recipients": ["a@city.example"]}), 422)
    assert "a webhook channel has no recipients" in body["detail"]
    body = problem(patch(api, hook["channel_id"], {"url": "gopher://x.example/"}), 422)
    assert "url must start with https://" in body["detail"]
    body = problem(patch(api, hook["channel_id"], {"min_severity": None}), 422)
    assert "min_severity cannot be null" in body["detail"]
    body = problem(patch(api, hook["channel_id"], {"kind": "email"}), 422)
    assert "body.kind" in body["detail"]
    body = problem(patch(api, hook["channel_id"], {"name": mail["name"]}), 409)
    assert f"{mail['name']!r} exists" in body["detail"]
    problem(patch(api, 987_654, {"enabled": True}), 404)
    problem(api.get(f"{CHANNELS}/987654"), 404)
    problem(api.get(f"{CHANNELS}/0"), 422)


def test_delete_is_audited_and_a_second_delete_is_404(api: Api) -> None:
    channel_id = post(api, email()).json()["channel_id"]
    path = f"{CHANNELS}/{channel_id}"
    assert api.client.delete(path, headers=api.headers(Role.ADMIN)).status_code == 204
    problem(api.client.delete(path, headers=api.headers(Role.ADMIN)), 404)
    problem(api.get(path), 404)
    assert [r["action"] for r in audit_rows(api, channel_id)][-1] == "notification_channel.delete"


def test_only_admins_write_and_technicians_read_deliveries(api: Api) -> None:
    problem(post(api, email(), as_=Role.TECHNICIAN), 403)
    problem(api.get(CHANNELS, as_=Role.TECHNICIAN), 403)
    assert api.get(DELIVERIES, as_=Role.TECHNICIAN).status_code == 200
    problem(api.get(DELIVERIES, as_=Role.OPERATOR), 403)


def test_a_channel_made_through_the_api_delivers_signed_webhooks(
    api: Api,
    receiver: Receiver,  # noqa: F811 - the fixture imported above
) -> None:
    receiver.script["/gone"] = [410]
    good = post(api, webhook(receiver.url("/hook"), min_severity="info")).json()
    gone = post(api, webhook(receiver.url("/gone"), min_severity="info")).json()
    with psycopg.connect(api.url) as conn:
        alert = conn.execute(
            "INSERT INTO alert (rule, dedup_key, device_id, site, severity, state, title,"
            " started_at, last_seen_at) VALUES ('leak', %s, 'leak-9', 'sud', 'critical', 'open',"
            " 'Leak suspected', now(), now()) RETURNING alert_id",
            (f"leak:leak-9:{uuid.uuid4().hex[:6]}",),
        ).fetchone()
        assert alert is not None
        conn.execute(
            "INSERT INTO alert_history (alert_id, action, actor, to_state, severity)"
            " VALUES (%s, 'opened', 'engine', 'open', 'critical')",
            (alert[0],),
        )

    async def once() -> None:
        config = DispatcherConfig(conninfo=api.url, smtp=SmtpSettings(host=None))
        async with Dispatcher(config) as dispatcher:
            await dispatcher.run_once()

    asyncio.run(once())

    [request] = receiver.bodies("/hook")
    assert signing.verify(
        good["secret"], request.headers["Lumeau-Signature"], request.body, time.time()
    )
    assert not signing.verify(
        gone["secret"], request.headers["Lumeau-Signature"], request.body, time.time()
    )
    assert json.loads(request.body)["alert"]["alert_id"] == alert[0]

    sent = api.get(DELIVERIES, as_=Role.TECHNICIAN, state="sent", channel_id=good["channel_id"])
    [item] = sent.json()["items"]
    assert item["channel_name"] == good["name"] and item["channel_kind"] == "webhook"
    assert (item["alert_id"], item["action"], item["attempts"]) == (alert[0], "opened", 1)
    assert item["last_status_code"] == 200 and item["sent_at"] is not None
    [dead] = api.get(DELIVERIES, state="dead", channel_id=gone["channel_id"]).json()["items"]
    assert dead["last_status_code"] == 410 and dead["last_error"].startswith("HTTP 410")
    assert api.get(DELIVERIES, state="pending", channel_id=good["channel_id"]).json()["items"] == []
    paged = api.get(DELIVERIES, limit=1, offset=0).json()
    assert len(paged["items"]) == 1 and paged["limit"] == 1
    assert "query.state" in problem(api.get(DELIVERIES, state="lost"), 422)["detail"]
    assert "query.bogus" in problem(api.get(DELIVERIES, bogus="1"), 422)["detail"]
