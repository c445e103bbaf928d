"""``edge.schedule``: a year of nights checked against the rules, astral and zoneinfo.

The expected levels are derived independently of the interpreter: sun times
from astral (which differs from ``edge.sun`` by up to ~25 s, hence the
checks one minute either side of each event), local clock times from the
tz database (``zoneinfo``, whose ``fold=0`` reading of skipped and repeated
times is the rule the schedule documents), and which plan runs from the
published 2026 French holidays.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from astral import Observer
from astral import sun as asun

from edge import calendar_days as cd
from edge import schedule
from edge import schedule_tz as tzr
from edge.schedule import ScheduleError

DOC = Path(__file__).resolve().parents[2] / "docs" / "schedule.md"
UTC = dt.UTC
PARIS = (48.86, 2.35)

PROG: dict[str, Any] = {
    "v": 1,
    "id": "ville-2026-03",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {
        "std": ["dusk", 100, "22:30", 50, "vmid", 30, "dawn-30", 50, "dawn", 0],
        "we": ["dusk", 100, "00:30", 70, "vmid+60", 30, "dawn", 0],
        "full": ["dusk", 100, "dawn", 0],
        "dark": ["dusk", 0],
    },
    "holidays": [
        "01-01",
        "easter+1",
        "05-01",
        "05-08",
        "easter+39",
        "easter+50",
        "07-14",
        "08-15",
        "11-01",
        "11-11",
        "12-25",
    ],
    "circuits": {
        "1": {
            "week": {"1111001": "std", "0000110": "we"},
            "holiday": "we",
            "dates": {"07-14": "full", "2026-12-31": "full"},
        },
        "2": {"week": "std"},
        "3": {"week": "dark", "dates": {"2026-06-21": "full"}},
    },
}

# The French public holidays of 2026 (Easter Sunday is 5 April)
HOLIDAYS_2026 = {
    dt.date(2026, 1, 1),
    dt.date(2026, 4, 6),
    dt.date(2026, 5, 1),
    dt.date(2026, 5, 8),
    dt.date(2026, 5, 14),
    dt.date(2026, 5, 25),
    dt.date(2026, 7, 14),
    dt.date(2026, 8, 15),
    dt.date(2026, 11, 1),
    dt.date(2026, 11, 11),
    dt.date(2026, 12, 25),
}

OVERSEAS = {
    # name: (lat, lon, zoneinfo name, tz rule)
    "saint-denis-reunion": (-20.88, 55.45, "Indian/Reunion", {"std": 240}),
    "pointe-a-pitre": (16.24, -61.53, "America/Guadeloupe", {"std": -240}),
    "fort-de-france": (14.60, -61.07, "America/Martinique", {"std": -240, "dst": "none"}),
    "cayenne": (4.94, -52.33, "America/Cayenne", {"std": -180}),
    "mamoudzou": (-12.78, 45.23, "Indian/Mayotte", {"std": 180}),
    "saint-pierre": (46.78, -56.18, "America/Miquelon", {"std": -180, "dst": "na"}),
    "lille": (50.63, 3.06, "Europe/Paris", {"std": 60, "dst": "eu"}),
    "ajaccio": (41.93, 8.74, "Europe/Paris", {"std": 60, "dst": "eu"}),
}

DATES_2026 = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(365)]


def unix(d: dt.date, hh: int, mm: int, tz: dt.tzinfo) -> int:
    """Unix time of local hh:mm on date d (fold 0: zoneinfo's reading of gaps and folds)."""
    return int(dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=tz).timestamp())


