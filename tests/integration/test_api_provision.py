"""POST /api/v1/devices against the real stack: credentials that work, and only there.

A scratch database migrated like production, the application in process with
its default broker admin (the development stack of the test run folder), and
paho clients on the stack's Mosquitto: the device publishes with what the API
returned, the stack's service user listens, and Mosquitto's ACL decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.devstack.broker import mqtt_connack
from tests.integration.api_kit import InProcessApi, migrated_database, problem, stack_settings

if TYPE_CHECKING:
    import httpx

    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
DEVICES = "/api/v1/devices"
DEVICE = "dev-prov-1"


@dataclass
class Api(InProcessApi):
    services: Stack = field(repr=False)

    def provision(
        self, body: dict[str, Any], as_: Role = Role.TECHNICIAN, **params: Any
    ) -> httpx.Response:
        return self.request("POST", DEVICES, as_, json=body, params=params)

    def all_text(self) -> str:
        """Every row of every table of the public schema, as text."""
        tables = [
            row["tablename"]
            for row in self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return "\n".join(
            str(row["t"])
            for table in tables
            for row in self.sql(f'SELECT t::text AS t FROM "{table}" t')
        )


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    services = cast("Stack", stack)
    with migrated_database(stack, "t_prov") as url:
        app = create_app(stack_settings(services, url))
        with Api.serving(url, app, RUN, services=services) as api:
            yield api


# --- MQTT helpers -------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Client:
    mqtt: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def connected(port: int, username: str, password: str) -> Iterator[Client]:
    """A paho client logged in as ``username`` (MQTT 3.1.1), looping in a thread."""
    paho = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"prov-test-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client = Client(paho)
    accepted = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            accepted.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        client.received.append((message.topic, message.payload))

    def on_subscribe(_c: Any, _u: Any, _mid: Any, _reasons: Any, _p: Any) -> None:
        client.subscribed.set()

    paho.on_connect = on_connect
    paho.on_message = on_message
    paho.on_subscribe = on_subscribe
    paho.username_pw_set(username, password)
    paho.connect("127.0.0.1", port)
    paho.loop_start()
    try:
        assert accepted.wait(10), f"the broker did not accept {username!r}"
        yield client
    finally:
        paho.disconnect()
        paho.loop_stop()


def can_log_in(api: Api, username: str, password: str) -> bool:
    return mqtt_connack(api.services.mqtt_port, username, password) == 0


# --- the tests -------------------------------------------------------------------------


def test_provisioned_device_publishes_its_own_topics_only(api: Api) -> None:
    response = api.provision({"device_id": DEVICE, "role": "cabinet", "site": "nord"})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    creds = response.json()
    password = creds["password"]
    assert (creds["device_id"], creds["username"], creds["role"], creds["site"]) == (
        DEVICE,
        DEVICE,
        "cabinet",
        "nord",
    )
    assert (creds["broker_host"], creds["broker_port"]) == (
        api.services.mqtt_host,
        api.services.mqtt_port,
    )
    assert creds["publish_topics"] == [f"lumeau/v1/dev/{DEVICE}/up/#"]
    assert creds["subscribe_topics"] == [f"lumeau/v1/dev/{DEVICE}/down/#"]
    assert creds["rotated"] is False and len(password) >= 32

    nonce = uuid.uuid4().hex
    own = f"lumeau/v1/dev/{DEVICE}/up/telemetry"
    other = "lumeau/v1/dev/other/up/telemetry"
    port = api.services.mqtt_port
    with connected(port, api.services.mqtt_username, api.services.mqtt_password) as backend:
        backend.mqtt.subscribe("lumeau/v1/dev/+/up/telemetry", qos=1)
        assert backend.subscribed.wait(10)
        with connected(port, DEVICE, password) as device:
            # The refused one first: once the allowed one arrived, it would have too.
            device.mqtt.publish(other, f"denied-{nonce}".encode(), qos=1).wait_for_publish(10)
            device.mqtt.publish(own, f"allowed-{nonce}".encode(), qos=1).wait_for_publish(10)
            wait_for(
                lambda: (own, f"allowed-{nonce}".encode()) in backend.received,
                10,
                "the device's own telemetry at the backend",
            )
            time.sleep(0.5)
    assert not [m for m in backend.received if m[1] == f"denied-{nonce}".encode()]

    # Stored: the row, when, and the SHA-256; the password nowhere in the database.
    row = api.sql(
        "SELECT role, site, credentials_set_at, password_sha256 FROM device WHERE device_id = %s",
        DEVICE,
    )[0]
    assert (row["role"], row["site"]) == ("cabinet", "nord")
    assert row["credentials_set_at"] is not None
    assert bytes(row["password_sha256"]) == hashlib.sha256(password.encode()).digest()
    assert password not in api.all_text()

    # Again without rotate: refused, and the password still works.
    body = problem(api.provision({"device_id": DEVICE, "role": "cabinet"}), 409)
    assert "already has credentials" in body["detail"] and "rotate=true" in body["detail"]
    assert can_log_in(api, DEVICE, password)

    # With rotate: a new password, the old one stops working.
    response = api.provision({"device_id": DEVICE, "role": "cabinet"}, rotate="true")
    assert response.status_code == 201, response.text
    rotated = response.json()
    assert rotated["rotated"] is True and rotated["site"] == "nord"
    assert rotated["password"] != password
    assert can_log_in(api, DEVICE, rotated["password"])
    assert not can_log_in(api, DEVICE, password)
    everything = api.all_text()
    assert password not in everything and rotated["password"] not in everything

    technician = api.tokens[Role.TECHNICIAN]
    audit = api.sql(
        "SELECT actor, actor_token_id, action, detail::text AS detail FROM api_audit"
        " WHERE target = %s ORDER BY audit_id",
        f"device:{DEVICE}",
    )
    assert [(a["actor"], a["actor_token_id"], a["action"]) for a in audit] == [
        (technician.user, technician.token_id, "device.provision"),
        (technician.user, technician.token_id, "device.rotate_credentials"),
    ]
    assert all(password not in a["detail"] for a in audit)


def test_operator_and_planner_may_not_provision(api: Api) -> None:
    for role in (Role.OPERATOR, Role.PLANNER):
        body = problem(api.provision({"device_id": "dev-prov-x", "role": "cabinet"}, as_=role), 403)
        assert "'devices:provision'" in body["detail"]
    assert api.sql("SELECT 1 FROM device WHERE device_id = 'dev-prov-x'") == []
    assert api.sql("SELECT 1 FROM api_audit WHERE target = 'device:dev-prov-x'") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"device_id": "Dev-1", "role": "cabinet"}, "should match pattern"),
        ({"device_id": "-dev", "role": "cabinet"}, "should match pattern"),
        ({"device_id": "dev/1", "role": "cabinet"}, "should match pattern"),
        ({"device_id": "d" * 65, "role": "cabinet"}, "should match pattern"),
        ({"device_id": "dev-1", "role": "gateway"}, "'cabinet' or 'leak_sensor'"),
        ({"device_id": "dev-1", "role": "cabinet", "password": "x"}, "Extra inputs"),
        ({"device_id": "dev-1", "role": "cabinet", "site": "a\x00"}, "should match pattern"),
    ],
)
def test_bad_requests_are_a_specific_422(api: Api, body: dict[str, Any], message: str) -> None:
    assert message in problem(api.provision(body, as_=Role.ADMIN), 422)["detail"]


def test_reserved_ids_and_other_roles_are_refused(api: Api) -> None:
    body = problem(api.provision({"device_id": "lumeau-backend", "role": "cabinet"}), 409)
    assert "broker user of the backend" in body["detail"]
    assert can_log_in(api, api.services.mqtt_username, api.services.mqtt_password)
    api.sql("INSERT INTO device (device_id, role) VALUES ('gw-prov', 'gateway') RETURNING 1")
    body = problem(api.provision({"device_id": "gw-prov", "role": "leak_sensor"}), 409)
    assert "has role 'gateway', not 'leak_sensor'" in body["detail"]
    assert api.sql("SELECT credentials_set_at FROM device WHERE device_id = 'gw-prov'") == [
        {"credentials_set_at": None}
    ]
