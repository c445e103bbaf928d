"""Schedule programs: validation and compilation (part of ``edge.schedule``).

``compile_program(obj)`` checks a program (plain JSON data, the ``args`` of
the ``set_schedule`` command; format in ``docs/schedule.md``) and returns a
``Program``; any problem raises ``ScheduleError`` with a ``code``, the
``field`` (dotted path, e.g. ``plans.std[4]``) and a ``reason`` naming both.
Checks run in a fixed order (fields of the program, ``tz``, ``alt``,
``plans`` step by step, ``holidays``, ``circuits``), so a program gets the
same error on every interpreter.

A compiled step is the tuple ``(kind, value, level)``: kind ``DUSK``,
``VMID`` or ``DAWN`` with value the offset in minutes, or ``CLOCK`` with
value the local minute of the day.
"""

from .calendar_days import parse_date, parse_month_day
from .schedule_tz import DST_RULES

VERSION = 1
DUSK = 0
VMID = 1
DAWN = 2
CLOCK = 3
ANCHORS = ("dusk", "vmid", "dawn")  # indexed by kind

MAX_PLANS = 16
MAX_STEPS = 16
MAX_CIRCUITS = 32
MAX_HOLIDAYS = 64
MAX_DATES = 64
MAX_OFFSET_MIN = 360
MAX_EASTER_OFFSET = 100
MAX_NAME = 32

ERROR_CODES = (
    "bad_type",
    "bad_value",
    "bad_version",
    "missing_field",
    "unknown_field",
    "too_large",
    "out_of_range",
    "bad_time",
    "bad_date",
    "unknown_anchor",
    "unsorted",
    "overlap",
    "uncovered",
    "no_switch_off",
    "unknown_plan",
)

_PROGRAM_FIELDS = ("v", "id", "tz", "alt", "plans", "holidays", "circuits")
_TZ_FIELDS = ("std", "dst")
_CIRCUIT_FIELDS = ("week", "holiday", "dates")


class ScheduleError(ValueError):
    """A schedule program (or override) that cannot run.

    Attributes
    ----------
    code : str
        Short machine code (``ERROR_CODES``), e.g. ``"bad_time"``.
    reason : str
        Human text: the field's path, then what is wrong with its value.
    field : str or None
        Dotted path of the offending field, e.g. ``"plans.std[4]"``.
    """

    def __init__(self, code, reason, field=None):
        # type: (str, str, str | None) -> None
        super().__init__(code + ": " + reason)
        self.code = code
        self.reason = reason
        self.field = field


def _fail(code, field, what):
    # type: (str, str, str) -> ScheduleError
    if field:
        return ScheduleError(code, field + ": " + what, field)
    return ScheduleError(code, what, None)


def _show(v):
    # type: (object) -> str
    text = repr(v)
    if len(text) > 40:
        return text[:37] + "..."
    return text


def _type_name(v):
    # type: (object) -> str
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _bad_type(field, v, want):
    # type: (str, object, str) -> ScheduleError
    return _fail("bad_type", field, "expected " + want + ", got " + _type_name(v) + " " + _show(v))


def is_int(v):
    # type: (object) -> bool
    return isinstance(v, int) and not isinstance(v, bool)


def check_int(v, field, lo, hi, what):
    # type: (object, str, int, int, str) -> int
    """v as an int in [lo, hi], else ScheduleError (bad_type / out_of_range)."""
    if not is_int(v):
        raise _bad_type(field, v, "an integer")
    if v < lo or v > hi:
        raise _fail(
            "out_of_range",
            field,
            str(v) + " is outside [" + str(lo) + ", " + str(hi) + "] " + what,
        )
    return v


def _join(base, key):
    # type: (str, str) -> str
    if base:
        return base + "." + key
    return key


def _index(base, i):
    # type: (str, int) -> str
    return base + "[" + str(i) + "]"


def _object(v, field, allowed, required):
    # type: (object, str, tuple, tuple) -> dict
    if not isinstance(v, dict):
        raise _bad_type(field, v, "an object")
    for key in _keys(v):
        if key not in allowed:
            raise _fail("unknown_field", _join(field, str(key)), "not a field of this object")
    for key in required:
        if key not in v:
            raise _fail("missing_field", _join(field, key), "is required")
    return v


def _keys(d):
    # type: (dict) -> list
    """d's keys in a fixed order (so the first error found is the same everywhere)."""
    return sorted(d, key=str)


def _name(v, field):
    # type: (object, str) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a name (string)")
    if not v or len(v) > MAX_NAME:
        raise _fail("bad_value", field, "a name has 1-" + str(MAX_NAME) + " characters")
    return v


