"""The cabinet's schedule interpreter: which level each circuit should be at.

A *program* (plain JSON data, the ``args`` of the ``set_schedule`` command)
names *plans* (steps anchored to dusk, dawn, virtual midnight or local clock
times, each with a level in percent) and gives each circuit a calendar
(weekday masks, holidays, exception dates). The format, its rules and
examples are in ``docs/schedule.md``. Everything here is a pure function of
its arguments; the clock and the cabinet's position are passed in.

    compile_program(obj) -> Program          raises ScheduleError(code, reason, field)
    level_at(program, t, lat, lon, overrides=None, circuits=None)
        -> {circuit: (level, source)}        source: "step" | "override" | "fallback" | "safe"
    next_change(program, t, lat, lon, overrides=None, circuits=None) -> int | None
    changes(program, t0, t1, lat, lon, overrides=None, circuits=None) -> [(t, dict)]
    profile(program, t0, t1, step_s, lat, lon, overrides=None, circuits=None) -> [dict]
    make_override(args, now) -> dict         from ``set_level`` args, validated
    prune_overrides(overrides, t) -> list    the ones not yet expired

Times are Unix seconds (UTC, 1970 epoch; a port whose ``time.time()``
counts from 2000 must add 946684800). Latitude and longitude are degrees,
north and east positive.

What ``source`` says:

* ``"step"``: the circuit's plan for tonight;
* ``"override"``: an active override (latest started wins);
* ``"fallback"``: no program, or none for this circuit: 100 % from dusk
  (sunset) to dawn (sunrise), off in daytime;
* ``"safe"``: no valid clock (None, or before 2020-01-01 as an unset RTC
  reads) or no valid position: 100 %. Lights on is the safe state at night
  and costs only some energy by day; overrides are ignored, as their expiry
  cannot be checked.

The work is split into modules with one job each (import from here):

    calendar_days     day numbers, weekdays, Easter, dates
    sun               sunrise, sunset, twilight
    schedule_tz       local time: fixed offset, EU or North American DST
    schedule_program  ScheduleError, validation, the compiled Program
    schedule_night    a night's window, plan choice and step times
"""

from .schedule_night import (
    FALLBACK_STEPS,
    level_in,
    night_of,
    plan_for,
    timeline,
    window,
)
from .schedule_program import ERROR_CODES as ERROR_CODES
from .schedule_program import Program as Program
from .schedule_program import ScheduleError as ScheduleError
from .schedule_program import check_int as _check_int
from .schedule_program import compile_program as compile_program
from .schedule_program import is_int as _is_int

CLOCK_MIN = 1577836800  # 2020-01-01T00:00:00Z: earlier means an unset clock
CLOCK_MAX = 4102444800  # 2100-01-01T00:00:00Z
DEFAULT_ALT = -0.833
MAX_OVERRIDE_S = 7 * 86400
DEFAULT_OVERRIDE_S = 3600
OVERRIDE_FIELDS = ("ch", "level_pct", "dur_s")

STEP = "step"
OVERRIDE = "override"
FALLBACK = "fallback"
SAFE = "safe"


def _clock(t):
    # type: (object) -> int | None
    """t as whole Unix seconds, or None when it is not a plausible clock."""
    if isinstance(t, float):
        if not (CLOCK_MIN <= t < CLOCK_MAX):  # also NaN
            return None
        t = int(t)
    if not _is_int(t) or t < CLOCK_MIN or t >= CLOCK_MAX:
        return None
    return t


def _place_ok(lat, lon):
    # type: (object, object) -> bool
    for v, lim in ((lat, 90.0), (lon, 180.0)):
        if not (_is_int(v) or isinstance(v, float)):
            return False
        if not (-lim <= v <= lim):  # also NaN
            return False
    return True


def _circuits_of(program, circuits):
    # type: (Program | None, object) -> list
    if circuits is not None:
        return list(circuits)
    if program is not None:
        return sorted(program.circuits)
    return [1]


def _override_for(overrides, ch, t):
    # type: (object, int, int) -> dict | None
    """The active override of circuit ch at t: latest start wins, then latest listed."""
    best = None
    if not overrides:
        return None
    for o in overrides:
        target = o["ch"]
        active = (target == 0 or target == ch) and o["start"] <= t < o["end"]
        if active and (best is None or o["start"] >= best["start"]):
            best = o
    return best


def _steps_for(program, ch, day):
    # type: (Program | None, int, int) -> tuple
    """(steps, tz, alt, source) of circuit ch on the night of ``day``."""
    if program is not None:
        calendar = program.circuits.get(ch)
        if calendar is not None:
            return (plan_for(calendar, program.holidays, day), program.tz, program.alt, STEP)
    return (FALLBACK_STEPS, (0, "none"), DEFAULT_ALT, FALLBACK)


def _check_program(program):
    # type: (object) -> None
    if program is not None and not isinstance(program, Program):
        raise TypeError("program must be a compiled Program (compile_program) or None")


