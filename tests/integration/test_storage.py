"""The schema and its migration runner against the real TimescaleDB."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import psycopg
import pytest

from backend.storage import MigrationError, migrate, status, timescaledb_edition
from backend.storage.migration_files import load_steps
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

HYPERTABLES = {
    "uplink_message",
    "reading",
    "event",
    "device_status",
    "command_ack",
    "reading_hourly_rollup",
    "reading_daily_rollup",
    "device_energy_daily",
    "site_daily_rollup",
}


@pytest.fixture(scope="module")
def services(stack: object) -> Stack:
    return cast("Stack", stack)


@pytest.fixture(scope="module")
def database(services: Stack) -> Iterator[str]:
    """This module's own database, migrated by the first test that needs it."""
    with scratch_database(services.admin_database_url, services.database_url, "t_storage") as url:
        yield url


@pytest.fixture
def scratch(services: Stack) -> Iterator[str]:
    """An empty database for one test."""
    with scratch_database(services.admin_database_url, services.database_url, "t_mig") as url:
        yield url


def migrations(folder: Path, **files: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_first_migrate_applies_every_step_and_the_second_none(database: str) -> None:
    expected = [step.name for step in load_steps() if step.for_edition("apache") is not None]
    assert migrate(database) == expected
    assert migrate(database) == []
    report = status(database)
    assert report.up_to_date, report
    assert report.skipped == ["0005_compression"]


def test_edition_is_detected_as_apache(database: str) -> None:
    with psycopg.connect(database) as conn:
        assert timescaledb_edition(conn) == "apache"
    assert status(database).edition == "apache"


def test_time_series_tables_are_hypertables_with_the_chosen_chunks(database: str) -> None:
    migrate(database)
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
            " WHERE column_name = 'time'"
        ).fetchall()
        names = {
            row[0]
            for row in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
        }
    assert names == HYPERTABLES
    chunks: dict[str, timedelta] = dict(rows)
    assert chunks["uplink_message"] == chunks["reading"] == timedelta(days=1)
    assert chunks["event"] == timedelta(days=30)


def test_apache_edition_gets_a_plain_view_and_records_the_skipped_compression(
    database: str,
) -> None:
    migrate(database)
    with psycopg.connect(database) as conn:
        view = conn.execute("SELECT 1 FROM pg_views WHERE viewname = 'reading_hourly'").fetchone()
        record = conn.execute(
            "SELECT variant, outcome, edition FROM schema_migrations WHERE name = %s",
            ("0005_compression",),
        ).fetchone()
    assert view is not None
    assert record == ("timescale", "skipped", "apache")


def test_the_identity_index_refuses_a_second_copy_and_gaps_are_reported(database: str) -> None:
    migrate(database)
    insert = (
        "INSERT INTO uplink_message (time, device_id, boot_id, seq, kind)"
        " VALUES (to_timestamp(1764000000 + %s), 'gap-dev', 'b0b0b0b0', %s, 'telemetry')"
        " ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(database, autocommit=True) as conn:
        for seq in (1, 2, 2, 5, 9):
            conn.execute(insert, (seq, seq))
        stored = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE device_id = 'gap-dev'"
        ).fetchone()
        gaps = conn.execute(
            "SELECT first_missing, last_missing, missing FROM sequence_gap"
            " WHERE device_id = 'gap-dev' ORDER BY first_missing"
        ).fetchall()
        windowed = conn.execute(
            "SELECT first_missing FROM sequence_gaps(to_timestamp(1764000004), 'infinity')"
            " WHERE gap_device_id = 'gap-dev'"
        ).fetchall()
    assert stored == (4,)
    assert gaps == [(3, 4, 2), (6, 8, 3)]
    assert windowed == [(6,)]


def test_a_changed_applied_migration_is_refused(scratch: str, tmp_path: Path) -> None:
    folder = migrations(tmp_path / "m", **{"0001_a.sql": "CREATE TABLE a (x int);"})
    assert migrate(scratch, folder) == ["0001_a"]
    (folder / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
    (folder / "0002_b.sql").write_text("CREATE TABLE b (x int);")
    with pytest.raises(MigrationError, match=r"0001_a\.sql changed after it was applied"):
        migrate(scratch, folder)
    report = status(scratch, folder)
    assert not report.up_to_date and report.pending == ["0002_b"]
    assert "changed after it was applied" in report.problems[0]
    with psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT to_regclass('b')").fetchone() == (None,)


def test_a_new_step_numbered_before_an_applied_one_is_refused(scratch: str, tmp_path: Path) -> None:
    folder = migrations(tmp_path / "m", **{"0002_b.sql": "SELECT 1;"})
    migrate(scratch, folder)
    (folder / "0001_a.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="sorts before 0002"):
        migrate(scratch, folder)


def test_a_failing_step_leaves_nothing_behind(scratch: str, tmp_path: Path) -> None:
    folder = migrations(
        tmp_path / "m",
        **{
            "0001_ok.sql": "CREATE TABLE ok (x int);",
            "0002_bad.sql": "CREATE TABLE half (x int);\nSELECT no_such_function();",
        },
    )
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(scratch, folder)
    report = status(scratch, folder)
    assert [record.name for record in report.records] == ["0001_ok"]
    assert report.pending == ["0002_bad"]
    with psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_concurrent_runners_take_turns(scratch: str, tmp_path: Path) -> None:
    folder = migrations(
        tmp_path / "m",
        **{
            "0001_slow.sql": "CREATE TABLE slow (x int); SELECT pg_sleep(0.5);",
            "0002_next.sql": "CREATE TABLE next (x int);",
        },
    )
    start = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(scratch, folder))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results, key=len) == [[], ["0001_slow", "0002_next"]]


def test_cli_status_then_migrate(
    scratch: str,
    services: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from backend.cli import main

    monkeypatch.setenv("LUMEAU_DATABASE_URL", scratch)
    run_dir = str(services.run_dir)
    assert main(["db", "status", "--run-dir", run_dir]) == 1
    assert "pending  0001_devices" in capsys.readouterr().out
    assert main(["db", "migrate", "--run-dir", run_dir]) == 0
    assert "0002_uplink_hypertables" in capsys.readouterr().out
    assert main(["db", "status", "--run-dir", run_dir]) == 0
    out = capsys.readouterr().out
    assert "TimescaleDB edition: apache" in out
    assert "skipped  0005_compression" in out and "up to date" in out
