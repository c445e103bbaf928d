"""``lumeau db migrate`` and ``lumeau db status``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import psycopg

from backend.settings import Settings, get_settings, load_settings
from backend.storage.errors import StorageError
from backend.storage.migrate import MigrationStatus, migrate, status
from backend.storage.migration_files import DEFAULT_DIRECTORY

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``db`` command and its sub-commands to the ``lumeau`` parser."""
    db = subparsers.add_parser("db", help="database schema: migrate, status")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("migrate", _run_migrate, "apply the pending migrations"),
        ("status", _run_status, "show applied, skipped and pending migrations"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--run-dir", type=Path, default=None, help="run folder holding stack.env"
        )
        action.add_argument(
            "--migrations",
            type=Path,
            default=DEFAULT_DIRECTORY,
            help="folder of NNNN_name.sql files (default: the packaged ones)",
        )
        action.set_defaults(func=func)


def _settings(args: argparse.Namespace) -> Settings:
    run_dir: Path | None = args.run_dir
    return load_settings(run_dir) if run_dir is not None else get_settings()


def _run_migrate(args: argparse.Namespace) -> int:
    conninfo = _settings(args).database_url.get_secret_value()
    try:
        applied = migrate(conninfo, args.migrations)
    except (StorageError, psycopg.Error) as exc:
        log.error("migration failed: %s", exc)
        return 1
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _run_status(args: argparse.Namespace) -> int:
    conninfo = _settings(args).database_url.get_secret_value()
    try:
        report = status(conninfo, args.migrations)
    except (StorageError, psycopg.Error) as exc:
        log.error("cannot read the migration status: %s", exc)
        return 1
    print(format_status(report))
    return 0 if report.up_to_date else 1


def format_status(report: MigrationStatus) -> str:
    """The human-readable table ``lumeau db status`` prints."""
    lines = [f"TimescaleDB edition: {report.edition}"]
    for record in report.records:
        stamp = record.applied_at.isoformat(timespec="seconds")
        lines.append(f"  {record.outcome:8} {record.name} ({record.variant}, {stamp})")
    lines.extend(f"  pending  {name}" for name in report.pending)
    lines.extend(f"PROBLEM: {problem}" for problem in report.problems)
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    if report.up_to_date:
        lines.append("up to date")
    return "\n".join(lines)
