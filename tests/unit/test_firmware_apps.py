"""The board applications under CPython with a fake board, fake clock and fake broker.

The cabinet runs a simulated winter night (16:00-08:00 UTC in Paris) tick by
tick; three lamps fail at 22:00; the network drops for an hour and the
board reboots in the middle of it. Everything queued must reach the broker,
in order per boot, with the protocol's status/last-will seq rule, and
nothing twice within a connection. The leak sensor runs wake cycles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from edge import protocol
from edge.spool import Spool
from tests.conftest import REPO_ROOT

for _p in (REPO_ROOT / "firmware" / "lib", REPO_ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import mqtt  # noqa: E402
from cabinet.app import CabinetApp  # noqa: E402
from leak_sensor.app import LeakApp, restore_identity, window_bounds  # noqa: E402
from uplink import Identity, Uplink  # noqa: E402

DEV = "cab-0042"
START = 1768492800000  # 2026-01-15T16:00:00Z
END = 1768550400000  # 2026-01-16T08:00:00Z


class Broker:
    """What a broker would have received, and whether it is reachable."""

    def __init__(self) -> None:
        self.up = True
        self.published: list[tuple[str, bytes, bool]] = []
        self.wills: list[bytes] = []  # published on abnormal disconnects
        self.clients: list[FakeClient] = []
        self.commands: list[bytes] = []  # down/cmd held for the device (persistent session)

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [protocol.decode(p, t) for t, p, _ in self.published]
        return [m for m in out if kind is None or m["kind"] == kind]


class FakeClient:
    """The methods of ``mqtt.MQTTClient`` the apps use, on an in-memory broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connected = False
        self.on_puback: Any = None
        self.on_message: Any = None
        self.will: Any = None
        self._pid = 0
        self._acks: list[int] = []
        self.incoming: list[bytes] = []
        broker.clients.append(self)

    def set_will(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self.will = (topic, payload)

    def connect(self) -> bool:
        if not self.broker.up:
            raise OSError(113, "EHOSTUNREACH")
        self.connected = True
        return False

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        if not self.broker.up:
            self.drop()
            raise OSError(104, "ECONNRESET")
        self._pid += 1
        self.broker.published.append((topic, payload, retain))
        self._acks.append(self._pid)
        return self._pid

    def subscribe(self, topic: str, qos: int = 1) -> int:
        assert topic == f"lumeau/v1/dev/{DEV}/down/cmd"
        return 1

    def poll(self, timeout_ms: int = 0) -> int:
        if not self.broker.up:
            self.drop()
            raise mqtt.ConnectionLost("gone")
        n = 0
        while self._acks:
            self.on_puback(self._acks.pop(0))
            n += 1
        while self.incoming:
            self.on_message("t", self.incoming.pop(0), False, False)
        return n

    def drop(self) -> None:
        if self.connected and self.will:
            self.broker.wills.append(self.will[1])
        self.connected = False
        self._acks = []

    def close(self) -> None:
        self.drop()

    def disconnect(self, publish_will: bool = True) -> None:
        if publish_will and self.will:
            self.broker.published.append((self.will[0], self.will[1], True))
        self.connected = False


class FakeCabinetBoard:
    def __init__(self, clock: list[int], folder: Path) -> None:
        self.clock = clock
        self.levels: dict[int, int] = {}
        self.set_calls: list[tuple[int, int, int]] = []
        self.failed = 0
        self.files: dict[str, Any] = {}
        self.fed = 0
        self.resets = 0

    def time_ms(self) -> int:
        return self.clock[0]

    def ticks_ms(self) -> int:
        return self.clock[0] - START

    def set_level(self, ch: int, pct: int) -> None:
        self.levels[ch] = pct
        self.set_calls.append((self.clock[0], ch, pct))

    def read_meter(self) -> dict[str, Any]:
        circuits = {}
        for ch, lamps in ((1, 24), (2, 10)):
            burning = lamps - (self.failed if ch == 1 else 0)
            p = burning * 40.0 * self.levels.get(ch, 0) / 100
            circuits[ch] = {"power_w": p, "voltage_v": 230.0, "current_a": p / 218.5}
        return {"mains_bool": 1, "door_bool": 0, "temperature_c": 4.5, "circuits": circuits}

    def feed_watchdog(self) -> None:
        self.fed += 1

    def reset(self) -> None:
        self.resets += 1

    def load(self, name: str) -> Any:
        return json.loads(json.dumps(self.files[name])) if name in self.files else None

    def save(self, name: str, obj: Any) -> None:
        self.files[name] = json.loads(json.dumps(obj))


CONFIG = {
    "dev": DEV,
    "lat": 48.86,
    "lon": 2.35,
    "circuits": {
        "1": {"lamps": 24, "rated_w": 40.0, "curve": [[0, 0.0], [100, 1.0]]},
        "2": {"lamps": 10, "rated_w": 40.0, "curve": [[0, 0.0], [100, 1.0]]},
    },
    "faults": {"settle_s": 60, "lamp_hold_s": 300},
}


def make_cabinet(clock: list[int], folder: Path, broker: Broker, board: Any, seed: int) -> Any:
    spool = Spool(str(folder / "spool"), max_bytes=256 * 1024, max_records=2048)
    ident = Identity.new(bytes([seed] * 8))
    up = Uplink(DEV, "cabinet", "0.1.0", ident, spool, board.time_ms)
    app = CabinetApp(board, CONFIG, up, lambda: FakeClient(broker))
    app.link.backoff = mqtt.Backoff(base_ms=1000, max_ms=60000, rand=lambda: 0.5)
    return app


def run_until(app: Any, clock: list[int], until: int, step_ms: int = 10000) -> None:
    while clock[0] < until:
        clock[0] += step_ms
        if clock[0] % 60000 == 0:
            app.tick_schedule()
        app.tick_meter()
        app.tick_telemetry()
        app.tick_link()
        app.tick_sender()
        app.tick_link()  # PUBACKs
        app.tick_commands()
        app.tick_watchdog()


def test_cabinet_simulated_night_with_outage_and_reboot(tmp_path: Path) -> None:
    clock = [START]
    broker = Broker()
    board = FakeCabinetBoard(clock, tmp_path)
    app = make_cabinet(clock, tmp_path, broker, board, 1)
    boot1 = app.up.ident.boot
    run_until(app, clock, START + 6 * 3600000)  # to 22:00 UTC
    # the fallback schedule lit both circuits at sunset (16:20 UTC) at 100 %
    on = [c for c in board.set_calls if c[2] == 100]
    assert {c[1] for c in on} == {1, 2}
    assert 16 * 60 + 15 <= (on[0][0] // 60000) % 1440 <= 16 * 60 + 25
    # a set_schedule command: 50 % from virtual midnight
    program = {
        "v": 1,
        "tz": {"std": 60, "dst": "eu"},
        "plans": {"std": ["dusk", 100, "vmid", 50, "dawn", 0]},
        "circuits": {"1": {"week": "std"}, "2": {"week": "std"}},
    }
    cmd = {"v": 1, "kind": "cmd", "dev": DEV, "id": "c-1", "name": "set_schedule",
           "args": program, "ts": clock[0], "exp": clock[0] + 600000}  # fmt: skip
    app.inbox_put(protocol.encode(cmd))
    board.failed = 3  # three lamps of circuit 1 go dark at 22:00
    run_until(app, clock, START + 9 * 3600000)  # 01:00
    # network outage from 01:00; the board reboots at 01:30 (new boot id)
    broker.up = False
    run_until(app, clock, START + 9 * 3600000 + 1800000)
    queued_before_reboot = len(app.up.spool)
    assert queued_before_reboot >= 3
    app.up.spool.close()
    board.levels.clear()
    app = make_cabinet(clock, tmp_path, broker, board, 2)
    boot2 = app.up.ident.boot
    assert len(app.up.spool) == queued_before_reboot  # survived the reboot
    assert app.schedule.program_obj == program  # the program survived too
    run_until(app, clock, START + 10 * 3600000)  # 02:00: network back
    broker.up = True
    run_until(app, clock, END)
    app.link.shutdown()  # clean: the last connection's will is published by the device

    msgs = broker.messages()
    assert len(app.up.spool) == 0
    # nothing lost: every seq of both boots, except the wills never published
    # (wills of dropped connections were published by the "broker")
    for boot in (boot1, boot2):
        seqs = sorted(m["seq"] for m in msgs if m["boot"] == boot)
        wills = [json.loads(w) for w in broker.wills]
        seqs_all = sorted(set(seqs) | {w["seq"] for w in wills if w["boot"] == boot})
        assert seqs_all == list(range(len(seqs_all))), boot
        # in order within each boot (the spool sends oldest first)
        non_status = [m["seq"] for m in msgs if m["boot"] == boot and m["kind"] != "status"]
        assert non_status == sorted(non_status)
    # the status rule: each connection's online status follows its will's seq
    statuses = [m for m in msgs if m["kind"] == "status"]
    assert statuses[0]["state"] == "online" and statuses[0]["seq"] == 1
    assert {(w["seq"] + 1) for w in map(json.loads, broker.wills)} <= {
        s["seq"] for s in statuses if s["state"] == "online"
    } | {s["seq"] + 1 for s in statuses}
    # telemetry every 10 minutes from the first full period: 16 h -> 95 or 96,
    # minus none (the outage's telemetry was spooled and resent)
    tele = broker.messages("telemetry")
    assert 94 <= len(tele) <= 96
    ts = [m["readings"][0]["ts"] for m in tele]
    assert len(set(ts)) == len(ts)
    # the ack of set_schedule
    acks = broker.messages("ack")
    assert [(a["cmd"], a["ok"]) for a in acks] == [("c-1", True)]
    # three failed lamps detected once, on circuit 1, after settle + hold
    lamp = [m for m in broker.messages("event") if m["code"] == "lamp_failure"]
    assert [(e["ch"], e["active"], e["detail"]["failed_count"]) for e in lamp[:1]] == [(1, True, 3)]
    assert lamp[0]["ts"] <= START + 6 * 3600000 + 400000
    # lights off at dawn (~07:40 UTC) and at 50 % after virtual midnight
    assert board.levels == {1: 0, 2: 0}
    half = [c for c in board.set_calls if c[2] == 50]
    assert half and all(START + 7 * 3600000 < c[0] < START + 9 * 3600000 for c in half[:2])
    assert board.fed > 0


def test_cabinet_commands_dedup_expiry_and_errors(tmp_path: Path) -> None:
    clock = [START + 3600000]
    broker = Broker()
    board = FakeCabinetBoard(clock, tmp_path)
    app = make_cabinet(clock, tmp_path, broker, board, 3)
    now = clock[0]

    def cmd(cid: str, name: str, args: dict[str, Any], exp: int | None = None) -> bytes:
        return protocol.encode({"v": 1, "kind": "cmd", "dev": DEV, "id": cid, "name": name,
                                "args": args, "ts": now, "exp": exp or now + 60000})  # fmt: skip

    ok = app.handle_command(cmd("c-1", "set_level", {"ch": 1, "level_pct": 30, "dur_s": 600}))
    assert ok == {"cmd": "c-1", "ok": True, "result": {"until_ts": now + 600000}}
    assert board.levels[1] == 30
    again = app.handle_command(cmd("c-1", "set_level", {"ch": 1, "level_pct": 90}))
    assert again == ok  # not executed twice, acked again
    assert board.levels[1] == 30
    late = app.handle_command(cmd("c-2", "reboot", {}, exp=now))
    assert late is not None and late["ok"] is True
    old = {"v": 1, "kind": "cmd", "dev": DEV, "id": "c-3", "name": "reboot", "args": {},
           "ts": now - 120000, "exp": now - 60000}  # fmt: skip
    exp = app.handle_command(protocol.encode(old))
    assert exp is not None and exp["err"]["code"] == "expired"
    unk = app.handle_command(cmd("c-4", "make_coffee", {}))
    assert unk is not None and unk["err"]["code"] == "unknown_command"
    bad = app.handle_command(cmd("c-5", "set_config", {"telemetry_s": 5}))
    assert bad is not None and bad["err"]["code"] == "bad_args"
    good = app.handle_command(cmd("c-6", "set_config", {"telemetry_s": 300}))
    assert good == {"cmd": "c-6", "ok": True}
    got = app.handle_command(cmd("c-7", "get_config", {}))
    assert got is not None and got["result"]["telemetry_s"] == 300
    sched = app.handle_command(cmd("c-8", "set_schedule", {"v": 1, "plans": {}}))
    assert sched is not None and sched["ok"] is False
    assert app.handle_command(b"not json") is None
    assert len(app.up.spool) == 9  # nine acks queued, each with its own seq
    # the reboot command resets the board once its ack had time to go out
    run_until(app, clock, clock[0] + 10000)
    assert board.resets == 1


class FakeLeakBoard:
    def __init__(self, clock: list[int], folder: Path) -> None:
        self.clock = clock
        self.data_dir = str(folder)
        self.files: dict[str, Any] = {}
        self.rtc = b""
        self.read = 0
        self.audio = bytearray()  # every sample handed out, s16le

    def clock_quality(self) -> tuple[str, int, int]:
        return ("ntp", 900, 300)

    def time_ms(self) -> int:
        return self.clock[0]

    def ticks_ms(self) -> int:
        return self.clock[0]

    def sleep_ms(self, ms: int) -> None:
        self.clock[0] += ms

    def audio_readinto(self, buf: Any) -> int:
        for i in range(len(buf)):
            # a quiet, deterministic signal, different in every block
            buf[i] = ((self.read + i) * 37) % 200 - 100
        self.read += len(buf)
        self.audio += buf.tobytes()
        self.clock[0] += len(buf) * 1000 // 8000
        return len(buf)

    def battery_v(self) -> float:
        return 3.581

    def feed_watchdog(self) -> None:
        pass

    def rtc_memory(self, data: bytes | None = None) -> bytes:
        if data is not None:
            self.rtc = data
        return self.rtc

    def load(self, name: str) -> Any:
        return self.files.get(name)

    def save(self, name: str, obj: Any) -> None:
        self.files[name] = json.loads(json.dumps(obj))


def test_leak_window_arithmetic() -> None:
    # 02:00-04:00 local at UTC+1 is 01:00-03:00 UTC
    day = 1768435200000  # 2026-01-15T00:00Z
    h = 3600000
    assert window_bounds(day, 120, 240, 60) == (day + h, day + 3 * h)
    assert window_bounds(day + 2 * h, 120, 240, 60) == (day + h, day + 3 * h)
    assert window_bounds(day + 3 * h, 120, 240, 60) == (day + 25 * h, day + 27 * h)
    # a window across midnight, 23:00-01:00 local: at 01:00 local it has just closed
    assert window_bounds(day, 1380, 60, 60) == (day + 22 * h, day + 24 * h)
    assert window_bounds(day - 1, 1380, 60, 60) == (day - 2 * h, day)


def test_leak_sensor_cycles(tmp_path: Path) -> None:
    h = 3600000
    clock = [1768435200000 + h + 600000]  # 01:10 UTC = 02:10 local, inside the window
    broker = Broker()
    board = FakeLeakBoard(clock, tmp_path)
    cfg = {"dev": "leak-0107", "listen_s": 10, "utc_offset_min": 60}
    spool = Spool(str(tmp_path / "spool"), max_bytes=64 * 1024, max_records=512)
    ident = restore_identity(board, bytes(range(8)))
    up = Uplink("leak-0107", "leak_sensor", "0.1.0", ident, spool, board.time_ms)

    class LeakClient(FakeClient):
        def subscribe(self, topic: str, qos: int = 1) -> int:
            return 1

    app = LeakApp(board, cfg, up, lambda: LeakClient(broker))
    sleep = app.cycle()
    app.save_identity()
    assert board.read >= 10 * 8000
    tele = broker.messages("telemetry")
    assert len(tele) == 1
    values = tele[0]["readings"][0]["values"]
    assert values["battery_v"] == 3.581 and "noise_min_db" in values
    assert values["recordings_count"] == 0  # record_raw is off by default
    assert not broker.messages("recording")
    # telemetry queued first (seq 0); the connection takes 1 (will) and 2
    # (online); the clean shutdown publishes the will itself, last
    assert [(m["kind"], m["seq"]) for m in broker.messages()] == [
        ("status", 2), ("telemetry", 0), ("status", 1)]  # fmt: skip
    # sleeps until tomorrow's window start (01:00 UTC)
    assert clock[0] + sleep == 1768435200000 + 25 * h
    # the next wake (deep sleep = reset) continues the same boot from RTC memory
    ident2 = restore_identity(board, bytes(8))
    assert (ident2.boot, ident2.seq) == (ident.boot, 3)
    # a wake outside the window measures nothing and sends nothing
    clock[0] += 6 * h
    up2 = Uplink("leak-0107", "leak_sensor", "0.1.0", ident2, spool, board.time_ms)
    app2 = LeakApp(board, cfg, up2, lambda: LeakClient(broker))
    n = len(broker.published)
    app2.cycle()
    assert len(broker.published) == n
    # a wake before tonight's window (a cold boot at 00:30 UTC) sleeps until it
    # opens, not until tomorrow's: tonight's measurement is not lost
    clock[0] = 1768435200000 + 24 * h + 1800000
    assert LeakApp(board, cfg, up2, lambda: LeakClient(broker)).cycle() == 1800000
    assert len(broker.published) == n
    # with the broker down inside the window: measured, kept, retried in 15 min
    clock[0] = 1768435200000 + 25 * h + 60000
    broker.up = False
    app3 = LeakApp(board, cfg, up2, lambda: LeakClient(broker))
    assert app3.cycle() == 900000
    assert len(spool) == 1
    broker.up = True
    app4 = LeakApp(board, cfg, up2, lambda: LeakClient(broker))
    app4.cycle()
    assert len(spool) == 0
    assert len(broker.messages("telemetry")) == 2  # measured once that night


LEAK_DEV = "leak-0107"
H = 3600000
NIGHT = 1768435200000 + H + 600000  # 2026-01-15T01:10Z = 02:10 local, inside the window


class LeakClient(FakeClient):
    """Delivers the commands the broker held for the device once connected."""

    def subscribe(self, topic: str, qos: int = 1) -> int:
        assert topic == f"lumeau/v1/dev/{LEAK_DEV}/down/cmd"
        self.incoming.extend(self.broker.commands)
        self.broker.commands.clear()
        return 1


def make_leak(
    board: FakeLeakBoard, folder: Path, broker: Broker, cfg: dict[str, Any], seed: int = 0
) -> LeakApp:
    """One wake's app: the boot from RTC memory, or a new one (seed) after a power cut."""
    spool = Spool(str(folder / "spool"), max_bytes=64 * 1024, max_records=512)
    ident = restore_identity(board, bytes([seed] * 8))
    up = Uplink(LEAK_DEV, "leak_sensor", "0.1.0", ident, spool, board.time_ms)
    return LeakApp(board, {"dev": LEAK_DEV, **cfg}, up, lambda: LeakClient(broker))


def wake(app: LeakApp) -> int:
    sleep = app.cycle()
    app.save_identity()
    app.up.spool.close()
    return sleep


def leak_cmd(cid: str, name: str, args: dict[str, Any], now: int) -> bytes:
    return protocol.encode({"v": 1, "kind": "cmd", "dev": LEAK_DEV, "id": cid, "name": name,
                            "args": args, "ts": now, "exp": now + H})  # fmt: skip


def reassemble(msgs: list[dict[str, Any]], rec: str) -> tuple[bytes, str | None]:
    """The samples of ``rec`` from its chunks (each part exactly once) and the sent sha256."""
    parts = sorted((m for m in msgs if m["rec"] == rec), key=lambda m: m["part"])
    assert [m["part"] for m in parts] == list(range(parts[0]["parts"])), "each part once"
    data = b"".join(base64.b64decode(m["data"], validate=True) for m in parts)
    return data, parts[-1].get("sha256")


def test_leak_night_with_raw_recording_then_release(tmp_path: Path) -> None:
    clock = [NIGHT]
    broker = Broker()
    board = FakeLeakBoard(clock, tmp_path)
    cfg = {"listen_s": 3, "utc_offset_min": 60, "record_raw": True}
    app = make_leak(board, tmp_path, broker, cfg)
    sleep = wake(app)
    fed = bytes(board.audio[: 3 * 8000 * 2])  # the samples fed to NightFeatures
    recs = broker.messages("recording")
    assert len(recs) == 9  # 24000 samples in chunks of 2808
    rec = recs[0]["rec"]
    assert rec == app.up.ident.boot + "-1"
    assert recs[0]["t0_us"] == NIGHT * 1000 and recs[0]["fs"] == 8000
    assert recs[0]["clock"] == {"src": "ntp", "unc_us": 900, "age_s": 300}
    data, sha = reassemble(recs, rec)
    assert data == fed
    assert sha == hashlib.sha256(data).hexdigest() == hashlib.sha256(fed).hexdigest()
    # the telemetry came first and reports the store
    kinds = [m["kind"] for m in broker.messages() if m["kind"] != "status"]
    assert kinds == ["telemetry"] + ["recording"] * 9
    values = broker.messages("telemetry")[0]["readings"][0]["values"]
    assert values["recordings_count"] == 1
    assert values["recording_parts_count"] == 9
    assert values["recordings_dropped_count"] == 0
    # all sent: sleep until tomorrow's window; the recording stays until released
    assert clock[0] + sleep == 1768435200000 + 25 * H
    assert app.store.pending() == 0 and len(app.store) == 1
    assert sorted(p.name for p in (tmp_path / "rec").iterdir() if p.suffix != ".jsn") == [
        "00000001.met", "00000001.raw"]  # fmt: skip

    # next night, without record_raw: the backend releases it (and an unknown command)
    clock[0] += sleep + 60000
    broker.commands += [
        leak_cmd("c-1", "release_recording", {"rec": rec}, clock[0]),
        leak_cmd("c-2", "set_level", {"ch": 1, "level_pct": 5}, clock[0]),
    ]
    app2 = make_leak(board, tmp_path, broker, {"listen_s": 3, "utc_offset_min": 60})
    assert len(app2.store) == 1  # kept across deep sleep
    wake(app2)
    acks = broker.messages("ack")
    assert [(a["cmd"], a["ok"]) for a in acks] == [("c-1", True), ("c-2", False)]
    assert acks[0]["result"] == {"released": True}
    assert acks[1]["err"]["code"] == "unknown_command"
    assert len(app2.store) == 0
    assert [p.name for p in (tmp_path / "rec").iterdir() if p.suffix != ".jsn"] == []
    assert len(broker.messages("recording")) == 9  # nothing recorded the second night
    # a command delivered again is acked again, not executed again
    broker.commands.append(leak_cmd("c-1", "release_recording", {"rec": rec}, clock[0]))
    clock[0] += 25 * H
    wake(make_leak(board, tmp_path, broker, {"listen_s": 3, "utc_offset_min": 60}))
    assert [a["result"] for a in broker.messages("ack") if a["cmd"] == "c-1"] == [
        {"released": True}] * 2  # fmt: skip


def test_leak_get_recording_asks_for_tonight(tmp_path: Path) -> None:
    clock = [NIGHT]
    broker = Broker()
    board = FakeLeakBoard(clock, tmp_path)
    cfg = {"listen_s": 2, "utc_offset_min": 60}
    # the backend asks for tonight's recording; the sensor hears it after measuring
    broker.commands.append(leak_cmd("c-9", "get_recording", {"since": NIGHT - H}, NIGHT))
    wake(make_leak(board, tmp_path, broker, cfg))
    acks = broker.messages("ack")
    assert [(a["cmd"], a["ok"], a["result"]) for a in acks] == [
        ("c-9", True, {"recs": [], "parts": 0})]  # fmt: skip
    recs = broker.messages("recording")
    assert len(recs) == 6  # 16000 samples, recorded in the same wake
    assert len(broker.messages("telemetry")) == 1  # measured once
    data, sha = reassemble(recs, recs[0]["rec"])
    assert len(data) == 2 * 16000 and sha == hashlib.sha256(data).hexdigest()
    first = 16 * 1024 * 2  # the first listen read 16 blocks of 1024 (the last one in part)
    assert data == bytes(board.audio[first : first + 2 * 16000])
    assert recs[0]["t0_us"] > NIGHT * 1000  # the second listen, after the first
    # done once: the next wake tonight records nothing more
    clock[0] += 600000
    n = len(broker.published)
    wake(make_leak(board, tmp_path, broker, cfg))
    assert len(broker.published) == n


def test_leak_recording_resumes_after_reboot_between_chunks(tmp_path: Path) -> None:
    clock = [NIGHT]
    broker = Broker()
    board = FakeLeakBoard(clock, tmp_path)
    cfg = {"listen_s": 3, "utc_offset_min": 60, "record_raw": True, "rec_parts_per_wake": 4}
    app = make_leak(board, tmp_path, broker, cfg)
    boot1 = app.up.ident.boot
    # wake 1: telemetry and 4 parts (the per-wake bound); more are waiting: 15 min
    assert wake(app) == 900000
    assert [m["part"] for m in broker.messages("recording")] == [0, 1, 2, 3]
    # wake 2: the broker is down; 4 more parts wait in the spool
    clock[0] += 900000
    broker.up = False
    app = make_leak(board, tmp_path, broker, cfg)
    assert wake(app) == 900000
    assert app.store.pending() == 1 and len(app.up.spool) == 4
    # a power cut: RTC memory is lost, a new boot starts from flash
    board.rtc = b""
    clock[0] += 900000
    broker.up = True
    app = make_leak(board, tmp_path, broker, cfg, seed=7)
    assert app.up.ident.boot != boot1 and len(app.up.spool) == 4
    sleep = wake(app)
    assert app.store.pending() == 0
    assert clock[0] + sleep == 1768435200000 + 25 * H  # done: tomorrow's window
    recs = broker.messages("recording")
    # parts 4..7 as queued by the first boot, then part 8 by the second
    assert [(m["part"], m["boot"]) for m in recs] == [(p, boot1) for p in range(8)] + [
        (8, app.up.ident.boot)]  # fmt: skip
    data, sha = reassemble(recs, boot1 + "-1")  # each part exactly once
    assert data == bytes(board.audio[: 3 * 8000 * 2])
    assert sha == hashlib.sha256(data).hexdigest()
    assert len(broker.messages("telemetry")) == 1


def test_identity_bytes_roundtrip_and_garbage() -> None:
    i = Identity("a1b2c3d4e5f60718", 41)
    j = Identity.from_bytes(i.to_bytes())
    assert j is not None and (j.boot, j.seq) == ("a1b2c3d4e5f60718", 41)
    for bad in (b"", b"LID1", b"LID1xyz:1", b"LID1a1b2c3d4:-1", b"\xff" * 20):
        assert Identity.from_bytes(bad) is None


@pytest.mark.parametrize(
    "name", ["cabinet.app", "leak_sensor.app", "cabinet.board", "leak_sensor.board"]
)
def test_modules_create_no_hardware_on_import(name: str) -> None:
    __import__(name)
    assert "machine" not in sys.modules
