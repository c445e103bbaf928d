"""The acoustic leak sensor's application: wake, listen, send, sleep.

One wake cycle (``cycle()``), from a deep-sleep reset:

1. the clock must be set (RTC kept in deep sleep; NTP at the first boot);
2. inside tonight's quiet window (``window``: local "HH:MM"-"HH:MM",
   default 02:00-04:00) and not measured yet tonight: acquire ``listen_s``
   of audio block by block (``board.audio_readinto``) into
   ``edge.acoustic.NightFeatures`` and, when a raw recording is due
   (``record_raw`` in the config, or a ``get_recording`` asked for a night
   not acquired yet), into an ``edge.recording.RecordingStore`` too; read
   the battery, queue one telemetry message in the spool;
3. connect, send, wait for the PUBACKs (at most ``send_s``), answer the
   commands that arrive (``get_recording``, ``release_recording``: an
   ``ack`` each), feed recording chunks into the spool ``rec_window`` at a
   time and at most ``rec_parts_per_wake`` per wake, disconnect cleanly
   (the offline will is published);
4. return how long to deep-sleep: until the next window's start (or
   ``retry_s`` when the queue could not be emptied and the window is open,
   or when recording parts are still waiting after a wake that sent all it
   queued).

One asyncio task per concern is overkill for a strictly sequential cycle;
``run()`` is one task plus the watchdog feeder.

Board interface (duck-typed): ``time_ms()``, ``ticks_ms()``,
``audio_readinto(buf) -> int`` (samples read, int16), ``battery_v()``,
``feed_watchdog()``, ``deep_sleep(ms)``, ``rtc_memory(data=None)``,
``load(name)``/``save(name, obj)``, ``data_dir`` (folder on flash) and
``clock_quality() -> (src, unc_us, age_s)`` (the clock's last sync).
"""

from array import array

from mqtt import ticks_diff
from uplink import CommandBook, Identity, Link

from edge import acoustic, protocol
from edge.recording import RecordingStore

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from collections.abc import Callable  # noqa: F401  (used in type comments)

    import mqtt  # noqa: F401  (used in type comments)
    from leak_sensor.board import LeakBoard  # noqa: F401  (used in type comments)
    from uplink import Uplink  # noqa: F401  (used in type comments)

FW = "0.1.0"
DAY_MS = 86400000
REC_WINDOW = 4  # recording chunks in the spool at a time (about 31 KB)
REC_PARTS_PER_WAKE = 24  # recording chunks queued per wake at most (about 185 KB)


def parse_hhmm(text):
    # type: (str) -> int
    """Minutes after local midnight of ``"HH:MM"``."""
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise ValueError("window: " + repr(text) + " is not HH:MM")
    h = int(text[:2])
    m = int(text[3:])
    if h > 23 or m > 59:
        raise ValueError("window: " + repr(text) + " is not a time of day")
    return h * 60 + m


def window_bounds(now_ms, start_min, end_min, offset_min):
    # type: (int, int, int, int) -> tuple
    """(start, end) in UTC ms of the window that contains ``now_ms`` or comes next."""
    off = offset_min * 60000
    local = now_ms + off
    day0 = local - local % DAY_MS
    length = ((end_min - start_min) % 1440 or 1440) * 60000
    for d in (-1, 0, 1):
        s = day0 + d * DAY_MS + start_min * 60000
        if local < s + length:
            return s - off, s - off + length
    raise AssertionError("unreachable")