class Program:
    """A compiled schedule program (read-only by convention).

    Attributes: ``id`` (str or None), ``tz`` (``(std, dst)``), ``alt``
    (degrees), ``plans`` (name -> tuple of steps), ``circuits`` (circuit
    number -> ``Calendar``), ``holidays`` (``Holidays``).
    """

    def __init__(self, pid, tz, alt, plans, circuits, holidays):
        # type: (str | None, tuple, float, dict, dict, Holidays) -> None
        self.id = pid
        self.tz = tz
        self.alt = alt
        self.plans = plans
        self.circuits = circuits
        self.holidays = holidays


class Calendar:
    """One circuit's choice of plan per night.

    ``week``: 7 plans (Monday first, by the night's evening date);
    ``holiday``: plan or None; ``dates``: day number -> plan;
    ``yearly``: month * 100 + day -> plan.
    """

    def __init__(self, week, holiday, dates, yearly):
        # type: (tuple, tuple | None, dict, dict) -> None
        self.week = week
        self.holiday = holiday
        self.dates = dates
        self.yearly = yearly


class Holidays:
    """Holiday dates: ``days`` (set of day numbers), ``yearly`` (set of
    month * 100 + day), ``easter`` (set of offsets from Easter Sunday)."""

    def __init__(self, days, yearly, easter):
        # type: (set, set, set) -> None
        self.days = days
        self.yearly = yearly
        self.easter = easter


# ---------------------------------------------------------------- steps


def _bounds(n):
    # type: (int) -> str
    return "[-" + str(n) + ", +" + str(n) + "]"


def _offset(text, start, field):
    # type: (str, int, str) -> int
    """The signed minutes of ``text[start:]`` ("", "+15", "-90")."""
    rest = text[start:]
    if not rest:
        return 0
    sign = rest[0]
    digits = rest[1:]
    ok = (sign == "+" or sign == "-") and 0 < len(digits) <= 3
    for ch in digits:
        if ch < "0" or ch > "9":
            ok = False
    if not ok:
        raise _fail(
            "bad_value", field, _show(text) + " is not anchor, anchor+minutes or anchor-minutes"
        )
    n = int(digits)
    if n > MAX_OFFSET_MIN:
        raise _fail(
            "out_of_range",
            field,
            "offset " + sign + digits + " is outside " + _bounds(MAX_OFFSET_MIN) + " minutes",
        )
    if sign == "-":
        return -n
    return n


def _clock(text, field):
    # type: (str, str) -> int
    """Minute of the day of "HH:MM" (00:00-23:59)."""
    ok = len(text) == 5 and text[2] == ":"
    if ok:
        for i in (0, 1, 3, 4):
            if text[i] < "0" or text[i] > "9":
                ok = False
    if ok:
        hh = int(text[0:2])
        mm = int(text[3:5])
        ok = hh < 24 and mm < 60
    if not ok:
        raise _fail("bad_time", field, _show(text) + " is not a time of day HH:MM (00:00-23:59)")
    return hh * 60 + mm


def _anchor(v, field):
    # type: (object, str) -> tuple
    """(kind, value) of an anchor string."""
    if not isinstance(v, str):
        raise _bad_type(field, v, "an anchor string")
    if ":" in v:
        return (CLOCK, _clock(v, field))
    if v and "0" <= v[0] <= "9":
        raise _fail("bad_time", field, _show(v) + " is not a time of day HH:MM (00:00-23:59)")
    for kind in (DUSK, VMID, DAWN):
        name = ANCHORS[kind]
        n = len(name)
        if v[:n] == name and (len(v) == n or v[n] == "+" or v[n] == "-"):
            return (kind, _offset(v, n, field))
    raise _fail(
        "unknown_anchor", field, _show(v) + " is not dusk, vmid, dawn (+/- minutes) or HH:MM"
    )


def night_minute(minute):
    # type: (int) -> int
    """Order of a local clock minute within a night: 12:00 is 0, 11:59 is 1439."""
    return (minute - 720) % 1440


def _check_order(steps, field):
    # type: (list, str) -> None
    """Steps of one kind strictly increase; sun anchors go dusk, vmid, dawn."""
    last = {}  # kind -> (order value, element index)
    top_rank = -1
    top_index = 0
    for i in range(len(steps)):
        kind, value, _level = steps[i]
        where = _index(field, 2 * i)
        order = night_minute(value) if kind == CLOCK else value
        if kind in last:
            prev, prev_i = last[kind]
            if order == prev:
                raise _fail(
                    "overlap", where, "same time as element " + str(prev_i) + " of this plan"
                )
            if order < prev:
                raise _fail(
                    "unsorted",
                    where,
                    "earlier in the night than element " + str(prev_i) + " of this plan",
                )
        last[kind] = (order, 2 * i)
        if kind != CLOCK:
            if kind < top_rank:
                raise _fail(
                    "unsorted",
                    where,
                    "%s step after the %s step at element %d (sun anchors go dusk, vmid, dawn)"
                    % (ANCHORS[kind], ANCHORS[top_rank], top_index),
                )
            if kind > top_rank:
                top_rank = kind
                top_index = 2 * i


