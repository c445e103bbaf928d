"""A webhook receiver on loopback, as a city's on-call tool would run one.

It checks every request's ``Lumeau-Signature`` with the channel's secret
(``backend.notify.signing.verify``, the recipe of docs/notifications.md)
and keeps what arrived, so the demo can show the notifications the
notifier delivered and that each one was signed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.notify.signing import SIGNATURE_HEADER, verify


@dataclass(frozen=True)
class Received:
    event: str
    body: dict[str, Any]
    signed: bool


class WebhookSink:
    def __init__(self) -> None:
        self.secret = ""  # set once the channel exists (the API shows it once)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 1_000_000))
                signed = verify(
                    sink.secret, self.headers.get(SIGNATURE_HEADER, ""), raw, time.time()
                )
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with sink._lock:
                    sink.received.append(Received(str(body.get("event", "?")), body, signed))
                self.send_response(204 if signed else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints what arrived itself

        class Server(ThreadingHTTPServer):
            request_queue_size = 64  # the notifier sends to a channel in parallel

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/lumeau-alerts"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
