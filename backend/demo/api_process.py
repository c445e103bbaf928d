"""The API (``lumeau api run``) as the demo's child process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from .children import ChildProcess, free_port, lumeau_command, process_runs, wait


class ApiProcess(ChildProcess):
    """``lumeau api run`` on a free loopback port, with the stack's settings (``--run-dir``).

    Its own session, so that Ctrl-C reaches the demo, which then stops it with
    SIGTERM; its log and pid are in ``<run dir>/api/``.
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir / "api" / "api.log", run_dir / "api" / "api.pid")
        self.run_dir = run_dir
        self.folder = run_dir / "api"
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_ours(self, pid: int) -> bool:
        return process_runs(pid, "\0api\0run\0") and process_runs(pid, str(self.run_dir))

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [*lumeau_command(), "api", "run", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--run-dir", str(self.run_dir)]
        self.spawn(cmd, start_new_session=True)

    def wait_ready(self, client: httpx.Client) -> dict[str, Any] | None:
        """``GET /api/v1/health`` until it answers 200 (the database is reachable)."""
        answer: dict[str, Any] = {}

        def healthy() -> bool:
            try:
                response = client.get("/api/v1/health")
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
            answer.update(response.json())
            return True

        ok = wait(lambda: healthy() or not self.running()) and self.running() and bool(answer)
        return answer if ok else None
