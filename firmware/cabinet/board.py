"""The real cabinet board (ESP32 + relays + 0-10 V dimming + CT meter).

Only ``make_board(pins)`` touches ``machine``; importing this module creates
nothing. Pin numbers come from the provisioned ``board.json`` (the
technician's tooling writes it), e.g.::

    {"relays": {"1": 25, "2": 26}, "dim": {"1": 32, "2": 33},
     "ct": {"1": 34, "2": 35}, "ct_a_per_v": 30.0, "voltage_v": 230.0,
     "mains": 27, "door": 14, "wdt_ms": 30000}

The meter here is the cheap one: one current transformer per circuit on an
ADC, RMS over 20 ms (one mains cycle at 50 Hz), voltage nominal. A Modbus
energy meter replaces ``read_meter`` where one is fitted (it also gives
power, power factor and an energy counter).
"""

import math

from fwstore import JsonStore

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

    import machine as _machine  # noqa: F401  (used in type comments)


class CabinetBoard:
    def __init__(self, machine, pins, data_dir="/data"):
        # type: (Any, dict, str) -> None
        # machine: the ``machine`` module (make_board), or a stand-in in tests
        self.m = machine
        self.pins = pins
        self.store = JsonStore(data_dir)
        self.rtc = machine.RTC()  # type: _machine.RTC
        self.relays = {}  # type: dict[int, _machine.Pin]
        self.dim = {}  # type: dict[int, _machine.PWM]
        self.ct = {}  # type: dict[int, _machine.ADC]
        for ch, n in pins.get("relays", {}).items():
            self.relays[int(ch)] = machine.Pin(n, machine.Pin.OUT, value=0)
        for ch, n in pins.get("dim", {}).items():
            self.dim[int(ch)] = machine.PWM(machine.Pin(n), freq=1000, duty_u16=0)
        for ch, n in pins.get("ct", {}).items():
            a = machine.ADC(machine.Pin(n))
            a.atten(machine.ADC.ATTN_11DB)
            self.ct[int(ch)] = a
        self.mains = machine.Pin(pins["mains"], machine.Pin.IN) if "mains" in pins else None  # type: _machine.Pin | None
        self.door = (
            machine.Pin(pins["door"], machine.Pin.IN, machine.Pin.PULL_UP)
            if "door" in pins
            else None
        )  # type: _machine.Pin | None
        self.wdt = machine.WDT(timeout=pins.get("wdt_ms", 30000))  # type: _machine.WDT

    def time_ms(self):
        # type: () -> int | None
        import time

        t = time.time()  # ESP32: seconds since 2000-01-01 on the port's epoch
        if time.gmtime(0)[0] == 2000:
            t += 946684800
        if t < 1577836800:  # 2020-01-01: the RTC is not set
            return None
        return t * 1000

    def ticks_ms(self):
        # type: () -> int
        import time

        # an int at run time; the stubs' _TicksMs is opaque (see mqtt.ticks_ms)
        return time.ticks_ms()  # type: ignore[return-value]

    def set_level(self, ch, pct):
        # type: (int, int) -> None
        if ch in self.relays:
            self.relays[ch].value(1 if pct > 0 else 0)
        if ch in self.dim:
            self.dim[ch].duty_u16(pct * 65535 // 100)

    def read_meter(self):
        # type: () -> dict
        import time

        out = {"circuits": {}}  # type: dict[str, Any]
        if self.mains is not None:
            out["mains_bool"] = self.mains.value()
        if self.door is not None:
            out["door_bool"] = 1 - self.door.value()  # contact closed = door shut
        v = self.pins.get("voltage_v", 230.0)
        k = self.pins.get("ct_a_per_v", 30.0)
        for ch, adc in self.ct.items():
            n = 0
            s = 0.0
            s2 = 0.0
            t0 = time.ticks_us()
            while time.ticks_diff(time.ticks_us(), t0) < 20000:
                x = adc.read_uv() / 1e6
                s += x
                s2 += x * x
                n += 1
            mean = s / n
            rms = math.sqrt(max(s2 / n - mean * mean, 0.0)) * k
            out["circuits"][ch] = {"current_a": rms, "voltage_v": v}
        return out

    def feed_watchdog(self):
        # type: () -> None
        self.wdt.feed()

    def reset(self):
        # type: () -> None
        self.m.reset()

    def load(self, name):
        # type: (str) -> dict | None
        return self.store.load(name)

    def save(self, name, obj):
        # type: (str, dict) -> None
        self.store.save(name, obj)


def make_board(pins, data_dir="/data"):
    # type: (dict, str) -> CabinetBoard
    import machine

    return CabinetBoard(machine, pins, data_dir)
