"""Nightly energy and its anomaly score on synthetic circuits (backend/core/energy.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.core.energy import (
    DAY_S,
    EnergyParams,
    counter_increments,
    nightly_energy,
    power_increments,
    score_night,
    usable_nights,
)

OFFSET = 12 * 3600.0
STEP = 600.0  # telemetry every 10 min


def lit(t: np.ndarray, watts: float = 1000.0) -> np.ndarray:
    """Power of a circuit lit from 18:00 to 06:00 UTC."""
    hour = (t % DAY_S) / 3600
    return np.where((hour >= 18) | (hour < 6), watts, 0.0)


def grid(first_night: int, nights: int) -> np.ndarray:
    start = first_night * DAY_S + OFFSET
    return np.arange(start, start + nights * DAY_S + 1, STEP)


def test_counter_increments_survive_a_reboot() -> None:
    values = np.array([100.0, 150.0, 200.0, 30.0, 80.0])  # reboot before the 4th
    assert counter_increments(values).tolist()[1:] == [50.0, 50.0, 30.0, 50.0]
    # a reboot that happens to report a higher value is caught by its boot id
    values = np.array([100.0, 150.0, 170.0, 220.0])
    boots = np.array(["a", "a", "b", "b"])
    assert counter_increments(values, boots).tolist()[1:] == [50.0, 170.0, 50.0]
    assert np.isnan(counter_increments(values)[0])


def test_power_integration_matches_the_lit_hours_and_refuses_gaps() -> None:
    t = grid(100, 3)
    nightly = nightly_energy(t, power_increments(t, lit(t), 3600), 100, 3, offset_s=OFFSET)
    # 12 h at 1 kW: the two switching ramps (half a step each) add up to one step
    assert nightly.energy_wh == pytest.approx([12000.0] * 3, rel=1e-9)
    assert nightly.coverage == pytest.approx([1.0, 1.0, 1.0])
    t_gap = np.delete(t, np.arange(150, 170))  # ~3 h without telemetry on night 2
    gap = nightly_energy(t_gap, power_increments(t_gap, lit(t_gap), 3600), 100, 3, offset_s=OFFSET)
    assert gap.coverage[1] < 0.9 and gap.coverage[0] == pytest.approx(1.0)


def test_counter_energy_is_exact_across_a_reset_and_a_gap_inside_a_night() -> None:
    t = grid(100, 2)
    power = lit(t)
    energy = np.concatenate([[0.0], np.cumsum((power[1:] + power[:-1]) / 2 * STEP / 3600)])
    truth = nightly_energy(t, power_increments(t, power, 3600), 100, 2, offset_s=OFFSET)
    counter = energy.copy()
    # reboot right after sample 99: the RAM counter starts again at 0
    counter[100:] -= counter[99]
    keep = np.ones(t.size, bool)
    keep[60:80] = False  # 3 h gap, all inside night 100
    nightly = nightly_energy(
        t[keep],
        counter_increments(counter[keep]),
        100,
        2,
        offset_s=OFFSET,
        max_gap_s=3600,
    )
    assert nightly.energy_wh == pytest.approx(truth.energy_wh, rel=1e-9)
    assert nightly.coverage == pytest.approx([1.0, 1.0])


def test_usable_nights_prefers_the_counter_and_falls_back_to_power() -> None:
    counter = nightly_energy(
        np.array([0.0, DAY_S / 2]) + OFFSET, np.array([np.nan, 5.0]), 0, 2, offset_s=OFFSET
    )
    t = grid(0, 2)
    power = nightly_energy(t, power_increments(t, lit(t), 3600), 0, 2, offset_s=OFFSET)
    energy, method = usable_nights(counter, power, 0.9)
    assert method == ["power_w", "power_w"]  # the counter covers half a night only
    assert energy == pytest.approx(power.energy_wh)


def history(n: int = 14, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 12000 + rng.normal(0, 150, n)


def test_a_usual_night_scores_low() -> None:
    score = score_night(history(), 12100.0)
    assert score.anomalous is False
    assert abs(score.score or 0) < 1
    assert score.expected_wh == pytest.approx(12000, abs=200)


@pytest.mark.parametrize("measured", [24000.0, 0.0, 6000.0])
def test_burning_by_day_or_dark_or_half_is_an_anomaly(measured: float) -> None:
    score = score_night(history(), measured)
    assert score.anomalous is True
    assert score.measured_wh == measured
    assert (score.score or 0) * (measured - 12000) > 0  # the sign says which way


def test_small_changes_stay_below_the_relative_floor() -> None:
    flat = np.full(14, 12000.0)  # a simulated circuit: MAD 0
    assert score_night(flat, 12300.0).anomalous is False  # +2.5 %: lamp-level change
    assert score_night(flat, 15000.0).anomalous is True  # +25 %


def test_needs_seven_nights_and_ignores_unusable_ones() -> None:
    short = history(6)
    assert score_night(short, 30000.0).anomalous is None
    holes = np.concatenate([history(7), [np.nan] * 5])
    assert score_night(holes, 30000.0).anomalous is True
    assert score_night(history(), float("nan")).anomalous is None


def test_one_odd_night_in_history_does_not_hide_the_next() -> None:
    past = history()
    past[3] = 40000.0  # a night of maintenance tests
    assert score_night(past, 24000.0).anomalous is True


def test_bad_parameters_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="min_nights"):
        EnergyParams(min_nights=10, history_nights=5)
    with pytest.raises(ValueError, match="sorted"):
        power_increments([2.0, 1.0], [1.0, 1.0], 60)
    with pytest.raises(ValueError, match="boots"):
        counter_increments([1.0, 2.0], ["a"])
