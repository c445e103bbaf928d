"""``lumeau alerts run``: the alert engine in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from backend.alerts.engine import AlertEngine, EngineConfig
from backend.alerts.policy import PolicyError, load_policy
from backend.settings import get_settings, load_settings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``alerts run`` to the ``lumeau`` parser."""
    alerts = subparsers.add_parser("alerts", help="alert rule engine")
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="evaluate the alert rules every interval until SIGTERM/SIGINT",
        description="Turn events, presence, battery, acoustic and energy data into alerts. "
        "Several engines may run: one acts (database advisory lock), the others stand by.",
    )
    run.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    run.add_argument(
        "--interval", type=float, default=30.0, help="seconds between evaluations (default 30)"
    )
    run.add_argument(
        "--policy", type=Path, default=None, help="TOML policy file (default: built-in)"
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="one evaluation, then exit (2 if another engine holds the lock)",
    )
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("--interval must be > 0", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"policy refused: {exc}", file=sys.stderr)
        return 2
    run_dir: Path | None = args.run_dir
    settings = load_settings(run_dir) if run_dir is not None else get_settings()
    engine = AlertEngine(
        EngineConfig(conninfo=settings.database_url.get_secret_value(), interval_s=args.interval),
        policy,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        engine.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return engine.run(once=args.once)