def day_number(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def astral_night(lat: float, lon: float, tz: dt.tzinfo, d: dt.date) -> tuple[int, int]:
    """astral's sunset of d and sunrise of d + 1."""
    obs = Observer(lat, lon, 0.0)
    dusk = asun.sunset(obs, d, tzinfo=tz).timestamp()
    dawn = asun.sunrise(obs, d + dt.timedelta(days=1), tzinfo=tz).timestamp()
    return round(dusk), round(dawn)


# ---------------------------------------------------------------- calendar


def test_day_numbers_match_datetime() -> None:
    epoch = dt.date(1970, 1, 1)
    for n in range(-30000, 60000, 7):
        d = epoch + dt.timedelta(days=n)
        assert cd.days_from_civil(d.year, d.month, d.day) == n
        assert cd.civil_from_days(n) == (d.year, d.month, d.day)
        assert cd.weekday(n) == d.weekday()
    assert cd.format_date(cd.days_from_civil(2026, 7, 4)) == "2026-07-04"


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [
        (1943, 4, 25),
        (2000, 4, 23),
        (2019, 4, 21),
        (2024, 3, 31),
        (2025, 4, 20),
        (2026, 4, 5),
        (2027, 3, 28),
        (2038, 4, 25),
        (2285, 3, 22),
    ],
)
def test_easter(year: int, month: int, day: int) -> None:
    assert cd.easter(year) == cd.days_from_civil(year, month, day)


def test_weekday_rules() -> None:
    assert cd.format_date(cd.last_weekday(2026, 3, 6)) == "2026-03-29"
    assert cd.format_date(cd.last_weekday(2026, 10, 6)) == "2026-10-25"
    assert cd.format_date(cd.nth_weekday(2026, 3, 6, 2)) == "2026-03-08"
    assert cd.format_date(cd.nth_weekday(2026, 11, 6, 1)) == "2026-11-01"


@pytest.mark.parametrize(
    "text", ["2026-02-29", "2026-13-01", "2026-00-10", "26-01-01", "2026/01/01", "1969-12-31"]
)
def test_bad_dates(text: str) -> None:
    with pytest.raises(ValueError):
        cd.parse_date(text)


def test_good_dates() -> None:
    assert cd.parse_date("2024-02-29") == cd.days_from_civil(2024, 2, 29)
    assert cd.parse_month_day("02-29") == (2, 29)
    with pytest.raises(ValueError):
        cd.parse_month_day("02-30")


# ---------------------------------------------------------------- local time


