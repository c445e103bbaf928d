"""``lumeau demo``: the main job at this stage of the project.

Plays a street-lighting cabinet and an acoustic leak sensor on a site, along
the data path of the design, with real parts everywhere:

    devices (the real ``mosquitto_pub``, each with its own credentials)
      -> the site's Mosquitto (its own ACL: gateway/site_acl.py)
      -> the field gateway (``lumeau gateway run``, a subprocess): validates,
         queues in SQLite, dead-letters bad input and answers the device,
         batches and forwards
      -> the backend Mosquitto (the gateway's own credentials, TLS-ready)
      -> an ingest worker -> TimescaleDB.

Among the good messages it sends a duplicate, a sequence gap, malformed input
and a message outside the device's own topics, then prints where each was
handled: the gateway's dead letters and error replies, what TimescaleDB
stored (the gateway's batches too), the gaps, the gateway's presence and
counters. The site broker and the gateway are then stopped cleanly.

Last, it starts the API (``lumeau api run`` on a free loopback port, the
stack's settings), issues an operator and a technician token with ``lumeau
api token create`` (kept in memory only) and shows a person's queries and
their answers: devices, the cabinet's telemetry, events, dead letters (refused
to the operator). ``--serve`` leaves the API running until Ctrl-C; otherwise
it is stopped. The backend services keep running afterwards.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from .api_tour import show_api
from .script import Publication, build_publications
from .site import through_the_site

__all__ = ["Publication", "build_publications", "register"]


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run devices through a site broker and the gateway into TimescaleDB",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--run-dir", type=Path, default=None, help="run folder (default: .run)")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="at the end, keep the API running in the foreground until Ctrl-C",
    )
    demo.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from backend import devstack
    from backend.settings import run_dir_from_env
    from backend.storage import migrate

    run_dir: Path = (args.run_dir or run_dir_from_env()).resolve()
    print(f"Lumeau demo: run folder {run_dir}")
    stack = devstack.up(run_dir)
    print(f"  backend MQTT {stack.mqtt_host}:{stack.mqtt_port} (anonymous refused, per-user ACL)")
    print(f"  TimescaleDB  {stack.timescaledb_version} on PostgreSQL, see {run_dir / 'stack.env'}")
    applied = migrate(stack.database_url)
    print(f"  migrations   {', '.join(applied) if applied else 'already up to date'}")
    tool_pub = shutil.which("mosquitto_pub")
    tool_sub = shutil.which("mosquitto_sub")
    if tool_pub is None or tool_sub is None:
        print("mosquitto_pub/mosquitto_sub not found: apt-get install mosquitto-clients")
        return 2
    try:
        played, start_ms = through_the_site(run_dir, stack, tool_pub, tool_sub)
        if played != 0:
            return played
        return show_api(run_dir, start_ms, serve=args.serve)
    finally:
        print(
            "\nThe backend services keep running: `.venv/bin/lumeau services status`, `... down`."
        )
        print(f"Database and broker credentials for your own queries: {run_dir / 'stack.env'}")
