"""Leak screening of each acoustic sensor's nights (backend/core/leak.py).

The nightly features are read from ``reading`` (channel 0): the background
is ``noise_l90_db`` when the sensor reports it, else ``noise_min_db`` (one
of the two for all of a sensor's nights, so they compare), and the spread
``noise_spread_db``. A night with several reports (a resend, a second
measurement) counts once, with the median of its values.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy, Severity
from backend.alerts.signals import Signal, dedup_key
from backend.core.leak import assess_leak

SOURCE = "acoustic"
BACKGROUND_METRICS = ("noise_l90_db", "noise_min_db")
SPREAD_METRIC = "noise_spread_db"
DAY_S = 86_400.0


def night_of(when: datetime, offset_s: float) -> int:
    return math.floor((when.timestamp() - offset_s) / DAY_S)


def night_start(night: int, offset_s: float) -> float:
    return night * DAY_S + offset_s


def nights_window(policy: Policy, now: datetime) -> tuple[int, int]:
    """(first night, current night) the screening looks at."""
    lp = policy.leak
    current = night_of(now, lp.night_offset_s)
    span = lp.baseline_nights + lp.persist_nights + lp.max_stale_nights
    return current - span, current


def leak_signal(
    device_id: str,
    site: str | None,
    samples: list[tuple[datetime, str, float]],
    policy: Policy,
    now: datetime,
) -> Signal | None:
    """The leak signal of one sensor from its (time, metric, value) samples."""
    first, current = nights_window(policy, now)
    offset = policy.leak.night_offset_s
    per_night: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    newest: datetime | None = None
    for time, metric, value in samples:
        night = night_of(time, offset)
        if first <= night <= current and math.isfinite(value) and -200 <= value <= 200:
            per_night[metric][night].append(value)
            newest = time if newest is None or time > newest else newest
    background_metric = next((m for m in BACKGROUND_METRICS if per_night.get(m)), None)
    if background_metric is None or newest is None:
        return None
    size = current - first + 1

    def series(metric: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        out = np.full(size, np.nan)
        for night, values in per_night.get(metric, {}).items():
            out[night - first] = float(np.median(values))
        return out

    result = assess_leak(series(background_metric), series(SPREAD_METRIC), policy.leak.params())
    if result.verdict is None and result.latest_night is None:
        return None
    severity: Severity = (
        "critical" if result.confidence >= policy.leak.critical_confidence else "warning"
    )
    detail: dict[str, Any] = {
        "method": "acoustic",
        "background_metric": background_metric,
        "confidence": result.confidence,
        "reason": result.reason,
        "baseline_db": _round(result.baseline_db),
        "latest_db": _round(result.latest_db),
        "rise_db": _round(result.rise_db),
        "spread_db": _round(result.spread_db),
        "elevated_nights": result.elevated_nights,
        "baseline_nights": result.baseline_used,
    }
    rise = f"+{result.rise_db:.1f} dB" if result.rise_db is not None else ""
    return Signal(
        dedup_key=dedup_key("leak", device_id),
        rule="leak",
        source=SOURCE,
        device_id=device_id,
        site=site,
        channel=None,
        severity=severity,
        active=result.verdict,
        observed_at=newest,
        title=f"Leak suspected near {device_id} (night noise {rise}, "
        f"{result.elevated_nights} nights)",
        detail=detail,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def read_samples(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime
) -> dict[tuple[str, str | None], list[tuple[datetime, str, float]]]:
    """Every leak sensor's feature samples inside the screening window."""
    first, _ = nights_window(policy, now)
    since = datetime.fromtimestamp(night_start(first, policy.leak.night_offset_s), tz=now.tzinfo)
    metrics = [*BACKGROUND_METRICS, SPREAD_METRIC]
    out: dict[tuple[str, str | None], list[tuple[datetime, str, float]]] = defaultdict(list)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT d.device_id, d.site, r.time, r.metric, r.value"
            " FROM device d JOIN reading r ON r.device_id = d.device_id"
            " WHERE d.role = 'leak_sensor' AND r.channel = 0 AND r.metric = ANY(%s)"
            "   AND r.time >= %s AND r.time <= %s"
            " ORDER BY d.device_id, r.time",
            (metrics, since, now),
        )
        for row in rows:
            out[(row["device_id"], row["site"])].append((row["time"], row["metric"], row["value"]))
    return out
