"""The ``micropython`` fixture: one real MicroPython interpreter per test session.

It installs the pinned WebAssembly port when missing (``install.py``) and
starts it under Node.js. When ``CI`` is set, an interpreter that cannot be
installed or started fails the tests; elsewhere they are skipped with the
reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .harness import HarnessError, MicroPythonProcess
from .install import MicroPythonUnavailable, ensure_micropython


@pytest.fixture(scope="session")
def micropython() -> Iterator[MicroPythonProcess]:
    """A MicroPython process with ``edge/`` on its path (see ``harness.py``)."""
    try:
        process = MicroPythonProcess(ensure_micropython())
    except (MicroPythonUnavailable, HarnessError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MicroPython unavailable here: {exc}")
    with process:
        yield process
