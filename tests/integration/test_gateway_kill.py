"""The gateway process is SIGKILLed mid-stream, then started again.

Nothing it acknowledged to the site broker may be lost: it committed those to
its SQLite queue first. What it had not acknowledged, the site broker
redelivers to its persistent session. The gateway runs as a real subprocess
(``python -m gateway run --config FILE``), and its /health and /metrics are
read over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.gateway_kit import (
    BackendCounter,
    Brokers,
    Publisher,
    boot_of,
    counting_report,
    telemetry,
    two_brokers,
    wait_for,
)

pytestmark = pytest.mark.services

DEVICES = 20
PER_DEVICE = 200
STREAM_S = 8.0
KILL_AFTER_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(folder: Path, brokers: Brokers, http_port: int) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f"""\
gateway_id = "gw-kill-1"
site_host = "{brokers.site.host}"
site_port = {brokers.site.port}
backend_host = "{brokers.backend.host}"
backend_port = {brokers.backend.port}
data_dir = "{folder / "gw-data"}"
http_port = {http_port}
backoff_min_s = 0.1
backoff_max_s = 1.0
batch_linger_ms = 20
"""
    )
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LUMEAU_GATEWAY_LOG_LEVEL="INFO")
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), bytes(r.read())
    except OSError:
        return 0, b""


def _metric(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exposed")


def _healthy(port: int) -> bool:
    status, body = _get(port, "/health")
    if status != 200:
        return False
    report = json.loads(body)
    return bool(report["site_connected"] and report["backend_connected"])


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    with two_brokers(tmp_path) as brokers:
        counter = BackendCounter(brokers.backend)
        devices = Publisher(brokers.site)
        port = _free_port()
        config = _write_config(tmp_path, brokers, port)
        log = tmp_path / "gateway.log"
        proc = _start(config, log)
        try:
            wait_for(lambda: _healthy(port), 60, lambda: "gateway health\n" + log.read_text())
            start = time.monotonic()
            killed = False
            for i in range(PER_DEVICE):
                for d in range(DEVICES):
                    dev, boot = f"cab-{d:04d}", boot_of(d)
                    devices.publish(dev, "telemetry", telemetry(dev, boot, i), (dev, boot, i))
                if not killed and time.monotonic() - start >= KILL_AFTER_S:
                    forwarded_before = counter.count()
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    killed = True
                    proc = _start(config, log)
                time.sleep(max(0.0, start + STREAM_S * (i + 1) / PER_DEVICE - time.monotonic()))
            assert killed, "the stream ended before the kill"
            devices.wait_acked()
            total = DEVICES * PER_DEVICE
            wait_for(
                lambda: len(counter.unique()) >= total,
                120,
                lambda: f"all messages ({len(counter.unique())} of {total})\n" + log.read_text(),
            )
            wait_for(lambda: _healthy(port), 30, "gateway health after the restart")
            wait_for(
                lambda: _metric(_get(port, "/metrics")[1], "lumeau_gateway_queue_rows") == 0,
                30,
                "the restarted gateway's queue to empty",
            )
            status, metrics = _get(port, "/metrics")
            assert status == 200
            duplicates_seen = _metric(metrics, "lumeau_gateway_duplicates_total")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        devices.close()
        counter.close()
        with counter.lock:
            received = list(counter.received.order)
        report = counting_report(devices.sent, received)
        report.show(
            "SIGKILL mid-stream",
            f"forwarded_before_kill={forwarded_before} "
            f"redeliveries_recognised_after_restart={duplicates_seen:.0f}",
        )
        assert proc.returncode == 0, "the gateway should exit cleanly on SIGTERM"
        assert 0 < forwarded_before < DEVICES * PER_DEVICE
        assert report.missing == 0
        assert report.received_once == report.sent == DEVICES * PER_DEVICE
        assert report.out_of_order == 0
        assert report.unexpected == 0
