"""What the demo's child processes share: waiting, ports, the ``lumeau`` command, stopping."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

WAIT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def lumeau_command() -> list[str]:
    script = Path(sys.executable).parent / "lumeau"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "backend.cli"]


def process_runs(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


class ChildProcess:
    """A ``lumeau`` sub-command run as a child: its log, its pid file, a clean stop."""

    def __init__(self, log: Path, pid_file: Path) -> None:
        self.log = log
        self.pid_file = pid_file
        self.proc: subprocess.Popen[bytes] | None = None

    def is_ours(self, pid: int) -> bool:
        """Whether ``pid`` (read from the pid file) is still this child's command."""
        raise NotImplementedError

    def stop_stale(self) -> None:
        """A child left running by an interrupted demo: SIGTERM it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if self.is_ours(pid):
                os.kill(pid, signal.SIGTERM)
                wait(lambda: not self.is_ours(pid), 30)

    def spawn(
        self, cmd: list[str], env: dict[str, str] | None = None, start_new_session: bool = False
    ) -> None:
        """Start ``cmd``, its output appended to the log, and write its pid file."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=start_new_session,
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, up to 30 s to exit, then SIGKILL; the pid file goes. Its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""
