"""Presence and silence of devices and gateways (table ``device``).

Presence is the last status received (a clean stop or a last-will says
offline); silence is the time since anything was last received from the
device. A leak sensor disconnects cleanly after each nightly report, so its
"offline" status is normal and only its silence counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy
from backend.alerts.signals import Signal, dedup_key

SOURCE = "presence"


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    role: str | None
    site: str | None
    last_seen: datetime | None
    last_status: str | None
    last_status_at: datetime | None


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def presence_signal(row: DeviceRow, policy: Policy, now: datetime) -> Signal | None:
    """cabinet_offline, gateway_offline or sensor_silent for one device.

    None for a device never heard from (provisioned, not installed yet) or
    with no role; active None (no opinion) while an offline status has not
    yet been held long enough and the device is not silent either.
    """
    if row.role not in ("cabinet", "gateway", "leak_sensor"):
        return None
    if row.last_seen is None and row.last_status_at is None:
        return None
    p = policy.presence
    detail: dict[str, Any] = {
        "last_seen": _iso(row.last_seen),
        "last_status": row.last_status,
        "last_status_at": _iso(row.last_status_at),
    }
    if row.role == "leak_sensor":
        rule, silent_s, hold_s = "sensor_silent", p.sensor_silent_s, None
        title = f"Leak sensor {row.device_id} silent"
    elif row.role == "cabinet":
        rule, silent_s, hold_s = "cabinet_offline", p.cabinet_silent_s, p.cabinet_offline_hold_s
        title = f"Cabinet {row.device_id} offline"
    else:
        rule, silent_s, hold_s = "gateway_offline", p.gateway_silent_s, p.gateway_offline_hold_s
        title = f"Gateway {row.device_id} offline"

    silent = row.last_seen is not None and now - row.last_seen >= timedelta(seconds=silent_s)
    offline = hold_s is not None and row.last_status == "offline"
    offline_held = (
        offline
        and row.last_status_at is not None
        and now - row.last_status_at >= timedelta(seconds=hold_s or 0)
    )
    active: bool | None
    since: datetime | None = None
    if offline_held:
        active, since, detail["reason"] = True, row.last_status_at, "offline"
    elif silent:
        active, since, detail["reason"] = True, row.last_seen, "silent"
        title += f" (nothing received for {int(silent_s // 60)} min)"
    elif offline:
        active = None  # waiting out the hold: maybe a reconnect
    else:
        active = False
    return Signal(
        dedup_key=dedup_key(rule, row.device_id),
        rule=rule,
        source=SOURCE,
        device_id=row.device_id,
        site=row.site,
        channel=None,
        severity="warning",
        active=active,
        observed_at=now,
        title=title,
        detail=detail,
        since=since,
    )


def read_devices(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT device_id, role, site, last_seen, last_status, last_status_at"
            " FROM device WHERE role IS NOT NULL ORDER BY device_id"
        ).fetchall()
