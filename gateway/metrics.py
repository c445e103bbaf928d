"""The gateway's counters and gauges, and their Prometheus text exposition.

Counters only grow during one process (Prometheus handles resets); gauges
are refreshed by the core loop. Everything is read under one lock, so a
scrape sees a consistent snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields, replace
from typing import Final

PREFIX: Final = "lumeau_gateway_"


@dataclass
class Counters:
    received: int = 0  # deliveries from the site broker
    accepted: int = 0  # queued for forwarding
    rejected: int = 0  # dead-lettered
    duplicates: int = 0  # (dev, boot, seq) seen moments ago: acked, not queued again
    dropped_queue_full: int = 0  # telemetry deleted oldest-first to respect the bound
    forwarded: int = 0  # device messages acknowledged by the backend broker
    batches: int = 0  # batches acknowledged by the backend broker
    batch_failures: int = 0  # batches the backend broker refused (reason code)
    error_replies: int = 0  # ``error`` downlinks sent to devices
    commands_received: int = 0
    commands_sent: int = 0  # including retries
    commands_acked: int = 0
    commands_timed_out: int = 0
    reconnects_site: int = 0
    reconnects_backend: int = 0
    connect_failures_site: int = 0  # attempts that failed (TLS verification, refused, ...)
    connect_failures_backend: int = 0


@dataclass
class Gauges:
    queue_rows: int = 0
    queue_bytes: int = 0
    queue_priority_rows: int = 0
    queue_unsent_rows: int = 0
    oldest_age_s: float = 0.0
    inflight_batches: int = 0
    dead_letter_rows: int = 0
    pending_commands: int = 0
    devices_online: int = 0
    devices_offline: int = 0
    site_connected: int = 0
    backend_connected: int = 0
    queue_over_bound: int = 0


_HELP: Final = {
    "received": "Deliveries received from the site broker",
    "accepted": "Device messages validated and queued",
    "rejected": "Deliveries rejected and dead-lettered, by code",
    "duplicates": "Repeated (dev, boot, seq) deliveries acknowledged without queueing",
    "dropped_queue_full": "Telemetry messages dropped (oldest first) because the queue was full",
    "forwarded": "Device messages acknowledged by the backend broker",
    "batches": "Batches acknowledged by the backend broker",
    "batch_failures": "Batches refused by the backend broker",
    "error_replies": "Error downlinks sent to devices",
    "commands_received": "Device commands received from the backend",
    "commands_sent": "Command publications to devices, retries included",
    "commands_acked": "Commands acknowledged by their device",
    "commands_timed_out": "Commands that expired without an ack (reported upstream)",
    "reconnects_site": "Reconnections to the site broker",
    "reconnects_backend": "Reconnections to the backend broker",
    "connect_failures_site": "Failed connection attempts to the site broker",
    "connect_failures_backend": "Failed connection attempts to the backend broker "
    "(TLS verification, refused login, unreachable)",
    "queue_rows": "Messages in the durable queue",
    "queue_bytes": "Bytes of queued batch entries",
    "queue_priority_rows": "Queued event/status/ack messages",
    "queue_unsent_rows": "Queued messages not yet in a batch in flight",
    "oldest_age_s": "Age of the oldest queued message, seconds",
    "inflight_batches": "Batches sent and not yet acknowledged",
    "dead_letter_rows": "Rows in the dead-letter table",
    "pending_commands": "Commands waiting for their device's ack",
    "devices_online": "Devices whose last status is online",
    "devices_offline": "Devices whose last status is offline",
    "site_connected": "1 while connected to the site broker",
    "backend_connected": "1 while connected to the backend broker",
    "queue_over_bound": "1 while priority messages alone keep the queue above its bound",
}


@dataclass
class Metrics:
    counters: Counters = field(default_factory=Counters)
    gauges: Gauges = field(default_factory=Gauges)
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **increments: int) -> None:
        with self.lock:
            for name, n in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + n)

    def reject(self, code: str) -> None:
        with self.lock:
            self.counters.rejected += 1
            self.rejected_by_code[code] = self.rejected_by_code.get(code, 0) + 1

    def set_gauges(self, gauges: Gauges) -> None:
        with self.lock:
            self.gauges = gauges

    def snapshot(self) -> tuple[Counters, Gauges, dict[str, int]]:
        with self.lock:
            return replace(self.counters), replace(self.gauges), dict(self.rejected_by_code)

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        counters, gauges, by_code = self.snapshot()
        out: list[str] = []
        for f in fields(counters):
            name = f"{PREFIX}{f.name}_total"
            out.append(f"# HELP {name} {_HELP[f.name]}")
            out.append(f"# TYPE {name} counter")
            if f.name == "rejected" and by_code:
                for code, n in sorted(by_code.items()):
                    out.append(f'{name}{{code="{_label(code)}"}} {n}')
            else:
                out.append(f"{name} {getattr(counters, f.name)}")
        for f in fields(gauges):
            name = f"{PREFIX}{f.name}"
            out.append(f"# HELP {name} {_HELP[f.name]}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {getattr(gauges, f.name)}")
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