def level_at(program, t, lat, lon, overrides=None, circuits=None):
    # type: (Program | None, int | None, float, float, list | None, list | None) -> dict
    """{circuit: (level in percent, source)} at Unix time t.

    Parameters
    ----------
    program : Program or None
        From ``compile_program``; None when the cabinet has no valid program.
    t : int or None
        Unix time, seconds (UTC); None or an implausible value means no clock.
    lat, lon : float
        The cabinet's position, degrees (north, east positive).
    overrides : list of dict, optional
        ``{"ch", "level", "start", "end"}`` (``make_override``); ``ch`` 0 is
        every circuit. Active on [start, end).
    circuits : list of int, optional
        The cabinet's circuits; default: the program's (or ``[1]``).
        A circuit the program does not list runs the fallback.

    Never raises for a bad clock or position (see the module's safe states).
    """
    _check_program(program)
    chs = _circuits_of(program, circuits)
    t = _clock(t)
    out = {}
    if t is None or not _place_ok(lat, lon):
        for ch in chs:
            out[ch] = (100, SAFE)
        return out
    day = night_of(t, lon)
    for ch in chs:
        o = _override_for(overrides, ch, t)
        if o is not None:
            out[ch] = (o["level"], OVERRIDE)
            continue
        steps, tz, alt, source = _steps_for(program, ch, day)
        out[ch] = (level_in(timeline(steps, tz, day, lat, lon, alt), t), source)
    return out


def next_change(program, t, lat, lon, overrides=None, circuits=None):
    # type: (Program | None, int | None, float, float, list | None, list | None) -> int | None
    """The first Unix time after t when ``level_at`` gives another answer.

    Looks at tonight and the next night; when nothing changes before the end
    of the next night's window, returns that end (call again then). None
    without a valid clock or position: wait for one.
    """
    _check_program(program)
    chs = _circuits_of(program, circuits)
    t = _clock(t)
    if t is None or not _place_ok(lat, lon):
        return None
    day = night_of(t, lon)
    horizon = window(day + 1, lon)[1]
    times = [window(day, lon)[1], horizon]
    for d in (day, day + 1):
        for ch in chs:
            steps, tz, alt, _source = _steps_for(program, ch, d)
            for when, _level in timeline(steps, tz, d, lat, lon, alt):
                times.append(when)
    if overrides:
        for o in overrides:
            times.append(o["start"])
            times.append(o["end"])
    now = level_at(program, t, lat, lon, overrides, chs)
    for when in sorted(set(times)):
        if t < when < horizon and level_at(program, when, lat, lon, overrides, chs) != now:
            return when
    return horizon


def changes(program, t0, t1, lat, lon, overrides=None, circuits=None):
    # type: (object, int, int, float, float, list | None, list | None) -> list
    """[(t, levels), ...]: ``level_at`` at t0, then at each change on (t0, t1).

    ``program`` may be a Program, None, or a program object (compiled here).
    Empty without a valid clock or position.
    """
    if isinstance(program, dict):
        program = compile_program(program)
    if _clock(t0) is None or not _place_ok(lat, lon):
        return []
    last = level_at(program, t0, lat, lon, overrides, circuits)
    out = [(t0, last)]
    t = next_change(program, t0, lat, lon, overrides, circuits)
    while t is not None and t < t1:
        now = level_at(program, t, lat, lon, overrides, circuits)
        if now != last:
            out.append((t, now))
            last = now
        t = next_change(program, t, lat, lon, overrides, circuits)
    return out


def profile(program, t0, t1, step_s, lat, lon, overrides=None, circuits=None):
    # type: (object, int, int, int, float, float, list | None, list | None) -> list
    """``level_at`` every ``step_s`` seconds on [t0, t1): a preview of a night.

    ``program`` may be a Program, None, or a program object (compiled here).
    """
    if isinstance(program, dict):
        program = compile_program(program)
    return [level_at(program, t, lat, lon, overrides, circuits) for t in range(t0, t1, step_s)]


def make_override(args, now):
    # type: (dict, int) -> dict
    """An override from ``set_level`` args ``{"ch", "level_pct", "dur_s"}`` at ``now``.

    ``ch`` 0-255 (0: every circuit), ``level_pct`` 0-100, ``dur_s`` 1 s to
    7 days, ``DEFAULT_OVERRIDE_S`` (1 h) when absent: an override always
    expires. Returns ``{"ch", "level", "start": now, "end": now + dur_s}``;
    ScheduleError (``field`` is the argument's name) when args are invalid.
    """
    if not isinstance(args, dict):
        raise ScheduleError("bad_type", "args: expected an object", None)
    for key in sorted(args, key=str):
        if key not in OVERRIDE_FIELDS:
            raise ScheduleError("unknown_field", str(key) + ": not a set_level argument", str(key))
    for key in ("ch", "level_pct"):
        if key not in args:
            raise ScheduleError("missing_field", key + ": is required", key)
    ch = _check_int(args["ch"], "ch", 0, 255, "circuit")
    level = _check_int(args["level_pct"], "level_pct", 0, 100, "percent")
    dur = DEFAULT_OVERRIDE_S
    if "dur_s" in args:
        dur = _check_int(args["dur_s"], "dur_s", 1, MAX_OVERRIDE_S, "seconds")
    return {"ch": ch, "level": level, "start": now, "end": now + dur}


def prune_overrides(overrides, t):
    # type: (list, int) -> list
    """The overrides still active or to come at Unix time t (expired ones dropped)."""
    return [o for o in overrides if o["end"] > t]
