"""Message streams for the benchmarks: protocol-shaped JSON, deterministic.

Modules whose name starts with ``_`` hold shared helpers, not benchmarks.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

# 2026-11-23T00:00:00Z in milliseconds.
BASE_TS_MS = 1795392000000

# metric -> (low, high, decimals) of plausible readings of a cabinet circuit.
METRICS = {
    "power_w": (0.0, 2000.0, 1),
    "voltage_v": (220.0, 240.0, 1),
    "current_a": (0.0, 9.0, 2),
    "level_pct": (0.0, 100.0, 0),
}
_METRIC_NAMES = tuple(METRICS)


def telemetry_payload(i: int, devices: int = 1000, rng: random.Random | None = None) -> bytes:
    """Message ``i`` of a stream: a one-reading telemetry message, about 150 bytes.

    Shaped like ``docs/protocol.md``'s telemetry (canonical JSON: sorted keys,
    no spaces), e.g.::

        {"boot":"5f3a9c1e","dev":"cab-0042","kind":"telemetry","readings":[{"ch":1,
        "ts":1795392000000,"values":{"power_w":1250.25}}],"seq":42,"ts":...,"v":1}
    """
    gen = rng or random.Random(i)
    device = i % devices
    ts = BASE_TS_MS + (i // devices) * 1000
    metric = _METRIC_NAMES[i % len(_METRIC_NAMES)]
    low, high, decimals = METRICS[metric]
    value: float | int = round(gen.uniform(low, high), decimals)
    if decimals == 0:
        value = int(value)
    message = {
        "boot": f"{(device + 1) * 2654435761 % 2**32:08x}",
        "dev": f"cab-{device:04d}",
        "kind": "telemetry",
        "readings": [{"ch": 1 + i % 4, "ts": ts, "values": {metric: value}}],
        "seq": i // devices,
        "ts": ts + 500,
        "v": 1,
    }
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def telemetry_stream(count: int, seed: int = 1) -> Iterator[bytes]:
    rng = random.Random(seed)
    for i in range(count):
        yield telemetry_payload(i, rng=rng)


def write_lines(path: Path, count: int, seed: int = 1) -> float:
    """Write ``count`` payloads, one per line (for ``mosquitto_pub -l``).

    Returns the mean payload size in bytes (newline excluded). The file is
    reused when it already holds the same stream.
    """
    marker = path.with_name(path.name + ".meta")
    # The first payload's checksum tells a file written by older code apart.
    wanted = f"{count} {seed} {zlib.crc32(next(telemetry_stream(1, seed))):08x}"
    if path.exists() and marker.exists():
        meta = marker.read_text().split()
        if len(meta) == 4 and " ".join(meta[:3]) == wanted:
            return float(meta[3])
    total = 0
    with path.open("wb") as out:
        for payload in telemetry_stream(count, seed):
            total += len(payload)
            out.write(payload + b"\n")
    mean = total / count if count else 0.0
    marker.write_text(f"{wanted} {mean:.1f}\n")
    return mean
