"""Commands through the API on the real stack: the bytes devices get, their acks, the state.

A scratch database migrated like production; the application in process with
its default command publisher (one paho client on the stack's Mosquitto, as
the service user); the real ingest worker (``lumeau ingest run``) storing
acks; devices and a gateway as paho clients logged in with their OWN broker
credentials, so Mosquitto's ACL decides what each may read and write.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.commands.publisher import MqttCommandPublisher
from backend.devstack import add_broker_user
from backend.devstack._util import pick_free_port
from edge import protocol
from gateway import commands as gateway_commands
from tests.integration import api_kit
from tests.integration.api_kit import InProcessApi, migrated_database, problem, stack_settings
from tests.integration.ingest_kit import WorkerProcess, ingest_worker
from tests.integration.peer_kit import Peer, connect_peer, ms, wait_until

if TYPE_CHECKING:
    import httpx

    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
CABINET = f"cab-{RUN}"  # online, talks to the backend broker itself
REMOTE_CABINET = f"cabgw-{RUN}"  # offline, behind GATEWAY
GATEWAY = f"gw-{RUN}"
SENSOR = f"leak-{RUN}"
NEWCOMER = f"new-{RUN}"  # heard of, no status yet: role unknown
API = "/api/v1"


# --- MQTT peers with their own credentials --------------------------------------------


@pytest.fixture(scope="module")
def services(stack: object) -> Stack:
    return cast("Stack", stack)


@pytest.fixture(scope="module")
def cabinet(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, CABINET, protocol.downlink_topic(CABINET, "cmd"))


@pytest.fixture(scope="module")
def sensor(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, SENSOR, protocol.downlink_topic(SENSOR, "cmd"))


@pytest.fixture(scope="module")
def gateway(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, GATEWAY, protocol.gateway_topic(GATEWAY, "down", "cmd"))


# --- the application, the database, the ingest worker -----------------------------------


class Api(InProcessApi):
    prefix = API

    def post(self, path: str, body: Any, as_: Role = Role.ADMIN) -> httpx.Response:
        return self.request("POST", path, as_, json=body)

    def get(self, path: str, as_: Role = Role.PLANNER, **params: Any) -> httpx.Response:
        return self.request("GET", path, as_, params=params)

    def state(self, command_id: str) -> dict[str, Any]:
        response = self.get(f"/commands/{command_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


SEED = f"""
INSERT INTO device (device_id, role, site, last_status, last_status_at, last_gateway_id) VALUES
  ('{CABINET}', 'cabinet', 'nord', 'online', now(), NULL),
  ('{REMOTE_CABINET}', 'cabinet', 'nord', 'offline', now() - interval '2 hours', '{GATEWAY}'),
  ('{SENSOR}', 'leak_sensor', 'sud', 'online', now(), NULL),
  ('{GATEWAY}', 'gateway', 'nord', 'online', now(), NULL),
  ('{NEWCOMER}', NULL, NULL, NULL, NULL, NULL);
