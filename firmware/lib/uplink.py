"""What both board applications share: identity, the spool-backed uplink, the link.

    Identity(boot, seq)          boot id + per-boot seq; to_bytes/from_bytes for RTC memory
    Uplink(dev, role, fw, ident, spool, now_ms)
        .queue(kind, fields, priority) -> spool id    composed, encoded, stored durably
        .status(state, ts)  -> bytes                  not spooled (the link sends it)
    Link(uplink, make_client)                          connection + sender, step by step
        .step_connect() / .step_poll() / .step_send()  one move each, never raises
    CommandBook(size=32)                               command ids seen, with their acks

Spool records are one kind letter then the canonical JSON payload, so the
sender knows the topic without parsing JSON. The link takes seq n for the
last-will and n + 1 for the online status on every connection
(docs/protocol.md, "Status and seq"). PUBACKs arrive in order (one
connection, QoS 1), so ``spool.ack(rid)`` of the acknowledged record also
covers the ones before it.
"""

import mqtt

from edge import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from collections.abc import Callable  # noqa: F401  (used in type comments)

    from edge.spool import Spool  # noqa: F401  (used in type comments)

_KIND_LETTER = {"telemetry": b"t", "event": b"e", "ack": b"a", "status": b"s", "recording": b"r"}
_LETTER_KIND = {116: "telemetry", 101: "event", 97: "ack", 115: "status", 114: "recording"}


class Identity:
    """Boot id and the next seq of this boot (docs/protocol.md, section 3)."""

    def __init__(self, boot, seq=0):
        # type: (str, int) -> None
        self.boot = boot
        self.seq = seq

    @classmethod
    def new(cls, random_bytes):
        # type: (bytes) -> Identity
        return cls(protocol.new_boot_id(random_bytes), 0)

    def take(self, n=1):
        # type: (int) -> int
        """Reserve n consecutive seqs; returns the first."""
        if self.seq + n > protocol.SEQ_MAX:
            raise OverflowError("seq space of this boot is used up; draw a new boot id")
        s = self.seq
        self.seq += n
        return s

    def to_bytes(self):
        # type: () -> bytes
        """For RTC memory across deep sleep (not flash: a power cut means a new boot)."""
        return b"LID1" + self.boot.encode() + b":" + str(self.seq).encode()

    @classmethod
    def from_bytes(cls, data):
        # type: (bytes) -> Identity | None
        try:
            if not data or bytes(data[:4]) != b"LID1":
                return None
            boot, seq = bytes(data[4:]).decode().split(":")
            ident = cls(boot, int(seq))
            protocol.validate(
                {"v": 1, "kind": "status", "dev": "x", "boot": boot, "seq": ident.seq,
                 "ts": 1767225600000, "state": "online", "role": "cabinet"}
            )  # fmt: skip
            return ident
        except (ValueError, UnicodeError):
            return None


class Uplink:
    """Composes uplink messages and queues them in the spool."""

    def __init__(self, dev, role, fw, ident, spool, now_ms):
        # type: (str, str, str, Identity, Spool, Callable[[], int | None]) -> None
        self.dev = dev
        self.role = role
        self.fw = fw
        self.ident = ident
        self.spool = spool
        self.now_ms = now_ms  # () -> int | None: UTC ms, None while the clock is unset
        self.refused = 0

    def compose(self, kind, fields, ts=None, seq=None):
        # type: (str, dict, int | None, int | None) -> bytes
        """Encoded message; takes the next seq unless ``seq`` is given."""
        msg = {"v": 1, "kind": kind, "dev": self.dev, "boot": self.ident.boot}
        msg["ts"] = ts if ts is not None else self.now_ms()
        msg.update(fields)
        if msg["ts"] is None:
            raise ValueError("clock not set: nothing is queued before it is")
        msg["seq"] = self.ident.seq if seq is None else seq
        data = protocol.encode(msg)  # ProtocolError before the seq is spent
        if seq is None:
            self.ident.take()
        return data

    def queue(self, kind, fields, priority=False):
        # type: (str, dict, bool) -> int | None
        """Compose and append durably; the spool id, or None if refused (full)."""
        data = self.compose(kind, fields)
        rid = self.spool.append(_KIND_LETTER[kind] + data, 1 if priority else 0)
        if rid is None:
            self.refused += 1
        return rid

    def status(self, state, ts, seq):
        # type: (str, int, int) -> bytes
        """A status message with an explicit seq (the link reserves n, n + 1)."""
        fields = {"state": state, "role": self.role}
        if self.fw:
            fields["fw"] = self.fw
        return self.compose("status", fields, ts, seq)

    def topic(self, kind):
        # type: (str) -> str
        return protocol.uplink_topic(self.dev, kind)


def split_record(record):
    # type: (bytes) -> tuple
    """(kind, payload) of a spool record."""
    return _LETTER_KIND[record[0]], record[1:]


