"""Health and Prometheus metrics over HTTP, on loopback only.

``GET /metrics``: text exposition format. ``GET /health``: JSON; 200 while
the core loop turns, 503 when it has stalled (a stuck disk, a bug), so a
supervisor can restart the process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.metrics import Metrics

LOOPBACK = "127.0.0.1"


class StatusServer:
    def __init__(self, port: int, metrics: Metrics, health: Callable[[], dict[str, Any]]) -> None:
        metrics_ref = metrics
        health_ref = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                if self.path == "/metrics":
                    body = metrics_ref.render().encode()
                    self._send(200, "text/plain; version=0.0.4; charset=utf-8", body)
                elif self.path == "/health":
                    report = health_ref()
                    status = 200 if report.get("ok") else 503
                    self._send(status, "application/json", json.dumps(report).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the logs

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gateway-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