"""


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[str]:
    with migrated_database(stack, "t_cmd", SEED) as url:
        yield url


@pytest.fixture(scope="module")
def worker(
    services: Stack, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_folder = tmp_path_factory.mktemp("ingest")
    with ingest_worker(services, database, log_folder, f"ingest-cmd-{RUN}") as process:
        yield process


@pytest.fixture(scope="module")
def api(services: Stack, database: str) -> Iterator[Api]:
    app = create_app(stack_settings(services, database))
    with Api.serving(database, app, RUN) as api:
        yield api


OVERRIDE = {"channel": 2, "level_pct": 30, "duration_s": 3600}


# --- the device gets exactly the command, and its ack is reported ----------------------


def test_lighting_override_reaches_the_cabinet_and_its_ack_is_reported(
    api: Api, cabinet: Peer, worker: WorkerProcess
) -> None:
    before = time.time() * 1000
    response = api.post(f"/devices/{CABINET}/commands/lighting-override", OVERRIDE, Role.OPERATOR)
    assert response.status_code == 202, response.text
    issued = response.json()
    assert issued["state"] == "sent"
    assert issued["name"] == "set_level"
    assert issued["args"] == {"ch": 2, "level_pct": 30, "dur_s": 3600}
    assert issued["issued_by"] == f"operator-{RUN}"
    assert issued["presence"] == "online" and "online" in issued["delivery"]
    assert issued["topic"] == f"lumeau/v1/dev/{CABINET}/down/cmd"
    assert issued["via_gateway"] is None and issued["ack"] is None
    assert issued["published_at"] is not None and issued["publish_error"] is None
    command_id = issued["command_id"]

    # What the cabinet receives, on its own credentials: the codec's canonical bytes.
    message = cabinet.wait_for_command(command_id)
    assert message.topic == protocol.downlink_topic(CABINET, "cmd")
    assert message.qos == 1
    cmd = protocol.decode(message.payload, message.topic)
    assert protocol.encode(cmd) == message.payload
    assert cmd["name"] == "set_level" and cmd["dev"] == CABINET and cmd["src"] == "api"
    assert cmd["args"] == {"ch": 2, "level_pct": 30, "dur_s": 3600}
    assert cmd["id"] == command_id
    assert cmd["ts"] == ms(issued["issued_at"]) and before - 1 <= cmd["ts"] <= time.time() * 1000
    assert cmd["exp"] == ms(issued["expires_at"]) == cmd["ts"] + 300_000
    # The broker drops it when the command expires.
    assert 0 < message.properties.MessageExpiryInterval <= 300

    cabinet.ack(command_id, ok=True)
    wait_until("acked", lambda: api.state(command_id)["state"] == "acked", worker.tail)
    ack = api.state(command_id)["ack"]
    assert ack["ok"] is True and ack["err_code"] is None and ack["count"] == 1


def test_a_failed_ack_is_reported_with_the_devices_reason(
    api: Api, cabinet: Peer, worker: WorkerProcess
) -> None:
    body = {"channel": None, "level_pct": 0, "duration_s": 60}
    issued = api.post(f"/devices/{CABINET}/commands/lighting-override", body).json()
    command_id = issued["command_id"]
    cmd = protocol.decode(cabinet.wait_for_command(command_id).payload)
    assert cmd["args"] == {"ch": 0, "level_pct": 0, "dur_s": 60}  # every circuit
    assert cmd["exp"] == cmd["ts"] + 60_000  # a one-minute override expires within it
    cabinet.ack(command_id, ok=False, err={"code": "busy", "reason": "manual mode at the cabinet"})
    wait_until("failed", lambda: api.state(command_id)["state"] == "failed", worker.tail)
    ack = api.state(command_id)["ack"]
    assert (ack["ok"], ack["err_code"], ack["err_reason"]) == (
        False,
        "busy",
        "manual mode at the cabinet",
    )


def test_recording_requests_reach_the_sensor_and_return_its_result(
    api: Api, sensor: Peer, worker: WorkerProcess
) -> None:
    rec = "a1b2c3d4e5f60718-3"
    get = api.post(
        f"/devices/{SENSOR}/commands/recording",
        {"action": "get", "rec": rec, "first": 1, "last": 4},
        Role.TECHNICIAN,
    )
    assert get.status_code == 202, get.text
    get_id = get.json()["command_id"]
    cmd = protocol.decode(sensor.wait_for_command(get_id).payload)
    assert (cmd["name"], cmd["args"]) == ("get_recording", {"rec": rec, "first": 1, "last": 4})
    assert cmd["exp"] == cmd["ts"] + 3_600_000

    release = api.post(f"/devices/{SENSOR}/commands/recording", {"action": "release", "rec": rec})
    release_id = release.json()["command_id"]
    cmd = protocol.decode(sensor.wait_for_command(release_id).payload)
    assert (cmd["name"], cmd["args"]) == ("release_recording", {"rec": rec})

    sensor.ack(get_id, ok=True, result={"recs": [rec], "parts": 4})
    sensor.ack(release_id, ok=True, result={"released": True})
    wait_until(
        "both acked",
        lambda: {api.state(get_id)["state"], api.state(release_id)["state"]} == {"acked"},
        worker.tail,
    )
    assert api.state(get_id)["ack"]["result"] == {"recs": [rec], "parts": 4}
    assert api.state(release_id)["ack"]["result"] == {"released": True}


def test_an_ack_from_another_device_does_not_count(
    api: Api, cabinet: Peer, sensor: Peer, worker: WorkerProcess
) -> None:
    issued = api.post(f"/devices/{CABINET}/commands/lighting-override", OVERRIDE).json()
    command_id = issued["command_id"]
    cabinet.wait_for_command(command_id)
    sensor.ack(command_id, ok=True)  # a device that learnt the id answers for the cabinet
    marker = secrets.token_hex(4)
    sensor.ack(f"c-{marker}", ok=True)  # stored after the one above: then both are in
    wait_until(
        "the sensor's acks stored",
        lambda: bool(api.sql("SELECT 1 FROM command_ack WHERE cmd = %s", f"c-{marker}")),
        worker.tail,
    )
    assert api.state(command_id)["state"] == "sent"
    assert api.state(command_id)["ack"] is None


# --- through a gateway, to a device that is away ----------------------------------------


def test_a_device_behind_a_gateway_gets_a_relay_and_the_gateways_timeout_is_reported(
    api: Api, gateway: Peer, worker: WorkerProcess
) -> None:
    response = api.post(
        f"/devices/{REMOTE_CABINET}/commands/lighting-override", OVERRIDE, Role.PLANNER
    )
    assert response.status_code == 202, response.text  # offline: accepted all the same
    issued = response.json()
    assert issued["presence"] == "offline" and issued["presence_since"] is not None
    assert f"gateway '{GATEWAY}' keeps re-sending it" in issued["delivery"]
    assert issued["via_gateway"] == GATEWAY
    assert issued["topic"] == f"lumeau/v1/gw/{GATEWAY}/down/cmd"
    command_id = issued["command_id"]

    # The gateway reads it on its own subtree and unwraps it with its real code.
    message = gateway.wait_for_command(command_id)
    relay = protocol.decode(message.payload, message.topic)
    assert relay["name"] == "relay" and relay["gw"] == GATEWAY
    device_cmd = gateway_commands.from_backend(message.topic, message.payload, GATEWAY)
    cmd = protocol.decode(device_cmd.payload, protocol.downlink_topic(REMOTE_CABINET, "cmd"))
    assert (cmd["id"], cmd["name"], cmd["args"]) == (
        command_id,
        "set_level",
        {"ch": 2, "level_pct": 30, "dur_s": 3600},
    )

    # The device never answers: at exp the gateway sends a timeout ack in a batch.
    timeout = gateway_commands.timeout_ack(
        REMOTE_CABINET, command_id, gateway.boot, 0, cmd["exp"], tries=30
    )
    gateway.publish(
        protocol.gateway_topic(GATEWAY, "up", "batch"),
        {
            "v": 1,
            "kind": "batch",
            "gw": GATEWAY,
            "boot": gateway.boot,
            "seq": 1,
            "ts": cmd["exp"],
            "msgs": [{"topic": protocol.uplink_topic(REMOTE_CABINET, "ack"), "payload": timeout}],
        },
    )
    wait_until("failed", lambda: api.state(command_id)["state"] == "failed", worker.tail)
    assert api.state(command_id)["ack"]["err_code"] == "timeout"


def test_a_command_without_ack_after_its_expiry_is_expired(api: Api, sensor: Peer) -> None:
    issued = api.post(f"/devices/{SENSOR}/commands/recording", {"action": "get", "rec": "r-1"})
    command_id = issued.json()["command_id"]
    assert api.state(command_id)["state"] == "sent"
    # An hour passing, without waiting an hour: the expiry moves to the issue time.
    api.sql("UPDATE command SET expires_at = issued_at WHERE command_id = %s", command_id)
    assert api.state(command_id)["state"] == "expired"


# --- listing, audit ----------------------------------------------------------------------


def test_a_devices_commands_are_listed_newest_first_with_their_state(
    api: Api, cabinet: Peer
) -> None:
    ids = [
        api.post(f"/devices/{CABINET}/commands/lighting-override", OVERRIDE).json()["command_id"]
        for _ in range(3)
    ]
    page = api.get(f"/devices/{CABINET}/commands", limit=2).json()
    assert [c["command_id"] for c in page["items"]] == ids[::-1][:2]
    assert page["total"] >= 3 and page["limit"] == 2
    second = api.get(f"/devices/{CABINET}/commands", limit=2, offset=1).json()
    assert second["items"][0]["command_id"] == ids[1]
    assert {c["state"] for c in page["items"]} == {"sent"}
    everything = api.get(f"/devices/{CABINET}/commands", limit=500).json()["items"]
    assert all(c["device_id"] == CABINET for c in everything)
    assert len(everything) == page["total"]


def test_every_command_is_audited_with_who_and_what(api: Api, cabinet: Peer) -> None:
    issued = api.post(
        f"/devices/{CABINET}/commands/lighting-override", OVERRIDE, Role.TECHNICIAN
    ).json()
    rows = api.sql(
        "SELECT actor, actor_token_id, action, target, detail FROM api_audit"
        " WHERE detail->>'command_id' = %s",
        issued["command_id"],
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor"], row["actor_token_id"], row["action"], row["target"]) == (
        f"technician-{RUN}",
        api.tokens[Role.TECHNICIAN].token_id,
        "command.set_level",
        f"device:{CABINET}",
    )
    assert row["detail"]["args"] == issued["args"]
    assert row["detail"]["topic"] == issued["topic"]


# --- refusals -------------------------------------------------------------------------------


def test_unknown_device_and_command_are_404(api: Api) -> None:
    body = problem(api.post("/devices/nobody/commands/lighting-override", OVERRIDE), 404)
    assert "no device 'nobody'" in body["detail"]
    problem(api.get("/devices/nobody/commands"), 404)
    body = problem(api.get("/commands/c-0000000000000000"), 404)
    assert "no command 'c-0000000000000000'" in body["detail"]


@pytest.mark.parametrize(
    ("device", "path", "body", "text"),
    [
        (SENSOR, "lighting-override", OVERRIDE, "is a leak_sensor; a lighting override"),
        (CABINET, "recording", {"action": "get", "rec": "r-1"}, "is a cabinet; a recording"),
        (GATEWAY, "lighting-override", OVERRIDE, "is a gateway"),
        (NEWCOMER, "recording", {"action": "release", "rec": "r"}, "not reported its role"),
    ],
)
def test_a_command_for_the_wrong_kind_of_device_is_409_and_never_recorded(
    api: Api, device: str, path: str, body: dict[str, Any], text: str
) -> None:
    before = api.sql("SELECT count(*) AS n FROM command")[0]["n"]
    assert text in problem(api.post(f"/devices/{device}/commands/{path}", body), 409)["detail"]
    assert api.sql("SELECT count(*) AS n FROM command")[0]["n"] == before


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("lighting-override", {**OVERRIDE, "level_pct": 101}, "body.level_pct"),
        ("lighting-override", {**OVERRIDE, "level_pct": "50"}, "body.level_pct"),
        ("lighting-override", {**OVERRIDE, "level_pct": 50.0}, "body.level_pct"),
        ("lighting-override", {**OVERRIDE, "level_pct": True}, "body.level_pct"),
        ("lighting-override", {**OVERRIDE, "channel": 0}, "body.channel"),
        ("lighting-override", {**OVERRIDE, "channel": 2**70}, "body.channel"),
        ("lighting-override", {"level_pct": 10, "duration_s": 60}, "body.channel"),
        ("lighting-override", {**OVERRIDE, "duration_s": 59}, "body.duration_s"),
        ("lighting-override", {**OVERRIDE, "duration_s": 86_401}, "body.duration_s"),
        ("lighting-override", {**OVERRIDE, "exp": 1}, "body.exp"),
        ("recording", {"action": "delete", "rec": "r-1"}, "body.action"),
        ("recording", {"action": "get", "rec": "r\u00001"}, "body.rec"),
        ("recording", {"action": "get", "rec": "R/1"}, "body.rec"),
        ("recording", {"action": "get", "rec": "r" * 65}, "body.rec"),
        ("recording", {"action": "get", "rec": "r-1", "first": 5, "last": 4}, "body"),
        ("recording", {"action": "release", "rec": "r-1", "first": 0}, "body"),
        ("recording", {"action": "get", "rec": "r-1", "last": 10_000}, "body.last"),
        ("recording", {"action": "get", "rec": "r-1", "expires_in_s": 10}, "body.expires_in_s"),
    ],
)
def test_hostile_bodies_are_422_with_the_field_and_never_recorded(
    api: Api, path: str, body: dict[str, Any], location: str
) -> None:
    device = CABINET if path == "lighting-override" else SENSOR
    before = api.sql("SELECT count(*) AS n FROM command")[0]["n"]
    answer = problem(api.post(f"/devices/{device}/commands/{path}", body), 422)
    assert any(e["location"] == location for e in answer["errors"]), answer
    assert api.sql("SELECT count(*) AS n FROM command")[0]["n"] == before


def test_hostile_paths_queries_and_bodies_are_422(api: Api) -> None:
    problem(api.get("/commands/C-UPPER"), 422)
    problem(api.get("/commands/" + "c" * 65), 422)
    problem(api.get(f"/devices/{CABINET}/commands", limit=0), 422)
    problem(api.get(f"/devices/{CABINET}/commands", limit=501), 422)
    problem(api.get(f"/devices/{CABINET}/commands", sort="asc"), 422)
    response = api.client.post(
        f"{API}/devices/{CABINET}/commands/lighting-override",
        content=b'{"channel": 1, "level_pct": ',
        headers={**api.headers(Role.ADMIN), "content-type": "application/json"},
    )
    problem(response, 422)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_who_may_send_which_command(api: Api, role: Role, cabinet: Peer, sensor: Peer) -> None:
    lighting = api.post(f"/devices/{CABINET}/commands/lighting-override", OVERRIDE, role)
    assert lighting.status_code == 202, lighting.text  # every role: operator to admin
    recording = api.post(
        f"/devices/{SENSOR}/commands/recording", {"action": "get", "rec": "r-1"}, role
    )
    if role in (Role.TECHNICIAN, Role.ADMIN):
        assert recording.status_code == 202, recording.text
    else:
        assert "commands:recordings" in problem(recording, 403)["detail"]
    assert api.get(f"/commands/{lighting.json()['command_id']}", as_=role).status_code == 200


# --- the broker does not take it --------------------------------------------------------


def post_with(
    services: Stack, database: str, publisher: MqttCommandPublisher, token: str
) -> httpx.Response:
    """A lighting override through an application that publishes with ``publisher``."""
    app = create_app(stack_settings(services, database), command_publisher=publisher)
    with api_kit.TestClient(app) as client:
        response: httpx.Response = client.post(
            f"{API}/devices/{CABINET}/commands/lighting-override",
            json=OVERRIDE,
            headers={"Authorization": f"Bearer {token}"},
        )
    return response


def test_broker_unreachable_is_503_and_the_command_keeps_the_reason(
    api: Api, services: Stack, database: str
) -> None:
    closed = pick_free_port()  # nothing listens there
    publisher = MqttCommandPublisher(
        "127.0.0.1", closed, services.mqtt_username, services.mqtt_password, timeout_s=1.0
    )
    response = post_with(services, database, publisher, api.tokens[Role.OPERATOR].token)
    body = problem(response, 503)
    assert "did not confirm command" in body["detail"] and "not connected" in body["detail"]
    assert response.headers["retry-after"]
    command_id = body["detail"].split("'")[1]
    state = api.state(command_id)
    assert state["state"] == "publish_failed"
    assert f"127.0.0.1:{closed}" in state["publish_error"]
    assert state["published_at"] is None
    # Audited all the same: someone asked for it.
    assert api.sql("SELECT 1 FROM api_audit WHERE detail->>'command_id' = %s", command_id)


def test_a_publish_the_broker_refuses_is_503_with_the_brokers_reason(
    api: Api, services: Stack, database: str
) -> None:
    # Logged in as a device: the ACL lets it write only its own up/ topics.
    intruder = f"intruder-{RUN}"
    password = add_broker_user(services, intruder)
    publisher = MqttCommandPublisher(
        services.mqtt_host, services.mqtt_port, intruder, password, timeout_s=10.0
    )
    response = post_with(services, database, publisher, api.tokens[Role.OPERATOR].token)
    body = problem(response, 503)
    assert "refused" in body["detail"] and "authori" in body["detail"].lower()
    command_id = body["detail"].split("'")[1]
    assert api.state(command_id)["state"] == "publish_failed"
