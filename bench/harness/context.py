"""What a benchmark function receives: sizes, repeat count, services, scratch space."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO


class Services(Protocol):
    """The part of ``backend.devstack.Stack`` the benchmarks use."""

    @property
    def database_url(self) -> str: ...
    @property
    def admin_database_url(self) -> str: ...
    @property
    def mqtt_host(self) -> str: ...
    @property
    def mqtt_port(self) -> int: ...
    @property
    def mqtt_username(self) -> str: ...
    @property
    def mqtt_password(self) -> str: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def timescaledb_version(self) -> str | None: ...


# Starts the services for a run folder; returns them and, when it started
# them itself, how to stop them again (None: they were running already).
ServicesFactory = Callable[[Path], tuple[Services, Callable[[], None] | None]]


def start_devstack(run_dir: Path) -> tuple[Services, Callable[[], None] | None]:
    """Mosquitto and TimescaleDB on loopback, from the project's own devstack."""
    from backend import devstack

    before = devstack.status(run_dir) if run_dir.exists() else {}
    was_running = all(
        isinstance(part, dict) and part.get("running")
        for part in (before.get("mosquitto"), before.get("postgres"))
    )
    stack: Services = devstack.up(run_dir)
    if was_running:
        return stack, None
    return stack, lambda: devstack.down(run_dir)


@dataclass
class Context:
    """Shared by every benchmark of one run.

    ``quick`` asks for the small sizes (a CI smoke test); ``repeats`` is how many
    times each measurement runs (the table shows the median). The services are
    started on first use of :attr:`services`, in ``run_dir``.
    """

    run_dir: Path
    quick: bool = False
    repeats: int = 3
    services_factory: ServicesFactory = start_devstack
    log_stream: TextIO = field(default_factory=lambda: sys.stderr)
    _services: Services | None = field(default=None, init=False, repr=False)
    _services_error: Exception | None = field(default=None, init=False, repr=False)
    _stop_services: Callable[[], None] | None = field(default=None, init=False, repr=False)
    _started: float = field(default_factory=time.monotonic, init=False, repr=False)

    def size(self, default: int, quick: int) -> int:
        """``quick`` under ``--quick``, ``default`` otherwise."""
        return quick if self.quick else default

    @property
    def services(self) -> Services:
        """Mosquitto and TimescaleDB, started on first use (a failure is remembered)."""
        if self._services_error is not None:
            raise RuntimeError(f"services unavailable: {self._services_error}")
        if self._services is None:
            self.log(f"starting services in {self.run_dir}")
            try:
                self._services, self._stop_services = self.services_factory(self.run_dir)
            except Exception as exc:
                self._services_error = exc
                raise
        return self._services

    def close(self, keep_services: bool = False) -> None:
        """Stop the services if this run started them (unless ``keep_services``)."""
        stop, self._stop_services = self._stop_services, None
        if stop is not None and not keep_services:
            self.log(f"stopping the services this run started in {self.run_dir}")
            stop()

    @property
    def services_started(self) -> Services | None:
        """The services if a benchmark has started them, else None."""
        return self._services

    @property
    def scratch_dir(self) -> Path:
        path = self.run_dir / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[bench {elapsed:6.1f}s] {message}", file=self.log_stream, flush=True)
