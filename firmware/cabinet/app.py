"""The cabinet controller's application: one asyncio task per concern.

Hardware comes in through ``board`` (``board.py`` on a real board, a fake in
the tests); nothing is created at import. Every concern is a synchronous
``tick_*`` method that never blocks, wrapped by a small asyncio loop, so a
test can drive a whole night with a fake clock by calling the ticks.

| task | period | does |
| --- | --- | --- |
| schedule | ``schedule_s`` (10 s) | ``edge.schedule.level_at`` -> ``board.set_level`` |
| meter | ``sample_s`` (5 s) | ``board.read_meter`` -> ``edge.cabinet_faults`` -> events |
| telemetry | ``telemetry_s`` (600 s) | one reading per circuit + the cabinet -> spool |
| link | 50 ms | connect (will seq n, online n + 1), poll, backoff |
| sender | 100 ms | spool -> QoS 1 PUBLISH; PUBACK -> ``spool.ack`` |
| commands | 100 ms | ``down/cmd`` (set_level, set_schedule, set_config, get_config, |
|  |  | reboot) -> ``up/ack`` |
| watchdog | 1 s | feeds the hardware watchdog only while every other task is alive |

The board interface (duck-typed)::

    time_ms() -> int | None        UTC ms from the RTC; None while unset
    ticks_ms() -> int              monotonic ms
    set_level(ch, pct)             drive a circuit (contactor + 0-10 V/DALI)
    read_meter() -> dict           {"mains_bool", "door_bool", "temperature_c"?,
                                    "circuits": {ch: {"power_w"?, "current_a"?,
                                    "voltage_v"?, "energy_wh"?}}}
    feed_watchdog() / reset()
    load(name) -> dict | None / save(name, dict)     small JSON files on flash
"""

from mqtt import ticks_add, ticks_diff
from uplink import CommandBook, Link

from edge import cabinet_faults, protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from collections.abc import Callable  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

    import mqtt  # noqa: F401  (used in type comments)
    from cabinet.board import CabinetBoard  # noqa: F401  (used in type comments)
    from uplink import Uplink  # noqa: F401  (used in type comments)

    from edge.schedule import Program  # noqa: F401  (used in type comments)

try:
    from edge import schedule as _schedule
except ImportError:  # not on this build: lights follow the safe fallback
    _schedule = None  # type: ignore[assignment]  # a build without edge.schedule

FW = "0.1.0"
CONFIG_KEYS = {
    "telemetry_s": (60, 86400),
    "sample_s": (1, 600),
    "schedule_s": (1, 600),
}


class ScheduleRunner:
    """``edge.schedule`` behind a small interface (program, overrides, levels)."""

    def __init__(self, lat, lon, circuits):
        # type: (float | None, float | None, list) -> None
        self.lat = lat
        self.lon = lon
        self.circuits = circuits
        self.program = None  # type: Program | None
        self.program_obj = None  # type: dict | None
        self.overrides = []  # type: list

    def set_program(self, obj):
        # type: (dict) -> None
        """Compile and use ``obj``; ScheduleError leaves the old one running."""
        if _schedule is None:
            raise ValueError("no schedule interpreter on this build")
        self.program = _schedule.compile_program(obj)
        self.program_obj = obj

    def override(self, args, now_s):
        # type: (dict, int) -> dict
        if _schedule is None:
            raise ValueError("no schedule interpreter on this build")
        o = _schedule.make_override(args, now_s)
        self.overrides = _schedule.prune_overrides(self.overrides, now_s)
        self.overrides.append(o)
        return o

    def levels(self, now_s):
        # type: (int | None) -> dict
        """{ch: (level, source)}; everything at 100 % ("safe") without a schedule."""
        if _schedule is None:
            return {ch: (100, "safe") for ch in self.circuits}
        if now_s is not None:
            self.overrides = _schedule.prune_overrides(self.overrides, now_s)
        # level_at takes any position: a missing or bad one gives the safe levels
        return _schedule.level_at(
            self.program,
            now_s,
            self.lat,  # type: ignore[arg-type]
            self.lon,  # type: ignore[arg-type]
            self.overrides,
            self.circuits,
        )


