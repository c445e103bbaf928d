"""Civil calendar arithmetic on day numbers, without ``datetime``.

A *day number* counts days since 1970-01-01 (day 0) in the proleptic Gregorian
calendar, so ``t_utc_s // 86400`` is the UTC day of a Unix time. Everything
here is integer arithmetic: exact on CPython and on MicroPython whatever the
port's float precision.

    days_from_civil(y, m, d) -> day        civil_from_days(day) -> (y, m, d)
    weekday(day) -> 0 (Monday) ... 6       days_in_month(y, m)
    last_weekday(y, m, wd) -> day          nth_weekday(y, m, wd, n) -> day
    easter(y) -> day                       parse_date("2026-07-14") -> day
    format_date(day) -> "2026-07-14"

References: the day-number conversion shifts the year to start on 1 March
(so the leap day is the last day of the year) and counts 400-year eras of
146097 days; Easter is the Gregorian computus of Meeus, *Astronomical
Algorithms*, 2nd ed., chapter 8 (after the anonymous 1876 algorithm).
"""

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# 1970-01-01 counted from 0000-03-01, the start of the shifted era
_EPOCH_SHIFT = 719468
_ERA_DAYS = 146097


def is_leap(y):
    # type: (int) -> bool
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(y, m):
    # type: (int, int) -> int
    if m == 2 and is_leap(y):
        return 29
    return _DAYS_IN_MONTH[m - 1]


def days_from_civil(y, m, d):
    # type: (int, int, int) -> int
    """Day number of the civil date y-m-d (month 1-12, day 1-31)."""
    if m <= 2:
        y -= 1
    era = y // 400
    year_of_era = y - era * 400  # 0 ... 399
    month_from_march = (m + 9) % 12  # March 0 ... February 11
    day_of_year = (153 * month_from_march + 2) // 5 + d - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * _ERA_DAYS + day_of_era - _EPOCH_SHIFT


def civil_from_days(day):
    # type: (int) -> tuple
    """(year, month, day) of a day number."""
    z = day + _EPOCH_SHIFT
    era = z // _ERA_DAYS
    day_of_era = z - era * _ERA_DAYS  # 0 ... 146096
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_from_march = (5 * day_of_year + 2) // 153
    d = day_of_year - (153 * month_from_march + 2) // 5 + 1
    m = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    y = year_of_era + era * 400
    if m <= 2:
        y += 1
    return (y, m, d)


def weekday(day):
    # type: (int) -> int
    """0 for Monday ... 6 for Sunday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def last_weekday(y, m, wd):
    # type: (int, int, int) -> int
    """Day number of the last weekday ``wd`` (0 = Monday) of month m of year y."""
    last = days_from_civil(y, m, days_in_month(y, m))
    return last - (weekday(last) - wd) % 7


def nth_weekday(y, m, wd, n):
    # type: (int, int, int, int) -> int
    """Day number of the n-th (1-based) weekday ``wd`` (0 = Monday) of a month."""
    first = days_from_civil(y, m, 1)
    return first + (wd - weekday(first)) % 7 + 7 * (n - 1)


def easter(y):
    # type: (int) -> int
    """Day number of Easter Sunday (Gregorian calendar) of year y."""
    a = y % 19
    b = y // 100
    c = y % 100
    d = b // 4
    e = b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i = c // 4
    k = c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    dom = (h + ell - 7 * m + 114) % 31 + 1
    return days_from_civil(y, month, dom)


def _digits(text, start, count):
    # type: (str, int, int) -> int
    """The decimal number in text[start:start+count], or -1 if not all digits."""
    n = 0
    for ch in text[start : start + count]:
        if ch < "0" or ch > "9":
            return -1
        n = n * 10 + ord(ch) - 48
    return n


def parse_month_day(text):
    # type: (str) -> tuple
    """(month, day) of "MM-DD" (29 February allowed); ValueError otherwise."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != "-":
        raise ValueError("expected MM-DD")
    m = _digits(text, 0, 2)
    d = _digits(text, 3, 2)
    if m < 1 or m > 12 or d < 1 or d > days_in_month(2000, m):
        raise ValueError("no such month and day")
    return (m, d)


def parse_date(text):
    # type: (str) -> int
    """Day number of "YYYY-MM-DD" (years 1970-2099); ValueError otherwise."""
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError("expected YYYY-MM-DD")
    y = _digits(text, 0, 4)
    m = _digits(text, 5, 2)
    d = _digits(text, 8, 2)
    if y < 1970 or y > 2099 or m < 1 or m > 12:
        raise ValueError("no such date")
    if d < 1 or d > days_in_month(y, m):
        raise ValueError("no such date")
    return days_from_civil(y, m, d)


def _two(n):
    # type: (int) -> str
    if n < 10:
        return "0" + str(n)
    return str(n)


def format_date(day):
    # type: (int) -> str
    """The "YYYY-MM-DD" text of a day number."""
    y, m, d = civil_from_days(day)
    return str(y) + "-" + _two(m) + "-" + _two(d)
