"""Last night's energy of each cabinet circuit against its previous nights.

backend/core/energy.py does the arithmetic; this module reads each
cabinet's circuit readings (channel >= 1: ``energy_wh`` counter and
``power_w``) over the nights it needs and turns the score into a signal
``energy_anomaly:<cabinet>:<circuit>`` dated at the end of that night.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy
from backend.alerts.signals import Signal, dedup_key
from backend.core.energy import (
    DAY_S,
    counter_increments,
    nightly_energy,
    power_increments,
    score_night,
    usable_nights,
)

SOURCE = "energy"
METRICS = ("energy_wh", "power_w")

Samples = dict[str, list[tuple[float, float, str]]]  # metric -> (epoch s, value, boot)


def last_complete_night(policy: Policy, now: datetime) -> int:
    return math.floor((now.timestamp() - policy.energy.night_offset_s) / DAY_S) - 1


def window(policy: Policy, now: datetime) -> tuple[int, int, datetime, datetime]:
    """(first night, nights, read from, read until) for the last complete night."""
    last = last_complete_night(policy, now)
    first = last - policy.energy.history_nights
    offset = policy.energy.night_offset_s
    start = first * DAY_S + offset - policy.energy.max_gap_s
    end = (last + 1) * DAY_S + offset
    return (
        first,
        last - first + 1,
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
    )


def circuit_signal(
    device_id: str,
    site: str | None,
    channel: int,
    samples: Samples,
    policy: Policy,
    now: datetime,
) -> Signal | None:
    """energy_anomaly for one circuit; None without any sample."""
    ep = policy.energy
    params = ep.params()
    first, nights, _, _ = window(policy, now)
    counter = power = None
    if samples.get("energy_wh"):
        t, v, boots = (np.asarray(col) for col in zip(*samples["energy_wh"], strict=True))
        counter = nightly_energy(
            t.astype(float),
            counter_increments(v.astype(float), boots),
            first,
            nights,
            offset_s=ep.night_offset_s,
            max_gap_s=ep.max_gap_s,
        )
    if samples.get("power_w"):
        t, v, _ = (np.asarray(col) for col in zip(*samples["power_w"], strict=True))
        power = nightly_energy(
            t.astype(float),
            power_increments(t.astype(float), v.astype(float), ep.max_gap_s),
            first,
            nights,
            offset_s=ep.night_offset_s,
            max_gap_s=ep.max_gap_s,
        )
    if counter is None and power is None:
        return None
    energy, methods = usable_nights(counter, power, ep.min_coverage)
    score = score_night(energy[:-1], float(energy[-1]), params)
    night_begins = datetime.fromtimestamp((first + nights - 1) * DAY_S + ep.night_offset_s, UTC)
    night_ends = night_begins + timedelta(days=1)
    detail: dict[str, Any] = {
        "night_start": night_begins.isoformat(),
        "night_end": night_ends.isoformat(),
        "measured_wh": _round(score.measured_wh),
        "expected_wh": _round(score.expected_wh),
        "scale_wh": _round(score.scale_wh),
        "score": score.score,
        "nights": score.nights,
        "method": methods[-1],
        "reason": score.reason,
    }
    if score.measured_wh is not None and score.expected_wh is not None:
        title = (
            f"Circuit {channel} at {device_id}: {score.measured_wh / 1000:.1f} kWh last night,"
            f" usually {score.expected_wh / 1000:.1f} kWh"
        )
    else:
        title = f"Circuit {channel} at {device_id}: unusual energy last night"
    return Signal(
        dedup_key=dedup_key("energy_anomaly", device_id, channel),
        rule="energy_anomaly",
        source=SOURCE,
        device_id=device_id,
        site=site,
        channel=channel,
        severity="warning",
        active=score.anomalous,
        observed_at=night_ends,
        title=title,
        detail=detail,
        since=night_begins,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def read_cabinets(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT device_id, site FROM device WHERE role = 'cabinet' ORDER BY device_id"
        ).fetchall()


def read_circuits(
    conn: psycopg.Connection[Any], device_id: str, policy: Policy, now: datetime
) -> dict[int, Samples]:
    """One cabinet's circuit samples in the window, by channel and metric."""
    _, _, start, end = window(policy, now)
    out: dict[int, Samples] = defaultdict(lambda: defaultdict(list))
    with conn.cursor() as cur:
        rows = cur.execute(
            "SELECT channel::int, metric, extract(epoch FROM time)::float8, value, boot_id"
            " FROM reading WHERE device_id = %s AND channel >= 1 AND metric = ANY(%s)"
            "   AND time >= %s AND time < %s ORDER BY channel, metric, time",
            (device_id, list(METRICS), start, end),
        )
        for channel, metric, epoch, value, boot in rows:
            out[channel][metric].append((epoch, value, boot))
    return out
