"""The backend's long-running jobs as the demo's children: the alert engine and the notifier.

Each is the real ``lumeau`` command a deployment runs (``lumeau alerts run``,
``lumeau notify run``) with the stack's settings, its log and pid file in
``<run dir>/<name>/``.
"""

from __future__ import annotations

from pathlib import Path

from .children import ChildProcess, lumeau_command, process_runs


class LumeauJob(ChildProcess):
    """``lumeau <args> --run-dir RUN`` in its own session (Ctrl-C reaches the demo only)."""

    def __init__(self, run_dir: Path, name: str, args: list[str]) -> None:
        folder = run_dir / name
        super().__init__(folder / f"{name}.log", folder / f"{name}.pid")
        self.run_dir = run_dir
        self.folder = folder
        self.args = args

    def is_ours(self, pid: int) -> bool:
        marker = "\0" + "\0".join(self.args[:2]) + "\0"
        return process_runs(pid, marker) and process_runs(pid, str(self.run_dir))

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [*lumeau_command(), *self.args, "--run-dir", str(self.run_dir)],
            start_new_session=True,
        )


def alert_engine(run_dir: Path, policy: Path, interval_s: int = 5) -> LumeauJob:
    args = ["alerts", "run", "--interval", str(interval_s), "--policy", str(policy)]
    return LumeauJob(run_dir, "alerts", args)


def notifier(run_dir: Path) -> LumeauJob:
    return LumeauJob(run_dir, "notify", ["notify", "run"])


# The demo's policy: the built-in thresholds, but the hourly analyses (leak
# screening, energy) and the battery check run at every evaluation, so the
# alerts of the simulated days appear within seconds instead of within the hour.
DEMO_POLICY = """\
# Written by `lumeau demo`: backend/alerts/policy.py's defaults, except how
# often the slower sources run (docs/alerts.md).
[schedule]
battery_s = 5
leak_s = 5
energy_s = 5
"""
