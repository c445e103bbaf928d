"""Nightly energy of a lighting circuit and how unusual last night was.

A circuit burns about the same energy every night: the same lamps, the same
dimming schedule, a night length that changes by a few minutes a day. A
night far from the circuit's recent nights means something changed that no
single event reports: lamps burning by day, a schedule not applied, a
contactor stuck open, a meter gone wrong. So:

1. **energy per night** from what the cabinet sends per circuit: the
   ``energy_wh`` counter (preferred: exact even across gaps in telemetry)
   or, without it, the integral of ``power_w`` samples (trapezoids; a gap
   longer than ``max_gap_s`` is not guessed across). The counter lives in
   the cabinet's RAM and restarts at 0 on a reboot: a new boot id, or a value
   below the previous one, means the new value is the energy since the
   reset. Each interval between two samples is shared among the nights it
   overlaps in proportion to time; a night is usable only if intervals we
   trust cover at least ``min_coverage`` of it.
2. **score**: ``(measured - median) / scale`` over the previous nights, with
   ``scale`` the MAD (robust: an earlier odd night does not widen it) but at
   least ``rel_floor`` of the median, because a simulated or very steady
   circuit has a MAD of ~0 and would make a 1 % change "infinitely" unusual.
   An anomaly needs both ``|score| >= threshold`` and a relative change of at
   least ``min_rel_change``, and at least ``min_nights`` usable nights of
   history.

"Night" ``k`` is ``[k * day + offset_s, (k + 1) * day + offset_s)`` in UTC
seconds; the default offset (12 h) runs noon to noon UTC, which keeps a whole
night in one window for cities from about UTC-10 to UTC+10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

DAY_S = 86_400.0
MAD_TO_SIGMA = 1.4826

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class EnergyParams:
    """Thresholds of the nightly comparison."""

    min_nights: int = 7  # a week: every weekday's schedule seen once
    history_nights: int = 14  # short enough that night length drifts < ~5 %
    threshold: float = 4.0  # robust z-score
    min_rel_change: float = 0.2  # smaller changes are lamp failures: events report those
    rel_floor: float = 0.05  # scale >= 5 % of the median: seasonal drift over two weeks
    abs_floor_wh: float = 50.0  # an idle circuit's meter noise
    max_gap_s: float = 3600.0  # power samples further apart than this are not integrated
    min_coverage: float = 0.9  # a night with less usable data is not judged

    def __post_init__(self) -> None:
        if self.min_nights < 2 or self.history_nights < self.min_nights:
            raise ValueError("need 2 <= min_nights <= history_nights")
        if self.threshold <= 0 or self.rel_floor <= 0 or self.abs_floor_wh <= 0:
            raise ValueError("threshold, rel_floor and abs_floor_wh must be > 0")
        if not 0 < self.min_coverage <= 1 or self.max_gap_s <= 0:
            raise ValueError("min_coverage must be in (0, 1], max_gap_s > 0")


@dataclass(frozen=True)
class NightlyEnergy:
    """Energy (Wh) and covered fraction per night; NaN energy = not usable."""

    energy_wh: FloatArray
    coverage: FloatArray


@dataclass(frozen=True)
class EnergyScore:
    """Last night against the previous ones. ``anomalous`` None: cannot tell."""

    anomalous: bool | None
    reason: str
    measured_wh: float | None = None
    expected_wh: float | None = None
    scale_wh: float | None = None
    score: float | None = None
    nights: int = 0


def _vector(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _check_times(times_s: FloatArray) -> None:
    if times_s.size and not np.all(np.isfinite(times_s)):
        raise ValueError("times must be finite")
    if np.any(np.diff(times_s) < 0):
        raise ValueError("times must be sorted (oldest first)")


def counter_increments(values_wh: ArrayLike, boots: ArrayLike | None = None) -> FloatArray:
    """Energy added between consecutive counter samples (first element NaN).

    A reset (new boot, or a value lower than the previous) makes the new
    value itself the increment: the counter restarted at 0. Non-finite
    samples give NaN increments around them.
    """
    values = _vector(values_wh, "values_wh")
    increments = np.full(values.size, np.nan)
    if values.size < 2:
        return increments
    delta = np.diff(values)
    reset = delta < 0
    if boots is not None:
        boot_ids = np.asarray(boots)
        if boot_ids.shape != values.shape:
            raise ValueError("boots must have one entry per value")
        reset |= boot_ids[1:] != boot_ids[:-1]
    increments[1:] = np.where(reset, values[1:], delta)
    increments[1:][values[1:] < 0] = np.nan  # a negative counter is a broken meter
    return increments


def power_increments(times_s: ArrayLike, power_w: ArrayLike, max_gap_s: float) -> FloatArray:
    """Trapezoid energy (Wh) between consecutive power samples (first NaN);
    NaN across gaps longer than ``max_gap_s`` or around non-finite samples."""
    times = _vector(times_s, "times_s")
    power = _vector(power_w, "power_w")
    if times.shape != power.shape:
        raise ValueError("times_s and power_w differ in length")
    _check_times(times)
    increments = np.full(times.size, np.nan)
    if times.size < 2:
        return increments
    dt = np.diff(times)
    wh = (power[1:] + power[:-1]) / 2.0 * dt / 3600.0
    increments[1:] = np.where(dt <= max_gap_s, wh, np.nan)
    return increments


def nightly_energy(
    times_s: ArrayLike,
    increments_wh: ArrayLike,
    first_night: int,
    nights: int,
    *,
    offset_s: float = 12 * 3600.0,
    max_gap_s: float | None = None,
) -> NightlyEnergy:
    """Share each interval ``(times[i-1], times[i]]`` with its increment among
    nights ``first_night .. first_night + nights - 1``.

    An interval counts towards a night's coverage when its increment is
    known and, if ``max_gap_s`` is given, either it is at most that long or
    it lies inside one night (a counter delta over a long gap is still exact
    when nothing has to be split).
    """
    times = _vector(times_s, "times_s")
    inc = _vector(increments_wh, "increments_wh")
    if times.shape != inc.shape:
        raise ValueError("times_s and increments_wh differ in length")
    _check_times(times)
    if nights < 1:
        raise ValueError("nights must be >= 1")
    edges = (first_night + np.arange(nights + 1)) * DAY_S + offset_s
    energy = np.zeros(nights)
    covered = np.zeros(nights)
    if times.size >= 2:
        start, end, wh = times[:-1], times[1:], inc[1:]
        length = end - start
        usable = np.isfinite(wh) & (length > 0)
        # seconds of each interval inside each night: (intervals, nights)
        upper = np.minimum(end[:, None], edges[None, 1:])
        lower = np.maximum(start[:, None], edges[None, :-1])
        overlap = np.clip(upper - lower, 0.0, None)
        if max_gap_s is not None:
            inside_one = (overlap >= length[:, None]).any(axis=1)
            usable &= (length <= max_gap_s) | inside_one
        share = np.where(usable[:, None], overlap / np.where(length > 0, length, 1.0)[:, None], 0)
        energy = (share * np.where(usable, wh, 0.0)[:, None]).sum(axis=0)
        covered = np.where(usable[:, None], overlap, 0.0).sum(axis=0)
    coverage = covered / DAY_S
    return NightlyEnergy(energy_wh=np.where(coverage > 0, energy, np.nan), coverage=coverage)


def usable_nights(
    counter: NightlyEnergy | None, power: NightlyEnergy | None, min_coverage: float
) -> tuple[FloatArray, list[str | None]]:
    """Per night, the counter's energy if well covered, else the power
    integral's, else NaN; with the method used per night."""
    sources = [
        (name, nightly)
        for name, nightly in (("energy_wh", counter), ("power_w", power))
        if nightly is not None
    ]
    if not sources:
        raise ValueError("need the counter's or the power's nightly energy")
    size = sources[0][1].energy_wh.size
    energy = np.full(size, np.nan)
    method: list[str | None] = [None] * size
    for name, nightly in reversed(sources):  # the counter, last, wins
        good = (nightly.coverage >= min_coverage) & np.isfinite(nightly.energy_wh)
        energy = np.where(good, nightly.energy_wh, energy)
        for night in np.flatnonzero(good):
            method[int(night)] = name
    return energy, method


