"""The astronomical clock and the schedule interpreter under the real MicroPython.

A year of nights (levels every 15 minutes, and the exact times of every
change) must be identical on MicroPython and CPython; sun times on a sample
of days within one second (both interpreters compute in double precision
here, with different ``libm``s). Invalid programs fail with the same error.
Calls are batched (``assert_same_many`` / ``outcomes``: one round trip per
batch of a month of nights), so a year takes about ten seconds.

``test_footprint_and_speed`` reports, without asserting on time, the heap
that importing ``edge.schedule`` takes and the time to compute one night.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from edge.calendar_days import days_from_civil

from ..unit.test_schedule import BAD, PROG
from .harness import MicroPythonProcess, Outcome, cpython_outcomes

pytestmark = pytest.mark.micropython

YEAR_START = days_from_civil(2026, 1, 1)
NIGHTS = range(YEAR_START, YEAR_START + 365)
BATCH = 31
MODULES = ("schedule", "schedule_night", "schedule_program", "schedule_tz", "sun", "calendar_days")

SITES = {
    "paris": (48.86, 2.35, {"std": 60, "dst": "eu"}),
    "lille": (50.63, 3.06, {"std": 60, "dst": "eu"}),
    "ajaccio": (41.93, 8.74, {"std": 60, "dst": "eu"}),
    "brest": (48.39, -4.49, {"std": 60, "dst": "eu"}),
    "saint-denis-reunion": (-20.88, 55.45, {"std": 240}),
    "pointe-a-pitre": (16.24, -61.53, {"std": -240}),
    "cayenne": (4.94, -52.33, {"std": -180}),
    "mamoudzou": (-12.78, 45.23, {"std": 180}),
    "saint-pierre": (46.78, -56.18, {"std": -180, "dst": "na"}),
}


def program_for(site: str) -> dict[str, Any]:
    obj = copy.deepcopy(PROG)
    obj["tz"] = SITES[site][2]
    return obj


def same_in_batches(
    micropython: MicroPythonProcess, module: str, func: str, arglists: list[list[Any]]
) -> list[Outcome]:
    """``assert_same_many`` a month of nights at a time (the replies stay small)."""
    out: list[Outcome] = []
    for i in range(0, len(arglists), BATCH):
        out += micropython.assert_same_many(module, func, arglists[i : i + BATCH])
    return out


def night_bounds(day: int) -> tuple[int, int]:
    """11:00 UTC of day to 11:00 UTC the next day."""
    start = day * 86400 + 11 * 3600
    return start, start + 86400


# ---------------------------------------------------------------- sun


def test_sun_times_on_sample_days(micropython: MicroPythonProcess) -> None:
    arglists = []
    for lat, lon, _tz in SITES.values():
        for day in NIGHTS[::11]:
            arglists.append([day, lat, lon, -0.833])
            arglists.append([day, lat, lon, -6.0])
    arglists += [[YEAR_START + 170, 80.0, 15.0, -0.833], [YEAR_START, 80.0, 15.0, -0.833]]
    mpys = micropython.outcomes("edge.sun", "sun_events", arglists)
    cpys = cpython_outcomes("edge.sun", "sun_events", arglists)
    identical = 0
    for args, mpy, cpy in zip(arglists, mpys, cpys, strict=True):
        assert mpy.ok and cpy.ok, (args, mpy.describe(), cpy.describe())
        (m_rise, m_set, m_why), (c_rise, c_set, c_why) = mpy.value, cpy.value
        assert m_why == c_why
        if c_why is None:
            assert abs(m_rise - c_rise) <= 1 and abs(m_set - c_set) <= 1, args
        identical += mpy.value == cpy.value
    # report: how many were identical to the second
    print(f"sun_events: {identical}/{len(arglists)} identical, the rest within 1 s")


def test_calendar_and_local_time(micropython: MicroPythonProcess) -> None:
    days = list(range(-800, 50000, 97))
    micropython.assert_same_many("edge.calendar_days", "civil_from_days", [[d] for d in days])
    micropython.assert_same_many("edge.calendar_days", "easter", [[y] for y in range(1970, 2100)])
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    times = range(start, start + 3 * 365 * 86400, 86400 * 3 + 1234)
    for rule in ([60, "eu"], [-180, "na"], [240, "none"]):
        micropython.assert_same_many("edge.schedule_tz", "offset_at", [[rule, t] for t in times])
        micropython.assert_same_many(
            "edge.schedule_tz",
            "local_to_utc",
            [
                [rule, d, m]
                for d in range(YEAR_START + 60, YEAR_START + 320, 3)
                for m in (150, 1350)
            ],
        )


# ---------------------------------------------------------------- a year of nights


@pytest.mark.parametrize("site", ["paris", "saint-pierre", "saint-denis-reunion"])
def test_a_year_of_nights_every_15_minutes(micropython: MicroPythonProcess, site: str) -> None:
    lat, lon, _tz = SITES[site]
    obj = program_for(site)
    arglists = []
    for day in NIGHTS:
        start, end = night_bounds(day)
        overrides = None
        if day % 29 == 0:  # now and then an emergency override and a short blackout
            overrides = [
                {"ch": 2, "level": 100, "start": start + 40000, "end": start + 47200},
                {"ch": 0, "level": 0, "start": start + 41000, "end": start + 41900},
            ]
        arglists.append([obj, start, end, 900, lat, lon, overrides])
    results = same_in_batches(micropython, "edge.schedule", "profile", arglists)
    samples = [levels for outcome in results for levels in outcome.value]
    assert len(samples) == 365 * 96
    sources = {src for levels in samples for _lvl, src in levels.values()}
    assert sources == {"step", "override"}


@pytest.mark.parametrize("site", ["paris", "saint-pierre", "cayenne"])
def test_a_year_of_change_times(micropython: MicroPythonProcess, site: str) -> None:
    lat, lon, _tz = SITES[site]
    obj = program_for(site)
    arglists = [[obj, *night_bounds(day), lat, lon] for day in NIGHTS]
    results = same_in_batches(micropython, "edge.schedule", "changes", arglists)
    assert all(len(outcome.value) >= 4 for outcome in results)


def test_fallback_and_safe_state(micropython: MicroPythonProcess) -> None:
    lat, lon, _tz = SITES["paris"]
    arglists: list[list[Any]] = []
    for day in NIGHTS[::5]:
        start, end = night_bounds(day)
        arglists.append([None, start, end, 1800, lat, lon, None, [1, 2]])
    arglists.append([PROG, 946684800, 946684800 + 7200, 900, lat, lon])  # a 2000-epoch RTC
    arglists.append([PROG, 1767225600, 1767225600 + 7200, 900, None, lon])
    results = micropython.assert_same_many("edge.schedule", "profile", arglists)
    assert results[-1].value[0] == {1: (100, "safe"), 2: (100, "safe"), 3: (100, "safe")}


# ---------------------------------------------------------------- errors


def test_invalid_programs_fail_alike(micropython: MicroPythonProcess) -> None:
    arglists = []
    for _name, mutate, _code, _field in BAD:
        obj = copy.deepcopy(PROG)
        mutate(obj)
        arglists.append([obj, 1767225600, 1767225600 + 1, 1, 48.86, 2.35])
    results = micropython.assert_same_many("edge.schedule", "profile", arglists)
    got = [(r.error.type, r.error.code, r.error.field) for r in results if r.error is not None]
    assert got == [("ScheduleError", code, field) for _n, _m, code, field in BAD]


def test_bad_override_args_fail_alike(micropython: MicroPythonProcess) -> None:
    cases: list[Any] = [
        {"ch": 2},
        {"ch": 256, "level_pct": 1},
        {"ch": 2, "level_pct": 100, "dur_s": 0},
        {"ch": 2, "level_pct": True},
        {"ch": 2, "level_pct": 100, "x": 1},
        [],
        {"ch": 2, "level_pct": 100, "dur_s": 7200},
    ]
    micropython.assert_same_many("edge.schedule", "make_override", [[c, 1767225600] for c in cases])


# ---------------------------------------------------------------- footprint (report only)

# The WebAssembly port reclaims a job's garbage only after the job has
# returned, and lazily, so memory is read in jobs of their own until two
# readings agree: live objects only, not the parser's garbage.
HEAP = "(__import__('gc').collect(), __import__('gc').mem_free(), __import__('gc').mem_alloc())"
PROGRAMS_KEPT = 10

FORGET = f"""
import sys, edge
for name in {list(MODULES)!r}:
    sys.modules.pop("edge." + name, None)
    if hasattr(edge, name):
        delattr(edge, name)
