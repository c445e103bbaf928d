"""An acoustic leak sensor without hardware: the real firmware on synthesised pipe noise.

``LeakBoard`` implements the board interface of ``firmware/leak_sensor/app.py``:
its microphone hears the sensor's own floor (white noise, -64 dBFS by
default), passing traffic (loud bursts of a second or two, now and then),
and, while a ``leak`` happening is active, a leak: stationary noise in the
400-1200 Hz band at the happening's level, growing by ``growth_db`` a day.
That is the signature the night features were designed for
(docs/leak_features.md): a leak lifts the quietest sub-windows (L90, the
minimum) and narrows the spread; traffic lifts only the loud ones.

``SimLeakSensor`` wakes the firmware's ``LeakApp`` the way deep sleep does on
a board (a new app each wake, the boot and sequence restored from RTC
memory), on the simulated clock, with the firmware's MQTT client on a real
broker.
"""

from __future__ import annotations

import json
import math
import os
import random
from array import array
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from edge.spool import Spool

from .cabinet import BrokerAccount
from .clock import SimClock
from .firmware_modules import load
from .happenings import Happening, active

FULL_SCALE = 32768.0
FS = 8000
_LEAK_BAND = signal.butter(4, (400, 1200), btype="bandpass", fs=FS, output="sos")


def rms_counts(level_dbfs: float) -> float:
    """The RMS amplitude, in 16-bit counts, of a noise at ``level_dbfs``."""
    return float(FULL_SCALE * 10.0 ** (level_dbfs / 20.0))


class LeakBoard:
    """The hardware of one sensor, simulated."""

    def __init__(
        self,
        clock: SimClock,
        folder: Path,
        happenings: tuple[Happening, ...],
        seed: int,
        *,
        floor_db: float = -64.0,
        traffic_db: float = -40.0,
        battery_v: float = 3.6,
    ) -> None:
        self.clock = clock
        self.data_dir = str(folder / "flash")
        os.makedirs(self.data_dir, exist_ok=True)
        self.happenings = happenings
        self.floor_db = floor_db
        self.traffic_db = traffic_db
        self.battery_full_v = battery_v
        self.files: dict[str, Any] = {}
        self.rtc = b""
        self._rng = np.random.default_rng(seed)
        self._traffic_left = 0  # samples of the current passing vehicle
        self._leak_state = signal.sosfilt_zi(_LEAK_BAND) * 0.0

    # --- the board interface of LeakApp --------------------------------------

    def time_ms(self) -> int:
        return self.clock.now_ms

    def ticks_ms(self) -> int:
        return self.clock.ticks_ms()

    def sleep_ms(self, ms: int) -> None:
        self.clock.advance(ms)

    def clock_quality(self) -> tuple[str, int, int]:
        return ("ntp", 900, 300)

    def audio_readinto(self, buf: Any) -> int:
        n = len(buf)
        samples = self._rng.normal(0.0, rms_counts(self.floor_db), n)
        samples += self._traffic(n)
        leak = self.leak_level_db()
        if leak is not None:
            noise = self._rng.normal(0.0, 1.0, n)
            band, self._leak_state = signal.sosfilt(_LEAK_BAND, noise, zi=self._leak_state)
            # the band-passed unit noise has an RMS of about sqrt(800 / 4000)
            samples += band * (rms_counts(leak) / math.sqrt(800.0 / (FS / 2)))
        block = np.clip(np.rint(samples), -32768, 32767).astype("<i2")
        buf[:] = array("h", block.tobytes())
        self.clock.advance(n * 1000 // FS)
        return n

    def battery_v(self) -> float:
        drain = sum(
            h.volts_per_day * h.days_in(self.clock.now_ms)
            for h in self.happenings
            if h.kind == "battery_drain" and h.start_ms <= self.clock.now_ms
        )
        return max(self.battery_full_v - drain, 2.5)

    def feed_watchdog(self) -> None:
        pass

    def rtc_memory(self, data: bytes | None = None) -> bytes:
        if data is not None:
            self.rtc = bytes(data)
        return self.rtc

    def load(self, name: str) -> Any:
        return json.loads(json.dumps(self.files[name])) if name in self.files else None

    def save(self, name: str, obj: Any) -> None:
        self.files[name] = json.loads(json.dumps(obj))

    # --- physics ------------------------------------------------------------

    def leak_level_db(self) -> float | None:
        leaks = active(self.happenings, "leak", self.clock.now_ms)
        if not leaks:
            return None
        levels = [h.level_db + h.growth_db * h.days_in(self.clock.now_ms) for h in leaks]
        # independent noises add in power
        return 10.0 * math.log10(sum(10.0 ** (lv / 10.0) for lv in levels))

    def _traffic(self, n: int) -> Any:
        out = np.zeros(n)
        i = 0
        while i < n:
            if self._traffic_left == 0:
                # about one vehicle every 20 s of listening, heard for 1-2 s
                if self._rng.random() < n / (20.0 * FS):
                    self._traffic_left = int(self._rng.uniform(1.0, 2.0) * FS)
                else:
                    break
            take = min(self._traffic_left, n - i)
            out[i : i + take] = self._rng.normal(0.0, rms_counts(self.traffic_db), take)
            self._traffic_left -= take
            i += take
        return out


class SimLeakSensor:
    """The firmware's LeakApp, woken by the simulated clock like deep sleep wakes a board."""

    def __init__(
        self,
        dev: str,
        account: BrokerAccount,
        clock: SimClock,
        folder: Path,
        *,
        happenings: tuple[Happening, ...] = (),
        seed: int = 0,
        listen_s: int = 8,
        utc_offset_min: int = 60,
    ) -> None:
        self.dev = dev
        self.account = account
        self.clock = clock
        self.folder = folder
        self.board = LeakBoard(clock, folder, happenings, seed)
        self.config: dict[str, Any] = {
            "dev": dev,
            "listen_s": listen_s,
            "utc_offset_min": utc_offset_min,
            "send_s": 20,
        }
        self.next_wake_ms = clock.now_ms
        self.wakes = 0
        self._random = random.Random(seed)

    def _make_client(self) -> Any:
        mqtt = load("mqtt")
        return mqtt.MQTTClient(
            self.dev,
            self.account.host,
            self.account.port,
            user=self.dev,
            password=self.account.password,
            keepalive=60,
            clean_session=False,
        )

    def due(self) -> bool:
        return self.clock.now_ms >= self.next_wake_ms

    def wake(self) -> int:
        """One wake from deep sleep, as ``main.py`` runs it; returns the sleep in ms."""
        app_mod = load("leak_sensor.app")
        uplink = load("uplink")
        ident = app_mod.restore_identity(
            self.board, bytes(self._random.randrange(256) for _ in range(8))
        )
        spool = Spool(str(self.folder / "spool"), max_bytes=64 * 1024, max_records=512)
        up = uplink.Uplink(self.dev, "leak_sensor", app_mod.FW, ident, spool, self.board.time_ms)
        app = app_mod.LeakApp(self.board, self.config, up, self._make_client)
        try:
            sleep_ms = int(app.cycle())
            app.save_identity()
        finally:
            spool.close()
        self.wakes += 1
        self.next_wake_ms = self.clock.now_ms + sleep_ms
        return sleep_ms
