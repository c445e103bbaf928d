"""Leak screening over a sensor's nights: the acoustic noise-logger method.

Each night an acoustic sensor on a valve or hydrant reports a few features of
the pipe's noise (docs/leak_features.md): the background level (L90, the
level exceeded 90 % of the night, or the quietest sub-window) and the spread
between loud and quiet moments (L10 - L90). A leak is a persistent,
stationary hiss: it raises the background *every* night and keeps the spread
narrow. Traffic, a tap opened or a pump starting raise the loud percentiles
(wide spread) or last one night. Noise loggers therefore compare each
sensor with **its own history** (pipe material, depth and distance to the
nearest pump make absolute levels meaningless across sensors):

* the **baseline** is the median background of the nights before the recent
  ones (robust: a few odd nights do not move it), with its spread measured by
  the MAD;
* a night is **leak-like** when its background is at least ``rise_db`` above
  the baseline and its spread at most ``max_spread_db``;
* a leak is **suspected** when the last ``persist_nights`` reported nights
  are all leak-like (one noisy night, a hydrant flushed all night, is not a
  leak);
* the suspicion is **cleared** only when the latest night's background is
  back within ``clear_db`` of the baseline: between the two thresholds the
  verdict is "no change" (hysteresis, so a leak hovering near the threshold
  does not flap).

Missing nights (the sensor could not send) neither break nor extend a run:
only reported nights count. A sensor whose latest report is older than
``max_stale_nights`` gets no verdict (``sensor_silent`` covers that).

Known limit: the baseline window slides, so a leak left unrepaired for more
than about half of ``baseline_nights`` becomes part of its own baseline and
the suspicion eventually clears; the default window (60 nights) gives a
month.

Everything here is pure: arrays in (NaN = no report that night), a
dataclass out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class LeakParams:
    """Thresholds of the screening (dB are those of the sensor's features)."""

    rise_db: float = 6.0  # a leak within earshot adds several dB to the night floor
    clear_db: float = 3.0  # back within this of the baseline: the leak is gone
    max_spread_db: float = 6.0  # stationary noise; traffic nights spread 20-40 dB
    persist_nights: int = 3  # leaks do not stop; one-off loud nights do
    baseline_nights: int = 60  # long window: a leak takes ~a month to be absorbed
    min_baseline_nights: int = 7  # fewer: the sensor's "normal" is not known yet
    max_stale_nights: int = 2  # latest report older than this: no verdict
    sigma_floor_db: float = 1.0  # a very steady sensor must not make 0.1 dB "significant"

    def __post_init__(self) -> None:
        if not 0 < self.clear_db <= self.rise_db:
            raise ValueError(f"need 0 < clear_db <= rise_db, got {self.clear_db}, {self.rise_db}")
        if self.persist_nights < 1 or self.min_baseline_nights < 1:
            raise ValueError("persist_nights and min_baseline_nights must be >= 1")
        if self.baseline_nights < self.min_baseline_nights:
            raise ValueError("baseline_nights must be >= min_baseline_nights")
        if self.max_spread_db <= 0 or self.sigma_floor_db <= 0 or self.max_stale_nights < 0:
            raise ValueError("max_spread_db and sigma_floor_db must be > 0, max_stale >= 0")


@dataclass(frozen=True)
class LeakAssessment:
    """The verdict for the latest night and the figures behind it.

    ``verdict``: True = leak suspected, False = no leak, None = no change
    (between the raise and clear thresholds) or cannot tell (``reason``).
    """

    verdict: bool | None
    confidence: float
    reason: str
    baseline_db: float | None = None
    baseline_sigma_db: float | None = None
    latest_db: float | None = None
    rise_db: float | None = None
    spread_db: float | None = None
    elevated_nights: int = 0
    baseline_used: int = 0
    latest_night: int | None = None


def _as_nights(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per night (1-D), got shape {array.shape}")
    return array


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def assess_leak(
    background_db: ArrayLike, spread_db: ArrayLike, params: LeakParams | None = None
) -> LeakAssessment:
    """Screen one sensor: ``background_db[i]`` and ``spread_db[i]`` are night
    ``i``'s features (oldest first, the last element is tonight), NaN where
    the sensor did not report. A night with a background but no spread is
    judged on its background alone (the spread is then taken as narrow)."""
    p = params or LeakParams()
    background = _as_nights(background_db, "background_db")
    spread = _as_nights(spread_db, "spread_db")
    if background.shape != spread.shape:
        raise ValueError(
            f"background_db and spread_db differ in length: {background.size} != {spread.size}"
        )
    reported = np.flatnonzero(np.isfinite(background))
    if reported.size == 0:
        return LeakAssessment(None, 0.0, "no night reported")
    latest = int(reported[-1])
    if background.size - 1 - latest > p.max_stale_nights:
        return LeakAssessment(None, 0.0, "no recent night", latest_night=latest)
    if reported.size < p.persist_nights + p.min_baseline_nights:
        return LeakAssessment(None, 0.0, "not enough nights for a baseline", latest_night=latest)

    recent = reported[-p.persist_nights :]
    before = reported[: -p.persist_nights][-p.baseline_nights :]
    base = background[before]
    baseline = float(np.median(base))
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(base - baseline))), p.sigma_floor_db)

    rise = background - baseline
    narrow = ~(spread > p.max_spread_db)  # NaN spread counts as narrow
    leak_like = (rise >= p.rise_db) & narrow

    # consecutive leak-like reported nights ending at the latest one
    run = 0
    for night in reported[::-1]:
        if not leak_like[night]:
            break
        run += 1

    recent_spread = spread[recent]
    spread_figure = (
        float(np.median(recent_spread[np.isfinite(recent_spread)]))
        if np.isfinite(recent_spread).any()
        else None
    )
    latest_rise = float(rise[latest])

    def verdict(value: bool | None, confidence: float, reason: str) -> LeakAssessment:
        return LeakAssessment(
            value,
            confidence,
            reason,
            baseline_db=baseline,
            baseline_sigma_db=sigma,
            latest_db=float(background[latest]),
            rise_db=latest_rise,
            spread_db=spread_figure,
            elevated_nights=run,
            baseline_used=int(before.size),
            latest_night=latest,
        )

    if run >= p.persist_nights:
        margin = float(np.min(rise[recent]))
        return verdict(True, _confidence(margin, sigma, spread_figure, run, p), "persistent rise")
    if latest_rise < p.clear_db:
        return verdict(False, 0.0, "background at baseline")
    return verdict(None, 0.0, "between thresholds")


def _confidence(
    margin_db: float, sigma_db: float, spread: float | None, run: int, p: LeakParams
) -> float:
    """How sure, in [0, 1], once the rule has fired.

    Four independent reasons to believe it, weighted by how much each one
    tells a leak from something else:
    - size of the smallest recent rise: at the threshold 0.5, at 1.5x it 1.0
      (a bigger rise is less likely a change in the sensor's surroundings);
    - the same rise in units of the sensor's own night-to-night scatter
      (z >= 6 counts fully, <= 3 not at all): a rise a noisy sensor makes by
      itself is weak evidence;
    - narrowness of the spread: 0 dB is a pure hiss, max_spread_db is the limit;
    - persistence: the minimum run gives 0.5, twice as many nights 1.0.
    """
    c_level = _clip01((margin_db - p.rise_db) / p.rise_db + 0.5)
    c_stat = _clip01((margin_db / sigma_db - 3.0) / 3.0)
    c_spread = 1.0 if spread is None else _clip01(1.0 - spread / p.max_spread_db)
    c_persist = _clip01(run / (2.0 * p.persist_nights))
    return round(0.35 * c_level + 0.25 * c_stat + 0.2 * c_spread + 0.2 * c_persist, 3)
