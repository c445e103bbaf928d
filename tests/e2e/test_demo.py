"""The README's main job, run as a user runs it, on the real services.

Devices -> site Mosquitto -> ``lumeau gateway run`` -> backend Mosquitto ->
ingest -> TimescaleDB. The assertions read the demo's own output, as a person
would: where each message of the script ended up.
"""

from __future__ import annotations

import re
import shutil

import pytest

from backend import devstack
from backend.cli import main
from tests.conftest import services_run_dir


def _section(out: str, title: str) -> str:
    """The table printed under the line starting with ``title`` (up to a blank line)."""
    start = out.find("\n" + title)
    assert start >= 0, f"no section {title!r} in the demo's output"
    end = out.find("\n\n", start + 1)
    return out[start : end if end >= 0 else len(out)]


def _counter(counters: str, name: str) -> int:
    match = re.search(rf"^\s+{re.escape(name)}\s+(\d+)\s", counters, re.MULTILINE)
    assert match, f"gateway counter {name} not shown"
    return int(match.group(1))


@pytest.mark.services
def test_demo_goes_through_the_gateway_stores_once_and_stops_bad_input_at_the_site(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Its own stack: the demo leaves retained status messages behind, as real
    # devices do, and other tests count what their broker delivers.
    run_dir = services_run_dir().with_name(services_run_dir().name + "-demo")
    # A first run, as on a fresh machine (a second one continues the town).
    devstack.down(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        assert main(["demo", "--run-dir", str(run_dir)]) == 0
    finally:
        devstack.down(run_dir)
    out = capsys.readouterr().out
    _town_and_alerts(out)

    # The 7 distinct good messages are stored, every one of them via the gateway.
    assert "Good messages: 7 distinct sent, 7 stored, 7 of them via gw-demo-1." in out
    stored = _section(out, "Stored device messages")
    assert len(re.findall(r"^\s+(?:cab|leak)-bench\s", stored, re.MULTILINE)) == 7
    assert len(re.findall(r"\sgw-demo-1\s*$", stored, re.MULTILINE)) == 7

    # The duplicate: recognised at the gateway, stored once in TimescaleDB.
    assert "seq 2 published twice, stored 1 time(s) (gateway duplicates=1)" in out
    # The publish on another device's topic: refused by the site broker's ACL.
    assert "leak-bench's topic stored: 0" in out

    # Bad input stops at the gateway: its SQLite dead letters and the cabinet's
    # error replies on the site broker, one per bad message, none at the backend.
    letters = _section(out, "Gateway dead letters")
    replies = _section(out, "Error replies cab-bench read on its own down/error topic of the SITE")
    for code in ("bad_json", "out_of_range", "topic_mismatch"):
        assert len(re.findall(rf"^\s+cab-bench\s+{code}\b", letters, re.MULTILINE)) == 1, code
        assert replies.count(f'"code":"{code}"') == 1, f"no error reply {code}"
    assert len(re.findall(r"^\s+cab-bench\s+\w+", letters, re.MULTILINE)) == 3
    assert "backend dead letters this run: 0." in out
    assert re.search(r"Ingest counters: .*\bdead_lettered=0\b", out)

    # seq 4 never sent: reported as a gap of one, and the only gap (the
    # gateway's own sequence has none).
    gaps = _section(out, "Sequence gaps")
    assert re.search(r"^\s+cab-bench\s+[0-9a-f]{8}\s+4\s+4\s+1\s*$", gaps, re.MULTILINE)
    assert len(re.findall(r"^\s+\S+\s+[0-9a-f]{8,16}\s+\d+", gaps, re.MULTILINE)) == 1

    # The gateway's counters, read from its /metrics.
    counters = _section(out, "Gateway counters")
    assert _counter(counters, "received_total") == 11  # 12 published, 1 refused by the ACL
    assert _counter(counters, "accepted_total") == 7
    assert _counter(counters, "duplicates_total") == 1
    assert _counter(counters, "rejected_total") == 3
    assert _counter(counters, "error_replies_total") == 3
    assert _counter(counters, "forwarded_total") == 7
    assert _counter(counters, "batch_failures_total") == 0
    assert _counter(counters, "queue_rows") == 0

    # Its batches are messages of its own sequence in uplink_message.
    own = _section(out, "The gateway's own messages")
    batches = re.findall(r"^\s+gw-demo-1\s+[0-9a-f]{16}\s+\d+\s+batch\s", own, re.MULTILINE)
    assert batches, "no gateway batch stored"
    assert f"Gateway batches stored: {len(batches)} (kind batch); gateway exit code 0." in out
    assert _counter(counters, "batches_total") == len(batches)

    # Presence: online while it ran; its clean stop published the offline status.
    devices = _section(out, "Devices and gateway while the gateway ran")
    assert re.search(r"^\s+gw-demo-1\s+gateway\s+online\s", devices, re.MULTILINE)
    for dev, role in (("cab-bench", "cabinet"), ("leak-bench", "leak_sensor")):
        assert re.search(rf"^\s+{dev}\s+{role}\s+online\s+\S+\s+gw-demo-1", devices, re.MULTILINE)
    presence = _section(out, "Gateway presence")
    states = re.findall(r"^\s+gw-demo-1\s+\d+\s+(online|offline)\s", presence, re.MULTILINE)
    assert states == ["online", "offline"]

    # Then the API (`lumeau api run`, a subprocess) answers a person's queries
    # on what was stored, with tokens from `lumeau api token create`.
    assert re.search(
        r"^  health\s+\{\"status\":\"ok\",\"database\":\"reachable\"", out, re.MULTILINE
    )
    assert re.search(r"^  OpenAPI page http://127\.0\.0\.1:\d+/api/v1/docs ", out, re.MULTILINE)
    for user, role in (("demo-operator", "operator"), ("demo-technician", "technician")):
        assert re.search(rf"token \d+ for {user} \({role}\), expires ", out), user
    # The tokens never appear; the curl lines a person can copy use $TOKEN.
    assert not re.search(r"lmu_[A-Za-z0-9_-]{43}", out)
    curls = re.findall(r"^  \$ curl .*$", out, re.MULTILINE)
    assert len(curls) == 5
    assert all('-H "Authorization: Bearer $TOKEN" ' in line for line in curls[1:])

    api_devices = _section(out, "API GET /api/v1/devices as demo-operator: 200,")
    for dev, role in (("cab-bench", "cabinet"), ("leak-bench", "leak_sensor")):
        assert re.search(rf"^\s+{dev}\s+{role}\s+online\s.*\sgw-demo-1\s", api_devices, re.M)
    # The gateway stopped cleanly after the script, then started again for the
    # town: the API sees it online, and the town's cabinets live behind it.
    assert re.search(r"^\s+gw-demo-1\s+gateway\s+online\s", api_devices, re.MULTILINE)
    for cab in ("cab-0001", "cab-0002", "cab-0003"):
        assert re.search(rf"^\s+{cab}\s+cabinet\s+online\s.*\sgw-demo-1\s", api_devices, re.M)

    # The cabinet's level_pct in 15-minute buckets over this run's device times:
    # per circuit, the 3 stored readings (100 %, 70 %, 50 %; the 180 % one was
    # dead-lettered, the duplicate stored once) average to 73.33.
    telemetry = _section(out, "API GET cab-bench telemetry as demo-operator: 200,")
    assert "telemetry?metric=level_pct&bucket=15m&from=" in telemetry
    points = re.findall(
        r"^\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$",
        telemetry,
        re.MULTILINE,
    )
    assert [p[0] for p in points] == ["1", "2", "3"]
    for _channel, count, avg, low, high in points:
        assert int(count) == 3
        assert float(avg) == pytest.approx((100.0 + 70.0 + 50.0) / 3, abs=0.005)
        assert (float(low), float(high)) == (50.0, 100.0)

    events = _section(out, "API GET /api/v1/events as demo-operator: 200,")
    assert len(re.findall(r"^\s+\d\d:\d\d:\d\d\s+cab-bench\s", events, re.MULTILINE)) == 1
    assert re.search(r"\s3\s+door_open\s+warning\s+True\s*$", events, re.MULTILINE)

    # Roles: the operator is refused the dead letters, the technician reads them.
    refused = _section(out, "API GET /api/v1/dead-letters?limit=5 as demo-operator: 403 Forbidden")
    assert "role 'operator' does not have permission 'dead_letters:read'" in refused
    letters = _section(out, "API GET /api/v1/dead-letters?limit=5 as demo-technician: 200,")
    shown = re.search(r"demo-technician: 200, (\d+) rows", letters)
    assert shown, "the technician's answer is not shown"
    rows = int(shown.group(1))
    table = re.findall(r"^\s+\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s", letters, re.MULTILINE)
    assert len(table) == rows
    if rows == 0:
        assert "(none)" in letters

    # Without --serve the demo stops the API, the engine and the notifier at the end.
    for job in ("api", "alerts", "notify"):
        assert re.search(rf"^{job} stopped \(", out, re.MULTILINE), job
    assert "Traceback" not in out


def _town_and_alerts(out: str) -> None:
    """The sample town through the whole stack, and the alerts its faults raised."""
    # The planner's upload of the asset register, the admin's webhook channel.
    assert re.search(r"assets\s+PUT /api/v1/assets as demo-planner: 200, 51 GeoJSON", out)
    assert re.search(r"channel\s+POST /api/v1/notification-channels as demo-admin: 201", out)

    # Every device of the register, simulated for 12 days, stored via the gateway:
    # a cabinet reports every 10 minutes, a sensor once a night.
    town = _section(out, "The town's messages stored this run")
    rows = re.findall(
        r"^\s+(\S+)\s+(cabinet|leak_sensor)\s+bourg\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s", town, re.M
    )
    assert sorted(r[0] for r in rows) == [
        "cab-0001", "cab-0002", "cab-0003", "leak-0001", "leak-0002", "leak-0003", "leak-0004"
    ]  # fmt: skip
    for device, role, telemetry, _events, _status in rows:
        if role == "cabinet":
            assert 12 * 144 <= int(telemetry) <= 13 * 144, device
        else:
            assert 12 <= int(telemetry) <= 13, device

    # The engine raised an alert for every injected fault (the ground truth).
    truth = _section(out, "The scenario's faults (ground truth) and the alert raised for each")
    raised = re.findall(r"\salert (\d+)\s*$", truth, re.MULTILINE)
    assert len(raised) == 7 and "MISSING" not in truth
    alerts = _section(out, "Alerts (API GET /api/v1/alerts?state=open")
    assert re.search(
        r"^\s+\d+\s+leak\s+leak-0002\s+bourg\s+(warning|critical)\s+open", alerts, re.M
    )
    assert re.search(r"^\s+\d+\s+door_open\s+cab-0001\s+bourg\s+warning\s+open", alerts, re.M)
    # and nothing about the healthy devices
    for healthy in ("leak-0001", "leak-0004"):
        assert not re.search(rf"^\s+\d+\s+\w+\s+{healthy}\s", alerts, re.MULTILINE)

    # The operator acknowledged and assigned the door alert: its history says so.
    history = _section(out, "API GET /api/v1/alerts/")
    actions = re.findall(r"^\s+\d\d:\d\d:\d\d\s+(\w+)\s+(\S+)", history, re.MULTILINE)
    assert actions == [
        ("opened", "engine"), ("acknowledged", "demo-operator"), ("assigned", "demo-operator")
    ]  # fmt: skip

    # The notifier delivered the openings to the webhook, each signed.
    hooks = _section(out, "Webhook notifications received at http://127.0.0.1:")
    opened = re.findall(r"^\s+alert\.opened\s+\d+\s+(\w+)\s+(\S+)\s+\w+\s+valid\s*$", hooks, re.M)
    assert {("door_open", "cab-0001"), ("leak", "leak-0002")} <= set(opened)
    assert "INVALID" not in hooks
