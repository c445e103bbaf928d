"""The real leak sensor board (ESP32 + I2S MEMS/piezo front end + battery divider).

Only ``make_board(pins)`` touches ``machine``; importing creates nothing.
``board.json`` example::

    {"i2s": {"id": 0, "sck": 26, "ws": 25, "sd": 33, "rate": 8000},
     "battery_adc": 35, "battery_ratio": 2.0, "sensor_power": 27, "wdt_ms": 60000,
     "rtc_ppm": 50, "ntp_unc_us": 500000}

Clock quality (``clock_quality()``, stamped on raw recordings): ``main.py``
calls ``clock_synced()`` after a successful NTP sync (saved on flash, it
survives deep sleep and power cuts). The uncertainty is ``ntp_unc_us`` at the
sync (MicroPython's ``ntptime`` sets whole seconds, and ``time_ms()`` has a
one-second resolution: half a second by default) plus the RTC's drift
``rtc_ppm`` µs per second since; without any sync the source is ``rtc``.
"""

from fwstore import JsonStore

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from array import array  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

    import machine as _machine  # noqa: F401  (used in type comments)


class LeakBoard:
    def __init__(self, machine, pins, data_dir="/data"):
        # type: (Any, dict, str) -> None
        # machine: the ``machine`` module (make_board), or a stand-in in tests
        self.m = machine
        self.pins = pins
        self.data_dir = data_dir
        self.store = JsonStore(data_dir)
        self.rtc = machine.RTC()  # type: _machine.RTC
        self._i2s = None  # type: _machine.I2S | None
        self.power = (
            machine.Pin(pins["sensor_power"], machine.Pin.OUT, value=0)
            if "sensor_power" in pins
            else None
        )  # type: _machine.Pin | None
        self.bat = machine.ADC(machine.Pin(pins["battery_adc"])) if "battery_adc" in pins else None  # type: _machine.ADC | None
        if self.bat is not None:
            self.bat.atten(machine.ADC.ATTN_11DB)
        self.wdt = machine.WDT(timeout=pins.get("wdt_ms", 60000))  # type: _machine.WDT

    def time_ms(self):
        # type: () -> int | None
        import time

        t = time.time()
        if time.gmtime(0)[0] == 2000:
            t += 946684800
        return None if t < 1577836800 else t * 1000

    def clock_synced(self):
        # type: () -> None
        """The RTC was just set from NTP."""
        now = self.time_ms()
        if now is not None:
            self.store.save("clock", {"src": "ntp", "ms": now})

    def clock_quality(self):
        # type: () -> tuple[str, int, int]
        """(source, uncertainty µs, age s) of the clock now."""
        now = self.time_ms() or 0
        last = self.store.load("clock")
        ppm = self.pins.get("rtc_ppm", 50)
        if last is None or not isinstance(last.get("ms"), int) or last["ms"] > now:
            # never synced here: an RTC set by hand or kept across a power cut
            return "rtc", 1000000000000, 0
        age_s = (now - last["ms"]) // 1000
        return "ntp", self.pins.get("ntp_unc_us", 500000) + ppm * age_s, age_s

    def ticks_ms(self):
        # type: () -> int
        import time

        # an int at run time; the stubs' _TicksMs is opaque (see mqtt.ticks_ms)
        return time.ticks_ms()  # type: ignore[return-value]

    def sleep_ms(self, ms):
        # type: (int) -> None
        import time

        time.sleep_ms(ms)

    def audio_readinto(self, buf):
        # type: (array) -> int
        """int16 samples into ``buf`` (array "h"); returns how many."""
        if self._i2s is None:
            m = self.m
            c = self.pins["i2s"]
            if self.power is not None:
                self.power.value(1)
            self._i2s = m.I2S(
                c.get("id", 0), sck=m.Pin(c["sck"]), ws=m.Pin(c["ws"]), sd=m.Pin(c["sd"]),
                mode=m.I2S.RX, bits=16, format=m.I2S.MONO, rate=c.get("rate", 8000),
                ibuf=8192,
            )  # fmt: skip
        return self._i2s.readinto(buf) // 2

    def battery_v(self):
        # type: () -> float
        if self.bat is None:
            return 0.0
        return self.bat.read_uv() / 1e6 * self.pins.get("battery_ratio", 2.0)

    def feed_watchdog(self):
        # type: () -> None
        self.wdt.feed()

    def rtc_memory(self, data=None):
        # type: (bytes | None) -> bytes
        if data is None:
            return self.rtc.memory()
        self.rtc.memory(data)
        return data

    def deep_sleep(self, ms):
        # type: (int) -> None
        if self._i2s is not None:
            self._i2s.deinit()
        if self.power is not None:
            self.power.value(0)
        self.m.deepsleep(ms)

    def load(self, name):
        # type: (str) -> dict | None
        return self.store.load(name)

    def save(self, name, obj):
        # type: (str, dict) -> None
        self.store.save(name, obj)


def make_board(pins, data_dir="/data"):
    # type: (dict, str) -> LeakBoard
    import machine

    return LeakBoard(machine, pins, data_dir)