def compile_plan(v, field):
    # type: (object, str) -> tuple
    """A plan ``[anchor, level, anchor, level, ...]`` as a tuple of steps."""
    if not isinstance(v, list):
        raise _bad_type(field, v, "an array [anchor, level, ...]")
    if not v:
        raise _fail("bad_value", field, "a plan needs at least one step")
    if len(v) % 2:
        raise _fail("bad_value", field, "expected pairs anchor, level: odd length " + str(len(v)))
    if len(v) > 2 * MAX_STEPS:
        raise _fail("too_large", field, "more than " + str(MAX_STEPS) + " steps")
    steps = []
    for i in range(0, len(v), 2):
        kind, value = _anchor(v[i], _index(field, i))
        level = check_int(v[i + 1], _index(field, i + 1), 0, 100, "percent")
        steps.append((kind, value, level))
    _check_order(steps, field)
    if steps[-1][2] != 0:
        raise _fail(
            "no_switch_off",
            _index(field, len(v) - 1),
            "the last step must switch off (level 0), got " + str(steps[-1][2]),
        )
    return tuple(steps)


# ---------------------------------------------------------------- dates


def _holiday(v, field):
    # type: (object, str) -> tuple
    """("day", n) | ("yearly", mmdd) | ("easter", offset)."""
    if not isinstance(v, str):
        raise _bad_type(field, v, "a date string")
    if v[:6] == "easter":
        rest = v[6:]
        n = 0
        if rest:
            digits = rest[1:]
            good = rest[0] in "+-" and 0 < len(digits) <= 3
            for ch in digits:
                if ch < "0" or ch > "9":
                    good = False
            if not good:
                raise _fail("bad_date", field, _show(v) + " is not easter, easter+N or easter-N")
            n = int(digits)
            if n > MAX_EASTER_OFFSET:
                raise _fail(
                    "out_of_range",
                    field,
                    "offset " + rest + " is outside " + _bounds(MAX_EASTER_OFFSET) + " days",
                )
            if rest[0] == "-":
                n = -n
        return ("easter", n)
    return _date(v, field)


def _date(v, field):
    # type: (object, str) -> tuple
    """("day", n) for YYYY-MM-DD or ("yearly", mmdd) for MM-DD."""
    if not isinstance(v, str):
        raise _bad_type(field, v, "a date string")
    try:
        if len(v) == 5:
            m, d = parse_month_day(v)
            return ("yearly", m * 100 + d)
        return ("day", parse_date(v))
    except ValueError:
        raise _fail(
            "bad_date", field, _show(v) + " is not a date YYYY-MM-DD (1970-2099) or MM-DD"
        ) from None


def _holidays(v, field):
    # type: (object, str) -> Holidays
    days = set()
    yearly = set()
    easter = set()
    if v is None:
        return Holidays(days, yearly, easter)
    if not isinstance(v, list):
        raise _bad_type(field, v, "an array of dates")
    if len(v) > MAX_HOLIDAYS:
        raise _fail("too_large", field, "more than " + str(MAX_HOLIDAYS) + " holidays")
    for i in range(len(v)):
        kind, n = _holiday(v[i], _index(field, i))
        if kind == "day":
            days.add(n)
        elif kind == "yearly":
            yearly.add(n)
        else:
            easter.add(n)
    return Holidays(days, yearly, easter)


# ---------------------------------------------------------------- circuits


def _plan_ref(v, field, plans):
    # type: (object, str, dict) -> tuple
    name = _name(v, field)
    if name not in plans:
        raise _fail("unknown_plan", field, _show(name) + " is not in plans")
    return plans[name]


def _week(v, field, plans):
    # type: (object, str, dict) -> tuple
    if isinstance(v, str):
        plan = _plan_ref(v, field, plans)
        return (plan,) * 7
    if not isinstance(v, dict):
        raise _bad_type(field, v, "a plan name or an object {weekday mask: plan name}")
    if not v:
        raise _fail("uncovered", field, "no weekday has a plan")
    week = [None] * 7
    owner = [""] * 7
    for mask in _keys(v):
        where = _join(field, str(mask))
        good = isinstance(mask, str) and len(mask) == 7 and "1" in mask
        if good:
            for ch in mask:
                if ch != "0" and ch != "1":
                    good = False
        if not good:
            raise _fail(
                "bad_value",
                where,
                "a weekday mask is 7 characters 0/1, Monday first, at least one 1",
            )
        plan = _plan_ref(v[mask], where, plans)
        for wd in range(7):
            if mask[wd] == "1":
                if week[wd] is not None:
                    raise _fail(
                        "overlap", where, "weekday " + str(wd + 1) + " is also in mask " + owner[wd]
                    )
                week[wd] = plan
                owner[wd] = mask
    for wd in range(7):
        if week[wd] is None:
            raise _fail("uncovered", field, "weekday " + str(wd + 1) + " (1 = Monday) has no plan")
    return tuple(week)


