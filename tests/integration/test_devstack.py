"""The dev stack starts the real Mosquitto and PostgreSQL+TimescaleDB and they work."""

from __future__ import annotations

import queue
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from backend import devstack
from backend.settings import _PLACEHOLDER_SECRETS, load_settings

pytestmark = pytest.mark.services

WAIT = 10.0  # upper bound for a message to arrive; not a speed assertion


class Client:
    """A paho v2 / MQTT 5 client whose connection result and messages land in queues."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.port = port

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack.put(reason)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_subscribe(
        self, _c: Any, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        self.subacks.put(reasons)

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        return self.connack.get(timeout=WAIT)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        reasons = self.subacks.get(timeout=WAIT)
        assert all(not r.is_failure for r in reasons), reasons

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=WAIT)

    def refused(self) -> ReasonCode:
        """Connect expecting a refusal, without a network thread that would retry."""
        self.client.connect("127.0.0.1", self.port)
        for _ in range(int(WAIT / 0.05)):
            if not self.connack.empty():
                break
            self.client.loop(timeout=0.05)
        reason = self.connack.get_nowait()
        self.client.disconnect()
        return reason

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def connected(made: list[Client], port: int, username: str | None, password: str | None) -> Client:
    client = Client(port, username, password)
    made.append(client)
    reason = client.connect()
    assert not reason.is_failure, reason
    return client


# --- database -------------------------------------------------------------------


def test_timescaledb_extension_in_app_database(stack: devstack.Stack) -> None:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert row is not None
        assert row[0] == stack.timescaledb_version
        assert conn.execute("SELECT current_user").fetchone() == ("lumeau",)


def test_hypertable_and_time_bucket(stack: devstack.Stack) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database_url) as conn:
        conn.execute(f"CREATE TABLE {table} (ts timestamptz NOT NULL, value double precision)")
        conn.execute(f"SELECT create_hypertable('{table}', 'ts')")
        conn.execute(
            f"INSERT INTO {table} SELECT t, 1.0 FROM generate_series("
            "'2025-01-01 00:00'::timestamptz, '2025-01-01 00:59'::timestamptz, '1 minute') t"
        )
        rows = conn.execute(
            f"SELECT time_bucket('15 minutes', ts) AS b, count(*) FROM {table} "
            "GROUP BY b ORDER BY b"
        ).fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert [count for _, count in rows] == [15, 15, 15, 15]


def test_admin_url_is_superuser(stack: devstack.Stack) -> None:
    with psycopg.connect(stack.admin_database_url) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row == (True,)


# --- broker ---------------------------------------------------------------------


def test_service_user_publish_subscribe_v5(stack: devstack.Stack, clients: list[Client]) -> None:
    sub = connected(clients, stack.mqtt_port, stack.mqtt_username, stack.mqtt_password)
    sub.subscribe("$share/ingest/lumeau/v1/test/#")
    pub = connected(clients, stack.mqtt_port, stack.mqtt_username, stack.mqtt_password)
    pub.publish("lumeau/v1/test/hello", b"hi")
    message = sub.messages.get(timeout=WAIT)
    assert (message.topic, message.payload) == ("lumeau/v1/test/hello", b"hi")


def test_anonymous_refused(stack: devstack.Stack) -> None:
    assert Client(stack.mqtt_port, None, None).refused().is_failure


def test_wrong_password_refused(stack: devstack.Stack) -> None:
    client = Client(stack.mqtt_port, stack.mqtt_username, stack.mqtt_password + "x")
    assert client.refused().is_failure


def test_device_acl(stack: devstack.Stack, clients: list[Client]) -> None:
    password = devstack.add_broker_user(stack, "dev-1")
    assert devstack.add_broker_user(stack, "dev-1") == password  # kept, not regenerated
    sub = connected(clients, stack.mqtt_port, stack.mqtt_username, stack.mqtt_password)
    sub.subscribe("lumeau/v1/dev/+/up/#")
    device = connected(clients, stack.mqtt_port, "dev-1", password)
    # Same client, same QoS: had the first been delivered, it would arrive first.
    device.publish("lumeau/v1/dev/dev-2/up/telemetry", b"spoofed")
    device.publish("lumeau/v1/dev/dev-1/up/telemetry", b"own")
    message = sub.messages.get(timeout=WAIT)
    assert (message.topic, message.payload) == ("lumeau/v1/dev/dev-1/up/telemetry", b"own")
    assert sub.messages.empty()


def test_add_broker_user_updates_password(stack: devstack.Stack, clients: list[Client]) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"  # the test stack outlives this run
    first = devstack.add_broker_user(stack, name)
    second = devstack.add_broker_user(stack, name, f"new-secret-for-{name}")
    assert second == f"new-secret-for-{name}" != first
    connected(clients, stack.mqtt_port, name, second)
    assert Client(stack.mqtt_port, name, first).refused().is_failure


# --- lifecycle ------------------------------------------------------------------


def test_second_up_reuses_running_services(stack: devstack.Stack) -> None:
    before = devstack.status(stack.run_dir)
    again = devstack.up(stack.run_dir)
    assert again == stack
    after = devstack.status(stack.run_dir)
    for service in ("mosquitto", "postgres"):
        assert before[service] == after[service]
        assert after[service]["running"] is True  # type: ignore[index]
    assert after["postgres"]["edition"] in ("apache", "timescale")  # type: ignore[index]


def test_stack_env_is_private_and_loadable(stack: devstack.Stack) -> None:
    env_file = stack.run_dir / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    for key, value in stack.env().items():
        assert f"{key}={value}" in text
    settings = load_settings(stack.run_dir)  # refuses placeholder passwords itself
    assert settings.mqtt_password.get_secret_value() == stack.mqtt_password
    assert stack.mqtt_password.lower() not in _PLACEHOLDER_SECRETS
    assert len(stack.mqtt_password) >= 20
    assert stack.database_url.startswith("postgresql://lumeau:")


def test_start_broker_is_independent(
    stack: devstack.Stack, tmp_path: Path, clients: list[Client]
) -> None:
    users = {"site-gw": "site-secret-for-tests-1"}
    acl = "user site-gw\ntopic readwrite site/#\n"
    broker = devstack.start_broker(tmp_path / "site", users=users, acl=acl)
    try:
        assert broker.port != stack.mqtt_port
        assert broker.pid is not None
        sub = connected(clients, broker.port, "site-gw", users["site-gw"])
        sub.subscribe("site/#")
        sub.publish("site/a", b"1")
        assert sub.messages.get(timeout=WAIT).payload == b"1"
        # The stack's user does not exist on this broker.
        other = Client(broker.port, stack.mqtt_username, stack.mqtt_password)
        assert other.refused().is_failure
        sub.close()  # before the broker goes, so it does not retry
        clients.clear()

        broker.kill()
        assert not broker.running()
        broker.restart()
        assert broker.pid is not None
        connected(clients, broker.port, "site-gw", users["site-gw"])
    finally:
        for client in clients:  # before the broker goes, so they do not retry
            client.close()
        clients.clear()
        broker.stop()
    assert not broker.running()
    assert devstack.status(stack.run_dir)["mosquitto"]["running"] is True  # type: ignore[index]


def test_anonymous_extra_broker(
    stack: devstack.Stack, tmp_path: Path, clients: list[Client]
) -> None:
    with devstack.start_broker(tmp_path / "anon") as broker:
        client = connected(clients, broker.port, None, None)
        client.subscribe("x/#")
        client.publish("x/1", b"ok")
        assert client.messages.get(timeout=WAIT).payload == b"ok"
        client.close()
        clients.clear()
