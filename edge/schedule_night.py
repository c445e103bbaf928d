"""Nights of a schedule: which plan runs, and when its steps fall (part of ``edge.schedule``).

The night of date D runs from mean solar noon of D to mean solar noon of D+1
at the cabinet's longitude (about 12:00-14:00 local time in France), so it
never cuts a twilight and needs no time zone. Its *dusk* is the sunset of
D, its *dawn* the sunrise of D+1, its *virtual midnight* (``vmid``) halfway
between them. A plan's steps resolve to Unix times in that window: see
``timeline``.

Sun times and resolved nights are memoised (a few entries each), so a
cabinet computing levels minute after minute does the trigonometry and the
local-time arithmetic once a night. The memos are invisible to callers: the
keys hold every input, and the same answers come with or without them.
"""

from .calendar_days import civil_from_days, easter, weekday
from .schedule_program import CLOCK, DAWN, DUSK
from .schedule_tz import local_to_utc
from .sun import POLAR_NIGHT, sun_events

_NOON_MIN = 720
_sun_memo = {}
_line_memo = {}
_easter_memo = {}


def lon_seconds(lon):
    # type: (float) -> int
    """Mean solar time minus UTC at longitude lon, whole seconds."""
    return int(lon * 240.0 + 43200.5) - 43200  # rounds to nearest; no negative floor


def night_of(t, lon):
    # type: (int, float) -> int
    """Date D (day number) of the night that contains Unix time t."""
    return (t + lon_seconds(lon) - 43200) // 86400


def window(day, lon):
    # type: (int, float) -> tuple
    """(start, end) Unix times of the night of ``day``: mean solar noon to noon."""
    start = day * 86400 + 43200 - lon_seconds(lon)
    return (start, start + 86400)


def _sun(day, lat, lon, alt):
    # type: (int, float, float, float) -> tuple
    key = (day, lat, lon, alt)
    found = _sun_memo.get(key)
    if found is None:
        if len(_sun_memo) >= 8:
            _sun_memo.clear()
        found = sun_events(day, lat, lon, alt)
        _sun_memo[key] = found
    return found


def sun_night(day, lat, lon, alt):
    # type: (int, float, float, float) -> tuple
    """(dusk, dawn) Unix times of the night of ``day``.

    Without a sunset (polar day or night) dusk is the window's middle or its
    start, and likewise for dawn, so the night is empty or whole; France
    never needs it but the cabinet must not stop.
    """
    start, end = window(day, lon)
    middle = start + 43200
    dusk = _sun(day, lat, lon, alt)
    dawn = _sun(day + 1, lat, lon, alt)
    if dusk[1] is not None:
        dusk_t = dusk[1]
    elif dusk[2] == POLAR_NIGHT:
        dusk_t = start
    else:
        dusk_t = middle
    if dawn[0] is not None:
        dawn_t = dawn[0]
    elif dawn[2] == POLAR_NIGHT:
        dawn_t = end
    else:
        dawn_t = middle
    if dawn_t < dusk_t:  # a polar edge: no night
        dawn_t = dusk_t
    return (dusk_t, dawn_t)


def timeline(steps, tz, day, lat, lon, alt):
    # type: (tuple, tuple, int, float, float, float) -> tuple
    """((time, level), ...) of a plan on the night of ``day``, times non-decreasing.

    Each step resolves to a Unix time: ``dusk``/``dawn``/``vmid`` plus its
    offset, or a local clock time (12:00-23:59 on the evening's date D,
    00:00-11:59 on the next morning's). Then:

    * every time is clamped into the night's window;
    * the first step switches on, the last (level 0) switches off: when the
      last falls before the first the night stays dark;
    * a middle step is clamped between them, and never before the step
      listed just before it; steps reaching the same time all apply, the
      last listed wins.

    Memoised (a few entries): a cabinet asks about the same night all night.
    """
    key = (steps, tz, day, lat, lon, alt)
    found = _line_memo.get(key)
    if found is None:
        if len(_line_memo) >= 16:
            _line_memo.clear()
        found = _resolve(steps, tz, day, lat, lon, alt)
        _line_memo[key] = found
    return found


def _resolve(steps, tz, day, lat, lon, alt):
    # type: (tuple, tuple, int, float, float, float) -> tuple
    start, end = window(day, lon)
    dusk, dawn = sun_night(day, lat, lon, alt)
    vmid = dusk + (dawn - dusk) // 2
    out = []
    for kind, value, level in steps:
        if kind == CLOCK:
            on_day = day if value >= _NOON_MIN else day + 1
            t = local_to_utc(tz, on_day, value)
        elif kind == DUSK:
            t = dusk + value * 60
        elif kind == DAWN:
            t = dawn + value * 60
        else:
            t = vmid + value * 60
        if t < start:
            t = start
        elif t > end:
            t = end
        out.append([t, level])
    first = out[0][0]
    last = out[-1][0]
    if last < first:
        last = first
        out[-1][0] = last
    prev = first
    for i in range(1, len(out) - 1):
        t = out[i][0]
        if t < prev:
            t = prev
        if t > last:
            t = last
        out[i][0] = t
        prev = t
    return tuple([(when, level) for when, level in out])


def level_in(line, t):
    # type: (tuple, int) -> int
    """Level at Unix time t of a night's timeline (0 before the first step)."""
    level = 0
    for when, lvl in line:
        if when > t:
            break
        level = lvl
    return level


def _easter(year):
    # type: (int) -> int
    found = _easter_memo.get(year)
    if found is None:
        if len(_easter_memo) >= 4:
            _easter_memo.clear()
        found = easter(year)
        _easter_memo[year] = found
    return found


def is_holiday(holidays, day):
    # type: (object, int) -> bool
    """True when date ``day`` is one of the program's holidays."""
    if day in holidays.days:
        return True
    y, m, d = civil_from_days(day)
    if m * 100 + d in holidays.yearly:
        return True
    if holidays.easter:
        return (day - _easter(y)) in holidays.easter
    return False


def plan_for(calendar, holidays, day):
    # type: (object, object, int) -> tuple
    """The steps a circuit runs on the night of ``day``.

    First match wins: a dated exception (YYYY-MM-DD), a yearly one (MM-DD),
    the holiday plan if ``day`` is a holiday, the plan of its weekday.
    """
    plan = calendar.dates.get(day)
    if plan is not None:
        return plan
    if calendar.yearly:
        y, m, d = civil_from_days(day)
        plan = calendar.yearly.get(m * 100 + d)
        if plan is not None:
            return plan
    if calendar.holiday is not None and is_holiday(holidays, day):
        return calendar.holiday
    return calendar.week[weekday(day)]


FALLBACK_STEPS = ((DUSK, 0, 100), (DAWN, 0, 0))