class CommandBook:
    """The last ``size`` command ids with their ack fields (protocol: at least 32)."""

    def __init__(self, size=32):
        # type: (int) -> None
        self.size = size
        self._ids = []  # type: list
        self._acks = {}  # type: dict

    def get(self, cid):
        # type: (str) -> dict | None
        return self._acks.get(cid)

    def put(self, cid, ack_fields):
        # type: (str, dict) -> None
        if cid not in self._acks:
            self._ids.append(cid)
            if len(self._ids) > self.size:
                del self._acks[self._ids.pop(0)]
        self._acks[cid] = ack_fields


class Link:
    """The MQTT connection and the spool sender, as small steps for asyncio tasks.

    ``make_client()`` returns an unconnected ``mqtt.MQTTClient`` (or a stand-in
    with the same methods). Each step catches the network's errors, closes,
    and schedules the next connection attempt with ``mqtt.Backoff``.
    """

    def __init__(self, uplink, make_client, now_ticks, window=8, backoff=None, on_command=None):
        # type: (Uplink, Callable[[], mqtt.MQTTClient], Callable[[], int], int, mqtt.Backoff | None, Callable[[bytes], None] | None) -> None
        self.up = uplink
        self.make_client = make_client
        self.ticks = now_ticks  # () -> int ms, monotonic
        self.window = window
        self.backoff = backoff or mqtt.Backoff()
        self.on_command = on_command  # (payload bytes) -> None
        self.client = None  # type: mqtt.MQTTClient | None
        self.retry_at = None  # type: int | None  # ticks ms of the next connection attempt
        self.pid_rid = {}  # type: dict[int, int]  # PUBLISH pid -> spool id
        self.sent_upto = 0  # highest spool id published on this connection
        self.connects = 0
        self.errors = 0
        self.last_error = None  # type: BaseException | None
        self.sent = 0

    @property
    def connected(self):
        # type: () -> bool
        return self.client is not None and self.client.connected

    def _fail(self, exc):
        # type: (BaseException) -> None
        self.errors += 1
        self.last_error = exc
        if self.client is not None:
            self.client.close()
        self.pid_rid = {}
        self.sent_upto = 0
        self.retry_at = mqtt.ticks_add(self.ticks(), self.backoff.next_ms())  # type: ignore[type-var]  # int ticks

    def step_connect(self):
        # type: () -> bool
        """Connect if due; True when connected afterwards."""
        if self.connected:
            return True
        if self.retry_at is not None and mqtt.ticks_diff(self.ticks(), self.retry_at) < 0:
            return False
        ts = self.up.now_ms()
        if ts is None:
            return False  # no clock, nothing valid to say
        try:
            c = self.client or self.make_client()
            self.client = c
            c.on_puback = self._puback
            c.on_message = self._message
            n = self.up.ident.seq
            online = self.up.status("online", ts, n + 1)
            c.set_will(self.up.topic("status"), self.up.status("offline", ts, n), 1, True)
            c.connect()
            # the broker holds the will now: n and n + 1 are spent
            self.up.ident.take(2)
            self.pid_rid = {}
            self.sent_upto = 0
            c.publish(self.up.topic("status"), online, 1, True)
            c.subscribe(protocol.downlink_topic(self.up.dev, "cmd"), 1)
        except (OSError, mqtt.MQTTError, ValueError) as exc:
            self._fail(exc)
            return False
        self.connects += 1
        self.backoff.reset()
        self.retry_at = None
        return True

    def _puback(self, pid):
        # type: (int) -> None
        rid = self.pid_rid.pop(pid, None)
        if rid is not None:
            self.up.spool.ack(rid)

    def _message(self, topic, payload, retain, dup):
        # type: (str, bytes, bool, bool) -> None
        if self.on_command is not None:
            self.on_command(payload)

    def step_poll(self, timeout_ms=0):
        # type: (int) -> None
        if not self.connected:
            return
        try:
            self.client.poll(timeout_ms)  # type: ignore[union-attr]  # connected: a client
        except (OSError, mqtt.MQTTError) as exc:
            self._fail(exc)

    def step_send(self):
        # type: () -> int
        """Publish queued records up to ``window`` in flight; returns how many."""
        if not self.connected:
            return 0
        room = self.window - len(self.pid_rid)
        if room <= 0:
            return 0
        n = 0
        try:
            for rid, rec in self.up.spool.peek(len(self.pid_rid) + room):
                if rid <= self.sent_upto:
                    continue
                kind, payload = split_record(rec)
                pid = self.client.publish(  # type: ignore[union-attr]  # connected: a client
                    self.up.topic(kind), payload, 1, False
                )
                self.pid_rid[pid] = rid
                self.sent_upto = rid
                n += 1
        except (OSError, mqtt.MQTTError) as exc:
            self._fail(exc)
        self.sent += n
        return n

    def shutdown(self):
        # type: () -> None
        """Clean disconnect: the will (offline status) is published first."""
        if self.connected:
            try:
                self.client.disconnect()  # type: ignore[union-attr]  # connected: a client
            except (OSError, mqtt.MQTTError) as exc:
                self._fail(exc)
