"""``lumeau maintenance run``: rollup refresh and retention in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from backend.maintenance.config import ConfigError, load_config
from backend.maintenance.runner import run_cycle, run_forever
from backend.settings import get_settings, load_settings


def register(subparsers: Any) -> None:
    """Add ``maintenance run`` to the ``lumeau`` parser."""
    maintenance = subparsers.add_parser(
        "maintenance", help="dashboard rollups and retention (database upkeep)"
    )
    actions = maintenance.add_subparsers(
        dest="maintenance_command", metavar="ACTION", required=True
    )
    run = actions.add_parser(
        "run",
        help="refresh rollups and apply retention, periodically or once",
        description="Refresh the hourly and daily rollups, the per-device energy and per-site"
        " daily rollups and the latest values, and drop"
        " data older than the configured retention; repeats until SIGTERM/SIGINT"
        " unless --once.",
    )
    run.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    run.add_argument("--once", action="store_true", help="one refresh and retention, then exit")
    run.add_argument(
        "--config", type=Path, default=None, help="TOML file (default: built-in defaults)"
    )
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir: Path | None = args.run_dir
    settings = load_settings(run_dir) if run_dir is not None else get_settings()
    conninfo = settings.database_url.get_secret_value()
    if args.once:
        try:
            result = run_cycle(conninfo, config, with_retention=True)
        except psycopg.Error as exc:
            print(f"error: maintenance failed: {exc}", file=sys.stderr)
            return 1
        if result.retention is not None:
            for table, count in sorted(result.retention.chunks_dropped.items()):
                print(f"{table}: {count} chunk(s) dropped before {result.retention.cutoffs[table]}")
            for table, rows in sorted(result.retention.rows_deleted.items()):
                print(f"{table}: {rows} row(s) deleted")
        return 0
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_forever(conninfo, config, stop)
    return 0
