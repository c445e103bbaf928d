"""Battery state from the latest ``battery_v`` / ``battery_pct`` readings.

Raise below the low threshold, clear only above the (higher) clear
threshold; in between the source has no new opinion, so the alert keeps
whatever state it had (hysteresis: a cell's voltage follows the night's
temperature and would otherwise flap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy
from backend.alerts.signals import Signal, dedup_key
from backend.alerts.sources import BadRow

SOURCE = "battery"
METRICS = ("battery_v", "battery_pct")


@dataclass(frozen=True)
class Sample:
    value: float
    time: datetime


def battery_signal(
    device_id: str,
    site: str | None,
    volts: Sample | None,
    percent: Sample | None,
    policy: Policy,
    now: datetime,
) -> Signal | None:
    """The battery_low signal from a device's latest samples (None: no fresh sample)."""
    b = policy.battery
    oldest = now - timedelta(seconds=b.max_age_s)
    volts = volts if volts is not None and volts.time >= oldest else None
    percent = percent if percent is not None and percent.time >= oldest else None
    if volts is None and percent is None:
        return None
    if volts is not None and not (math.isfinite(volts.value) and 0 <= volts.value <= 100):
        raise BadRow(f"battery_v {volts.value!r} of {device_id} is not a voltage")
    if percent is not None and not (math.isfinite(percent.value) and 0 <= percent.value <= 100):
        raise BadRow(f"battery_pct {percent.value!r} of {device_id} is not a percentage")
    low = (volts is not None and volts.value < b.low_v) or (
        percent is not None and percent.value < b.low_pct
    )
    clear = (volts is None or volts.value >= b.clear_v) and (
        percent is None or percent.value >= b.clear_pct
    )
    active: bool | None = True if low else (False if clear else None)
    detail: dict[str, Any] = {"low_v": b.low_v, "clear_v": b.clear_v}
    parts = []
    if volts is not None:
        detail["battery_v"] = volts.value
        parts.append(f"{volts.value:.2f} V")
    if percent is not None:
        detail["battery_pct"] = percent.value
        parts.append(f"{percent.value:.0f} %")
    observed = max(s.time for s in (volts, percent) if s is not None)
    return Signal(
        dedup_key=dedup_key("battery_low", device_id),
        rule="battery_low",
        source=SOURCE,
        device_id=device_id,
        site=site,
        channel=None,
        severity="warning",
        active=active,
        observed_at=observed,
        title=f"Battery low at {device_id} ({', '.join(parts)})",
        detail=detail,
    )


def read_latest(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime
) -> list[dict[str, Any]]:
    """Latest battery sample per device and metric (channel 0), newer than max_age."""
    since = now - timedelta(seconds=policy.battery.max_age_s)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT d.device_id, d.site, m.metric, r.value, r.time"
            " FROM device d CROSS JOIN unnest(%s::text[]) AS m(metric)"
            " CROSS JOIN LATERAL ("
            "   SELECT value, time FROM reading"
            "   WHERE device_id = d.device_id AND metric = m.metric AND channel = 0"
            "     AND time > %s AND time <= %s"
            "   ORDER BY time DESC LIMIT 1) r"
            " ORDER BY d.device_id, m.metric",
            (list(METRICS), since, now),
        ).fetchall()