class CabinetApp:
    """See the module docstring. ``config`` is the provisioned dict."""

    def __init__(self, board, config, uplink, make_client):
        # type: (CabinetBoard, dict, Uplink, Callable[[], mqtt.MQTTClient]) -> None
        self.board = board
        self.config = config
        self.up = uplink
        self.dev = config["dev"]
        circuits = config["circuits"]  # {"1": {"lamps", "rated_w", "curve"?}}
        self.circuits = sorted(int(ch) for ch in circuits)
        self.faults = cabinet_faults.CabinetFaults(
            {int(ch): c for ch, c in circuits.items()},
            config.get("lat"),
            config.get("lon"),
            **config.get("faults", {}),
        )
        self.schedule = ScheduleRunner(config.get("lat"), config.get("lon"), self.circuits)
        self.settings = {"telemetry_s": 600, "sample_s": 5, "schedule_s": 10}
        self.settings.update(board.load("settings") or {})
        saved = board.load("schedule")
        if saved is not None:
            try:  # noqa: SIM105 - no contextlib on MicroPython
                self.schedule.set_program(saved)
            except ValueError:
                pass  # a bad saved program: the fallback runs until a new one arrives
        self.link = Link(uplink, make_client, board.ticks_ms, on_command=self.inbox_put)
        self.book = CommandBook(32)
        self.inbox = []  # type: list
        self.levels = {}  # type: dict
        self.last = {}  # type: dict
        self.next_telemetry_ms = None  # type: int | None  # UTC ms of the next telemetry
        self.reboot_at = None  # type: int | None  # ticks ms
        self.errors = {}  # type: dict
        self.alive = {}  # type: dict
        self.running = True

    # --- schedule ------------------------------------------------------------

    def tick_schedule(self):
        # type: () -> None
        ms = self.board.time_ms()
        now_s = None if ms is None else ms // 1000
        for ch, (level, _src) in self.schedule.levels(now_s).items():
            if self.levels.get(ch) != level:
                self.board.set_level(ch, level)
                self.levels[ch] = level

    # --- meter and faults ----------------------------------------------------

    def tick_meter(self):
        # type: () -> None
        ms = self.board.time_ms()
        sample = self.board.read_meter()
        for ch, r in sample.get("circuits", {}).items():
            r["level_pct"] = self.levels.get(ch, 0)
        self.last = sample
        if ms is None:
            return
        for ev in self.faults.update(ms // 1000, sample):
            self.up.queue("event", ev, priority=True)

    # --- telemetry -----------------------------------------------------------

    def tick_telemetry(self):
        # type: () -> None
        ms = self.board.time_ms()
        if ms is None or not self.last:
            return
        period = self.settings["telemetry_s"] * 1000
        if self.next_telemetry_ms is None:
            self.next_telemetry_ms = (ms // period + 1) * period  # on the clock's grid
            return
        if ms < self.next_telemetry_ms:
            return
        self.next_telemetry_ms = (ms // period + 1) * period
        self.up.queue("telemetry", {"readings": self.readings(ms)})

    def readings(self, ms):
        # type: (int) -> list
        s = self.last
        cab = {
            "mains_bool": 1 if s.get("mains_bool", 1) else 0,
            "door_bool": 1 if s.get("door_bool", 0) else 0,
            "queue_count": len(self.up.spool),
            "dropped_count": self.up.spool.dropped,
        }
        if "temperature_c" in s:
            cab["temperature_c"] = s["temperature_c"]
        out = [{"ts": ms, "ch": 0, "values": cab}]
        energy = self.faults.energy_wh()
        for ch in self.circuits:
            r = s.get("circuits", {}).get(ch, {})
            v = {"level_pct": self.levels.get(ch, 0)}
            for k in ("power_w", "current_a", "voltage_v"):
                if k in r:
                    v[k] = float(r[k])
            v["energy_wh"] = float(r["energy_wh"]) if "energy_wh" in r else float(int(energy[ch]))
            out.append({"ts": ms, "ch": ch, "values": v})
        return out

    # --- commands ------------------------------------------------------------

    def inbox_put(self, payload):
        # type: (bytes) -> None
        if len(self.inbox) < 16:
            self.inbox.append(payload)

    def tick_commands(self):
        # type: () -> None
        while self.inbox:
            self.handle_command(self.inbox.pop(0))

    def handle_command(self, payload):
        # type: (bytes) -> dict | None
        """Execute one ``down/cmd`` payload and queue its ack; returns the ack fields."""
        try:
            cmd = protocol.decode(payload, protocol.downlink_topic(self.dev, "cmd"))
        except protocol.ProtocolError as exc:
            self.errors["bad_cmd"] = str(exc)
            return None  # no id to ack; the gateway has validated it already
        cid = cmd["id"]
        seen = self.book.get(cid)
        if seen is None:
            seen = self._execute(cmd)
            self.book.put(cid, seen)
        fields = {"cmd": cid}
        fields.update(seen)
        self.up.queue("ack", fields, priority=True)
        return fields

    def _execute(self, cmd):
        # type: (dict) -> dict
        ms = self.board.time_ms()
        if ms is not None and cmd["exp"] < ms:
            return _err("expired", "exp " + str(cmd["exp"]) + " is in the past")
        name = cmd["name"]
        args = cmd["args"]
        try:
            if name == "set_level":
                if ms is None:
                    return _err("failed", "clock not set: an override could never expire")
                o = self.schedule.override(args, ms // 1000)
                self.tick_schedule()
                return {"ok": True, "result": {"until_ts": o["end"] * 1000}}
            if name == "set_schedule":
                self.schedule.set_program(args)
                self.board.save("schedule", args)
                self.tick_schedule()
                return {"ok": True}
            if name == "set_config":
                new = {}
                for k, v in args.items():
                    if k not in CONFIG_KEYS:
                        return _err(
                            "bad_args",
                            k + ": not a setting (" + ", ".join(sorted(CONFIG_KEYS)) + ")",
                        )
                    lo, hi = CONFIG_KEYS[k]
                    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                        return _err(
                            "bad_args",
                            k
                            + ": "
                            + repr(v)
                            + " is not an integer in "
                            + str(lo)
                            + ".."
                            + str(hi),
                        )
                    new[k] = v
                self.settings.update(new)
                self.board.save("settings", self.settings)
                self.next_telemetry_ms = None
                return {"ok": True}
            if name == "get_config":
                res = dict(self.settings)  # type: dict[str, Any]
                res["fw"] = FW
                if self.schedule.program_obj is not None and "id" in self.schedule.program_obj:
                    res["schedule_id"] = self.schedule.program_obj["id"]
                return {"ok": True, "result": res}
            if name == "reboot":
                # after the ack is sent; ticks_add, not +, survives the ticks wrap
                self.reboot_at = ticks_add(self.board.ticks_ms(), 5000)  # type: ignore[type-var]
                return {"ok": True}
        except ValueError as exc:  # ScheduleError is a ValueError
            code = getattr(exc, "code", None)
            return _err(code if code in ("bad_type", "out_of_range") else "bad_args", str(exc))
        return _err("unknown_command", name + " is not a cabinet command")

    # --- link ----------------------------------------------------------------

    def tick_link(self):
        # type: () -> None
        if self.link.step_connect():
            self.link.step_poll(0)
        if self.reboot_at is not None and ticks_diff(self.board.ticks_ms(), self.reboot_at) >= 0:
            self.reboot_at = None
            self.link.shutdown()
            self.board.reset()  # does not return on a board

    def tick_sender(self):
        # type: () -> None
        self.link.step_send()

    # --- asyncio -------------------------------------------------------------

    async def _every(self, name, period_ms, fn):
        import asyncio

        while self.running:
            try:
                fn()
            except Exception as exc:  # one concern's bug must not stop the others
                self.errors[name] = repr(exc)
            self.alive[name] = self.board.ticks_ms()
            await asyncio.sleep(period_ms() / 1000)

    def tick_watchdog(self):
        # type: () -> None
        now = self.board.ticks_ms()
        for name, t in self.alive.items():
            if name != "watchdog" and ticks_diff(now, t) > 120000:
                return  # a task is stuck: let the watchdog reset the board
        self.board.feed_watchdog()

    async def run(self):
        import asyncio

        s = self.settings
        loops = (
            ("schedule", lambda: s["schedule_s"] * 1000, self.tick_schedule),
            ("meter", lambda: s["sample_s"] * 1000, self.tick_meter),
            ("telemetry", lambda: 1000, self.tick_telemetry),
            ("link", lambda: 50, self.tick_link),
            ("sender", lambda: 100, self.tick_sender),
            ("commands", lambda: 100, self.tick_commands),
            ("watchdog", lambda: 1000, self.tick_watchdog),
        )
        tasks = [asyncio.create_task(self._every(n, p, f)) for n, p, f in loops]
        try:
            while self.running:
                await asyncio.sleep(0.2)
        finally:
            for t in tasks:
                t.cancel()
            self.link.shutdown()


def _err(code, reason):
    # type: (str, str) -> dict
    return {"ok": False, "err": {"code": code, "reason": reason[:256]}}
