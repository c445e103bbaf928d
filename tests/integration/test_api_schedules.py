"""Dimming schedules through the API on the real stack: store, check, preview, deploy, follow.

A scratch database migrated like production with a small asset register (a
site at Lyon, one at La Réunion, an empty one); the application in process
with its default command publisher on the stack's Mosquitto; the real
ingest worker storing acks; cabinets as paho clients logged in with their
own broker credentials. Two of them hand the bytes they receive to the real
firmware (``firmware/cabinet/app.py``'s ``handle_command`` on a fake board)
and publish the ack it composes.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from backend.api.app import create_app
from backend.api.permissions import Role
from edge import protocol
from edge.spool import Spool
from gateway import commands as gateway_commands
from tests.integration.api_kit import InProcessApi, migrated_database, problem, stack_settings
from tests.integration.ingest_kit import WorkerProcess, ingest_worker
from tests.integration.peer_kit import Peer, connect_peer, ms, wait_until
from tests.unit import test_firmware_apps as fw  # puts firmware/ on sys.path

if TYPE_CHECKING:
    import httpx

    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
CAB_A = f"cab-a-{RUN}"  # Lyon, on the backend broker
CAB_B = f"cab-b-{RUN}"  # Lyon, on the backend broker
CAB_GW = f"cab-gw-{RUN}"  # Lyon, behind GATEWAY
CAB_RUN = f"cab-r-{RUN}"  # La Réunion
GATEWAY = f"gw-{RUN}"
SENSOR = f"leak-{RUN}"
NEWCOMER = f"new-{RUN}"
LYON = f"lyon-{RUN}"
REUNION = f"reunion-{RUN}"
EMPTY = f"empty-{RUN}"
API = "/api/v1"

PROGRAM: dict[str, Any] = {
    "v": 1,
    "id": "lyon-2026",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {
        "std": ["dusk", 100, "22:30", 50, "vmid", 30, "dawn-30", 50, "dawn", 0],
        "full": ["dusk", 100, "dawn", 0],
    },
    "holidays": ["01-01", "07-14", "12-25"],
    "circuits": {"1": {"week": "std", "holiday": "full"}, "2": {"week": "std"}},
}
# Weekday masks nest one level deeper: cabinets behind a gateway cannot get it.
MASKED: dict[str, Any] = {
    **PROGRAM,
    "id": "lyon-we",
    "circuits": {"1": {"week": {"1111100": "std", "0000011": "full"}}},
}


def _point(lon: float, lat: float) -> str:
    return f'{{"type": "Point", "coordinates": [{lon}, {lat}]}}'


SEED = f"""
INSERT INTO device (device_id, role, site, last_status, last_status_at, last_gateway_id) VALUES
  ('{CAB_A}', 'cabinet', 'lyon', 'online', now(), NULL),
  ('{CAB_B}', 'cabinet', 'lyon', 'online', now(), NULL),
  ('{CAB_GW}', 'cabinet', 'lyon', 'online', now(), '{GATEWAY}'),
  ('{CAB_RUN}', 'cabinet', 'reunion', 'online', now(), NULL),
  ('{GATEWAY}', 'gateway', 'lyon', 'online', now(), NULL),
  ('{SENSOR}', 'leak_sensor', 'lyon', 'online', now(), NULL),
  ('{NEWCOMER}', NULL, NULL, NULL, NULL, NULL);
INSERT INTO site (site_id, name, timezone, centre_lon, centre_lat, geometry,
                  min_lon, min_lat, max_lon, max_lat, updated_by) VALUES
  ('{LYON}', 'Lyon 7e', 'Europe/Paris', 4.84, 45.76, '{_point(4.84, 45.76)}',
   4.84, 45.76, 4.84, 45.76, 'seed'),
  ('{REUNION}', 'Saint-Denis', 'Indian/Reunion', 55.45, -20.88, '{_point(55.45, -20.88)}',
   55.45, -20.88, 55.45, -20.88, 'seed'),
  ('{EMPTY}', 'Nowhere', 'Europe/Paris', 2.35, 48.86, '{_point(2.35, 48.86)}',
   2.35, 48.86, 2.35, 48.86, 'seed');
