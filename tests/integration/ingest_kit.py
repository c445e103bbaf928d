"""Shared parts of the tests that run the real ingest worker (no tests here): the
worker as a subprocess, its broker session dropped afterwards, and a bounded poll.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import REPO_ROOT

if TYPE_CHECKING:
    from backend.devstack import Stack

DEADLINE = 90.0  # seconds; generous, these are polls, not performance checks


def wait_until(
    what: str,
    check: Callable[[], bool],
    explain: Callable[[], str] = str,
    *,
    deadline_s: float = DEADLINE,
    poll_s: float = 0.1,
) -> None:
    """Poll ``check``; after ``deadline_s`` fail naming ``what`` and ``explain()``.

    The bound turns a hang into a failure; it is not a speed requirement.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    pytest.fail(f"gave up after {deadline_s:.0f}s waiting for: {what}\n{explain()}")


def service_client(services: Stack, client_id: str) -> mqtt.Client:
    """A paho MQTT v5 client of the stack's service user (not connected yet)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(services.mqtt_username, services.mqtt_password)
    return client


def forget_session(services: Stack, client_id: str) -> None:
    """Drop a worker's persistent session so the broker stops keeping it."""
    client = service_client(services, client_id)
    client.connect(services.mqtt_host, services.mqtt_port, clean_start=True)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


class WorkerProcess:
    """``lumeau ingest run`` in a subprocess, logging to a file."""

    def __init__(
        self,
        services: Stack,
        conninfo: str,
        log_path: Path,
        client_id: str,
        *extra: str,
    ) -> None:
        self.log_path = log_path
        self.client_id = client_id
        env = {**os.environ, **services.env(), "LUMEAU_DATABASE_URL": conninfo}
        env["PYTHONPATH"] = str(REPO_ROOT)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "ingest",
                "run",
                "--run-dir",
                str(services.run_dir),
                "--client-id",
                client_id,
                # a group of its own: no other worker takes its messages
                "--share-group",
                client_id,
                "--stats-interval",
                "1",
                *extra,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return "worker log (last lines):\n" + "\n".join(self.log().splitlines()[-25:])

    def wait_for_log(self, text: str, after: int = 0) -> None:
        wait_until(
            f"{text!r} in the worker log",
            lambda: text in self.log()[after:] or self.process.poll() is not None,
            self.tail,
        )
        assert self.process.poll() is None, f"worker exited early\n{self.tail()}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=DEADLINE)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._log.close()


@contextmanager
def ingest_worker(
    services: Stack, conninfo: str, log_folder: Path, client_id: str
) -> Iterator[WorkerProcess]:
    """A worker on ``conninfo``, subscribed; afterwards it must exit cleanly (0) and
    its broker session is dropped."""
    process = WorkerProcess(services, conninfo, log_folder / "worker.log", client_id)
    try:
        process.wait_for_log("subscribed to")
        yield process
    finally:
        assert process.terminate() == 0, process.tail()
        forget_session(services, client_id)
