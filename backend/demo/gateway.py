"""The field gateway (``lumeau gateway run``) as the demo's child process, and its counters."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from edge import protocol

from .children import ChildProcess, free_port, lumeau_command, process_runs, wait
from .script import GATEWAY


class GatewayProcess(ChildProcess):
    """``lumeau gateway run`` as a subprocess; config, log, pid and queue in ``folder``.

    The TOML file holds no secret: both passwords travel in the child's
    environment (``LUMEAU_GATEWAY_SITE_PASSWORD``, ``..._BACKEND_PASSWORD``).
    On ``stop()`` (SIGTERM) it drains in-flight batches, publishes its offline
    status and exits 0.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(folder / "gateway.log", folder / "gateway.pid")
        self.folder = folder
        self.config = folder / "gateway.toml"
        self.queue = folder / "data" / "queue.sqlite3"
        self.http_port = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def is_ours(self, pid: int) -> bool:
        return process_runs(pid, str(self.config))

    def start(self, site: Any, site_password: str, stack: Any, backend_password: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        q = json.dumps  # a JSON string is a valid TOML basic string
        self.config.write_text(
            "# Written by `lumeau demo`. Passwords: LUMEAU_GATEWAY_SITE_PASSWORD and\n"
            "# LUMEAU_GATEWAY_BACKEND_PASSWORD in the environment, never in this file.\n"
            f"gateway_id = {q(GATEWAY)}\n"
            f"site_host = {q(site.host)}\n"
            f"site_port = {site.port}\n"
            f"site_username = {q(GATEWAY)}\n"
            f"backend_host = {q(stack.mqtt_host)}\n"
            f"backend_port = {stack.mqtt_port}\n"
            f"backend_username = {q(GATEWAY)}\n"
            # The stack's ACL lets a gateway read only its own subtree on the
            # backend broker: device commands reach it as ``relay`` commands.
            f"downlink_device_filter = {q(protocol.gateway_topic(GATEWAY, 'down', 'cmd'))}\n"
            f"data_dir = {q(str(self.queue.parent))}\n"
            f"http_port = {self.http_port}\n"
            'log_format = "json"\n'
            "backoff_min_s = 0.2\n"
            "backoff_max_s = 5.0\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEAU_GATEWAY_")}
        env["LUMEAU_GATEWAY_SITE_PASSWORD"] = site_password
        env["LUMEAU_GATEWAY_BACKEND_PASSWORD"] = backend_password
        cmd = [*lumeau_command(), "gateway", "run", "--config", str(self.config)]
        self.spawn(cmd, env=env)

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return bytes(r.read())
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        body = self._get("/health")
        if body is None:
            return {}
        report: dict[str, Any] = json.loads(body)
        return report

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{name or name{labels}: value}``."""
        out: dict[str, float] = {}
        for line in (self._get("/metrics") or b"").decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("lumeau_gateway_")] = float(value)
        return out

    def wait_ready(self) -> bool:
        def ready() -> bool:
            report = self.health()
            return bool(report.get("site_connected") and report.get("backend_connected"))

        return wait(lambda: ready() or not self.running()) and self.running()

    def dead_letters(self) -> list[tuple[Any, ...]]:
        """The gateway's own dead-letter table (SQLite), oldest first."""
        if not self.queue.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.queue}?mode=ro", uri=True)) as db:
            return db.execute(
                "SELECT dev, code, field, reason, topic FROM dead_letter ORDER BY id"
            ).fetchall()


def counter(metrics: dict[str, float], name: str) -> int:
    """A counter's value, summed over its labels."""
    return int(sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{")))


GATEWAY_COUNTERS = (
    ("received_total", "deliveries from the site broker"),
    ("accepted_total", "validated and queued in SQLite"),
    ("duplicates_total", "same (dev, boot, seq) again: acked, not queued twice"),
    ("rejected_total", "dead-lettered at the gateway"),
    ("error_replies_total", "error replies sent to devices (site broker)"),
    ("forwarded_total", "device messages acknowledged by the backend broker"),
    ("batches_total", "batches acknowledged by the backend broker"),
    ("batch_failures_total", "batches the backend broker refused"),
    ("queue_rows", "still queued (gauge)"),
    ("dead_letter_rows", "rows in its dead-letter table (gauge)"),
    ("devices_online", "devices whose last status is online (gauge)"),
)