@pytest.mark.parametrize(
    ("rule", "zone"),
    [
        ((60, "eu"), "Europe/Paris"),
        ((-180, "na"), "America/Miquelon"),
        ((240, "none"), "Indian/Reunion"),
        ((-240, "none"), "America/Martinique"),
    ],
)
def test_offsets_match_the_tz_database(rule: tuple[int, str], zone: str) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    start = int(dt.datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    end = int(dt.datetime(2040, 1, 1, tzinfo=UTC).timestamp())
    for t in range(start, end, 1800):
        expected = dt.datetime.fromtimestamp(t, tz).utcoffset()
        assert expected is not None
        assert tzr.offset_at(rule, t) * 60 == expected.total_seconds(), t


@pytest.mark.parametrize(
    ("rule", "zone"), [((60, "eu"), "Europe/Paris"), ((-180, "na"), "America/Miquelon")]
)
def test_local_times_match_zoneinfo_fold0(rule: tuple[int, str], zone: str) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    for year in range(2024, 2031):
        for month in (3, 10, 11):
            for dom in range(1, 32):
                if dom > cd.days_in_month(year, month):
                    continue
                d = dt.date(year, month, dom)
                for minute in range(0, 1440, 10):
                    got = tzr.local_to_utc(rule, day_number(d), minute)
                    assert got == unix(d, minute // 60, minute % 60, tz), (d, minute)


def test_gap_and_fold_readings() -> None:
    eu = (60, "eu")
    gap = day_number(dt.date(2026, 3, 29))
    # 02:30 does not exist: read at +01:00, it is 01:30 UTC = 03:30 CEST
    assert tzr.local_to_utc(eu, gap, 150) == unix(dt.date(2026, 3, 29), 1, 30, UTC)
    fold = day_number(dt.date(2026, 10, 25))
    # 02:30 occurs twice: the first one, 02:30 CEST = 00:30 UTC
    assert tzr.local_to_utc(eu, fold, 150) == unix(dt.date(2026, 10, 25), 0, 30, UTC)
    assert tzr.utc_to_local(eu, unix(dt.date(2026, 10, 25), 1, 30, UTC)) == (fold, 150)


# ---------------------------------------------------------------- compile errors


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the dotted path (numbers index lists) to value."""

    def apply(obj: dict[str, Any]) -> None:
        keys = path.split(".")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        last = keys[-1]
        if isinstance(obj, list):
            obj[int(last)] = value
        elif value is _DELETE:
            del obj[last]
        else:
            obj[last] = value

    return apply


_DELETE = object()
BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str | None]] = [
    ("25:00", _set("plans.std.2", "25:00"), "bad_time", "plans.std[2]"),
    ("7:30", _set("plans.std.2", "7:30"), "bad_time", "plans.std[2]"),
    ("22:60", _set("plans.std.2", "22:60"), "bad_time", "plans.std[2]"),
    ("2230", _set("plans.std.2", "2230"), "bad_time", "plans.std[2]"),
    ("level 101", _set("plans.std.1", 101), "out_of_range", "plans.std[1]"),
    ("level -1", _set("plans.std.3", -1), "out_of_range", "plans.std[3]"),
    ("level float", _set("plans.std.3", 50.5), "bad_type", "plans.std[3]"),
    ("level bool", _set("plans.std.3", True), "bad_type", "plans.std[3]"),
    ("level text", _set("plans.std.3", "50"), "bad_type", "plans.std[3]"),
    ("sunset", _set("plans.std.0", "sunset"), "unknown_anchor", "plans.std[0]"),
    ("midnight", _set("plans.std.4", "midnight"), "unknown_anchor", "plans.std[4]"),
    ("dusky", _set("plans.std.0", "dusky"), "unknown_anchor", "plans.std[0]"),
    ("anchor number", _set("plans.std.0", 1800), "bad_type", "plans.std[0]"),
    ("dusk+", _set("plans.std.0", "dusk+"), "bad_value", "plans.std[0]"),
    ("dusk+1h", _set("plans.std.0", "dusk+1h"), "bad_value", "plans.std[0]"),
    ("dusk*2", _set("plans.std.0", "dusk*2"), "unknown_anchor", "plans.std[0]"),
    ("dusk+999", _set("plans.std.0", "dusk+999"), "out_of_range", "plans.std[0]"),
    (
        "sun anchors unsorted",
        _set("plans.full", ["dusk", 100, "dawn", 50, "dusk+30", 20, "dawn+10", 0]),
        "unsorted",
        "plans.full[4]",
    ),
    (
        "vmid before dusk",
        _set("plans.full", ["vmid", 30, "dusk", 100, "dawn", 0]),
        "unsorted",
        "plans.full[2]",
    ),
    (
        "clock unsorted",
        _set("plans.full", ["dusk", 100, "01:00", 50, "23:00", 30, "dawn", 0]),
        "unsorted",
        "plans.full[4]",
    ),
    (
        "clock overlap",
        _set("plans.full", ["dusk", 100, "22:30", 50, "22:30", 30, "dawn", 0]),
        "overlap",
        "plans.full[4]",
    ),
    (
        "dawn offsets unsorted",
        _set("plans.full", ["dusk", 100, "dawn-10", 50, "dawn-30", 30, "dawn", 0]),
        "unsorted",
        "plans.full[4]",
    ),
    (
        "no switch-off",
        _set("plans.full", ["dusk", 100, "dawn", 10]),
        "no_switch_off",
        "plans.full[3]",
    ),
    ("odd plan", _set("plans.full", ["dusk", 100, "dawn"]), "bad_value", "plans.full"),
    ("empty plan", _set("plans.full", []), "bad_value", "plans.full"),
    ("plan object", _set("plans.full", {"dusk": 100}), "bad_type", "plans.full"),
    (
        "17 steps",
        _set("plans.full", ["dusk", 100] + ["dusk+5", 50] * 16),
        "too_large",
        "plans.full",
    ),
    ("unknown field", _set("colour", "blue"), "unknown_field", "colour"),
    ("missing tz", _set("tz", _DELETE), "missing_field", "tz"),
    ("missing circuits", _set("circuits", _DELETE), "missing_field", "circuits"),
    ("version 2", _set("v", 2), "bad_version", "v"),
    ("tz std", _set("tz.std", 1000), "out_of_range", "tz.std"),
    ("tz dst", _set("tz.dst", "us"), "bad_value", "tz.dst"),
    ("tz field", _set("tz.name", "Europe/Paris"), "unknown_field", "tz.name"),
    ("alt", _set("alt", -30), "out_of_range", "alt"),
    ("alt text", _set("alt", "civil"), "bad_type", "alt"),
    ("id empty", _set("id", ""), "bad_value", "id"),
    (
        "masks overlap",
        _set("circuits.1.week", {"1111001": "std", "0000111": "we"}),
        "overlap",
        "circuits.1.week.1111001",
    ),
    ("masks uncover", _set("circuits.1.week", {"1111000": "std"}), "uncovered", "circuits.1.week"),
    (
        "mask length",
        _set("circuits.1.week", {"111100": "std"}),
        "bad_value",
        "circuits.1.week.111100",
    ),
    (
        "mask empty",
        _set("circuits.1.week", {"0000000": "std"}),
        "bad_value",
        "circuits.1.week.0000000",
    ),
    ("unknown plan", _set("circuits.2.week", "nope"), "unknown_plan", "circuits.2.week"),
    (
        "unknown holiday plan",
        _set("circuits.1.holiday", "nope"),
        "unknown_plan",
        "circuits.1.holiday",
    ),
    ("missing week", _set("circuits.2", {"holiday": "we"}), "missing_field", "circuits.2.week"),
    ("circuit 0", _set("circuits.0", {"week": "std"}), "bad_value", "circuits.0"),
    ("circuit 01", _set("circuits.01", {"week": "std"}), "bad_value", "circuits.01"),
    ("circuit 256", _set("circuits.256", {"week": "std"}), "out_of_range", "circuits.256"),
    ("holiday date", _set("holidays.3", "2026-02-30"), "bad_date", "holidays[3]"),
    ("holiday easter", _set("holidays.1", "easter+x"), "bad_date", "holidays[1]"),
    ("holiday easter range", _set("holidays.1", "easter+200"), "out_of_range", "holidays[1]"),
    ("holiday type", _set("holidays.1", 20260101), "bad_type", "holidays[1]"),
    ("holidays object", _set("holidays", {}), "bad_type", "holidays"),
    (
        "exception date",
        _set("circuits.1.dates", {"2026-13-01": "full"}),
        "bad_date",
        "circuits.1.dates.2026-13-01",
    ),
    (
        "exception plan",
        _set("circuits.1.dates", {"12-24": "nope"}),
        "unknown_plan",
        "circuits.1.dates.12-24",
    ),
]


@pytest.mark.parametrize(("mutate", "code", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_programs_give_specific_errors(
    mutate: Callable[[dict[str, Any]], None], code: str, field: str | None
) -> None:
    obj = copy.deepcopy(PROG)
    mutate(obj)
    with pytest.raises(ScheduleError) as info:
        schedule.compile_program(obj)
    err = info.value
    assert (err.code, err.field) == (code, field), err.reason
    assert err.code in schedule.ERROR_CODES
    if field:
        assert err.reason.startswith(field + ": ")


def test_program_not_an_object() -> None:
    with pytest.raises(ScheduleError) as info:
        schedule.compile_program([])  # type: ignore[arg-type]
    assert info.value.code == "bad_type"


def test_valid_variants_compile() -> None:
    obj = copy.deepcopy(PROG)
    obj["alt"] = -6
    obj["plans"]["late"] = ["dusk-15", 100, "23:00", 0]
    obj["plans"]["morning"] = ["dusk", 100, "23:00", 0]
    obj["circuits"]["255"] = {"week": "late", "dates": {"02-29": "morning"}}
    program = schedule.compile_program(obj)
    assert sorted(program.circuits) == [1, 2, 3, 255]
    assert program.alt == -6.0


# ---------------------------------------------------------------- a year of nights


def expected_plan(circuit: int, d: dt.date) -> str:
    """The plan of circuit on the night whose evening is d, from the program's rules."""
    if circuit == 3:
        return "full" if d == dt.date(2026, 6, 21) else "dark"
    if circuit == 2:
        return "std"
    if d == dt.date(2026, 12, 31) or (d.month, d.day) == (7, 14):
        return "full"
    if d in HOLIDAYS_2026 or d.weekday() in (4, 5):
        return "we"
    return "std"


def checkpoints(
    plan: str, d: dt.date, dusk: int, dawn: int, tz: dt.tzinfo
) -> list[tuple[int, int]]:
    """(Unix time, expected level) of a plan's night, one minute either side of each step."""
    m = 60
    nxt = d + dt.timedelta(days=1)
    vmid = (dusk + dawn) // 2
    points = [
        (unix(d, 12, 0, tz), 0),
        (dusk - m, 0),
        (dawn + m, 0),
        (unix(nxt, 12, 0, tz) - 1, 0),
    ]
    if plan == "std":
        t2230 = unix(d, 22, 30, tz)
        points += [(dusk + m, 100), (t2230 - m, 100), (t2230, 50), (t2230 + m, 50)]
        points += [(vmid - m, 50), (vmid + m, 30), (dawn - 30 * m - m, 30)]
        points += [(dawn - 30 * m + m, 50), (dawn - m, 50)]
    elif plan == "we":
        t0030 = unix(nxt, 0, 30, tz)
        points += [(dusk + m, 100), (t0030 - 1, 100), (t0030, 70)]
        points += [(vmid + 60 * m - m, 70), (vmid + 60 * m + m, 30), (dawn - m, 30)]
    elif plan == "full":
        points += [(dusk + m, 100), (unix(nxt, 3, 0, tz), 100), (dawn - m, 100)]
    else:
        points += [(dusk + m, 0), (vmid, 0), (dawn - m, 0)]
    return points


def test_a_year_of_nights_in_paris() -> None:
    program = schedule.compile_program(PROG)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    seen = set()
    checked = 0
    for d in DATES_2026:
        dusk, dawn = astral_night(*PARIS, tz, d)
        for circuit in (1, 2, 3):
            plan = expected_plan(circuit, d)
            seen.add(plan)
            for t, level in checkpoints(plan, d, dusk, dawn, tz):
                got = schedule.level_at(program, t, *PARIS, circuits=[circuit])
                assert got == {circuit: (level, "step")}, (d, circuit, plan, t, level)
                checked += 1
    assert seen == {"std", "we", "full", "dark"}
    assert checked > 10000


@pytest.mark.parametrize("name", OVERSEAS)
def test_a_year_of_nights_overseas_and_at_the_ends_of_france(name: str) -> None:
    lat, lon, zone, rule = OVERSEAS[name]
    obj = copy.deepcopy(PROG)
    obj["tz"] = rule
    program = schedule.compile_program(obj)
    tz = zoneinfo.ZoneInfo(zone)
    for d in DATES_2026:
        dusk, dawn = astral_night(lat, lon, tz, d)
        for t, level in checkpoints("std", d, dusk, dawn, tz):
            assert schedule.level_at(program, t, lat, lon, circuits=[2]) == {2: (level, "step")}, (
                d,
                t,
                level,
            )


def test_lights_are_off_at_noon_every_day() -> None:
    program = schedule.compile_program(PROG)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    for d in DATES_2026:
        for hh in (10, 12, 14):
            t = unix(d, hh, 0, tz)
            assert schedule.level_at(program, t, *PARIS) == {
                1: (0, "step"),
                2: (0, "step"),
                3: (0, "step"),
            }
            assert schedule.level_at(None, t, *PARIS, circuits=[1, 2]) == {
                1: (0, "fallback"),
                2: (0, "fallback"),
            }


def test_dst_nights_use_the_right_local_time() -> None:
    program = schedule.compile_program(PROG)

    def utc(*args: int) -> int:
        return int(dt.datetime(*args, tzinfo=UTC).timestamp())

    def level(t: int, circuit: int) -> int:
        return schedule.level_at(program, t, *PARIS)[circuit][0]

    # Saturday 28 March 2026, still CET: 22:30 is 21:30 UTC, and circuit 1
    # (weekend plan) goes to 70 % at 00:30 CET = 23:30 UTC, before the change
    assert level(utc(2026, 3, 28, 21, 29, 59), 2) == 100
    assert level(utc(2026, 3, 28, 21, 30), 2) == 50
    assert level(utc(2026, 3, 28, 23, 29, 59), 1) == 100
    assert level(utc(2026, 3, 28, 23, 30), 1) == 70
    # Sunday 29 March, now CEST: 22:30 is 20:30 UTC
    assert level(utc(2026, 3, 29, 20, 29, 59), 2) == 100
    assert level(utc(2026, 3, 29, 20, 30), 2) == 50
    # Saturday 24 October, CEST: 22:30 = 20:30 UTC; 00:30 on the 25th is still CEST
    assert level(utc(2026, 10, 24, 20, 30), 2) == 50
    assert level(utc(2026, 10, 24, 22, 29, 59), 1) == 100
    assert level(utc(2026, 10, 24, 22, 30), 1) == 70
    # Sunday 25 October, CET again: 22:30 = 21:30 UTC
    assert level(utc(2026, 10, 25, 21, 29, 59), 2) == 100
    assert level(utc(2026, 10, 25, 21, 30), 2) == 50


def test_steps_in_the_skipped_and_repeated_hours() -> None:
    obj = copy.deepcopy(PROG)
    obj["plans"]["std"] = ["dusk", 100, "02:30", 40, "dawn", 0]
    program = schedule.compile_program(obj)

    def at(*args: int) -> int:
        t = int(dt.datetime(*args, tzinfo=UTC).timestamp())
        return schedule.level_at(program, t, *PARIS)[2][0]

    # 02:30 on 29 March does not exist: 03:30 CEST = 01:30 UTC
    assert (at(2026, 3, 29, 1, 29, 59), at(2026, 3, 29, 1, 30)) == (100, 40)
    # 02:30 on 25 October happens twice: the first, 02:30 CEST = 00:30 UTC
    assert (at(2026, 10, 25, 0, 29, 59), at(2026, 10, 25, 0, 30)) == (100, 40)


def test_runtime_clamps_on_short_summer_nights() -> None:
    brest = (48.39, -4.49)
    obj = copy.deepcopy(PROG)
    obj["plans"]["std"] = ["dusk", 100, "22:00", 50, "06:30", 80, "dawn", 0]
    program = schedule.compile_program(obj)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    d = dt.date(2026, 6, 21)
    dusk, dawn = astral_night(*brest, tz, d)
    assert dusk > unix(d, 22, 0, tz)  # sunset after 22:00: on directly at 50 %
    assert schedule.level_at(program, dusk + 60, *brest)[2] == (50, "step")
    nxt = d + dt.timedelta(days=1)
    assert dawn < unix(nxt, 6, 30, tz)  # dawn before 06:30: the 80 % step never applies
    assert schedule.level_at(program, unix(nxt, 6, 31, tz), *brest)[2] == (0, "step")
    assert schedule.level_at(program, dawn - 60, *brest)[2] == (50, "step")


def test_a_night_that_ends_before_it_starts_stays_dark() -> None:
    obj = copy.deepcopy(PROG)
    obj["plans"]["std"] = ["dawn-60", 100, "dawn-30", 50, "23:00", 0]
    program = schedule.compile_program(obj)
    d = dt.date(2026, 1, 10)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    for hh in range(0, 24):
        t = unix(d, hh, 0, tz)
        assert schedule.level_at(program, t, *PARIS)[2] == (0, "step")


# ---------------------------------------------------------------- overrides


def test_overrides_expire_exactly_and_latest_wins() -> None:
    program = schedule.compile_program(PROG)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    start = unix(dt.date(2026, 1, 13), 23, 0, tz)  # Tuesday night, std plan: 50 %
    emergency = schedule.make_override({"ch": 2, "level_pct": 100, "dur_s": 7200}, start)
    assert emergency == {"ch": 2, "level": 100, "start": start, "end": start + 7200}
    blackout = schedule.make_override({"ch": 0, "level_pct": 0, "dur_s": 600}, start + 600)
    overrides = [emergency, blackout]

    def at(t: int) -> dict[int, tuple[int, str]]:
        return schedule.level_at(program, t, *PARIS, overrides=overrides)

    assert at(start - 1)[2] == (50, "step")
    assert at(start)[2] == (100, "override")
    assert at(start)[1] == (50, "step")
    assert at(start + 600) == {1: (0, "override"), 2: (0, "override"), 3: (0, "override")}
    assert at(start + 1199)[2] == (0, "override")
    assert at(start + 1200)[2] == (100, "override")
    assert at(start + 1200)[1] == (50, "step")
    assert at(start + 7199)[2] == (100, "override")
    assert at(start + 7200)[2][1] == "step"
    assert schedule.prune_overrides(overrides, start + 1199) == overrides
    assert schedule.prune_overrides(overrides, start + 1200) == [emergency]
    assert schedule.prune_overrides(overrides, start + 7200) == []
    # same start: the later in the list wins
    twin = dict(emergency, level=20)
    assert schedule.level_at(program, start, *PARIS, overrides=[emergency, twin])[2] == (
        20,
        "override",
    )


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        ({"ch": 2}, "missing_field", "level_pct"),
        ({"level_pct": 100}, "missing_field", "ch"),
        ({"ch": 256, "level_pct": 100}, "out_of_range", "ch"),
        ({"ch": 2, "level_pct": 101}, "out_of_range", "level_pct"),
        ({"ch": 2, "level_pct": 100, "dur_s": 0}, "out_of_range", "dur_s"),
        ({"ch": 2, "level_pct": 100, "dur_s": 8 * 86400}, "out_of_range", "dur_s"),
        ({"ch": 2, "level_pct": 100.0}, "bad_type", "level_pct"),
        ({"ch": 2, "level_pct": 100, "until": 5}, "unknown_field", "until"),
    ],
)
def test_bad_override_args(args: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(ScheduleError) as info:
        schedule.make_override(args, 1767225600)
    assert (info.value.code, info.value.field) == (code, field)


def test_override_default_duration() -> None:
    assert schedule.make_override({"ch": 1, "level_pct": 50}, 100)["end"] == 3700


# ---------------------------------------------------------------- fallback and safe state


def test_fallback_without_a_program_or_for_an_unknown_circuit() -> None:
    program = schedule.compile_program(PROG)
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    for d in DATES_2026[::3]:
        dusk, dawn = astral_night(*PARIS, tz, d)
        for prog in (None, program):

            def at(t: int, prog: Any = prog) -> tuple[int, str]:
                return schedule.level_at(prog, t, *PARIS, circuits=[7])[7]

            assert at(dusk - 60) == (0, "fallback")
            assert at(dusk + 60) == (100, "fallback")
            assert at((dusk + dawn) // 2) == (100, "fallback")
            assert at(dawn - 60) == (100, "fallback")
            assert at(dawn + 60) == (0, "fallback")
    assert schedule.level_at(None, 1767225600, *PARIS) == {1: (100, "fallback")}


@pytest.mark.parametrize("t", [None, 0, 946684800, 1577836799, 4102444800, "1767225600", 1e300])
def test_no_valid_clock_means_lights_on(t: Any) -> None:
    program = schedule.compile_program(PROG)
    override = [{"ch": 0, "level": 0, "start": 0, "end": 2**40}]
    want = {1: (100, "safe"), 2: (100, "safe"), 3: (100, "safe")}
    assert schedule.level_at(program, t, *PARIS, overrides=override) == want
    assert schedule.level_at(None, t, *PARIS, circuits=[1]) == {1: (100, "safe")}
    assert schedule.next_change(program, t, *PARIS) is None


@pytest.mark.parametrize(("lat", "lon"), [(None, 2.35), (48.8, None), (91.0, 0.0), (0.0, 181.0)])
def test_no_valid_position_means_lights_on(lat: Any, lon: Any) -> None:
    program = schedule.compile_program(PROG)
    assert schedule.level_at(program, 1767225600, lat, lon)[1] == (100, "safe")
    assert schedule.changes(program, 1767225600, 1767225600 + 86400, lat, lon) == []


def test_float_clock_is_floored() -> None:
    program = schedule.compile_program(PROG)
    t = 1767225600
    assert schedule.level_at(program, t + 0.9, *PARIS) == schedule.level_at(program, t, *PARIS)


def test_program_must_be_compiled() -> None:
    with pytest.raises(TypeError):
        schedule.level_at(PROG, 1767225600, *PARIS)  # type: ignore[arg-type]


# ---------------------------------------------------------------- next_change


def test_next_change_walks_a_year_without_missing_a_change() -> None:
    program = schedule.compile_program(PROG)
    start = int(dt.datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp())
    end = start + 365 * 86400
    overrides = [
        schedule.make_override({"ch": 2, "level_pct": 100, "dur_s": 7200}, start + 100 * 86400),
        schedule.make_override({"ch": 0, "level_pct": 0, "dur_s": 300}, start + 100 * 86400 + 60),
    ]
    t = start
    changes = 0
    while t < end:
        nxt = schedule.next_change(program, t, *PARIS, overrides)
        assert nxt is not None and nxt > t
        now = schedule.level_at(program, t, *PARIS, overrides)
        for probe in [*range(t + 1, nxt, 900), nxt - 1]:
            assert schedule.level_at(program, probe, *PARIS, overrides) == now, (t, probe)
        if schedule.level_at(program, nxt, *PARIS, overrides) != now:
            changes += 1
        t = nxt
    # each night: circuit 2 std (5 events) or so; circuit 1 and 3 add their own
    assert changes > 365 * 4


def test_changes_of_one_night() -> None:
    tz = zoneinfo.ZoneInfo("Europe/Paris")
    d = dt.date(2026, 1, 13)
    t0, t1 = unix(d, 12, 0, tz), unix(d + dt.timedelta(days=1), 12, 0, tz)
    got = schedule.changes(PROG, t0, t1, *PARIS, circuits=[2])
    dusk, dawn = astral_night(*PARIS, tz, d)
    levels = [levels[2][0] for _, levels in got]
    assert levels == [0, 100, 50, 30, 50, 0]
    times = [t for t, _ in got]
    assert abs(times[1] - dusk) <= 60 and abs(times[5] - dawn) <= 60
    assert times[2] == unix(d, 22, 30, tz)
    assert abs(times[3] - (dusk + dawn) // 2) <= 60
    assert abs(times[4] - (dawn - 1800)) <= 60


def test_profile_accepts_program_objects() -> None:
    program = schedule.compile_program(PROG)
    t0 = 1767225600
    assert schedule.profile(PROG, t0, t0 + 3600, 900, *PARIS) == schedule.profile(
        program, t0, t0 + 3600, 900, *PARIS
    )


# ---------------------------------------------------------------- the documentation


def doc_json_blocks() -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]


def test_documented_program_is_the_tested_one_and_fits_a_command() -> None:
    from edge import protocol  # the codec decides whether the commands are valid v1

    program_doc, set_level = doc_json_blocks()
    assert program_doc == PROG
    schedule.compile_program(program_doc)
    cmd = {
        "v": 1,
        "kind": "cmd",
        "dev": "cab-0042",
        "id": "c-7f2f00",
        "name": "set_schedule",
        "args": program_doc,
        "ts": 1767225600000,
        "exp": 1767229200000,
    }
    assert protocol.decode(protocol.encode(cmd))["args"] == program_doc
    decoded = protocol.decode(json.dumps(set_level).encode())
    override = schedule.make_override(decoded["args"], decoded["ts"] // 1000)
    assert override == {"ch": 2, "level": 100, "start": 1767225600, "end": 1767232800}


def test_error_codes_are_documented() -> None:
    text = DOC.read_text()
    for code in schedule.ERROR_CODES:
        if code not in ("bad_type", "bad_value", "missing_field", "unknown_field", "bad_version"):
            assert f"`{code}`" in text, code
