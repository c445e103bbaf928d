"""backend.schedules.nights: a night's levels as the cabinet computes them; a year's findings."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from backend.schedules import checks, nights
from edge import schedule
from tests.unit.test_schedules_checks import DOC_PROGRAM

LYON = (45.76, 4.84)


def compiled(plans: dict[str, list[Any]], circuits: dict[str, Any] | None = None) -> Any:
    program = {
        "v": 1,
        "tz": {"std": 60, "dst": "eu"},
        "plans": plans,
        "circuits": circuits or {str(i + 1): {"week": name} for i, name in enumerate(plans)},
    }
    return checks.check_program(program).program


@pytest.mark.parametrize("day", [date(2026, 1, 15), date(2026, 3, 29), date(2026, 7, 14)])
def test_the_preview_is_what_the_cabinets_interpreter_answers(day: date) -> None:
    program = checks.check_program(DOC_PROGRAM).program
    night = nights.preview_night(program, day, *LYON)
    assert night.window[0] < night.sunset < night.sunrise < night.window[1]
    for circuit in night.circuits:
        previous = 0
        for change in circuit.changes:
            now = schedule.level_at(program, change.at, *LYON)[circuit.circuit]
            before = schedule.level_at(program, change.at - 1, *LYON)[circuit.circuit]
            assert now == (change.level, "step")
            assert before == (previous, "step")
            previous = change.level
        assert previous == 0  # every night ends switched off
        # and nothing changes between the changes the preview lists
        times = [c.at for c in circuit.changes]
        for t in range(night.window[0], night.window[1], 600):
            expected = 0
            for c in circuit.changes:
                if c.at <= t:
                    expected = c.level
            assert schedule.level_at(program, t, *LYON)[circuit.circuit][0] == expected, (t, times)


def test_energy_fraction_against_full_power_from_sunset_to_sunrise() -> None:
    program = compiled(
        {
            "full": ["dusk", 100, "dawn", 0],
            "half": ["dusk", 50, "dawn", 0],
            "off": ["dusk", 0],
            "std": ["dusk", 100, "23:00", 50, "dawn", 0],
        }
    )
    night = nights.preview_night(program, date(2026, 1, 15), *LYON)
    full, half, off, std = night.circuits
    night_s = night.sunrise - night.sunset
    assert full.energy_fraction == 1.0 and full.lit_s == night_s and full.dark_s == 0
    assert half.energy_fraction == 0.5
    assert (off.energy_fraction, off.lit_s, off.dark_s, off.changes) == (0.0, 0, night_s, ())
    switch = std.changes[1].at  # 23:00 CET = 22:00 UTC
    assert nights.utc(switch).strftime("%H:%M") == "22:00"
    expected = ((switch - night.sunset) * 100 + (night.sunrise - switch) * 50) / (100 * night_s)
    assert std.energy_fraction == pytest.approx(expected, abs=1e-12)
    assert night.energy_fraction == pytest.approx((1.0 + 0.5 + 0.0 + expected) / 4)


def hhmm(t: int) -> str:
    return nights.utc(t).strftime("%H:%M")


def test_winter_and_summer_nights_at_lyon_follow_the_sun() -> None:
    program = compiled({"full": ["dusk", 100, "dawn", 0]})
    winter = nights.preview_night(program, date(2026, 12, 21), *LYON)
    summer = nights.preview_night(program, date(2026, 6, 21), *LYON)
    # Published almanac times for Lyon (UTC): 21 Dec sunset 15:58, 22 Dec sunrise
    # 07:19; 21 Jun sunset 19:32, 22 Jun sunrise 03:51. Within a few minutes.
    for night, sunset, sunrise in ((winter, "15:5", "07:1"), (summer, "19:3", "03:5")):
        assert hhmm(night.sunset).startswith(sunset)
        assert hhmm(night.sunrise).startswith(sunrise)
        (circuit,) = night.circuits
        assert [c.at for c in circuit.changes] == [night.sunset, night.sunrise]
    assert 15.2 * 3600 < winter.circuits[0].lit_s < 15.5 * 3600
    assert 8.1 * 3600 < summer.circuits[0].lit_s < 8.4 * 3600


def test_a_plan_whose_switch_off_comes_first_is_never_lit_all_year() -> None:
    program = compiled({"p": ["05:00", 100, "dusk+60", 0]})
    found = nights.sweep_year(program, *LYON, date(2026, 1, 1))
    assert [f.code for f in found] == ["never_lit"]
    assert "365 nights" in found[0].message and found[0].field == "circuits.1"


def test_a_fixed_switch_off_before_the_summer_dusk_darkens_summer_nights() -> None:
    # 21:30 CEST is before sunset in Lyon from mid-May to late July.
    program = compiled({"s": ["dusk", 100, "21:30", 0]})
    found = {f.code: f for f in nights.sweep_year(program, *LYON, date(2026, 1, 1))}
    assert set(found) == {"dark_nights", "short_lit"}
    dark = found["dark_nights"].message
    assert "(first 2026-05-" in dark or "(first 2026-06-" in dark
    night = nights.preview_night(program, date(2026, 6, 21), *LYON)
    assert [f.code for f in night.findings] == ["dark_night"]
    assert nights.preview_night(program, date(2026, 1, 15), *LYON).findings == ()


def test_a_clock_switch_on_before_sunset_is_lit_in_daylight() -> None:
    program = compiled({"d": ["16:00", 100, "dawn", 0]})
    found = nights.sweep_year(program, *LYON, date(2026, 1, 1))
    assert [f.code for f in found] == ["lit_in_daylight"]


def test_the_documented_program_has_no_findings_at_lyon() -> None:
    program = checks.check_program(DOC_PROGRAM).program
    assert nights.sweep_year(program, *LYON, date(2026, 1, 1)) == []


def test_a_polar_day_has_no_energy_fraction_and_no_finding() -> None:
    program = compiled({"full": ["dusk", 100, "dawn", 0], "p": ["05:00", 100, "dusk+60", 0]})
    night = nights.preview_night(program, date(2026, 6, 21), 78.2, 15.6)  # Longyearbyen
    assert night.sunset == night.sunrise
    assert [c.energy_fraction for c in night.circuits] == [None, None]
    assert night.energy_fraction is None and night.findings == ()


def test_a_holiday_night_runs_the_holiday_plan() -> None:
    program_obj = copy.deepcopy(DOC_PROGRAM)
    program = checks.check_program(program_obj).program
    bastille = nights.preview_night(program, date(2026, 7, 14), *LYON)
    assert bastille.circuits[0].plans == ("full",)
    assert bastille.circuits[1].plans == ("std",)
    assert nights.preview_night(program, date(2026, 7, 17), *LYON).circuits[0].plans == ("we",)