INSERT INTO cabinet (cabinet_id, site_id, device_id, lon, lat, geometry, updated_by) VALUES
  ('c-a-{RUN}', '{LYON}', '{CAB_A}', 4.84, 45.76, '{_point(4.84, 45.76)}', 'seed'),
  ('c-b-{RUN}', '{LYON}', '{CAB_B}', 4.85, 45.75, '{_point(4.85, 45.75)}', 'seed'),
  ('c-none-{RUN}', '{LYON}', NULL, 4.83, 45.77, '{_point(4.83, 45.77)}', 'seed'),
  ('c-ghost-{RUN}', '{LYON}', 'ghost-{RUN}', 4.83, 45.77, '{_point(4.83, 45.77)}', 'seed'),
  ('c-gw-{RUN}', '{EMPTY}', NULL, 2.35, 48.86, '{_point(2.35, 48.86)}', 'seed'),
  ('c-r-{RUN}', '{REUNION}', '{CAB_RUN}', 55.45, -20.88, '{_point(55.45, -20.88)}', 'seed');
"""


class Api(InProcessApi):
    prefix = API

    def call(self, method: str, path: str, as_: Role = Role.PLANNER, **kw: Any) -> httpx.Response:
        return self.request(method, path, as_, **kw)

    def create(self, name: str, program: dict[str, Any]) -> dict[str, Any]:
        response = self.call("POST", "/schedules", json={"name": name, "program": program})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        response = self.call("GET", f"/deployments/{deployment_id}", Role.OPERATOR)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def services(stack: object) -> Stack:
    return cast("Stack", stack)


@pytest.fixture(scope="module")
def database(stack: object) -> Iterator[str]:
    with migrated_database(stack, "t_sched", SEED) as url:
        yield url


@pytest.fixture(scope="module")
def worker(
    services: Stack, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_folder = tmp_path_factory.mktemp("ingest")
    with ingest_worker(services, database, log_folder, f"ingest-sched-{RUN}") as process:
        yield process


@pytest.fixture(scope="module")
def api(services: Stack, database: str) -> Iterator[Api]:
    app = create_app(stack_settings(services, database))
    with Api.serving(database, app, RUN) as api:
        yield api


@pytest.fixture(scope="module")
def cab_a(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, CAB_A, protocol.downlink_topic(CAB_A, "cmd"))


@pytest.fixture(scope="module")
def cab_b(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, CAB_B, protocol.downlink_topic(CAB_B, "cmd"))


@pytest.fixture(scope="module")
def gateway(services: Stack) -> Iterator[Peer]:
    yield from connect_peer(services, GATEWAY, protocol.gateway_topic(GATEWAY, "down", "cmd"))


def firmware_cabinet(dev: str, clock: list[int], folder: Path) -> tuple[Any, Any]:
    """The real cabinet application on a fake board (no network: acks are returned)."""
    # firmware/ modules, importable once tests.unit.test_firmware_apps set the path
    from cabinet.app import CabinetApp
    from uplink import Identity, Uplink

    folder.mkdir(parents=True, exist_ok=True)
    board = fw.FakeCabinetBoard(clock, folder)
    spool = Spool(str(folder / "spool"), max_bytes=64 * 1024, max_records=256)
    uplink = Uplink(dev, "cabinet", "0.1.0", Identity.new(os.urandom(8)), spool, board.time_ms)
    config = {**fw.CONFIG, "dev": dev, "lat": 45.76, "lon": 4.84}
    return CabinetApp(board, config, uplink, lambda: fw.FakeClient(fw.Broker())), board


# --- store and check ---------------------------------------------------------------------


def test_a_planner_stores_a_schedule_checked_and_audited(api: Api) -> None:
    created = api.create(f"standard-{RUN}", PROGRAM)
    assert created["version"] == 1 and created["program"] == PROGRAM
    assert created["created_by"] == f"planner-{RUN}" and created["running_on"] == []
    assert created["warnings"] == []
    sid = created["schedule_id"]
    read = api.call("GET", f"/schedules/{sid}", Role.OPERATOR).json()
    assert read == created
    listed = api.call("GET", "/schedules", Role.TECHNICIAN, params={"limit": 500}).json()
    assert sid in [s["schedule_id"] for s in listed["items"]]
    audit = api.sql(
        "SELECT actor, action, detail FROM api_audit WHERE target = %s", f"schedule:{sid}"
    )
    assert [(a["actor"], a["action"]) for a in audit] == [(f"planner-{RUN}", "schedule.create")]
    assert audit[0]["detail"]["program"] == PROGRAM
    again = api.call("POST", "/schedules", json={"name": f"standard-{RUN}", "program": PROGRAM})
    assert "exists" in problem(again, 409)["detail"]


def test_warnings_come_with_the_schedule_without_refusing_it(api: Api) -> None:
    program = copy.deepcopy(MASKED)
    program["plans"]["off"] = ["dusk", 0]
    program["circuits"]["2"] = {"week": "off"}
    created = api.create(f"warned-{RUN}", program)
    assert [w["code"] for w in created["warnings"]] == ["dark_every_night", "not_relayable"]


@pytest.mark.parametrize(
    ("plan", "code", "location"),
    [
        (["dusk", 150, "dawn", 0], "out_of_range", "body.program.plans.std[1]"),
        (["dusk", 100, "25:00", 0], "bad_time", "body.program.plans.std[2]"),
        (["dawn", 0, "dusk", 100], "unsorted", "body.program.plans.std[2]"),
        (["dusk", 100, "dawn", 30], "no_switch_off", "body.program.plans.std[3]"),
        (["midnight", 100, "dawn", 0], "unknown_anchor", "body.program.plans.std[0]"),
    ],
)
def test_a_program_the_cabinet_refuses_is_422_with_its_reason_and_never_stored(
    api: Api, plan: list[Any], code: str, location: str
) -> None:
    program = {**PROGRAM, "plans": {**PROGRAM["plans"], "std": plan}}
    before = api.sql("SELECT count(*) AS n FROM dimming_schedule")[0]["n"]
    body = problem(api.call("POST", "/schedules", json={"name": "bad", "program": program}), 422)
    assert body["errors"] == [{"location": location, "message": body["detail"]}]
    field = location.removeprefix("body.program.")
    assert f"the cabinet would refuse this program ({code}): {field}: " in body["detail"]
    assert api.sql("SELECT count(*) AS n FROM dimming_schedule")[0]["n"] == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "program": []},
        {"name": "x", "program": PROGRAM, "extra": 1},
        {"name": "", "program": PROGRAM},
        {"name": "x\u0000y", "program": PROGRAM},
        {"program": PROGRAM},
        {"name": "x", "program": {**PROGRAM, "v": True}},
    ],
)
def test_hostile_bodies_are_422(api: Api, body: dict[str, Any]) -> None:
    problem(api.call("POST", "/schedules", json=body), 422)


def test_a_changed_program_is_a_new_version_and_the_old_one_is_kept(api: Api) -> None:
    sid = api.create(f"versions-{RUN}", PROGRAM)["schedule_id"]
    renamed = api.call("PUT", f"/schedules/{sid}", json={"name": f"v-{RUN}", "program": PROGRAM})
    assert renamed.json()["version"] == 1  # same program: same version
    changed = {**PROGRAM, "id": "lyon-2026-b"}
    updated = api.call("PUT", f"/schedules/{sid}", json={"name": f"v-{RUN}", "program": changed})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["program"]) == (2, changed)
    kept = api.sql(
        "SELECT version, program FROM dimming_schedule_version WHERE schedule_id = %s"
        " ORDER BY version",
        sid,
    )
    assert [(k["version"], k["program"]["id"]) for k in kept] == [
        (1, "lyon-2026"),
        (2, "lyon-2026-b"),
    ]
    old = api.call(
        "GET",
        f"/schedules/{sid}/preview",
        params={"date": "2026-01-15", "site": LYON, "version": 1},
    )
    assert old.json()["version"] == 1
    problem(api.call("PUT", "/schedules/999999", json={"name": "n", "program": PROGRAM}), 404)


# --- preview -----------------------------------------------------------------------------


def hhmm(value: str) -> str:
    return datetime.fromisoformat(value).strftime("%H:%M")


def test_the_preview_at_lyon_in_winter_and_summer(api: Api) -> None:
    sid = api.create(f"preview-{RUN}", PROGRAM)["schedule_id"]
    winter = api.call(
        "GET", f"/schedules/{sid}/preview", params={"date": "2026-01-15", "site": LYON}
    )
    assert winter.status_code == 200, winter.text
    w = winter.json()
    assert (w["lat"], w["lon"], w["site_id"]) == (45.76, 4.84, LYON)
    # Lyon, 15 Jan 2026: sunset about 17:20 CET, sunrise 08:15 CET
    assert hhmm(w["sunset"]).startswith("16:2") and hhmm(w["sunrise"]).startswith("07:1")
    one = [(s["local"], s["level"]) for s in w["steps"] if s["circuit"] == 1]
    cet = datetime.fromisoformat(w["sunset"]) + timedelta(hours=1)
    assert one[0] == (cet.strftime("%H:%M"), 100)  # switched on at sunset, local time
    assert ("22:30", 50) in one and one[-1][1] == 0
    assert [lvl for _t, lvl in one] == [100, 50, 30, 50, 0]
    assert all(s["source"] == "step" for s in w["steps"])
    # dawn-30 is 30 min before sunrise, in local time
    assert one[-2][0] < one[-1][0]
    assert 0.4 < w["energy_fraction"] < 0.7
    assert w["circuits"][0]["lit_s"] == w["night_s"] and w["warnings"] == []

    summer = api.call(
        "GET", f"/schedules/{sid}/preview", params={"date": "2026-06-21", "lat": 45.76, "lon": 4.84}
    ).json()
    assert hhmm(summer["sunset"]).startswith("19:3") and hhmm(summer["sunrise"]).startswith("03:5")
    assert summer["night_s"] < w["night_s"] - 6 * 3600
    levels = [s["level"] for s in summer["steps"] if s["circuit"] == 1]
    assert levels == [100, 50, 30, 50, 0]
    # a short night spends more of it at the 22:30 reduction than a long one does at full
    assert summer["energy_fraction"] != w["energy_fraction"]


def test_preview_refusals(api: Api) -> None:
    sid = api.create(f"preview-bad-{RUN}", PROGRAM)["schedule_id"]
    path = f"/schedules/{sid}/preview"
    problem(api.call("GET", path, params={"date": "2026-01-15"}), 422)
    problem(api.call("GET", path, params={"date": "2026-01-15", "lat": 45.0}), 422)
    problem(
        api.call("GET", path, params={"date": "2026-01-15", "site": LYON, "lat": 1, "lon": 1}), 422
    )
    problem(api.call("GET", path, params={"date": "2026-02-30", "site": LYON}), 422)
    problem(api.call("GET", path, params={"date": "1999-01-01", "site": LYON}), 422)
    problem(api.call("GET", path, params={"date": "2026-01-15", "lat": 91, "lon": 0}), 422)
    body = problem(api.call("GET", path, params={"date": "2026-01-15", "site": "atlantis"}), 422)
    assert body["errors"][0]["location"] == "query.site"
    problem(api.call("GET", path, params={"date": "2026-01-15", "site": LYON, "version": 9}), 404)
    problem(
        api.call("GET", "/schedules/999999/preview", params={"date": "2026-01-15", "site": LYON}),
        404,
    )


# --- deploy --------------------------------------------------------------------------------


def test_deploying_to_two_cabinets_running_the_real_firmware(
    api: Api, cab_a: Peer, cab_b: Peer, worker: WorkerProcess, tmp_path: Path
) -> None:
    sid = api.create(f"deployed-{RUN}", PROGRAM)["schedule_id"]
    response = api.call("POST", f"/schedules/{sid}/deployments", json={"cabinets": [CAB_A, CAB_B]})
    assert response.status_code == 202, response.text
    issued = response.json()
    assert (issued["schedule_id"], issued["version"], issued["target"]) == (sid, 1, "cabinets")
    assert issued["states"] == {"sent": 2} and issued["skipped"] == []
    assert issued["warnings"] == []
    targets = {t["device_id"]: t for t in issued["cabinets"]}
    assert set(targets) == {CAB_A, CAB_B}

    # The exact bytes each cabinet gets: the codec's canonical set_schedule.
    payloads = {}
    for peer in (cab_a, cab_b):
        command_id = targets[peer.name]["command_id"]
        message = peer.wait_for_command(command_id)
        assert message.topic == protocol.downlink_topic(peer.name, "cmd") and message.qos == 1
        cmd = protocol.decode(message.payload, message.topic)
        expected = {
            "v": 1,
            "kind": "cmd",
            "dev": peer.name,
            "id": command_id,
            "name": "set_schedule",
            "args": PROGRAM,
            "ts": cmd["ts"],
            "exp": cmd["ts"] + 86_400_000,
            "src": "api",
        }
        assert message.payload == protocol.encode(expected)
        assert cmd["exp"] == ms(issued["expires_at"])
        payloads[peer.name] = message.payload

    # Cabinet A runs the firmware now: it compiles, saves and runs the program.
    clock = [ms(issued["created_at"]) + 1000]
    app_a, board_a = firmware_cabinet(CAB_A, clock, tmp_path / "a")
    ack_a = app_a.handle_command(payloads[CAB_A])
    assert ack_a == {"cmd": targets[CAB_A]["command_id"], "ok": True}
    assert board_a.files["schedule"] == PROGRAM
    assert app_a.schedule.program.id == "lyon-2026"
    # Cabinet B's clock is past the command's expiry: the firmware refuses to run it.
    late = [ms(issued["expires_at"]) + 1]
    app_b, board_b = firmware_cabinet(CAB_B, late, tmp_path / "b")
    ack_b = app_b.handle_command(payloads[CAB_B])
    assert ack_b is not None and ack_b["ok"] is False and ack_b["err"]["code"] == "expired"
    assert "schedule" not in board_b.files
    for peer, ack in ((cab_a, ack_a), (cab_b, ack_b)):
        fields = dict(ack)
        peer.ack(fields.pop("cmd"), **fields)

    did = issued["deployment_id"]

    def settled() -> bool:
        return api.deployment(did)["states"] == {"acked": 1, "failed": 1}

    wait_until("acked and failed", settled, worker.tail)
    by_device = {t["device_id"]: t for t in api.deployment(did)["cabinets"]}
    assert by_device[CAB_A]["state"] == "acked" and by_device[CAB_A]["ack"]["ok"] is True
    assert by_device[CAB_B]["state"] == "failed"
    assert by_device[CAB_B]["ack"]["err_code"] == "expired"
    running = api.call("GET", f"/schedules/{sid}").json()["running_on"]
    assert [(r["device_id"], r["version"], r["deployment_id"]) for r in running] == [
        (CAB_A, 1, did)
    ]
    assert api.call("GET", "/schedules", params={"limit": 500}).json()["items"]
    listed = api.call("GET", f"/schedules/{sid}/deployments").json()
    assert [d["deployment_id"] for d in listed["items"]] == [did] and listed["total"] == 1

    # Audited: the deployment and each command, with who.
    actions = api.sql(
        "SELECT action, target FROM api_audit WHERE actor = %s AND (target = %s OR"
        " detail->>'command_id' = ANY(%s)) ORDER BY audit_id",
        f"planner-{RUN}",
        f"schedule:{sid}",
        [t["command_id"] for t in targets.values()],
    )
    assert [a["action"] for a in actions] == [
        "schedule.create",
        "schedule.deploy",
        "command.set_schedule",
        "command.set_schedule",
    ]

    # Deleting a schedule a cabinet runs is refused; once another runs there, allowed.
    assert CAB_A in problem(api.call("DELETE", f"/schedules/{sid}"), 409)["detail"]
    other = api.create(f"other-{RUN}", {**PROGRAM, "id": "other"})["schedule_id"]
    second = api.call("POST", f"/schedules/{other}/deployments", json={"cabinets": [CAB_A]}).json()
    command_id = second["cabinets"][0]["command_id"]
    ack = app_a.handle_command(cab_a.wait_for_command(command_id).payload)
    assert ack is not None and ack["ok"] is True
    cab_a.ack(command_id, ok=True)
    wait_until(
        "other acked",
        lambda: api.deployment(second["deployment_id"])["states"] == {"acked": 1},
        worker.tail,
    )
    assert api.call("GET", f"/schedules/{sid}").json()["running_on"] == []
    assert api.call("DELETE", f"/schedules/{sid}").status_code == 204
    problem(api.call("GET", f"/schedules/{sid}"), 404)
    assert api.deployment(did)["schedule_id"] == sid  # the record of what was sent stays
    # its name is free again
    api.create(f"deployed-{RUN}", PROGRAM)


def test_a_cabinet_refusing_the_program_reports_its_compilers_reason(
    api: Api, cab_b: Peer, worker: WorkerProcess
) -> None:
    sid = api.create(f"refused-{RUN}", PROGRAM)["schedule_id"]
    issued = api.call("POST", f"/schedules/{sid}/deployments", json={"cabinets": [CAB_B]}).json()
    command_id = issued["cabinets"][0]["command_id"]
    cab_b.wait_for_command(command_id)
    # An older firmware whose compiler refuses (what the real one answers for such a plan):
    reason = 'bad_time: plans.std[2]: "22:30" is not a time of day HH:MM (00:00-23:59)'
    cab_b.ack(command_id, ok=False, err={"code": "bad_args", "reason": reason})
    did = issued["deployment_id"]
    wait_until("failed", lambda: api.deployment(did)["states"] == {"failed": 1}, worker.tail)
    ack = api.deployment(did)["cabinets"][0]["ack"]
    assert (ack["err_code"], ack["err_reason"]) == ("bad_args", reason)
    # An in-flight deployment also blocks deleting: here it failed, so deleting is allowed.
    assert api.call("DELETE", f"/schedules/{sid}").status_code == 204


def test_a_deployment_in_flight_blocks_deleting(api: Api, cab_a: Peer) -> None:
    sid = api.create(f"inflight-{RUN}", PROGRAM)["schedule_id"]
    api.call("POST", f"/schedules/{sid}/deployments", json={"cabinets": [CAB_A]})
    body = problem(api.call("DELETE", f"/schedules/{sid}"), 409)
    assert "may still arrive" in body["detail"]


def test_a_site_deployment_skips_cabinets_without_a_usable_controller(
    api: Api, cab_a: Peer, cab_b: Peer
) -> None:
    sid = api.create(f"site-{RUN}", PROGRAM)["schedule_id"]
    response = api.call(
        "POST", f"/schedules/{sid}/deployments", json={"site": LYON}, as_=Role.TECHNICIAN
    )
    assert response.status_code == 202, response.text
    issued = response.json()
    assert (issued["target"], issued["site_id"]) == ("site", LYON)
    assert sorted(t["device_id"] for t in issued["cabinets"]) == [CAB_A, CAB_B]
    skipped = {s["cabinet_id"]: s["reason"] for s in issued["skipped"]}
    assert set(skipped) == {f"c-ghost-{RUN}", f"c-none-{RUN}"}
    assert "never provisioned" in skipped[f"c-ghost-{RUN}"]
    assert "no controller" in skipped[f"c-none-{RUN}"]
    for peer in (cab_a, cab_b):
        command_id = next(
            t["command_id"] for t in issued["cabinets"] if t["device_id"] == peer.name
        )
        assert protocol.decode(peer.wait_for_command(command_id).payload)["args"] == PROGRAM


def test_a_cabinet_behind_a_gateway_gets_a_relay_unless_the_program_cannot_fit(
    api: Api, gateway: Peer
) -> None:
    simple = api.create(f"relayable-{RUN}", PROGRAM)["schedule_id"]
    issued = api.call("POST", f"/schedules/{simple}/deployments", json={"cabinets": [CAB_GW]})
    assert issued.status_code == 202, issued.text
    target = issued.json()["cabinets"][0]
    assert target["via_gateway"] == GATEWAY
    message = gateway.wait_for_command(target["command_id"])
    device_cmd = gateway_commands.from_backend(message.topic, message.payload, GATEWAY)
    cmd = protocol.decode(device_cmd.payload, protocol.downlink_topic(CAB_GW, "cmd"))
    assert (cmd["name"], cmd["args"], cmd["dev"]) == ("set_schedule", PROGRAM, CAB_GW)

    masked = api.create(f"masked-{RUN}", MASKED)["schedule_id"]
    before = api.sql("SELECT count(*) AS n FROM command")[0]["n"]
    body = problem(
        api.call("POST", f"/schedules/{masked}/deployments", json={"cabinets": [CAB_A, CAB_GW]}),
        409,
    )
    assert f"{CAB_GW} (via gateway '{GATEWAY}')" in body["detail"]
    assert "nested deeper than 4 levels" in body["detail"]
    assert api.sql("SELECT count(*) AS n FROM command")[0]["n"] == before  # nothing sent


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"cabinets": [f"nobody-{RUN}"]}, 422, f"unknown devices: nobody-{RUN}"),
        ({"cabinets": [SENSOR]}, 409, "is a leak_sensor; a dimming schedule"),
        ({"cabinets": [GATEWAY]}, 409, "is a gateway"),
        ({"cabinets": [NEWCOMER]}, 409, "has not reported its role yet"),
        ({"site": EMPTY}, 409, "has no cabinet to deploy to"),
        ({"site": "atlantis"}, 422, "no site 'atlantis'"),
        ({"site": REUNION}, 409, "Indian/Reunion is UTC+04:00"),
        ({"cabinets": [CAB_A, CAB_A]}, 422, "listed twice"),
        ({"cabinets": [CAB_A], "site": LYON}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"cabinets": []}, 422, "body.cabinets"),
        ({"cabinets": ["CAB"]}, 422, "body.cabinets"),
        ({"cabinets": [CAB_A], "expires_in_s": 10}, 422, "body.expires_in_s"),
    ],
)
def test_deployment_refusals_name_the_cabinets_and_send_nothing(
    api: Api, body: dict[str, Any], status: int, text: str
) -> None:
    name = f"refusals-{RUN}"
    found = api.sql(
        "SELECT schedule_id FROM dimming_schedule WHERE name = %s AND deleted_at IS NULL", name
    )
    sid = found[0]["schedule_id"] if found else api.create(name, PROGRAM)["schedule_id"]
    before = api.sql("SELECT count(*) AS n FROM command")[0]["n"]
    answer = problem(api.call("POST", f"/schedules/{sid}/deployments", json=body), status)
    assert text in answer["detail"], answer
    assert api.sql("SELECT count(*) AS n FROM command")[0]["n"] == before


def test_a_plan_never_lit_at_the_cabinets_place_is_refused_at_deployment(api: Api) -> None:
    # The cabinet takes it, but at Lyon its switch-off (dusk+60) always comes before 05:00.
    program = {**PROGRAM, "plans": {"std": ["05:00", 100, "dusk+60", 0]}, "holidays": []}
    program["circuits"] = {"1": {"week": "std"}}
    sid = api.create(f"never-{RUN}", program)["schedule_id"]
    body = problem(
        api.call("POST", f"/schedules/{sid}/deployments", json={"cabinets": [CAB_A]}), 409
    )
    assert "stays dark all night" in body["detail"] and CAB_A in body["detail"]


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_who_may_write_and_deploy_schedules(api: Api, role: Role, cab_a: Peer) -> None:
    created = api.call(
        "POST", "/schedules", role, json={"name": f"{role.value}-{RUN}", "program": PROGRAM}
    )
    if role in (Role.PLANNER, Role.ADMIN):
        assert created.status_code == 201, created.text
        sid = created.json()["schedule_id"]
    else:
        assert "schedules:write" in problem(created, 403)["detail"]
        sid = api.create(f"for-{role.value}-{RUN}", PROGRAM)["schedule_id"]
    assert api.call("GET", f"/schedules/{sid}", role).status_code == 200
    deployed = api.call("POST", f"/schedules/{sid}/deployments", role, json={"cabinets": [CAB_A]})
    if role == Role.OPERATOR:
        assert "schedules:deploy" in problem(deployed, 403)["detail"]
    else:
        assert deployed.status_code == 202, deployed.text