def _circuit_number(key, field):
    # type: (object, str) -> int
    good = isinstance(key, str) and 0 < len(key) <= 3 and key[0] != "0"
    if good:
        for ch in key:
            if ch < "0" or ch > "9":
                good = False
    if not good:
        raise _fail("bad_value", field, "a circuit key is its number 1-255, as a string")
    n = int(key)
    if n > 255:
        raise _fail("out_of_range", field, str(n) + " is outside [1, 255] circuit")
    return n


def _calendar(v, field, plans):
    # type: (object, str, dict) -> Calendar
    _object(v, field, _CIRCUIT_FIELDS, ("week",))
    week = _week(v["week"], _join(field, "week"), plans)
    holiday = None
    if "holiday" in v:
        holiday = _plan_ref(v["holiday"], _join(field, "holiday"), plans)
    dates = {}
    yearly = {}
    if "dates" in v:
        where = _join(field, "dates")
        got = v["dates"]
        if not isinstance(got, dict):
            raise _bad_type(where, got, "an object {date: plan name}")
        if len(got) > MAX_DATES:
            raise _fail("too_large", where, "more than " + str(MAX_DATES) + " dates")
        for key in _keys(got):
            sub = _join(where, str(key))
            kind, n = _date(key, sub)
            plan = _plan_ref(got[key], sub, plans)
            if kind == "day":
                dates[n] = plan
            else:
                yearly[n] = plan
    return Calendar(week, holiday, dates, yearly)


# ---------------------------------------------------------------- program


def _tz(v, field):
    # type: (object, str) -> tuple
    _object(v, field, _TZ_FIELDS, ("std",))
    std = check_int(v["std"], _join(field, "std"), -720, 840, "minutes east of UTC")
    dst = v.get("dst", "none")
    if not isinstance(dst, str):
        raise _bad_type(_join(field, "dst"), dst, "a string")
    if dst not in DST_RULES:
        raise _fail("bad_value", _join(field, "dst"), _show(dst) + " is not none, eu or na")
    return (std, dst)


def _alt(v, field):
    # type: (object, str) -> float
    if not (is_int(v) or isinstance(v, float)):
        raise _bad_type(field, v, "a number")
    if not (-18.0 <= v <= 5.0):  # also refuses NaN
        raise _fail("out_of_range", field, _show(v) + " is outside [-18, 5] degrees")
    return float(v)


def compile_program(obj):
    # type: (dict) -> Program
    """Check a schedule program and compile it; ScheduleError when it cannot run."""
    _object(obj, "", _PROGRAM_FIELDS, ("v", "tz", "plans", "circuits"))
    v = obj["v"]
    if not is_int(v) or v != VERSION:
        raise _fail("bad_version", "v", _show(v) + " is not " + str(VERSION))
    pid = None
    if "id" in obj:
        pid = obj["id"]
        if not isinstance(pid, str):
            raise _bad_type("id", pid, "a string")
        if not pid or len(pid) > 64:
            raise _fail("bad_value", "id", "an id has 1-64 characters")
    tz = _tz(obj["tz"], "tz")
    alt = -0.833
    if "alt" in obj:
        alt = _alt(obj["alt"], "alt")
    got = obj["plans"]
    if not isinstance(got, dict):
        raise _bad_type("plans", got, "an object {name: plan}")
    if not got:
        raise _fail("bad_value", "plans", "no plan")
    if len(got) > MAX_PLANS:
        raise _fail("too_large", "plans", "more than " + str(MAX_PLANS) + " plans")
    plans = {}
    for name in _keys(got):
        where = _join("plans", str(name))
        _name(name, where)
        plans[name] = compile_plan(got[name], where)
    holidays = _holidays(obj.get("holidays"), "holidays")
    got = obj["circuits"]
    if not isinstance(got, dict):
        raise _bad_type("circuits", got, "an object {circuit: calendar}")
    if not got:
        raise _fail("bad_value", "circuits", "no circuit")
    if len(got) > MAX_CIRCUITS:
        raise _fail("too_large", "circuits", "more than " + str(MAX_CIRCUITS) + " circuits")
    circuits = {}
    for key in _keys(got):
        where = _join("circuits", str(key))
        circuits[_circuit_number(key, where)] = _calendar(got[key], where, plans)
    return Program(pid, tz, alt, plans, circuits, holidays)
