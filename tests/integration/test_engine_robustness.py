"""The alert engine where the real world is unkind: slow ingest transactions,
a clock ahead, a key whose write fails, device clocks in 2099, and a lock
session cut off. On the real TimescaleDB, with scratch databases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
from psycopg.rows import dict_row

from backend.alerts.engine import (
    ENGINE_LOCK_KEY,
    AlertEngine,
    EngineConfig,
    connect_lock_session,
    evaluate_once,
)
from backend.alerts.policy import EventPolicy, Policy, Schedule
from backend.alerts.sources.events import INGEST_APPLICATION_NAME
from backend.ingest.store import Store
from backend.storage import migrate
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

SETTLE_S = 1.0
# every source on every evaluation; a short settle so the tests can outwait it
POLICY = Policy(
    schedule=Schedule(battery_s=0, leak_s=0, energy_s=0),
    events=EventPolicy(settle_s=SETTLE_S),
)


@pytest.fixture
def db(stack: object) -> Iterator[str]:
    services = cast("Stack", stack)
    with scratch_database(services.admin_database_url, services.database_url, "t_engrob") as url:
        migrate(url)
        yield url


def sql(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def add_device(url: str, device_id: str) -> None:
    now = datetime.now(UTC)
    sql(
        url,
        "INSERT INTO device (device_id, role, site, first_seen, last_seen, last_status,"
        " last_status_at) VALUES (%s, 'cabinet', 'nord', %s, %s, 'online', %s)",
        (device_id, now, now, now),
    )


_seq = iter(range(1, 1_000_000))

_INSERT_EVENT = (
    "INSERT INTO event (time, device_id, boot_id, seq, code, severity, channel, active,"
    " detail, received_at) VALUES (%s, %s, 'b00t0001', %s, %s, 'warning', NULL, %s, %s,"
    " coalesce(%s, now()))"
)


def insert_event(
    conn: psycopg.Connection[Any],
    device_id: str,
    code: str,
    active: bool,
    at: datetime,
    received: datetime | None = None,
) -> None:
    """As ingest leaves it: ``received_at`` None is the transaction's start."""
    conn.execute(_INSERT_EVENT, (at, device_id, next(_seq), code, active, json.dumps({}), received))


