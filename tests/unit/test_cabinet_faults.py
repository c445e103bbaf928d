"""``edge/cabinet_faults.py`` against arithmetic worked out by hand.

Each expected figure is computed in the test from first principles
(P = n * P_rated * f(level), I = P / (V * pf)), never by calling the module
under test to produce its own expectation.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from edge import cabinet_faults as cf
from edge import sun

LINEAR = ((0, 0.0), (100, 1.0))  # a driver whose power follows the level exactly
# A driver with standby and losses: 20 % of its rating at 10 %, 100 % at 100 %.
LOSSY = ((0, 0.0), (10, 0.2), (100, 1.0))

# 2026-01-15 in Paris: sunrise 08:40 CET, sunset 17:20 CET.
PARIS = (48.86, 2.35)
NOON = 1768478400  # 2026-01-15T12:00:00Z
MIDNIGHT = 1768521600  # 2026-01-16T00:00:00Z


def test_driver_curve_interpolates_linearly() -> None:
    assert cf.driver_fraction(0, LOSSY) == 0.0
    assert cf.driver_fraction(10, LOSSY) == 0.2
    # 50 %: 0.2 + (1.0 - 0.2) * (50 - 10) / (100 - 10) = 0.2 + 0.8 * 4/9
    assert cf.driver_fraction(50, LOSSY) == pytest.approx(0.2 + 0.8 * 40 / 90)
    assert cf.driver_fraction(100, LOSSY) == 1.0
    assert cf.driver_fraction(5, LOSSY) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="levels must increase"):
        cf.CabinetFaults({1: {"lamps": 1, "rated_w": 1, "curve": ((0, 0), (0, 1))}})


def test_24_luminaires_of_40_w_at_50_percent() -> None:
    # Linear driver: 24 * 40 W * 0.5 = 480 W; at 230 V and pf 0.95: 480 / 218.5 A
    assert cf.expected_power_w(24, 40.0, 50, LINEAR) == pytest.approx(480.0)
    assert cf.expected_current_a(24, 40.0, 50, 230.0, 0.95, LINEAR) == pytest.approx(480.0 / 218.5)
    assert pytest.approx(2.19680, abs=1e-5) == 480.0 / 218.5
    # Lossy driver: 24 * 40 * (0.2 + 0.8 * 40 / 90) = 960 * 0.5556 = 533.33 W, 2.4409 A
    p = 24 * 40 * (0.2 + 0.8 * 40 / 90)
    assert p == pytest.approx(533.333, abs=1e-3)
    assert cf.expected_current_a(24, 40.0, 50, 230.0, 0.95, LOSSY) == pytest.approx(p / 218.5)


def test_three_failed_lamps_are_estimated_from_power_and_from_current() -> None:
    healthy_w = 21 * 40 * 0.5  # 21 of 24 lamps burning at 50 %: 420 W
    assert cf.failed_lamps(healthy_w, 24, 40.0, 50, LINEAR) == pytest.approx(3.0)
    faults = cf.CabinetFaults({1: {"lamps": 24, "rated_w": 40.0, "curve": LINEAR}}, settle_s=0)
    # current only: I = 420 W / (230 V * 0.95) = 1.92220 A, back to 420 W
    current = healthy_w / (230.0 * 0.95)
    assert faults._power({"current_a": current, "voltage_v": 230.0}) == pytest.approx(420.0)


def _cab(**kw: Any) -> cf.CabinetFaults:
    kw.setdefault("settle_s", 60)
    kw.setdefault("lamp_hold_s", 300)
    return cf.CabinetFaults({1: {"lamps": 24, "rated_w": 40.0, "curve": LINEAR}}, **kw)


def _sample(power_w: float, level: float = 50, mains: int = 1, door: int = 0) -> dict[str, Any]:
    return {
        "mains_bool": mains,
        "door_bool": door,
        "circuits": {1: {"level_pct": level, "power_w": power_w, "voltage_v": 230.0}},
    }


def _run(f: cf.CabinetFaults, t0: int, samples: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    out = []
    for dt, s in samples:
        for ev in f.update(t0 + dt, s):
            out.append((dt, ev))
    return out


def test_lamp_failure_raised_after_hold_and_cleared_with_hysteresis() -> None:
    f = _cab()
    t0 = MIDNIGHT
    seq = [(i * 10, _sample(420.0)) for i in range(0, 40)]  # 3 lamps out from t0
    events = _run(f, t0, seq)
    # level steady from t=0, settled at 60 s, condition holds 300 s more: raised at 360 s
    assert events == [
        (
            360,
            {
                "code": "lamp_failure",
                "sev": "warning",
                "active": True,
                "ch": 1,
                "detail": {"failed_count": 3, "expected_w": 480.0, "measured_w": 420.0},
            },
        )
    ]
    # One lamp relit: 2 failed (440 W) is still above the clear threshold (0.5)
    t1 = 400
    assert _run(f, t0, [(t1 + i * 10, _sample(440.0)) for i in range(50)]) == []
    # flicker around the raise threshold changes nothing while active
    # All relit (480 W = 0 failed): cleared only after 300 s below 0.5
    ev = _run(f, t0, [(1000 + i * 10, _sample(480.0)) for i in range(40)])
    assert ev == [(1300, {"code": "lamp_failure", "sev": "warning", "active": False, "ch": 1})]


def test_lamp_estimate_waits_for_a_steady_level_and_ignores_off() -> None:
    f = _cab(lamp_hold_s=0)
    # the level changes every 30 s (drivers ramping): never judged
    seq = [(i * 30, _sample(300.0, level=40 + (i % 2) * 10)) for i in range(20)]
    assert _run(f, MIDNIGHT, seq) == []
    # off (level 0) never counts as failed lamps, whatever the power
    seq = [(1000 + i * 30, _sample(0.0, level=0)) for i in range(20)]
    assert _run(f, MIDNIGHT, seq) == []


def test_a_one_lamp_dip_below_the_raise_threshold_does_not_flap() -> None:
    f = _cab(settle_s=0, lamp_hold_s=60)
    # 1 failed lamp (460 W) < 1.5 threshold: no event; alternating 1 and 2 failed
    seq = [(i * 10, _sample(460.0 if i % 2 else 440.0)) for i in range(100)]
    assert _run(f, MIDNIGHT, seq) == []


def test_more_lamps_failing_while_active_updates_the_count() -> None:
    f = _cab(settle_s=0, lamp_hold_s=0)
    ev = _run(f, MIDNIGHT, [(0, _sample(400.0)), (10, _sample(400.0)), (20, _sample(300.0))])
    counts = [e["detail"]["failed_count"] for _, e in ev]
    assert counts == [4, 9]  # (480-400)/20 = 4, then (480-300)/20 = 9


def test_mains_loss_and_door_are_debounced() -> None:
    f = _cab(mains_s=5, door_s=2)
    t0 = MIDNIGHT
    seq = [
        (0, _sample(480.0)),
        (1, _sample(0.0, mains=0)),  # a 2 s dip: ignored
        (3, _sample(480.0)),
        (10, _sample(0.0, mains=0)),
        (14, _sample(0.0, mains=0)),
        (15, _sample(0.0, mains=0)),  # 5 s: raised
        (16, _sample(480.0, door=1)),
        (18, _sample(480.0, door=1)),  # door 2 s: raised
        (20, _sample(480.0, door=0)),
        (21, _sample(480.0, door=0)),  # mains back 5 s at 21: cleared
        (22, _sample(480.0, door=0)),  # door shut 2 s: cleared
    ]
    ev = [(dt, e["code"], e["active"]) for dt, e in _run(f, t0, seq)]
    assert ev == [
        (15, "mains_loss", True),
        (18, "door_open", True),
        (21, "mains_loss", False),
        (22, "door_open", False),
    ]
    assert _run(f, t0, [(30, _sample(480.0))]) == []


def test_day_burning_uses_the_sun() -> None:
    lat, lon = PARIS
    day = NOON // 86400
    rise, sets, _ = sun.sun_events(day, lat, lon)
    assert rise is not None and sets is not None
    assert cf.is_daylight(NOON, lat, lon) is True
    assert cf.is_daylight(MIDNIGHT, lat, lon) is False
    assert cf.is_daylight(rise + 60, lat, lon) is False  # inside the 30 min margin
    assert cf.is_daylight(rise + 1801, lat, lon) is True
    assert cf.is_daylight(NOON, None, None) is None
    f = _cab(lat=lat, lon=lon, day_s=600)
    ev = _run(f, NOON, [(i * 60, _sample(960.0, level=100)) for i in range(12)])
    assert ev == [(600, {"code": "day_burning", "sev": "warning", "active": True, "ch": 1,
                         "detail": {"power_w": 960.0}})]  # fmt: skip
    ev = _run(f, NOON, [(720 + i * 60, _sample(0.0, level=0)) for i in range(12)])
    assert ev == [(1320, {"code": "day_burning", "sev": "warning", "active": False, "ch": 1})]
    # lit at night: no day burning
    night = _cab(lat=lat, lon=lon, day_s=0)
    assert _run(night, MIDNIGHT, [(0, _sample(480.0)), (60, _sample(480.0))]) == []


def test_energy_is_integrated_per_circuit() -> None:
    f = _cab()
    # 480 W for one hour in 10 s steps, then a ramp 480 -> 0 W over 60 s
    for i in range(361):
        f.update(MIDNIGHT + i * 10, _sample(480.0))
    assert f.energy_wh()[1] == pytest.approx(480.0)
    f.update(MIDNIGHT + 3660, _sample(0.0, level=0))
    assert f.energy_wh()[1] == pytest.approx(480.0 + 480.0 / 2 * 60 / 3600)
    assert cf.integrate_wh(100.0, 300.0, 3600) == 200.0


def test_bad_readings_are_skipped_not_fatal() -> None:
    f = _cab(settle_s=0, lamp_hold_s=0)
    for bad in (math.nan, math.inf, "12", True, None):
        assert f.update(MIDNIGHT, _sample(bad)) == []  # type: ignore[arg-type]
    assert f.update(MIDNIGHT, {"circuits": {}}) == []
    assert f.update(MIDNIGHT, {}) == []
    with pytest.raises(ValueError, match="hysteresis"):
        cf.CabinetFaults({}, lamp_on=1, lamp_off=1)
