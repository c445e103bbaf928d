"""Install, start and stop the real services (Mosquitto, PostgreSQL + TimescaleDB)
as local processes on loopback, with generated credentials, in a run folder.

``up(run_dir)`` is what the demo, the CLI (``lumeau services up``) and the test
fixture call; see docs/operations.md.
"""

from __future__ import annotations

from .broker import BrokerHandle, start_broker
from .errors import MissingDependency, ServiceError
from .install import ensure_installed
from .stack import Stack, add_broker_user, down, status, up

__all__ = [
    "BrokerHandle",
    "MissingDependency",
    "ServiceError",
    "Stack",
    "add_broker_user",
    "down",
    "ensure_installed",
    "start_broker",
    "status",
    "up",
]
