"""The gateway: site broker -> durable queue -> batches -> backend broker, and back.

Threads:

- each ``Link`` runs paho's network thread; its callbacks only classify a
  delivery (pure codec work) and hand it to the core loop;
- the core loop (the thread calling ``run``) owns the SQLite store and does
  everything stateful, in this order each turn: commit new deliveries, then
  acknowledge them to the site broker (never before the commit); take in
  backend commands; delete batches the backend broker acknowledged; send new
  batches; deliver and expire commands; refresh the gauges.

Ordering: batches leave on one MQTT connection, in queue order per priority
class, with up to ``max_inflight_batches`` unacknowledged at once. MQTT keeps
the order of one connection, so a device's messages of one class arrive in
order; after a lost connection every unacknowledged row is sent again from
the oldest, so a gap is never skipped (repeats are harmless: the backend is
idempotent on (dev, boot, seq)).
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import protocol
from edge.protocol import ProtocolError
from gateway import batch, commands
from gateway.backoff import Backoff
from gateway.config import GatewaySettings
from gateway.dedup import RecentIds
from gateway.http import StatusServer
from gateway.intake import PRIORITY, Accepted, Rejected, classify, entry_bytes
from gateway.link import Delivery, Endpoint, Link, Will
from gateway.metrics import Gauges, Metrics
from gateway.store import DeadLetter, QueuedRow, Store, Taken

log = logging.getLogger(__name__)

SITE_UPLINKS = "lumeau/v1/dev/+/up/#"
_GAUGE_EVERY = 0.5  # s
_COMMANDS_EVERY = 0.1  # s
_DROP_LOG_EVERY = 10.0  # s
_STALL_AFTER = 10.0  # s without a core loop turn: /health says 503
_DRAIN_ON_STOP = 3.0  # s to wait for in-flight batches' PUBACKs when stopping


class _Seq:
    """The gateway's own per-boot sequence (batches and its status)."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        with self._lock:
            first = self._next
            self._next += n
            return first


