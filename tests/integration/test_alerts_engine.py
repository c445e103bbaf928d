"""The alert engine against the real TimescaleDB: rows in, alerts and history out.

Each test gets a fresh scratch database migrated up to the engine's own step
(0010), inserts devices, events (with ``received_at``), readings and status
with SQL as ingest would leave them, and runs ``evaluate_once`` at explicit
``now`` values.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
from psycopg.rows import dict_row

from backend.alerts.engine import ENGINE_LOCK_KEY, AlertEngine, Counts, EngineConfig, evaluate_once
from backend.alerts.policy import Policy, Schedule
from backend.storage import migrate
from backend.storage.migration_files import DEFAULT_DIRECTORY
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

T = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
# every source on every evaluation, so the tests choose the times
POLICY = Policy(schedule=Schedule(battery_s=0, leak_s=0, energy_s=0))
LAST_STEP = 10  # the engine's migration; later steps belong to other work


@pytest.fixture(scope="module")
def services(stack: object) -> Stack:
    return cast("Stack", stack)


@pytest.fixture(scope="module")
def migrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("migrations")
    for path in DEFAULT_DIRECTORY.glob("*.sql"):
        if int(path.name[:4]) <= LAST_STEP:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def db(services: Stack, migrations: Path) -> Iterator[str]:
    with scratch_database(services.admin_database_url, services.database_url, "t_alerts") as url:
        migrate(url, migrations)
        yield url


def sql(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def add_device(
    url: str,
    device_id: str,
    role: str,
    *,
    seen: datetime,
    status: str | None = "online",
    status_at: datetime | None = None,
    site: str = "nord",
) -> None:
    sql(
        url,
        "INSERT INTO device (device_id, role, site, first_seen, last_seen, last_status,"
        " last_status_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (device_id, role, site, seen, seen, status, status_at or seen),
    )


_seq = iter(range(1, 1_000_000))


def add_event(
    url: str,
    device_id: str,
    code: str,
    active: bool,
    at: datetime,
    *,
    severity: str = "warning",
    channel: int | None = None,
    detail: Any = None,
    received: datetime | None = None,
) -> None:
    sql(
        url,
        "INSERT INTO event (time, device_id, boot_id, seq, code, severity, channel, active,"
        " detail, received_at) VALUES (%s, %s, 'b00t0001', %s, %s, %s, %s, %s, %s, %s)",
        (
            at,
            device_id,
            next(_seq),
            code,
            severity,
            channel,
            active,
            None if detail is None else json.dumps(detail),
            received or at + timedelta(seconds=1),
        ),
    )


def add_readings(url: str, rows: list[tuple[datetime, str, int, str, float, str]]) -> None:
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY reading (time, device_id, channel, metric, value, boot_id, seq) FROM STDIN"
        ) as copy,
    ):
        for i, (time, device_id, channel, metric, value, boot) in enumerate(rows):
            copy.write_row((time, device_id, channel, metric, value, boot, i))


def evaluate(url: str, now: datetime, policy: Policy = POLICY) -> Counts:
    with psycopg.connect(url, autocommit=True) as conn:
        return evaluate_once(conn, policy, now)


def alerts(url: str) -> list[dict[str, Any]]:
    return sql(url, "SELECT * FROM alert ORDER BY alert_id")


def history(url: str, alert_id: int) -> list[str]:
    rows = sql(
        url, "SELECT action FROM alert_history WHERE alert_id = %s ORDER BY history_id", (alert_id,)
    )
    return [r["action"] for r in rows]


def minutes(n: float) -> datetime:
    return T + timedelta(minutes=n)


def test_door_flapping_within_the_hold_is_one_alert_resolved_after_the_hold(db: str) -> None:
    add_device(db, "cab-1", "cabinet", seen=minutes(60))
    add_event(db, "cab-1", "door_open", True, minutes(0), channel=0)
    counts = evaluate(db, minutes(1))
    assert counts.opened == 1 and counts.signals >= 1
    [alert] = alerts(db)
    assert (alert["rule"], alert["dedup_key"], alert["state"]) == (
        "door_open",
        "door_open:cab-1",
        "open",
    )
    assert alert["site"] == "nord" and alert["started_at"] == minutes(0)

    add_event(db, "cab-1", "door_open", False, minutes(2))
    evaluate(db, minutes(3))
    add_event(db, "cab-1", "door_open", True, minutes(4))
    add_event(db, "cab-1", "door_open", False, minutes(6))  # both in one evaluation
    evaluate(db, minutes(7))
    assert evaluate(db, minutes(7)).transitions == 0  # nothing new: nothing written
    evaluate(db, minutes(15))
    [alert] = alerts(db)
    assert alert["state"] == "open" and alert["cleared_at"] == minutes(6)
    assert alert["occurrences"] == 2
    counts = evaluate(
        db,
        minutes(
            16,
        )
        + timedelta(seconds=1),
    )
    assert counts.resolved == 1
    [alert] = alerts(db)
    assert alert["state"] == "resolved" and alert["resolved_by"] == "engine"
    assert history(db, alert["alert_id"]) == [
        "opened",
        "cleared",
        "reoccurred",
        "cleared",
        "resolved",
    ]


def test_cabinet_offline_then_online(db: str) -> None:
    add_device(db, "cab-2", "cabinet", seen=T, status="offline", status_at=T)
    assert evaluate(db, minutes(2)).opened == 0  # within the hold: maybe a reconnect
    evaluate(db, minutes(6))
    [alert] = alerts(db)
    assert alert["rule"] == "cabinet_offline" and alert["started_at"] == T
    assert alert["severity"] == "warning"
    sql(
        db,
        "UPDATE device SET last_status = 'online', last_status_at = %s, last_seen = %s",
        (minutes(10), minutes(10)),
    )
    assert evaluate(db, minutes(11)).cleared == 1
    assert evaluate(db, minutes(22)).resolved == 1
    assert history(db, alert["alert_id"]) == ["opened", "cleared", "resolved"]


def test_battery_low_with_hysteresis(db: str) -> None:
    add_device(db, "leak-1", "leak_sensor", seen=T, status="offline")
    day = timedelta(days=1)

    def report(n: int, volts: float) -> Counts:
        sql(db, "UPDATE device SET last_seen = %s", (T + n * day,))
        add_readings(db, [(T + n * day, "leak-1", 0, "battery_v", volts, "b1")])
        return evaluate(db, T + n * day + timedelta(minutes=1))

    assert report(0, 3.25).opened == 1
    assert report(1, 3.35).cleared == 0  # inside the band: still low
    assert report(2, 3.45).cleared == 1
    assert report(3, 3.45).resolved == 1  # clear for a day (battery_low's hold)
    [alert] = alerts(db)
    assert alert["dedup_key"] == "battery_low:leak-1" and alert["detail"]["battery_v"] == 3.25
    assert report(4, 3.35).opened == 0  # the band never raises


def night_features(device: str, nights: list[float], last_night: datetime) -> list[Any]:
    rows = []
    for i, background in enumerate(nights):
        at = last_night - timedelta(days=len(nights) - 1 - i)
        rows.append((at, device, 0, "noise_l90_db", background, "b1"))
        rows.append((at, device, 0, "noise_spread_db", 1.2, "b1"))
        rows.append((at, device, 0, "noise_min_db", background - 2, "b1"))
    return rows


def test_leak_from_ten_nights_of_readings(db: str) -> None:
    night = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)
    add_device(db, "leak-2", "leak_sensor", seen=night, status="offline", site="sud")
    quiet = [-61.0, -60.2, -59.8, -60.5, -60.0, -59.6, -60.3]
    add_readings(db, night_features("leak-2", [*quiet, -50.0, -49.5], night - timedelta(days=1)))
    assert evaluate(db, night + timedelta(hours=1)).opened == 0  # two loud nights: not yet
    add_readings(db, night_features("leak-2", [-49.0], night))
    counts = evaluate(db, night + timedelta(hours=2))
    assert counts.opened == 1
    [alert] = alerts(db)
    assert alert["rule"] == "leak" and alert["dedup_key"] == "leak:leak-2"
    assert alert["site"] == "sud"
    assert alert["detail"]["elevated_nights"] == 3
    assert alert["detail"]["rise_db"] == pytest.approx(11.0, abs=0.5)
    assert 0.5 < alert["detail"]["confidence"] <= 1


def test_energy_anomaly_from_fourteen_nights_of_counters(db: str) -> None:
    now = datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    last_night_end = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    add_device(db, "cab-3", "cabinet", seen=now)
    rows = []
    counter, boot = 0.0, "b1"
    t = last_night_end - timedelta(days=14)
    step = timedelta(minutes=10)
    while t <= last_night_end:
        hour = t.hour + t.minute / 60
        lit = hour >= 18 or hour < 6
        watts = (2000.0 if t > last_night_end - timedelta(days=1) else 1000.0) if lit else 0.0
        if t == last_night_end - timedelta(days=6):  # a reboot: the counter restarts
            counter, boot = 0.0, "b2"
        counter += watts * step.total_seconds() / 3600
        rows.append((t, "cab-3", 1, "energy_wh", counter, boot))
        rows.append((t, "cab-3", 2, "power_w", 500.0 if lit else 0.0, boot))
        t += step
    add_readings(db, rows)
    counts = evaluate(db, now)
    assert counts.opened == 1, counts
    [alert] = alerts(db)
    assert alert["dedup_key"] == "energy_anomaly:cab-3:1" and alert["channel"] == 1
    assert alert["detail"]["method"] == "energy_wh"
    assert alert["detail"]["measured_wh"] == pytest.approx(24000, rel=0.02)
    assert alert["detail"]["expected_wh"] == pytest.approx(12000, rel=0.02)
    assert alert["started_at"] == last_night_end - timedelta(days=1)


def test_a_user_acknowledgement_and_assignment_survive(db: str) -> None:
    add_device(db, "cab-4", "cabinet", seen=minutes(60))
    add_event(db, "cab-4", "lamp_failure", True, minutes(0), channel=2)
    evaluate(db, minutes(1))
    [alert] = alerts(db)
    sql(
        db,
        "UPDATE alert SET state = 'acknowledged', acknowledged_at = %s, acknowledged_by = 'op',"
        " assignee = 'tech' WHERE alert_id = %s",
        (minutes(1), alert["alert_id"]),
    )
    add_event(db, "cab-4", "lamp_failure", False, minutes(2), channel=2)
    add_event(db, "cab-4", "breaker_trip", True, minutes(3), channel=2, severity="critical")
    counts = evaluate(db, minutes(4))
    assert (counts.cleared, counts.reoccurred, counts.escalated) == (1, 1, 1)
    [alert] = alerts(db)
    assert alert["dedup_key"] == "circuit_failure:cab-4:2"
    assert alert["state"] == "acknowledged" and alert["acknowledged_by"] == "op"
    assert alert["assignee"] == "tech" and alert["severity"] == "critical"
    # lamp_failure clearing again does not clear what the breaker still says
    add_event(db, "cab-4", "lamp_failure", False, minutes(5), channel=2)
    assert evaluate(db, minutes(6)).cleared == 0


def test_user_resolution_with_the_condition_still_true_is_not_raised_again(db: str) -> None:
    add_device(db, "cab-5", "cabinet", seen=T, status="offline", status_at=T)
    assert evaluate(db, minutes(6)).opened == 1
    sql(
        db,
        "UPDATE alert SET state = 'resolved', resolved_at = %s, resolved_by = 'op'",
        (minutes(7),),
    )
    counts = evaluate(db, minutes(8))
    assert counts.opened == 0 and counts.reopened == 0 and counts.suppressed == 1
    sql(
        db,
        "UPDATE device SET last_status = 'online', last_status_at = %s, last_seen = %s",
        (minutes(9), minutes(9)),
    )
    evaluate(db, minutes(10))
    sql(db, "UPDATE device SET last_status = 'offline', last_status_at = %s", (minutes(11),))
    assert evaluate(db, minutes(17)).opened == 1  # it came back: a new alert
    assert [a["state"] for a in alerts(db)] == ["resolved", "open"]


def test_bad_rows_and_unknown_devices_do_not_stop_the_evaluation(db: str) -> None:
    add_device(db, "cab-6", "cabinet", seen=minutes(60))
    add_device(db, "leak-6", "leak_sensor", seen=minutes(0), status="offline")
    add_device(db, "leak-7", "leak_sensor", seen=minutes(0), status="offline")
    add_event(db, "cab-6", "Not A Code", True, minutes(0))
    add_event(db, "cab-6", "door_open", True, minutes(0), detail=["not", "an", "object"])
    add_event(db, "ghost-1", "tamper", True, minutes(0), severity="critical")
    add_readings(
        db,
        [
            (minutes(0), "leak-6", 0, "battery_v", math.nan, "b1"),
            (minutes(0), "leak-7", 0, "battery_v", 3.1, "b1"),
        ],
    )
    counts = evaluate(db, minutes(1))
    assert counts.bad_rows == 2 and counts.errors == 0
    by_key = {a["dedup_key"]: a for a in alerts(db)}
    assert set(by_key) == {"door_open:cab-6", "tamper:ghost-1", "battery_low:leak-7"}
    assert by_key["tamper:ghost-1"]["site"] is None
    assert by_key["tamper:ghost-1"]["severity"] == "critical"
    assert by_key["door_open:cab-6"]["detail"]["event_raw"] == ["not", "an", "object"]


def test_events_are_read_once_and_late_old_events_do_not_undo_newer_ones(db: str) -> None:
    add_device(db, "cab-7", "cabinet", seen=minutes(60))
    add_event(db, "cab-7", "mains_loss", True, minutes(0), severity="warning")
    assert evaluate(db, minutes(1)).opened == 1
    assert evaluate(db, minutes(2)).signals == 1  # presence only: the event was read once
    [alert] = alerts(db)
    assert alert["severity"] == "critical"  # the policy's, whatever the device said
    add_event(db, "cab-7", "mains_loss", False, minutes(3))
    evaluate(db, minutes(4))
    # delivered after an outage: older than the clear the engine applied
    add_event(db, "cab-7", "mains_loss", True, minutes(1), received=minutes(5))
    counts = evaluate(db, minutes(6))
    assert counts.stale == 1 and counts.reoccurred == 0


def test_every_history_row_is_announced_on_lumeau_alert(db: str) -> None:
    add_device(db, "cab-8", "cabinet", seen=minutes(60), site="est")
    add_event(db, "cab-8", "overtemperature", True, minutes(0), channel=0)
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN lumeau_alert")
        evaluate(db, minutes(1))
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert len(notes) == 1
    payload = json.loads(notes[0].payload)
    [alert] = alerts(db)
    assert payload["alert_id"] == alert["alert_id"]
    assert {k: payload[k] for k in ("action", "state", "rule", "device_id", "site")} == {
        "action": "opened",
        "state": "open",
        "rule": "overtemperature",
        "device_id": "cab-8",
        "site": "est",
    }


def test_only_one_engine_acts_a_second_one_stands_by(db: str) -> None:
    add_device(db, "cab-9", "cabinet", seen=minutes(60))
    add_event(db, "cab-9", "door_open", True, minutes(0))
    config = EngineConfig(conninfo=db, interval_s=0.1)
    fixed = AlertEngine(config, POLICY, clock=lambda: minutes(1))
    with psycopg.connect(db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ENGINE_LOCK_KEY,))
        assert fixed.run(once=True) == 2
        assert alerts(db) == []
        other.execute("SELECT pg_advisory_unlock(%s)", (ENGINE_LOCK_KEY,))
    assert fixed.run(once=True) == 0
    assert [a["dedup_key"] for a in alerts(db)] == ["door_open:cab-9"]


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll; a generous bound turns a hang into a failure (not a speed limit)."""
    for _ in range(3000):
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition never became true")


def test_a_standby_engine_takes_over_when_the_active_one_stops(db: str) -> None:
    add_device(db, "cab-10", "cabinet", seen=minutes(60))
    clock = [minutes(1)]
    config = EngineConfig(conninfo=db, interval_s=0.05)
    first = AlertEngine(config, POLICY, clock=lambda: clock[0])
    second = AlertEngine(config, POLICY, clock=lambda: clock[0])
    threads = [threading.Thread(target=e.run) for e in (first, second)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: first.evaluations + second.evaluations >= 5)
        active, standby = (first, second) if first.active else (second, first)
        assert standby.evaluations == 0 and not standby.active
        active.stop()
        threads[[first, second].index(active)].join()
        add_event(db, "cab-10", "door_open", True, minutes(0), received=minutes(1))
        clock[0] = minutes(2)
        wait_until(lambda: bool(alerts(db)))
        assert standby.active and standby.evaluations > 0
    finally:
        first.stop()
        second.stop()
        for thread in threads:
            thread.join()
    assert [a["dedup_key"] for a in alerts(db)] == ["door_open:cab-10"]