class LeakApp:
    def __init__(self, board, config, uplink, make_client):
        # type: (LeakBoard, dict, Uplink, Callable[[], mqtt.MQTTClient]) -> None
        self.board = board
        self.config = config
        self.up = uplink
        w = config.get("window", ["02:00", "04:00"])
        self.start_min = parse_hhmm(w[0])
        self.end_min = parse_hhmm(w[1])
        self.offset_min = config.get("utc_offset_min", 60)
        self.listen_s = config.get("listen_s", 60)
        self.fs = config.get("fs", 8000)
        self.block = config.get("block", 1024)
        self.send_s = config.get("send_s", 30)
        self.retry_s = config.get("retry_s", 900)
        self.features = config.get("features", {})
        self.record_raw = config.get("record_raw", False) is True
        self.rec_window = config.get("rec_window", REC_WINDOW)
        self.rec_budget = config.get("rec_parts_per_wake", REC_PARTS_PER_WAKE)
        self.link = Link(uplink, make_client, board.ticks_ms, on_command=self.inbox_put)
        self.state = board.load("state") or {}
        # recovers a recording cut by a power cut; cheap when the folder is empty
        self.store = RecordingStore(
            board.data_dir + "/rec",
            uplink.ident.boot,
            max_recordings=config.get("rec_max", 4),
            max_bytes=config.get("rec_max_bytes", 1024 * 1024),
        )
        self.book = CommandBook(32)
        saved = board.load("cmds") or {}
        for cid in saved.get("ids", []):
            if cid in saved.get("acks", {}):
                self.book.put(cid, saved["acks"][cid])
        self.inbox = []  # type: list
        self.acks = 0  # acks queued this wake

    def measured_tonight(self, start_ms):
        # type: (int) -> bool
        return self.state.get("night") == start_ms

    def recording_due(self, now_ms, start_ms):
        # type: (int, int) -> bool
        """A raw recording is wanted tonight and was not made yet: ``record_raw``
        with tonight's measurement, or a ``get_recording`` whose ``since``
        (``state["want_rec"]``) has come."""
        if self.state.get("rec_night") == start_ms:
            return False
        want = self.state.get("want_rec")
        if want is not None and want <= now_ms:
            return True
        return self.record_raw and not self.measured_tonight(start_ms)

    def clock(self):
        # type: () -> dict
        src, unc_us, age_s = self.board.clock_quality()
        return {"src": src, "unc_us": int(unc_us), "age_s": int(age_s)}

    def acquire(self, record=False):
        # type: (bool) -> dict
        """Listen ``listen_s`` seconds, block by block; the feature metrics.
        With ``record``, the same blocks go to a new raw recording too."""
        nf = acoustic.NightFeatures(self.fs, **self.features)
        buf = array("h", bytes(2 * self.block))
        need = self.listen_s * self.fs
        got = 0
        w = None
        if record:
            t0 = self.board.time_ms()
            if t0 is not None:
                # t0 is the first sample's time: read just before the first block
                try:
                    w = self.store.start(t0 * 1000, self.fs, self.clock())
                except ValueError:
                    w = None  # a description the protocol refuses: features only
        try:
            while got < need:
                n = self.board.audio_readinto(buf)
                if n <= 0:
                    break
                n = min(n, need - got)
                blk = buf if n == len(buf) else buf[:n]
                nf.feed(blk)
                if w is not None and not w.full:
                    w.write(blk)
                got += n
                self.board.feed_watchdog()
        finally:
            if w is not None:
                w.finish()
        return nf.result()

    def recording_values(self):
        # type: () -> dict
        return {
            "recordings_count": len(self.store),
            "recording_parts_count": self.store.pending(),
            "recordings_dropped_count": self.store.dropped,
        }

    def measure(self, now_ms, start_ms, features=True, record=False):
        # type: (int, int, bool, bool) -> int | None
        """Acquire tonight; telemetry unless ``features`` is off (a recording
        asked for after tonight's measurement)."""
        if record:
            self.state["rec_night"] = start_ms
            self.state.pop("want_rec", None)
        values = self.acquire(record)
        rid = None
        if features:
            values["battery_v"] = round(self.board.battery_v(), 3)
            values["queue_count"] = len(self.up.spool)
            values["dropped_count"] = self.up.spool.dropped
            values.update(self.recording_values())
            rid = self.up.queue(
                "telemetry", {"readings": [{"ts": now_ms, "ch": 0, "values": values}]}
            )
            self.state["night"] = start_ms
        self.board.save("state", self.state)
        return rid

    # --- commands ------------------------------------------------------------

    def inbox_put(self, payload):
        # type: (bytes) -> None
        if len(self.inbox) < 16:
            self.inbox.append(payload)

    def handle_inbox(self):
        # type: () -> None
        handled = False
        while self.inbox:
            handled = self.handle_command(self.inbox.pop(0)) is not None or handled
        if handled:
            self.board.save("cmds", {"ids": self.book._ids, "acks": self.book._acks})

    def handle_command(self, payload):
        # type: (bytes) -> dict | None
        """Execute one ``down/cmd`` payload and queue its ack (priority);
        returns the ack fields. A command id seen before is acked again,
        not executed (the book is saved across deep sleep)."""
        try:
            cmd = protocol.decode(payload, protocol.downlink_topic(self.up.dev, "cmd"))
        except protocol.ProtocolError:
            return None  # no id to ack; the gateway has validated it already
        cid = cmd["id"]
        seen = self.book.get(cid)
        if seen is None:
            seen = self._execute(cmd)
            self.book.put(cid, seen)
        fields = {"cmd": cid}
        fields.update(seen)
        self.up.queue("ack", fields, priority=True)
        self.acks += 1
        return fields

    def _execute(self, cmd):
        # type: (dict) -> dict
        ms = self.board.time_ms()
        if ms is not None and cmd["exp"] < ms:
            return _err("expired", "exp " + str(cmd["exp"]) + " is in the past")
        name = cmd["name"]
        args = cmd["args"]
        ack = self.store.handle_command(name, args)
        if ack is None:
            return _err("unknown_command", name + " is not a leak sensor command")
        if name == "get_recording" and ack["ok"] and "rec" not in args and "since" in args:
            # recordings from ``since`` on that do not exist yet: record the
            # first acquisition at or after it
            last = self.state.get("rec_night")
            if last is None or args["since"] > last:
                self.state["want_rec"] = args["since"]
                self.board.save("state", self.state)
        return ack

    # --- sending -------------------------------------------------------------

    def pump(self):
        # type: () -> int
        """Queue recording chunks while the spool holds fewer than
        ``rec_window`` records and this wake's budget lasts; returns how many."""
        n = 0
        while self.rec_budget > 0 and len(self.up.spool) < self.rec_window:
            fields = self.store.next_chunk()
            if fields is None:
                break
            try:
                rid = self.up.queue("recording", fields)
            except ValueError:
                break  # no clock, or a chunk the protocol refuses: next wake
            if rid is None:
                break  # spool full
            self.store.sent(fields["rec"], fields["part"])
            self.rec_budget -= 1
            n += 1
        return n

    def send_all(self):
        # type: () -> bool
        """Connect and send until the spool is empty (True) or ``send_s`` passes;
        commands are answered and recording chunks fed in on the way."""
        self.pump()
        if not len(self.up.spool):
            return True
        t0 = self.board.ticks_ms()
        while ticks_diff(self.board.ticks_ms(), t0) < self.send_s * 1000:
            if self.link.step_connect():
                self.link.step_send()
                self.link.step_poll(50)
                self.handle_inbox()
                self.pump()
                if not len(self.up.spool):
                    self.link.shutdown()
                    return True
            else:
                if self.link.retry_at is None:
                    return False  # no clock
                self.board.sleep_ms(100)
            self.board.feed_watchdog()
        self.link.shutdown()
        return False

    def cycle(self):
        # type: () -> int
        """One wake; returns the deep sleep in ms."""
        now = self.board.time_ms()
        if now is None:
            return self.retry_s * 1000  # no clock: try NTP again later
        start, end = window_bounds(now, self.start_min, self.end_min, self.offset_min)
        inside = start <= now < end
        if inside:
            features = not self.measured_tonight(start)
            record = self.recording_due(now, start)
            if features or record:
                self.measure(now, start, features, record)
        sent = self.send_all()
        now2 = self.board.time_ms() or now
        if sent and start <= now2 < end and self.recording_due(now2, start):
            # a get_recording of this wake asked for tonight, measured already
            self.measure(now2, start, False, True)
            sent = self.send_all()
            now2 = self.board.time_ms() or now2
        if not sent and now2 < end:
            return self.retry_s * 1000
        if sent and self.store.pending():
            return self.retry_s * 1000  # more recording parts: a short sleep, not a night
        if now2 < start:
            return max(start - now2, 1000)  # woken before tonight's window: sleep until it opens
        nxt, _ = window_bounds(max(now2, end), self.start_min, self.end_min, self.offset_min)
        return max(nxt - now2, 1000)

    def save_identity(self):
        # type: () -> None
        self.board.rtc_memory(self.up.ident.to_bytes())

    def run(self):
        # type: () -> None
        """Board entry: one cycle, then deep sleep (a reset follows)."""
        ms = self.cycle()
        self.save_identity()
        self.board.deep_sleep(ms)


def _err(code, reason):
    # type: (str, str) -> dict
    return {"ok": False, "err": {"code": code, "reason": reason[:256]}}


def restore_identity(board, random_bytes):
    # type: (LeakBoard, bytes) -> Identity
    """The boot that deep sleep interrupted, or a new one after a power cut."""
    return Identity.from_bytes(board.rtc_memory()) or Identity.new(random_bytes)