class Gateway:
    """One gateway process's worth of work; ``run`` blocks until ``stop``."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        s = settings
        self.settings = s
        self._clock = clock
        self._wall_ms = wall_ms
        self.metrics = Metrics()
        self.store = Store(
            s.queue_path,
            synchronous=s.sqlite_synchronous,
            max_rows=s.queue_max_rows,
            max_bytes=s.queue_max_bytes,
            dead_letter_max_rows=s.dead_letter_max_rows,
        )
        # A new boot per process start: the batch seq then restarts at 0
        # without ever reusing a (gw, boot, seq) identity.
        self.boot = protocol.new_boot_id(os.urandom(8))
        self._seq = _Seq()
        self._online_seq = 0
        self._allowed = frozenset(s.allowed_devices) if s.allowed_devices is not None else None
        self._batch_topic = protocol.gateway_topic(s.gateway_id, "up", "batch")
        self._status_topic = protocol.gateway_topic(s.gateway_id, "up", "status")
        self._entry_budget = s.batch_max_bytes - batch.envelope_overhead(s.gateway_id, self.boot)
        self._cond = threading.Condition()
        self._site_pending: list[tuple[Delivery, Accepted | Rejected, int]] = []
        self._down_pending: list[Delivery] = []
        # appended by paho's thread, popped by the core loop (deque ops are atomic)
        self._completions: collections.deque[tuple[int, int, bool]] = collections.deque()
        self._inflight: dict[int, Taken] = {}
        self._inflight_gen = -1
        self._oldest_unsent: float | None = None if self.store.unsent == 0 else float("-inf")
        self._recent = RecentIds()
        self._synthetic_seq: dict[str, int] = {}
        self._stopping = threading.Event()
        self._running = threading.Event()
        self._last_turn = clock()
        self._next_gauges = 0.0
        self._next_commands = 0.0
        self._next_drop_log = 0.0
        self._drops_since_log = 0
        self.site = Link(
            "site",
            Endpoint(
                s.site_host,
                s.site_port,
                s.site_id,
                s.site_username,
                s.site_password.get_secret_value() if s.site_password else None,
                s.site_tls_ca,
                s.keepalive_s,
                s.site_session_expiry_s,
                s.site_receive_maximum,
            ),
            Backoff(s.backoff_min_s, s.backoff_max_s),
            on_message=self._on_site_message,
            subscriptions=lambda: [SITE_UPLINKS],
        )
        self.backend = Link(
            "backend",
            Endpoint(
                s.backend_host,
                s.backend_port,
                s.backend_id,
                s.backend_user,
                s.backend_password.get_secret_value() if s.backend_password else None,
                s.backend_tls_ca,
                s.keepalive_s,
                s.backend_session_expiry_s,
                100,
            ),
            Backoff(s.backoff_min_s, s.backoff_max_s),
            on_message=self._on_backend_message,
            on_publish=self._on_backend_publish,
            on_connected=self._on_backend_connected,
            will=self._compose_will,
            subscriptions=self._downlink_filters,
            max_inflight=max(20, s.max_inflight_batches + 4),
        )
        self.http: StatusServer | None = None
        if s.http_port is not None:
            self.http = StatusServer(s.http_port, self.metrics, self.health)

    # ------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Serve until ``stop``; then drain what can be drained and disconnect."""
        log.info(
            "gateway starting",
            extra={
                "gateway": self.settings.gateway_id,
                "boot": self.boot,
                "queued": self.store.rows,
            },
        )
        if self.http is not None:
            self.http.start()
        self.backend.start()
        self.site.start()
        self._running.set()
        try:
            while not self._stopping.is_set():
                self._turn()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask ``run`` to return. Safe from a signal handler."""
        self._stopping.set()

    def wait_running(self, timeout: float) -> bool:
        return self._running.wait(timeout)

    def health(self) -> dict[str, Any]:
        counters, gauges, _ = self.metrics.snapshot()
        alive = self._clock() - self._last_turn < _STALL_AFTER
        return {
            "ok": alive and not self._stopping.is_set(),
            "gateway": self.settings.gateway_id,
            "boot": self.boot,
            "site_connected": self.site.connected,
            "backend_connected": self.backend.connected,
            "site_last_error": self.site.last_error,
            "backend_last_error": self.backend.last_error,
            "queue_rows": gauges.queue_rows,
            "oldest_age_s": gauges.oldest_age_s,
            "forwarded": counters.forwarded,
            "rejected": counters.rejected,
            "dropped_queue_full": counters.dropped_queue_full,
        }

    def _shutdown(self) -> None:
        # Deliveries not yet committed stay unacknowledged: the site broker
        # keeps them for this session and redelivers them on the next start.
        self.site.stop()
        deadline = self._clock() + _DRAIN_ON_STOP
        while self._inflight and self.backend.connected and self._clock() < deadline:
            self._process_completions()
            time.sleep(0.01)
        self._process_completions()
        self.backend.stop(before_disconnect=self._farewell)
        if self.http is not None:
            self.http.stop()
        self.store.close()
        counters, _, _ = self.metrics.snapshot()
        log.info("gateway stopped", extra={"counters": vars(counters)})

    # ------------------------------------------------------------ paho threads

    def _on_site_message(self, delivery: Delivery) -> None:
        now = self._wall_ms()
        try:
            outcome = classify(delivery.topic, delivery.payload, now, self._allowed)
        except Exception as exc:  # a codec bug must not stop the stream
            log.exception("cannot classify a delivery on %r", delivery.topic)
            outcome = Rejected(
                delivery.topic,
                delivery.payload,
                "internal_error",
                repr(exc),
                None,
                None,
                None,
                None,
            )
        with self._cond:
            self._site_pending.append((delivery, outcome, now))
            self._cond.notify()

    def _on_backend_message(self, delivery: Delivery) -> None:
        with self._cond:
            self._down_pending.append(delivery)
            self._cond.notify()

    def _on_backend_publish(self, generation: int, mid: int, ok: bool) -> None:
        self._completions.append((generation, mid, ok))
        with self._cond:
            self._cond.notify()

    def _compose_will(self) -> Will:
        # Each connection takes seq n for its will and n+1 for "online" (protocol 2).
        n = self._seq.take(2)
        self._online_seq = n + 1
        return Will(self._status_topic, self._status("offline", n), retain=True)

    def _on_backend_connected(self, client: mqtt.Client, generation: int, present: bool) -> None:
        client.publish(
            self._status_topic, self._status("online", self._online_seq), qos=1, retain=True
        )
        with self._cond:
            self._cond.notify()

    def _farewell(self, client: mqtt.Client) -> None:
        # A clean shutdown publishes the connection's own will bytes (protocol 2).
        will = self.backend.current_will
        if will is not None:
            info = client.publish(will.topic, will.payload, qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)

    def _status(self, state: str, seq: int) -> bytes:
        return protocol.encode(
            {
                "v": protocol.VERSION,
                "kind": "status",
                "gw": self.settings.gateway_id,
                "boot": self.boot,
                "seq": seq,
                "ts": self._wall_ms(),
                "state": state,
                "role": "gateway",
                "fw": self.settings.fw,
            }
        )

    def _downlink_filters(self) -> list[str]:
        s = self.settings
        own = protocol.gateway_topic(s.gateway_id, "down", "cmd")
        if s.allowed_devices is not None:
            return [own, *(protocol.downlink_topic(d, "cmd") for d in s.allowed_devices)]
        return [own, s.downlink_device_filter]

    # ------------------------------------------------------------ core loop

    def _turn(self) -> None:
        with self._cond:
            if not (self._site_pending or self._down_pending or self._completions):
                self._cond.wait(self._idle_wait())
            site, self._site_pending = self._site_pending, []
            down, self._down_pending = self._down_pending, []
        now = self._clock()
        self._last_turn = now
        try:
            if site:
                self._commit_site(site)
            if down:
                self._commit_downlinks(down)
            self._process_completions()
            self._forward(now)
            if now >= self._next_commands:
                self._next_commands = now + _COMMANDS_EVERY
                self._deliver_commands()
            if now >= self._next_gauges:
                self._next_gauges = now + _GAUGE_EVERY
                self._refresh_gauges()
        except sqlite3.Error:
            # Nothing uncommitted was acknowledged. Reconnecting makes the site
            # broker redeliver it; the queue's cursors start over.
            log.exception("local store failed; reconnecting to redeliver")
            self.site.force_reconnect()
            self._inflight_gen = -1
            self._stopping.wait(1.0)

    def _idle_wait(self) -> float:
        wait = min(_COMMANDS_EVERY, _GAUGE_EVERY)
        if self._oldest_unsent is not None and self.backend.connected:
            linger = self.settings.batch_linger_ms / 1000
            wait = min(wait, max(0.0, self._oldest_unsent + linger - self._clock()))
        return max(wait, 0.001)

    def _commit_site(self, items: list[tuple[Delivery, Accepted | Rejected, int]]) -> None:
        rows: list[QueuedRow] = []
        letters: list[DeadLetter] = []
        keys: set[tuple[str, str, int]] = set()
        statuses: list[tuple[Accepted, int]] = []
        acks: list[tuple[str, str]] = []
        duplicates = 0
        for _delivery, outcome, received_ms in items:
            if isinstance(outcome, Rejected):
                letters.append(
                    DeadLetter(
                        received_ms,
                        outcome.topic,
                        outcome.payload,
                        outcome.code,
                        outcome.reason,
                        outcome.field,
                        outcome.dev,
                    )
                )
                continue
            key = (outcome.dev, outcome.boot, outcome.seq)
            if key in keys or key in self._recent:
                duplicates += 1
                continue
            keys.add(key)
            rows.append(QueuedRow(outcome.prio, outcome.dev, received_ms, outcome.entry))
            if outcome.kind == "status":
                statuses.append((outcome, received_ms))
            elif outcome.kind == "ack":
                acks.append((outcome.message["cmd"], outcome.dev))
        store = self.store
        with store.transaction():
            result = store.enqueue(rows) if rows else None
            store.dead_letter(letters)
            for st, at in statuses:
                m = st.message
                store.set_presence(st.dev, m["state"], m["boot"], m["seq"], m["ts"], at)
            acked = sum(1 for cmd_id, dev in acks if store.remove_command(cmd_id, dev))
        # Committed: now, and only now, the site broker may forget them.
        self._recent.add_all(keys)
        for delivery, _, _ in items:
            self.site.ack(delivery.generation, delivery.mid, delivery.qos)
        replies = 0
        for _, outcome, _ in items:
            if isinstance(outcome, Rejected) and outcome.reply is not None:
                assert outcome.reply_topic is not None
                if self.site.publish(outcome.reply_topic, outcome.reply, qos=1) is not None:
                    replies += 1
                log.info(
                    "rejected a delivery",
                    extra={"topic": outcome.topic, "code": outcome.code, "reason": outcome.reason},
                )
        for _, outcome, _ in items:
            if isinstance(outcome, Rejected):
                self.metrics.reject(outcome.code)
        dropped = result.dropped if result is not None else 0
        self.metrics.add(
            received=len(items),
            accepted=len(rows),
            duplicates=duplicates,
            dropped_queue_full=dropped,
            error_replies=replies,
            commands_acked=acked,
        )
        if rows and self._oldest_unsent is None:
            self._oldest_unsent = self._clock()
        if dropped:
            self._note_drops(dropped)

    def _note_drops(self, dropped: int) -> None:
        # One warning per interval, not one per message: a long outage drops a lot.
        self._drops_since_log += dropped
        now = self._clock()
        if now >= self._next_drop_log:
            log.warning(
                "gateway_queue_full: dropped telemetry, oldest first",
                extra={
                    "event": "gateway_queue_full",
                    "dropped": self._drops_since_log,
                    "queue_rows": self.store.rows,
                    "queue_bytes": self.store.bytes,
                },
            )
            self._drops_since_log = 0
            self._next_drop_log = now + _DROP_LOG_EVERY

    def _commit_downlinks(self, items: list[Delivery]) -> None:
        now_ms = self._wall_ms()
        new = 0
        letters: list[DeadLetter] = []
        with self.store.transaction():
            for d in items:
                try:
                    cmd = commands.from_backend(d.topic, d.payload, self.settings.gateway_id)
                except ProtocolError as err:
                    letters.append(
                        DeadLetter(
                            now_ms, d.topic, d.payload, err.code, err.reason, err.field, None
                        )
                    )
                    continue
                if self.store.add_command(cmd.id, cmd.dev, cmd.payload, cmd.exp, now_ms):
                    new += 1
            self.store.dead_letter(letters)
        for d in items:
            self.backend.ack(d.generation, d.mid, d.qos)
        for letter in letters:
            self.metrics.reject(letter.code)
            log.warning(
                "rejected a backend command",
                extra={"topic": letter.topic, "code": letter.code, "reason": letter.reason},
            )
        self.metrics.add(commands_received=new)
        self._next_commands = 0.0  # deliver at once

    def _process_completions(self) -> None:
        while self._completions:
            generation, mid, ok = self._completions.popleft()
            if generation != self._inflight_gen:
                continue
            taken = self._inflight.pop(mid, None)
            if taken is None:
                continue
            if ok:
                self.store.delete(taken)
                self.metrics.add(forwarded=taken.count, batches=1)
            else:
                # Refused (e.g. not authorised): resend everything after a
                # reconnect, whose backoff keeps a refusing broker from a storm.
                log.error("backend broker refused a batch; reconnecting")
                self.metrics.add(batch_failures=1)
                self._inflight_gen = -1
                self.backend.force_reconnect()
                return

    def _forward(self, now: float) -> None:
        s = self.settings
        store = self.store
        generation = self.backend.generation
        if generation != self._inflight_gen:
            # A new connection: what was in flight on the old one may be lost.
            self._inflight.clear()
            store.rewind()
            self._inflight_gen = generation
            if store.unsent:
                self._oldest_unsent = float("-inf")
        if not self.backend.connected:
            return
        linger = s.batch_linger_ms / 1000
        while len(self._inflight) < s.max_inflight_batches and store.unsent > 0:
            oldest = self._oldest_unsent if self._oldest_unsent is not None else now
            if store.unsent < s.batch_max_msgs and now - oldest < linger:
                return
            taken = store.take(s.batch_max_msgs, self._entry_budget)
            if taken is None:
                return
            payload = batch.build(
                s.gateway_id, self.boot, self._seq.take(), self._wall_ms(), taken.entries
            )
            sent = self.backend.publish(self._batch_topic, payload, qos=1)
            if sent is None or sent[0] != generation:
                self._inflight_gen = -1  # rewind on the next turn
                return
            self._inflight[sent[1]] = taken
            # Rows left behind are a backlog (or came meanwhile): no lingering.
            self._oldest_unsent = None if store.unsent == 0 else float("-inf")

    def _deliver_commands(self) -> None:
        now_ms = self._wall_ms()
        due = self.store.due_commands(now_ms)
        if not due:
            return
        retry_ms = int(self.settings.command_retry_s * 1000)
        sent = 0
        timed_out = 0
        with self.store.transaction():
            for cmd in due:
                if now_ms >= cmd.exp:
                    self.store.remove_command(cmd.id, cmd.dev)
                    self._queue_timeout(cmd.dev, cmd.id, cmd.tries, now_ms)
                    timed_out += 1
                    continue
                if not self.site.connected:
                    continue
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.MessageExpiryInterval = max(1, (cmd.exp - now_ms + 999) // 1000)
                topic = protocol.downlink_topic(cmd.dev, "cmd")
                if self.site.publish(topic, cmd.payload, qos=1, properties=props) is not None:
                    self.store.command_sent(cmd.id, min(cmd.exp, now_ms + retry_ms))
                    sent += 1
        self.metrics.add(commands_sent=sent, commands_timed_out=timed_out)

    def _queue_timeout(self, dev: str, cmd_id: str, tries: int, now_ms: int) -> None:
        # Per device, under this process's boot id: a gap-free sequence of its own.
        seq = self._synthetic_seq.get(dev, 0)
        self._synthetic_seq[dev] = seq + 1
        ack = commands.timeout_ack(dev, cmd_id, self.boot, seq, now_ms, tries)
        topic = protocol.uplink_topic(dev, "ack")
        self.store.enqueue([QueuedRow(PRIORITY, dev, now_ms, entry_bytes(topic, ack))])
        if self._oldest_unsent is None:
            self._oldest_unsent = self._clock()
        log.warning("command timed out", extra={"dev": dev, "cmd": cmd_id, "tries": tries})

    def _refresh_gauges(self) -> None:
        store = self.store
        oldest = store.oldest_received_ms()
        presence = store.presence()
        online = sum(1 for state in presence.values() if state == "online")
        self.metrics.set_gauges(
            Gauges(
                queue_rows=store.rows,
                queue_bytes=store.bytes,
                queue_priority_rows=store.class_rows[PRIORITY],
                queue_unsent_rows=store.unsent,
                oldest_age_s=0.0 if oldest is None else max(0.0, (self._wall_ms() - oldest) / 1000),
                inflight_batches=len(self._inflight),
                dead_letter_rows=store.dead_letters,
                pending_commands=store.pending_commands(),
                devices_online=online,
                devices_offline=len(presence) - online,
                site_connected=int(self.site.connected),
                backend_connected=int(self.backend.connected),
                queue_over_bound=int(store.rows > store.max_rows or store.bytes > store.max_bytes),
            )
        )
        with self.metrics.lock:
            self.metrics.counters.reconnects_site = self.site.reconnects
            self.metrics.counters.reconnects_backend = self.backend.reconnects
            self.metrics.counters.connect_failures_site = self.site.connect_failures
            self.metrics.counters.connect_failures_backend = self.backend.connect_failures


__all__ = ["SITE_UPLINKS", "Gateway"]
