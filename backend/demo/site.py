"""The site: its own broker, the gateway subprocess and an ingest worker, run end to end."""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

from gateway.site_acl import site_acl

from .gateway import GatewayProcess
from .play import play
from .script import CABINET, GATEWAY, SENSOR, script_start


def clear_site(folder: Path, gateway: GatewayProcess) -> None:
    """A fresh site for each run: stop what an interrupted run left, then wipe it."""
    from backend import devstack

    gateway.stop_stale()
    broker = folder / "mosquitto"
    if (broker / "mosquitto.conf").exists():
        devstack.BrokerHandle(broker, 0).stop()
    shutil.rmtree(folder, ignore_errors=True)


def through_the_site(run_dir: Path, stack: Any, tool_pub: str, tool_sub: str) -> tuple[int, int]:
    """Devices -> site broker -> gateway -> backend; (exit code, the script's start in ms)."""
    from backend import devstack

    site_dir = run_dir / "site"
    gateway = GatewayProcess(site_dir / "gateway")
    clear_site(site_dir, gateway)
    # Each device and the gateway have their own site credentials; the gateway
    # has its own backend credentials too (the stack's ACL: gw/<id>/# only).
    site_passwords = {name: secrets.token_urlsafe(24) for name in (CABINET, SENSOR, GATEWAY)}
    site = devstack.start_broker(
        site_dir / "mosquitto", users=site_passwords, acl=site_acl([GATEWAY])
    )
    print(f"  site MQTT    {site.host}:{site.port} (devices and {GATEWAY}; ACL {site.acl_file})")
    backend_password = devstack.add_broker_user(stack, GATEWAY)
    worker, thread = start_worker(stack)

    def stop_ingest() -> None:
        worker.stop()
        thread.join(timeout=30)

    try:
        if not worker.wait_subscribed(30):
            print("the ingest worker could not subscribe to the broker; see the log above")
            return 1, 0
        print("  ingest       one worker on the shared subscription $share/lumeau-ingest/...")
        gateway.start(site, site_passwords[GATEWAY], stack, backend_password)
        if not gateway.wait_ready():
            print(f"the gateway did not come up; its log ({gateway.log}):\n{gateway.log_tail()}")
            return 1, 0
        gw_boot = str(gateway.health().get("boot"))
        print(f"  gateway      {GATEWAY} boot {gw_boot}, pid {gateway.proc and gateway.proc.pid}")
        print(f"               config {gateway.config}")
        print(f"               log    {gateway.log}")
        print(f"               metrics {gateway.metrics_url}")
        start_ms = script_start(stack.database_url)
        return play(
            stack,
            site,
            site_passwords,
            gateway,
            gw_boot,
            worker,
            stop_ingest,
            tool_pub,
            tool_sub,
            start_ms,
        ), start_ms
    finally:
        code = gateway.stop()
        stop_ingest()
        site.stop()
        print(f"\nGateway stopped (exit code {code}), site broker stopped; its files: {site_dir}")


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