for name in ("_kept_obj", "_kept_programs"):
    if hasattr(edge, name):
        delattr(edge, name)
"""

TIMING = """
import json, time, edge
from edge import schedule
program, start = edge._kept_programs[0], {start}
t = time.ticks_us()
schedule.compile_program(edge._kept_obj)
compile_us = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
night = [schedule.level_at(program, s, 48.86, 2.35) for s in range(start, start + 86400, 900)]
night_us = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
for s in range(start, start + 86400, 60):
    schedule.level_at(program, s, 48.86, 2.35)
minutes_us = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
n, s = 0, start
while s < start + 86400:
    s = schedule.next_change(program, s, 48.86, 2.35)
    n += 1
next_us = time.ticks_diff(time.ticks_us(), t)
print(json.dumps([compile_us, night_us, minutes_us, next_us, n]))
"""


def heap(micropython: MicroPythonProcess) -> tuple[int, int]:
    """(mem_free, mem_alloc) once two readings in a row agree."""
    last = None
    for _ in range(8):
        _none, free, used = micropython.eval(HEAP)
        if last == (free, used):
            break
        last = (free, used)
    assert last is not None
    return last


def test_footprint_and_speed(micropython: MicroPythonProcess, record_property: Any) -> None:
    micropython.run(FORGET)  # earlier tests imported the modules: start afresh
    free0, used0 = heap(micropython)
    micropython.run("import edge.schedule")
    free1, used1 = heap(micropython)
    micropython.run(
        f"import json, edge\nedge._kept_obj = json.loads({json.dumps(json.dumps(PROG))})"
    )
    used2 = heap(micropython)[1]
    micropython.run(
        "import edge\nfrom edge import schedule\n"
        f"edge._kept_programs = [schedule.compile_program(edge._kept_obj) "
        f"for _ in range({PROGRAMS_KEPT})]"
    )
    used3 = heap(micropython)[1]
    start = night_bounds(YEAR_START + 13)[0]  # a January night in Paris
    out = micropython.run(TIMING.format(start=start), timeout=120)
    micropython.run(FORGET)
    compile_us, night_us, minutes_us, next_us, n = json.loads(out.strip().splitlines()[-1])
    report = {
        # mem_free also moves when the split heap grows (heap_grew_b): then read mem_alloc
        "import_mem_free_delta_b": free0 - free1,
        "import_mem_alloc_delta_b": used1 - used0,
        "heap_grew_b": (free1 + used1) - (free0 + used0),
        "program_json_obj_b": used2 - used1,
        "compiled_program_b": (used3 - used2) // PROGRAMS_KEPT,
        "compile_ms": compile_us / 1000,
        "night_96_levels_ms": night_us / 1000,
        "night_1440_levels_ms": minutes_us / 1000,
        "next_change_ms_each": round(next_us / 1000 / n, 3),
    }
    for key, value in report.items():
        record_property(key, value)
    print("MicroPython footprint and speed:", report)
    assert used1 > used0
