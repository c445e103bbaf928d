"""The sample town's devices, simulated: the firmware on simulated hardware, through the site.

Every cabinet and acoustic sensor of ``backend/assets/sample_town.geojson``
runs its real firmware application (``simulators/``) with its own
credentials on the site broker, so their messages take the whole data path:
site Mosquitto -> gateway -> backend Mosquitto -> ingest -> TimescaleDB. The
circuits are the asset register's (luminaires per circuit, rated power).

The town's last days are played fast (about a second per simulated day), up
to the present, with a few things going wrong that the alert engine should
find (``TROUBLE``, the ground truth the demo compares the alerts with).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from backend.assets.sample import sample_town
from simulators.cabinet import BrokerAccount, Circuit, SimCabinet
from simulators.clock import SimClock
from simulators.fleet import Fleet
from simulators.happenings import Happening
from simulators.leak_sensor import SimLeakSensor

DAY: Final = 86_400_000
HOUR: Final = 3_600_000
DAYS: Final = 12  # the leak screening wants a week of quiet nights before a leak


@dataclass(frozen=True)
class Trouble:
    """A fault the scenario injects, and the alert the engine should raise for it."""

    device: str
    rule: str
    channel: int | None
    what: str


TROUBLE: Final = (
    Trouble("cab-0001", "door_open", None, "cabinet door opened 25 min ago, still open"),
    Trouble("cab-0002", "circuit_failure", 2, "2 of the 3 lamps of circuit 2 dark for 2 days"),
    Trouble("cab-0002", "energy_anomaly", 2, "... so circuit 2 uses a third of its energy"),
    Trouble("cab-0003", "day_burning", 1, "circuit 1's contactor stuck closed for 3 days"),
    Trouble("cab-0003", "energy_anomaly", 1, "... so circuit 1 burns day and night"),
    Trouble("leak-0002", "leak", None, "a leak near hydrant n-06 for 4 nights, growing"),
    Trouble("leak-0003", "battery_low", None, "battery running down (0.03 V a day)"),
)


def _happenings(now_ms: int) -> dict[str, tuple[Happening, ...]]:
    today = now_ms // DAY * DAY
    return {
        "cab-0001": (Happening("door_open", now_ms - 25 * 60_000),),
        "cab-0002": (Happening("lamps_failed", today - 2 * DAY + 21 * HOUR, channel=2, count=2),),
        "cab-0003": (Happening("relay_stuck", today - 3 * DAY + 9 * HOUR, channel=1),),
        "leak-0002": (Happening("leak", today - 4 * DAY, level_db=-50.0, growth_db=1.0),),
        "leak-0003": (Happening("battery_drain", today - DAYS * DAY, volts_per_day=0.03),),
    }


@dataclass(frozen=True)
class TownDevice:
    device_id: str
    role: str  # cabinet | leak_sensor
    site: str
    lon: float
    lat: float
    circuits: dict[int, Circuit]


def town_devices(collection: dict[str, Any] | None = None) -> list[TownDevice]:
    """The cabinets and sensors of the sample town that have a controller or a device."""
    features = (collection or sample_town())["features"]
    lamps: dict[tuple[str, int], list[float]] = defaultdict(list)
    for f in features:
        p = f["properties"]
        if p["kind"] == "luminaire":
            lamps[(p["cabinet_id"], p["channel"])].append(float(p["rated_power_w"]))
    nodes = {
        f["properties"]["node_id"]: f["geometry"]["coordinates"]
        for f in features
        if f["properties"]["kind"] == "node"
    }
    out = []
    for f in features:
        p = f["properties"]
        if p["kind"] == "cabinet" and p.get("device_id"):
            lon, lat = f["geometry"]["coordinates"][:2]
            circuits = {
                ch: Circuit(len(watts), sum(watts) / len(watts))
                for (cab, ch), watts in sorted(lamps.items())
                if cab == p["cabinet_id"]
            }
            out.append(TownDevice(p["device_id"], "cabinet", p["site_id"], lon, lat, circuits))
        elif p["kind"] == "sensor" and p.get("device_id"):
            geometry = f.get("geometry")
            lon, lat = (geometry or {}).get("coordinates") or nodes.get(p.get("node_id"), (0, 0))
            out.append(TownDevice(p["device_id"], "leak_sensor", p["site_id"], lon, lat, {}))
    return out


def build_fleet(
    devices: list[TownDevice],
    passwords: dict[str, str],
    host: str,
    port: int,
    folder: Path,
    start_ms: int,
    now_ms: int,
) -> Fleet:
    clock = SimClock(start_ms)
    trouble = _happenings(now_ms)
    cabinets, sensors = [], []
    for n, d in enumerate(devices):
        account = BrokerAccount(host, port, passwords[d.device_id])
        happenings = trouble.get(d.device_id, ())
        if d.role == "cabinet":
            cabinets.append(
                SimCabinet(
                    d.device_id,
                    account,
                    clock,
                    folder / d.device_id,
                    lat=d.lat,
                    lon=d.lon,
                    circuits=d.circuits,
                    happenings=happenings,
                    seed=n,
                )
            )
        else:
            sensors.append(
                SimLeakSensor(
                    d.device_id, account, clock, folder / d.device_id, happenings=happenings, seed=n
                )
            )
    return Fleet(clock, cabinets, sensors)


def play_town(fleet: Fleet, now_ms: int) -> tuple[float, bool]:
    """Fast-forward the town to ``now_ms``; (seconds taken, everything sent)."""
    started = time.monotonic()

    print("  simulated   ", end="", flush=True)

    def progress(sim_ms: int) -> None:
        print(" " + time.strftime("%m-%d", time.gmtime(sim_ms / 1000)), end="", flush=True)

    fleet.run_until(now_ms, progress, every_ms=2 * DAY)
    sent = fleet.drain()
    print(" now")
    return time.monotonic() - started, sent


def resume_from(database_url: str, devices: list[TownDevice], now_ms: int) -> int:
    """Where the town's simulated time starts: ``DAYS`` ago, or after what a previous run sent.

    A second run continues the town instead of sending the same days again
    under new boot ids (a counter series twice over would be nonsense).
    """
    import psycopg

    start = (now_ms // DAY - DAYS) * DAY
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(last_message_at) FROM device WHERE device_id = ANY(%s)",
            ([d.device_id for d in devices],),
        ).fetchone()
    if row and row[0] is not None:
        last_ms = int(row[0].timestamp() * 1000)
        start = max(start, (last_ms // 60_000 + 1) * 60_000)
    return min(start, now_ms - 60_000)


class LiveTown:
    """The town after its fast-forward: a thread keeps it on the real clock until ``stop``."""

    def __init__(self, fleet: Fleet) -> None:
        import threading

        self.fleet = fleet
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=fleet.follow_wall_clock, args=(self._stop,), name="town", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Every device shuts down cleanly (its offline status is published)."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.fleet.stop()
