"""Leak screening on synthetic nights (backend/core/leak.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.core.leak import LeakParams, assess_leak

QUIET_DB = -60.0
QUIET_SPREAD = 3.0


def nights(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A quiet pipe: background scattering by ~1 dB, spread ~3 dB."""
    rng = np.random.default_rng(seed)
    return QUIET_DB + rng.normal(0, 1.0, n), QUIET_SPREAD + rng.normal(0, 0.5, n)


def test_quiet_nights_are_no_leak() -> None:
    background, spread = nights(30)
    result = assess_leak(background, spread)
    assert result.verdict is False
    assert result.confidence == 0.0
    assert result.baseline_db == pytest.approx(QUIET_DB, abs=1.0)


def test_sudden_leak_is_suspected_on_the_third_night_not_before() -> None:
    background, spread = nights(30)
    background[-5:] = QUIET_DB + 12  # a hiss 12 dB above the floor...
    spread[-5:] = 0.8  # ...and stationary
    verdicts = [assess_leak(background[: 25 + k], spread[: 25 + k]).verdict for k in range(1, 6)]
    # nights 1 and 2 of the leak: between thresholds, no change yet
    assert verdicts == [None, None, True, True, True]
    result = assess_leak(background, spread)
    assert result.elevated_nights == 5
    assert result.rise_db == pytest.approx(12, abs=2)
    assert 0.7 < result.confidence <= 1.0


def test_slowly_growing_leak_is_found_once_it_is_6_db_up() -> None:
    background, spread = nights(50, seed=3)
    growth = np.clip(np.arange(50) - 25, 0, None) * 0.8  # +0.8 dB a night from night 25
    background = background + growth
    spread[25:] = 1.0
    first = next(
        n for n in range(20, 51) if assess_leak(background[:n], spread[:n]).verdict is True
    )
    # the rise passes 6 dB around night 33; three such nights are needed
    assert 33 <= first <= 40
    assert assess_leak(background, spread).verdict is True


def test_one_loud_night_is_not_a_leak() -> None:
    background, spread = nights(30)
    background[-1] = QUIET_DB + 15  # a hydrant flushed all night: loud and steady
    spread[-1] = 1.0
    assert assess_leak(background, spread).verdict is None  # no change, not a raise
    background[-3] = QUIET_DB + 15
    spread[-3] = 1.0
    assert assess_leak(background, spread).verdict is None  # not consecutive


def test_traffic_raises_the_spread_and_is_not_a_leak() -> None:
    background, spread = nights(30)
    background[-4:] = QUIET_DB + 8
    spread[-4:] = 30.0  # bursts, not a hiss
    assert assess_leak(background, spread).verdict is not True


def test_missing_nights_neither_break_nor_extend_a_run() -> None:
    background, spread = nights(30)
    background[-6:] = QUIET_DB + 10
    spread[-6:] = 1.0
    background[[-5, -2]] = np.nan  # the sensor could not send twice
    spread[[-5, -2]] = np.nan
    result = assess_leak(background, spread)
    assert result.verdict is True
    assert result.elevated_nights == 4


def test_a_sensor_silent_for_days_gets_no_verdict() -> None:
    background, spread = nights(30)
    background[-3:] = np.nan
    result = assess_leak(background, spread)
    assert result.verdict is None and result.reason == "no recent night"


def test_too_little_history_gets_no_verdict() -> None:
    background, spread = nights(8)
    background[-3:] = QUIET_DB + 20
    result = assess_leak(background, spread)
    assert result.verdict is None
    assert result.reason == "not enough nights for a baseline"


def test_back_to_baseline_clears_and_between_thresholds_holds() -> None:
    background, spread = nights(30, seed=5)
    background[-4:-1] = QUIET_DB + 10
    spread[-4:-1] = 1.0
    background[-1] = QUIET_DB + 4.5  # between clear (3) and raise (6)
    assert assess_leak(background, spread).verdict is None
    background[-1] = QUIET_DB + 0.5
    assert assess_leak(background, spread).verdict is False


def test_a_noisy_sensor_needs_a_larger_rise_for_the_same_confidence() -> None:
    steady_bg, steady_spread = nights(30, seed=7)
    rng = np.random.default_rng(7)
    noisy_bg = QUIET_DB + rng.normal(0, 2.5, 30)
    for bg in (steady_bg, noisy_bg):
        bg[-3:] = QUIET_DB + 8
    steady_spread[-3:] = 1.0
    steady = assess_leak(steady_bg, steady_spread)
    noisy = assess_leak(noisy_bg, steady_spread)
    assert steady.verdict is True and noisy.verdict is True
    assert noisy.confidence < steady.confidence


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        assess_leak([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        assess_leak([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="clear_db"):
        LeakParams(rise_db=3, clear_db=4)
    assert assess_leak([], []).reason == "no night reported"
