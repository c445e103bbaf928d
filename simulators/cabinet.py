"""A street-lighting cabinet without hardware: the real firmware on simulated circuits.

``CabinetBoard`` implements the board interface of ``firmware/cabinet/app.py``
(see its docstring) with electrical physics: each circuit has lamps of a rated
power behind a dimmable driver (``edge.cabinet_faults``' driver curve), a
mains voltage with a little noise, and the happenings of the scenario (dark
lamps, an open door, a stuck relay, an unmetered load, a power cut).
``SimCabinet`` runs the firmware's ``CabinetApp`` on it, tick by tick of the
simulated clock, with the firmware's own MQTT client on a real broker.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import cabinet_faults
from edge.spool import Spool

from .clock import SimClock
from .firmware_modules import load
from .happenings import Happening, active

POWER_FACTOR = 0.95


@dataclass(frozen=True)
class Circuit:
    lamps: int
    rated_w: float


@dataclass(frozen=True)
class BrokerAccount:
    """Where and as whom a simulated device connects (its provisioned config)."""

    host: str
    port: int
    password: str


class CabinetBoard:
    """The hardware of one cabinet, simulated."""

    def __init__(
        self,
        clock: SimClock,
        circuits: dict[int, Circuit],
        happenings: tuple[Happening, ...],
        seed: int,
    ) -> None:
        self.clock = clock
        self.circuits = circuits
        self.happenings = happenings
        self.levels: dict[int, int] = {}
        self.files: dict[str, Any] = {}  # the board's flash (survives a power cut)
        self._noise = random.Random(seed)
        self.resets = 0

    # --- the board interface of CabinetApp ---------------------------------

    def time_ms(self) -> int:
        return self.clock.now_ms

    def ticks_ms(self) -> int:
        return self.clock.ticks_ms()

    def set_level(self, ch: int, pct: int) -> None:
        self.levels[ch] = pct

    def read_meter(self) -> dict[str, Any]:
        now = self.clock.now_ms
        voltage = 230.0 + self._noise.uniform(-2.0, 2.0)
        circuits: dict[int, dict[str, float]] = {}
        for ch, circuit in self.circuits.items():
            level = self.lit_level(ch)
            dark = sum(
                h.count for h in active(self.happenings, "lamps_failed", now) if h.channel == ch
            )
            burning = max(circuit.lamps - dark, 0)
            power = cabinet_faults.expected_power_w(burning, circuit.rated_w, level)
            if level > 0:
                power += sum(
                    h.watts for h in active(self.happenings, "extra_load", now) if h.channel == ch
                )
            power *= 1.0 + self._noise.uniform(-0.005, 0.005)
            circuits[ch] = {
                "power_w": round(power, 1),
                "voltage_v": round(voltage, 1),
                "current_a": round(power / (voltage * POWER_FACTOR), 3),
            }
        door = 1 if active(self.happenings, "door_open", now) else 0
        return {"mains_bool": 1, "door_bool": door, "temperature_c": 6.5, "circuits": circuits}

    def feed_watchdog(self) -> None:
        pass

    def reset(self) -> None:
        self.resets += 1

    def load(self, name: str) -> Any:
        return json.loads(json.dumps(self.files[name])) if name in self.files else None

    def save(self, name: str, obj: Any) -> None:
        self.files[name] = json.loads(json.dumps(obj))

    # --- physics ------------------------------------------------------------

    def lit_level(self, ch: int) -> int:
        """What the circuit really does: the controller's level, unless its relay is stuck."""
        if any(h.channel == ch for h in active(self.happenings, "relay_stuck", self.clock.now_ms)):
            return 100
        return self.levels.get(ch, 0)

    def powered(self) -> bool:
        return not active(self.happenings, "power_cut", self.clock.now_ms)


class SimCabinet:
    """The firmware's CabinetApp on a ``CabinetBoard``, connected to a real broker."""

    def __init__(
        self,
        dev: str,
        account: BrokerAccount,
        clock: SimClock,
        folder: Path,
        *,
        lat: float,
        lon: float,
        circuits: dict[int, Circuit],
        happenings: tuple[Happening, ...] = (),
        seed: int = 0,
    ) -> None:
        self.dev = dev
        self.account = account
        self.clock = clock
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.board = CabinetBoard(clock, circuits, happenings, seed)
        self.config: dict[str, Any] = {
            "dev": dev,
            "lat": lat,
            "lon": lon,
            "circuits": {
                str(ch): {"lamps": c.lamps, "rated_w": c.rated_w} for ch, c in circuits.items()
            },
        }
        self.boots: list[str] = []
        self.app: Any = None
        self._was_powered = False

    def _boot(self) -> None:
        """Power on: a new boot id; the spool and the saved program survive (flash)."""
        uplink = load("uplink")
        fw = load("cabinet.app")
        spool = Spool(str(self.folder / "spool"), max_bytes=256 * 1024, max_records=2048)
        ident = uplink.Identity.new(os.urandom(8))
        up = uplink.Uplink(self.dev, "cabinet", fw.FW, ident, spool, self.board.time_ms)
        self.app = fw.CabinetApp(self.board, self.config, up, self._make_client)
        self.app.link.backoff = load("mqtt").Backoff(base_ms=2000, max_ms=60000)
        self.boots.append(ident.boot)

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

    def _power_off(self) -> None:
        """The supply goes: the TCP connection dies unannounced (the broker sends the will)."""
        if self.app is not None:
            client = self.app.link.client
            if client is not None:
                client.close()
            self.app.up.spool.close()
            self.app = None

    def step(self, schedule: bool = True) -> None:
        """One pass of every task, as the asyncio loop of the board would run them."""
        powered = self.board.powered()
        if powered and not self._was_powered:
            self._boot()
        elif not powered and self._was_powered:
            self._power_off()
        self._was_powered = powered
        if self.app is None:
            return
        app = self.app
        if schedule:
            app.tick_schedule()
        app.tick_meter()
        app.tick_telemetry()
        app.tick_link()
        app.tick_sender()
        app.link.step_poll(0)  # PUBACKs and commands that arrived meanwhile
        app.tick_commands()

    def queued(self) -> int:
        return 0 if self.app is None else len(self.app.up.spool)

    def stop(self) -> None:
        """A clean shutdown: the device itself publishes its offline status."""
        if self.app is not None:
            self.app.link.shutdown()
            self.app.up.spool.close()
            self.app = None
        self._was_powered = False
