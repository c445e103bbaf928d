"""Local time for schedules: a fixed offset with an optional DST rule, no tz database.

A rule is the tuple ``(std, dst)``: ``std`` the standard offset from UTC in
minutes (east positive: 60 for CET, -240 for the Antilles) and ``dst`` one of

* ``"none"``: no daylight saving time (overseas departments but
  Saint-Pierre-et-Miquelon);
* ``"eu"``: +60 min from the last Sunday of March to the last Sunday of
  October, switching at 01:00 UTC (EU directive 2000/84/EC);
* ``"na"``: +60 min from the second Sunday of March, 02:00 local standard
  time, to the first Sunday of November, 02:00 local daylight time (United
  States and Canada since 2007; Saint-Pierre-et-Miquelon follows it).

    offset_at(rule, t) -> minutes        is_dst(rule, t) -> bool
    local_to_utc(rule, day, minute) -> t utc_to_local(rule, t) -> (day, minute)

Times are Unix seconds (ints); ``day`` is a day number (``edge.calendar_days``)
and ``minute`` a minute of that local day (0-1439).

A local time that does not exist (the hour skipped in spring) is read with
the offset in force before the change, so it lands that long after the
change (02:30 on the EU spring night is 03:30 CEST); a local time that
occurs twice (autumn) is its first occurrence (the summer-time one).
"""

from .calendar_days import civil_from_days, last_weekday, nth_weekday

DST_RULES = ("none", "eu", "na")
_SUNDAY = 6
_cache = {}  # (std, dst, year) -> (start, end) in Unix seconds


def _window(std, dst, year):
    # type: (int, str, int) -> tuple
    """(start, end) of daylight saving time in year, Unix seconds."""
    key = (std, dst, year)
    found = _cache.get(key)
    if found is not None:
        return found
    if dst == "eu":
        start = last_weekday(year, 3, _SUNDAY) * 86400 + 3600
        end = last_weekday(year, 10, _SUNDAY) * 86400 + 3600
    else:  # "na"
        start = nth_weekday(year, 3, _SUNDAY, 2) * 86400 + 7200 - std * 60
        end = nth_weekday(year, 11, _SUNDAY, 1) * 86400 + 7200 - (std + 60) * 60
    if len(_cache) >= 16:
        _cache.clear()
    _cache[key] = (start, end)
    return (start, end)


def is_dst(rule, t):
    # type: (tuple, int) -> bool
    """True when daylight saving time is in force at Unix time t."""
    std, dst = rule
    if dst == "none":
        return False
    start, end = _window(std, dst, civil_from_days(t // 86400)[0])
    return start <= t < end


def offset_at(rule, t):
    # type: (tuple, int) -> int
    """Offset from UTC in minutes at Unix time t (local = UTC + offset)."""
    if is_dst(rule, t):
        return rule[0] + 60
    return rule[0]


def utc_to_local(rule, t):
    # type: (tuple, int) -> tuple
    """(day number, minute of the day) of the local time at Unix time t."""
    local = t + offset_at(rule, t) * 60
    return (local // 86400, (local % 86400) // 60)


def local_to_utc(rule, day, minute):
    # type: (tuple, int, int) -> int
    """Unix time of local ``minute`` on local date ``day`` (gaps and folds: see module)."""
    std = rule[0]
    local = day * 86400 + minute * 60
    as_std = local - std * 60
    if rule[1] == "none":
        return as_std
    as_dst = as_std - 3600
    if is_dst(rule, as_dst):  # a valid summer time (the first one of a fold)
        return as_dst
    # valid standard time, or a skipped one read with the offset before the change
    return as_std
