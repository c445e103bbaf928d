"""The site: its own broker, the gateway subprocess and an ingest worker, run end to end."""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.site_acl import site_acl
from simulators.fleet import Fleet

from .gateway import GatewayProcess, counter
from .play import play
from .script import CABINET, GATEWAY, SENSOR, script_start
from .tables import table
from .town import LiveTown, TownDevice, build_fleet, play_town, resume_from, town_devices


def clear_site(folder: Path, gateway: GatewayProcess) -> None:
    """A fresh site for each run: stop what an interrupted run left, then wipe it."""
    from backend import devstack

    gateway.stop_stale()
    broker = folder / "mosquitto"
    if (broker / "mosquitto.conf").exists():
        devstack.BrokerHandle(broker, 0).stop()
    shutil.rmtree(folder, ignore_errors=True)


def through_the_site(
    run_dir: Path,
    stack: Any,
    tool_pub: str,
    tool_sub: str,
    then: Callable[[int], int],
) -> int:
    """Devices -> site broker -> gateway -> backend, then ``then(script start ms)``.

    The bench devices' script runs first and ends with the gateway's clean
    stop; the gateway then starts again (a new boot) for the town, which is
    simulated up to now and stays live, on the real clock, while ``then``
    runs (the rest of the demo, and ``--serve``).
    """
    from backend import devstack

    site_dir = run_dir / "site"
    gateway = GatewayProcess(site_dir / "gateway")
    clear_site(site_dir, gateway)
    # Each device and the gateway have their own site credentials; the gateway
    # has its own backend credentials too (the stack's ACL: gw/<id>/# only).
    town = town_devices()
    names = (CABINET, SENSOR, GATEWAY, *(d.device_id for d in town))
    site_passwords = {name: secrets.token_urlsafe(24) for name in names}
    site = devstack.start_broker(
        site_dir / "mosquitto", users=site_passwords, acl=site_acl([GATEWAY])
    )
    print(f"  site MQTT    {site.host}:{site.port} (devices and {GATEWAY}; ACL {site.acl_file})")
    backend_password = devstack.add_broker_user(stack, GATEWAY)
    worker, thread = start_worker(stack)

    def start_gateway() -> str | None:
        gateway.start(site, site_passwords[GATEWAY], stack, backend_password)
        if not gateway.wait_ready():
            print(f"the gateway did not come up; its log ({gateway.log}):\n{gateway.log_tail()}")
            return None
        boot = str(gateway.health().get("boot"))
        print(f"  gateway      {GATEWAY} boot {boot}, pid {gateway.proc and gateway.proc.pid}")
        print(f"               config {gateway.config}")
        print(f"               log    {gateway.log}")
        print(f"               metrics {gateway.metrics_url}")
        return boot

    live: LiveTown | None = None
    try:
        if not worker.wait_subscribed(30):
            print("the ingest worker could not subscribe to the broker; see the log above")
            return 1
        print("  ingest       one worker on the shared subscription $share/lumeau-ingest/...")
        gw_boot = start_gateway()
        if gw_boot is None:
            return 1
        start_ms = script_start(stack.database_url)
        played = play(
            stack,
            site,
            site_passwords,
            gateway,
            gw_boot,
            worker,
            lambda: None,  # ingest keeps running for the town
            tool_pub,
            tool_sub,
            start_ms,
        )
        if played != 0:
            return played
        print(f"\nThe gateway starts again (a new boot) for the town; its queue {gateway.queue}")
        if start_gateway() is None:
            return 1
        fleet = run_town(stack, site, site_passwords, gateway, town, site_dir / "town")
        if fleet is None:
            print(f"The town's messages did not all arrive; gateway log ({gateway.log}):")
            print(gateway.log_tail())
            return 1
        live = LiveTown(fleet)
        live.start()
        print("  live         the town's devices keep running on the real clock from here on")
        return then(start_ms)
    finally:
        if live is not None:
            live.stop()
        code = gateway.stop()
        worker.stop()
        thread.join(timeout=30)
        site.stop()
        print(f"\nTown stopped, gateway stopped (exit code {code}), site broker stopped; its files:"
              f" {site_dir}")  # fmt: skip


def start_worker(stack: Any) -> tuple[Any, threading.Thread]:
    from backend.ingest.worker import IngestWorker, WorkerConfig

    worker = IngestWorker(
        WorkerConfig(
            conninfo=stack.database_url,
            mqtt_host=stack.mqtt_host,
            mqtt_port=stack.mqtt_port,
            mqtt_username=stack.mqtt_username,
            mqtt_password=stack.mqtt_password,
            client_id=f"lumeau-ingest-demo-{os.getpid()}",
        )
    )
    thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
    thread.start()
    return worker, thread


def run_town(
    stack: Any,
    site: Any,
    passwords: dict[str, str],
    gateway: GatewayProcess,
    town: list[TownDevice],
    folder: Path,
) -> Fleet | None:
    """The sample town's devices, simulated up to now, through the site; None if not all stored."""
    import time

    import psycopg

    now_ms = int(time.time() * 1000)
    start_ms = resume_from(stack.database_url, town, now_ms)
    days = (now_ms - start_ms) / 86_400_000
    ids = [d.device_id for d in town]
    print(
        f"\nThe town: {len(town)} devices of the asset register, their firmware on simulated"
        f" hardware (simulators/), {days:.1f} simulated days up to now, through the site broker"
    )
    fleet = build_fleet(town, passwords, site.host, site.port, folder, start_ms, now_ms)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        since = conn.execute("SELECT now()").fetchone()
        seconds, sent = play_town(fleet, now_ms)
        fleet.stop()

        def stored() -> int:
            row = conn.execute(
                "SELECT count(*) FROM uplink_message WHERE device_id = ANY(%s)"
                " AND received_at >= %s",
                (ids, since[0] if since else None),
            ).fetchone()
            return int(row[0]) if row else 0

        # Everything the devices sent is in once the gateway's queue is empty
        # and the count of stored messages stops moving.
        last = -1
        for _ in range(300):
            now_stored = stored()
            if counter(gateway.metrics(), "queue_rows") == 0 and now_stored == last:
                break
            last = now_stored
            time.sleep(0.5)
        rows = conn.execute(
            "SELECT d.device_id, d.role, d.site, count(DISTINCT u.boot_id),"
            " count(*) FILTER (WHERE u.kind = 'telemetry'),"
            " count(*) FILTER (WHERE u.kind = 'event'),"
            " count(*) FILTER (WHERE u.kind = 'status'),"
            " to_char(min(u.time) AT TIME ZONE 'UTC', 'MM-DD HH24:MI'),"
            " to_char(max(u.time) AT TIME ZONE 'UTC', 'MM-DD HH24:MI')"
            " FROM device d JOIN uplink_message u USING (device_id)"
            " WHERE d.device_id = ANY(%s) AND u.received_at >= %s"
            " GROUP BY 1, 2, 3 ORDER BY 1",
            (ids, since[0] if since else None),
        ).fetchall()
    table(
        f"The town's messages stored this run ({seconds:.0f} s of simulation; uplink_message,"
        " via the gateway)",
        ("device", "role", "site", "boots", "telemetry", "events", "status", "from UTC", "to UTC"),
        rows,
    )
    return fleet if sent and rows else None