def add_event(
    url: str,
    device_id: str,
    code: str,
    active: bool,
    at: datetime,
    received: datetime | None = None,
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        insert_event(conn, device_id, code, active, at, received)


def evaluate(url: str, now: datetime | None = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        return evaluate_once(conn, POLICY, now or datetime.now(UTC))


def alerts(url: str) -> list[dict[str, Any]]:
    return sql(url, "SELECT * FROM alert ORDER BY alert_id")


def live_keys(url: str) -> list[str]:
    return [a["dedup_key"] for a in alerts(url) if a["state"] != "resolved"]


# --- 1. events committed long after their stamp ------------------------------------------


def test_an_event_whose_ingest_transaction_outlasts_the_settle_time_is_still_raised(
    db: str,
) -> None:
    add_device(db, "cab-1")
    store = Store(db)
    # the ingest's own connection, so the engine sees the name it really uses
    writer = store._connect()
    conn = writer.connection
    try:
        with conn.transaction():
            insert_event(conn, "cab-1", "mains_loss", True, datetime.now(UTC))
            time.sleep(SETTLE_S * 3)  # a lock wait, an I/O stall, a big batch
            counts = evaluate(db)
            assert counts.opened == 0  # not visible yet
            # the engine has moved on meanwhile, as a running engine does
            evaluate(db)
        time.sleep(SETTLE_S * 1.5)
        counts = evaluate(db)
    finally:
        store.close()
    assert counts.opened == 1
    assert live_keys(db) == ["mains_loss:cab-1"]
    assert evaluate(db).opened == 0  # read once


def test_an_engine_clock_ahead_of_the_database_skips_nothing(db: str) -> None:
    add_device(db, "cab-2")
    ahead = timedelta(hours=1)
    with (
        psycopg.connect(db, autocommit=True, application_name=INGEST_APPLICATION_NAME) as conn,
        conn.transaction(),
    ):
        insert_event(conn, "cab-2", "leak_suspected", True, datetime.now(UTC))
        # the engine's host clock is an hour ahead: its "30 s ago" is the future
        evaluate(db, datetime.now(UTC) + ahead)
    time.sleep(SETTLE_S * 1.5)
    evaluate(db, datetime.now(UTC) + ahead)
    # (presence sees the cabinet silent for an hour by that clock: its own alert)
    assert "leak:cab-2" in live_keys(db)


# --- 1b. a key whose write fails keeps its events -----------------------------------------


def test_a_key_whose_write_fails_is_raised_once_the_failure_is_gone(db: str) -> None:
    add_device(db, "cab-3")
    add_device(db, "cab-4")
    # a write that fails for one key only (a full disk for a row, a bug, a constraint)
    sql(
        db,
        "CREATE FUNCTION refuse_door() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'refused for the test'; END $$",
    )
    sql(
        db,
        "CREATE TRIGGER refuse_door BEFORE INSERT ON alert FOR EACH ROW"
        " WHEN (NEW.dedup_key = 'door_open:cab-3') EXECUTE FUNCTION refuse_door()",
    )
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    add_event(db, "cab-3", "door_open", True, t0, received=t0 + timedelta(seconds=1))
    add_event(db, "cab-4", "door_open", True, t0, received=t0 + timedelta(seconds=1))
    counts = evaluate(db)
    assert counts.errors == 1 and counts.opened == 1
    assert live_keys(db) == ["door_open:cab-4"]
    # a later event of the key comes after the failed one, in order
    closed = datetime.now(UTC)
    add_event(db, "cab-3", "door_open", False, closed)
    time.sleep(SETTLE_S * 1.5)
    assert evaluate(db).errors == 1  # still refused
    sql(db, "DROP TRIGGER refuse_door ON alert")
    counts = evaluate(db)
    assert (counts.errors, counts.opened, counts.cleared) == (0, 1, 1)
    by_key = {a["dedup_key"]: a for a in alerts(db)}
    assert set(by_key) == {"door_open:cab-3", "door_open:cab-4"}
    assert by_key["door_open:cab-3"]["started_at"] == t0
    assert by_key["door_open:cab-3"]["cleared_at"] == closed
    # written once: nothing is read again afterwards
    assert evaluate(db).transitions == 0
    assert sql(db, "SELECT name FROM alert_engine_cursor WHERE name LIKE 'events:retry:%'") == []


def test_a_key_that_keeps_failing_is_given_up_after_retry_max(db: str) -> None:
    add_device(db, "cab-5")
    sql(
        db,
        "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'refused for the test'; END $$",
    )
    sql(
        db,
        "CREATE TRIGGER refuse_all BEFORE INSERT ON alert FOR EACH ROW"
        " WHEN (NEW.dedup_key = 'door_open:cab-5') EXECUTE FUNCTION refuse_all()",
    )
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    add_event(db, "cab-5", "door_open", True, t0, received=t0)
    evaluate(db)
    retry = "SELECT name FROM alert_engine_cursor WHERE name LIKE 'events:retry:%'"
    assert [r["name"] for r in sql(db, retry)] == ["events:retry:door_open:cab-5"]
    later = datetime.now(UTC) + timedelta(seconds=POLICY.events.retry_max_s + 60)
    assert evaluate(db, later).errors == 1
    assert sql(db, retry) == []  # given up (logged), not retried for ever


# --- 2. device clocks in the future -------------------------------------------------------


def test_an_event_stamped_2099_does_not_make_later_events_stale(db: str) -> None:
    add_device(db, "cab-6")
    received = datetime.now(UTC) - timedelta(minutes=10)
    add_event(db, "cab-6", "door_open", True, datetime(2099, 1, 1, tzinfo=UTC), received=received)
    counts = evaluate(db)
    assert counts.opened == 1 and counts.clock_ahead == 1
    [alert] = alerts(db)
    assert alert["started_at"] == received  # taken as observed on reception
    assert alert["detail"]["device_time"].startswith("2099-01-01")
    # the clock is fixed; the door closes: the alert clears (before the fix: stale for ever)
    closed = datetime.now(UTC)
    add_event(db, "cab-6", "door_open", False, closed)
    time.sleep(SETTLE_S * 1.5)
    counts = evaluate(db)
    assert counts.stale == 0 and counts.cleared == 1
    [alert] = alerts(db)
    assert alert["cleared_at"] == closed


# --- 3. the lock session ------------------------------------------------------------------


def test_the_lock_session_has_tcp_keepalives_at_both_ends(db: str) -> None:
    with connect_lock_session(db) as conn:
        params = conn.info.get_parameters()
        assert (params["keepalives_idle"], params["keepalives_count"]) == ("30", "3")
        row = conn.execute(
            "SELECT current_setting('tcp_keepalives_idle'),"
            " current_setting('tcp_keepalives_interval'),"
            " current_setting('tcp_keepalives_count')"
        ).fetchone()
        # over a Unix socket the server reads these as 0 (no TCP to probe)
        over_tcp = not conn.info.host.startswith("/")
    assert row == (("30", "10", "3") if over_tcp else ("0", "0", "0"))


def test_an_engine_whose_lock_session_died_writes_nothing(db: str) -> None:
    add_device(db, "cab-7")
    add_event(db, "cab-7", "door_open", True, datetime.now(UTC) - timedelta(minutes=1))
    time.sleep(SETTLE_S * 1.5)
    engine: AlertEngine

    def clock_then_network_blip() -> datetime:
        # called by the evaluation right after the lock was checked: the lock
        # session is cut off between that check and the writes
        lock_conn = engine._lock_conn
        if lock_conn is not None and not lock_conn.closed:
            pid = lock_conn.info.backend_pid
            sql(db, "SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits for its end
        return datetime.now(UTC)

    engine = AlertEngine(EngineConfig(conninfo=db), POLICY, clock=clock_then_network_blip)
    assert engine.run(once=True) == 2  # lost the lock: another engine may act
    assert alerts(db) == []
    assert sql(db, "SELECT * FROM alert_engine_cursor") == []  # nor a cursor moved
    # another engine takes over and does the work
    assert AlertEngine(EngineConfig(conninfo=db), POLICY).run(once=True) == 0
    assert live_keys(db) == ["door_open:cab-7"]


def test_an_engine_holding_the_lock_still_writes(db: str) -> None:
    add_device(db, "cab-8")
    add_event(db, "cab-8", "door_open", True, datetime.now(UTC) - timedelta(minutes=1))
    time.sleep(SETTLE_S * 1.5)
    engine = AlertEngine(EngineConfig(conninfo=db), POLICY)
    assert engine.run(once=True) == 0
    assert live_keys(db) == ["door_open:cab-8"]
    with psycopg.connect(db, autocommit=True) as other:
        row = other.execute("SELECT pg_try_advisory_lock(%s)", (ENGINE_LOCK_KEY,)).fetchone()
        assert row == (True,)  # released when the engine closed its session
