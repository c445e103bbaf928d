"""What the console's browser tests need: the system's Chromium and a real API server.

- ``chromium_executable()``: Debian's ``chromium`` (or ``LUMEAU_CHROMIUM``);
  Playwright drives it through ``executable_path`` and never downloads a
  browser of its own. Missing: a failure when ``CI`` is set, a skip otherwise.
- ``ApiServer``: ``create_app(settings)`` under uvicorn in a thread, on a
  loopback port, with the same HTTP stack as ``lumeau api run``; it can be
  stopped and started again on the same port (the stream's reconnection).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from fastapi import FastAPI

# Playwright runs Chromium headless itself (the new headless mode). These
# suit a container: root cannot use the sandbox, no GPU, a small /dev/shm.
CHROMIUM_FLAGS: Final = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
_CANDIDATES: Final = ("chromium", "chromium-browser")


def chromium_executable() -> str | None:
    explicit = os.environ.get("LUMEAU_CHROMIUM")
    if explicit:
        return explicit
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str) -> None:
    """Raise in CI (a browser test must run there), skip elsewhere."""
    message = f"{reason}; install it with scripts/install-chromium (Debian/Ubuntu, as root)"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message)


def require_chromium() -> str:
    path = chromium_executable()
    if path is None:
        unavailable("no Chromium on PATH (looked for chromium, chromium-browser, $LUMEAU_CHROMIUM)")
    assert path is not None
    return path


class ApiServer:
    """``app`` served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = 0
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))  # 0 the first time: the OS picks a free port
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            ws="none",
            lifespan="on",
            # An open event stream would otherwise hold the shutdown forever.
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="api-under-test", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server stopped while starting (see its log above)")
            thread.join(0.05)
        self._server, self._thread, self._socket = server, thread, sock

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the API server did not stop within 30 s")
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
