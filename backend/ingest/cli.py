"""``lumeau ingest run``: one ingest worker in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any

from backend.ingest.batching import FlushPolicy
from backend.ingest.worker import IngestWorker, WorkerConfig
from backend.settings import Settings, get_settings, load_settings


def default_client_id() -> str:
    """Stable across restarts of the same worker, so its session resumes.

    Two workers on one host need different ids: set ``LUMEAU_INGEST_CLIENT_ID``
    or ``--client-id``.
    """
    return os.environ.get("LUMEAU_INGEST_CLIENT_ID") or f"lumeau-ingest-{socket.gethostname()}"


def register(subparsers: Any) -> None:
    """Add ``ingest run`` to the ``lumeau`` parser."""
    ingest = subparsers.add_parser("ingest", help="MQTT -> TimescaleDB ingest")
    actions = ingest.add_subparsers(dest="ingest_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run one ingest worker until SIGTERM/SIGINT",
        description="Consume the uplinks of the backend broker (MQTT v5 shared "
        "subscription) and store them; stops cleanly on SIGTERM or SIGINT.",
    )
    run.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    run.add_argument(
        "--client-id", default=None, help="MQTT client id (default: lumeau-ingest-<host>)"
    )
    run.add_argument("--share-group", default="lumeau-ingest", help="shared subscription group")
    run.add_argument("--flush-readings", type=int, default=5000, help="flush at this many readings")
    run.add_argument(
        "--flush-ms", type=int, default=200, help="flush when the oldest delivery is this old"
    )
    run.add_argument(
        "--stats-interval", type=float, default=30.0, help="seconds between counter log lines"
    )
    run.set_defaults(func=_run)


def config_from(settings: Settings, args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        conninfo=settings.database_url.get_secret_value(),
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        mqtt_username=settings.mqtt_username,
        mqtt_password=settings.mqtt_password.get_secret_value(),
        mqtt_tls_ca=settings.mqtt_tls_ca,
        client_id=args.client_id or default_client_id(),
        share_group=args.share_group,
        policy=FlushPolicy(max_readings=args.flush_readings, max_delay=args.flush_ms / 1000),
        stats_interval=args.stats_interval,
    )


def _run(args: argparse.Namespace) -> int:
    run_dir: Path | None = args.run_dir
    settings = load_settings(run_dir) if run_dir is not None else get_settings()
    worker = IngestWorker(config_from(settings, args))

    def _stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()
    return 0
