"""``lumeau services up|down|status|install``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..settings import run_dir_from_env
from . import down, ensure_installed, status, up
from .errors import MissingDependency, ServiceError


def _run_dir(args: argparse.Namespace) -> Path:
    folder: Path | None = args.run_dir
    return folder.resolve() if folder is not None else run_dir_from_env()


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, MissingDependency) else 1


def _up(args: argparse.Namespace) -> int:
    try:
        stack = up(_run_dir(args), install=not args.no_install)
    except (MissingDependency, ServiceError) as exc:
        return _fail(exc)
    print(f"run folder:  {stack.run_dir}")
    print(f"Mosquitto:   mqtt://{stack.mqtt_host}:{stack.mqtt_port} (user {stack.mqtt_username})")
    pg_port = urlsplit(stack.database_url).port
    print(
        f"PostgreSQL:  127.0.0.1:{pg_port} database lumeau, TimescaleDB {stack.timescaledb_version}"
    )
    print(f"credentials: {stack.run_dir / 'stack.env'} (mode 0600)")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        down(_run_dir(args))
    except ServiceError as exc:
        return _fail(exc)
    print(f"stopped the services of {_run_dir(args)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    info = status(_run_dir(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"run folder:  {info['run_dir']}")
    for name in ("mosquitto", "postgres"):
        service: dict[str, Any] = info[name]  # type: ignore[assignment]
        state = f"running, pid {service['pid']}" if service["running"] else "stopped"
        extra = ""
        if name == "postgres" and service.get("timescaledb_version"):
            extra = f", TimescaleDB {service['timescaledb_version']} ({service['edition']})"
        print(f"{name:<11}  {state}, {service['host']}:{service['port']}{extra}")
    print(f"credentials: {info['credentials_file']}")
    running = all(info[n]["running"] for n in ("mosquitto", "postgres"))  # type: ignore[index]
    return 0 if running else 3


def _install(args: argparse.Namespace) -> int:
    try:
        ensure_installed(install=True)
    except (MissingDependency, ServiceError) as exc:
        return _fail(exc)
    print("Mosquitto, PostgreSQL 15 and TimescaleDB are installed")
    return 0


def register(subparsers: Any) -> None:
    """Add ``services`` and its sub-commands to the ``lumeau`` parser."""
    parser = subparsers.add_parser(
        "services", help="start/stop the local Mosquitto and TimescaleDB"
    )
    commands = parser.add_subparsers(dest="services_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--run-dir",
            type=Path,
            default=None,
            help="run folder (default: $LUMEAU_RUN_DIR or .run)",
        )
        sub.set_defaults(func=func)
        return sub

    add("up", "install if needed, start, print where things are", _up).add_argument(
        "--no-install", action="store_true", help="fail instead of installing missing packages"
    )
    add("down", "stop both services", _down)
    add("status", "show what is running (exit 3 if not everything is)", _status).add_argument(
        "--json", action="store_true", help="machine-readable output"
    )
    add(
        "install",
        "install Mosquitto, PostgreSQL 15 and TimescaleDB (root, Debian/Ubuntu)",
        _install,
    )
