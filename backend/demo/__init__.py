"""``lumeau demo``: the main job at this stage of the project.

A small town runs through the whole stack, with real parts everywhere:

    the sample town's cabinets and leak sensors (their firmware, on simulated
    hardware: simulators/), each with its own credentials
      -> the site's Mosquitto (its own ACL: gateway/site_acl.py)
      -> the field gateway (``lumeau gateway run``, a subprocess): validates,
         queues in SQLite, dead-letters bad input and answers the device,
         batches and forwards
      -> the backend Mosquitto (the gateway's own credentials, TLS-ready)
      -> an ingest worker -> TimescaleDB
      -> the alert engine (``lumeau alerts run``) and the notifier (``lumeau
         notify run``, webhooks signed), the API (``lumeau api run``) and its
         web console.

First the API starts and the staff set up: a token per role (``lumeau api
token create``, kept in memory only), the town's assets (GeoJSON, as the
planner), a webhook channel to a local receiver (as the admin). Then the
town's last days are simulated up to now, with faults injected (a door left
open, dark lamps, a stuck contactor, a leak, a flat battery). A script of
bench devices then sends a duplicate, a sequence gap, malformed input and a
message outside the device's own topics, and the demo prints where each was
handled. Last: the alerts the engine raised for the faults, one acknowledged
and assigned, the webhook notifications, and a person's API queries.
``--serve`` leaves the API (and its console), the engine and the notifier
running until Ctrl-C. The backend services keep running afterwards.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

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
        return _with_backend_jobs(run_dir, stack, tool_pub, tool_sub, serve=args.serve)
    finally:
        print(
            "\nThe backend services keep running: `.venv/bin/lumeau services status`, `... down`."
        )
        print(f"Database and broker credentials for your own queries: {run_dir / 'stack.env'}")


def _with_backend_jobs(
    run_dir: Path, stack: Any, tool_pub: str, tool_sub: str, *, serve: bool
) -> int:
    """The API, the alert engine and the notifier around the town's run."""
    import logging
    import signal

    import httpx

    from .alerts_tour import show_alerts
    from .api_process import ApiProcess
    from .api_tour import USERS, api_header, issue_tokens, queries
    from .api_tour import serve as serve_api
    from .preparation import load_town, webhook_channel
    from .services import DEMO_POLICY, alert_engine, notifier
    from .webhook_sink import WebhookSink

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo prints what it asks
    policy = run_dir / "alerts" / "demo-policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(DEMO_POLICY)
    api = ApiProcess(run_dir)
    engine, notify = alert_engine(run_dir, policy), notifier(run_dir)
    jobs: dict[str, Any] = {"api": api, "alerts": engine, "notify": notify}
    for job in jobs.values():
        job.stop_stale()
    sink = WebhookSink()
    try:
        for job in jobs.values():
            job.start()
        print(f"  alerts       `lumeau alerts run` (pid {engine.proc and engine.proc.pid}),"
              f" policy {policy}, log {engine.log}")  # fmt: skip
        print(f"  notify       `lumeau notify run` (pid {notify.proc and notify.proc.pid}),"
              f" log {notify.log}")  # fmt: skip
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            health = api.wait_ready(client)
            if health is None:
                print(f"\nThe API did not come up; its log ({api.log}):\n{api.log_tail()}")
                return 1
            api_header(api, health)
            tokens = issue_tokens(run_dir)
            if tokens is None:
                return 1
            if not load_town(client, tokens, USERS) or not webhook_channel(
                client, tokens, USERS, sink
            ):
                return 1

            def rest_of_the_night(start_ms: int) -> int:
                for job in (engine, notify):
                    if not job.running():
                        print(f"\n{job.args[0]} exited; its log ({job.log}):\n{job.log_tail()}")
                        return 1
                code = show_alerts(client, tokens, USERS, sink)
                code = queries(api, client, start_ms, tokens) or code
                print(f"\nThe console: {api.base_url}/console/ (sign in with a token, as above).")
                if code != 0 or not serve:
                    return code
                return serve_api(api, run_dir)

            return through_the_site(run_dir, stack, tool_pub, tool_sub, rest_of_the_night)
    finally:
        sink.close()
        for name, job in jobs.items():
            status = job.stop()
            how = "by SIGTERM" if status == -signal.SIGTERM else f"exit status {status}"
            print(f"{name} stopped ({how}); its log: {job.log}")
