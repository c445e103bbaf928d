"""Shared fixtures: the real services, started by the project's own code.

The stack lives in its own run folder (``.run/test`` unless
``LUMEAU_TEST_RUN_DIR`` says otherwise) so tests never touch the demo's data.
When ``CI`` is set, a stack that cannot start is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def services_run_dir() -> Path:
    return Path(os.environ.get("LUMEAU_TEST_RUN_DIR", str(REPO_ROOT / ".run" / "test"))).resolve()


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    """Mosquitto and TimescaleDB on loopback, with generated credentials."""
    from backend import devstack

    try:
        running = devstack.up(services_run_dir())
    except devstack.MissingDependency as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"services unavailable here: {exc}")
    yield running