def score_night(
    history_wh: ArrayLike, measured_wh: float, params: EnergyParams | None = None
) -> EnergyScore:
    """Compare one night's energy with the previous nights (NaN = unusable)."""
    p = params or EnergyParams()
    history = _vector(history_wh, "history_wh")
    past = history[np.isfinite(history)][-p.history_nights :]
    if not np.isfinite(measured_wh):
        return EnergyScore(None, "last night not usable", nights=int(past.size))
    if past.size < p.min_nights:
        return EnergyScore(
            None, "not enough nights of history", measured_wh=measured_wh, nights=int(past.size)
        )
    expected = float(np.median(past))
    mad = float(np.median(np.abs(past - expected)))
    scale = max(MAD_TO_SIGMA * mad, p.rel_floor * abs(expected), p.abs_floor_wh)
    score = (measured_wh - expected) / scale
    change = abs(measured_wh - expected) / max(abs(expected), p.abs_floor_wh)
    anomalous = abs(score) >= p.threshold and change >= p.min_rel_change
    return EnergyScore(
        anomalous,
        (("above" if score > 0 else "below") + " the usual nights") if anomalous else "usual",
        measured_wh=float(measured_wh),
        expected_wh=expected,
        scale_wh=scale,
        score=round(float(score), 3),
        nights=int(past.size),
    )
