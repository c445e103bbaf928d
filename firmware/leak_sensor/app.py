"""The acoustic leak sensor's application: wake, listen, send, sleep.

One wake cycle (``cycle()``), from a deep-sleep reset:

1. the clock must be set (RTC kept in deep sleep; NTP at the first boot);
2. inside tonight's quiet window (``window``: local "HH:MM"-"HH:MM",
   default 02:00-04:00) and not measured yet tonight: acquire ``listen_s``
   of audio block by block (``board.audio_readinto``) into
   ``edge.acoustic.NightFeatures``, read the battery, queue one telemetry
   message in the spool;
3. if the spool holds anything: connect, send, wait for the PUBACKs (at
   most ``send_s``), disconnect cleanly (the offline will is published);
4. return how long to deep-sleep: until the next window's start (or
   ``retry_s`` when the queue could not be emptied and the window is open).

Recordings (raw audio for correlation) are out of scope for now: nothing is
written but features. One asyncio task per concern is overkill for a
strictly sequential cycle; ``run()`` is one task plus the watchdog feeder.

Board interface (duck-typed): ``time_ms()``, ``ticks_ms()``,
``audio_readinto(buf) -> int`` (samples read, int16), ``battery_v()``,
``feed_watchdog()``, ``deep_sleep(ms)``, ``rtc_memory(data=None)``,
``load(name)``/``save(name, obj)``.
"""

from array import array

from mqtt import ticks_diff
from uplink import Identity, Link

from edge import acoustic

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from collections.abc import Callable  # noqa: F401  (used in type comments)

    import mqtt  # noqa: F401  (used in type comments)
    from leak_sensor.board import LeakBoard  # noqa: F401  (used in type comments)
    from uplink import Uplink  # noqa: F401  (used in type comments)

FW = "0.1.0"
DAY_MS = 86400000


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
        self.link = Link(uplink, make_client, board.ticks_ms)
        self.state = board.load("state") or {}

    def measured_tonight(self, start_ms):
        # type: (int) -> bool
        return self.state.get("night") == start_ms

    def acquire(self):
        # type: () -> dict
        """Listen ``listen_s`` seconds, block by block; the feature metrics."""
        nf = acoustic.NightFeatures(self.fs, **self.features)
        buf = array("h", bytes(2 * self.block))
        need = self.listen_s * self.fs
        got = 0
        while got < need:
            n = self.board.audio_readinto(buf)
            if n <= 0:
                break
            n = min(n, need - got)
            nf.feed(buf if n == len(buf) else buf[:n])
            got += n
            self.board.feed_watchdog()
        return nf.result()

    def measure(self, now_ms, start_ms):
        # type: (int, int) -> int | None
        values = self.acquire()
        values["battery_v"] = round(self.board.battery_v(), 3)
        values["queue_count"] = len(self.up.spool)
        values["dropped_count"] = self.up.spool.dropped
        rid = self.up.queue("telemetry", {"readings": [{"ts": now_ms, "ch": 0, "values": values}]})
        self.state["night"] = start_ms
        self.board.save("state", self.state)
        return rid

    def send_all(self):
        # type: () -> bool
        """Connect and send until the spool is empty (True) or ``send_s`` passes."""
        if not len(self.up.spool):
            return True
        t0 = self.board.ticks_ms()
        while ticks_diff(self.board.ticks_ms(), t0) < self.send_s * 1000:
            if self.link.step_connect():
                self.link.step_send()
                self.link.step_poll(50)
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
        if inside and not self.measured_tonight(start):
            self.measure(now, start)
        sent = self.send_all()
        now2 = self.board.time_ms() or now
        if not sent and now2 < end:
            return self.retry_s * 1000
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


def restore_identity(board, random_bytes):
    # type: (LeakBoard, bytes) -> Identity
    """The boot that deep sleep interrupted, or a new one after a power cut."""
    return Identity.from_bytes(board.rtc_memory()) or Identity.new(random_bytes)
