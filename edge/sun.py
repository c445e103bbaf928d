"""Sunrise, sunset and twilight times: the cabinet's astronomical clock.

The solar position is the low-precision model of Meeus, *Astronomical
Algorithms* (2nd ed., ch. 25, 28) as used by the NOAA solar calculator:
mean longitude and anomaly, equation of centre, apparent longitude,
obliquity, declination, and the equation of time. An event is the moment
the centre of the sun crosses the altitude ``alt`` (degrees): -0.833 for
sunrise and sunset (34' of refraction plus the 16' semi-diameter), -6 for
civil dawn and dusk. Its accuracy is about a minute against the true sun,
and a few seconds against the same model evaluated in double precision.

    sun_events(day, lat, lon, alt=ALT_SUNRISE) -> (rise, set, why)
    sunrise(day, lat, lon) / sunset(...) / civil_dawn(...) / civil_dusk(...)
    solar_noon(day, lon) -> int

``day`` is a day number (days since 1970-01-01, see ``edge.calendar_days``)
naming the local date; the events are the rising before and the setting
after that date's solar transit at longitude ``lon`` (degrees, east
positive). Results are Unix times in integer seconds (UTC); for far-east or
far-west longitudes they may fall on the neighbouring UTC date. ``lat`` is
in degrees, north positive.

Where the sun does not cross ``alt`` that day, both times are None and
``why`` says which case: ``POLAR_DAY`` (always above) or ``POLAR_NIGHT``
(always below); otherwise ``why`` is None. Nothing here raises for a
latitude in [-90, 90].

Precision. ESP32 builds of MicroPython use 32-bit floats (24-bit mantissa),
where a Julian date (2.46e6) or Unix time (1.8e9) cannot even hold the
minute. So: times stay integers (day numbers, seconds) and only a minute of
the day (< 2880) is a float; the time argument of the solar model is days
since J2000.0 split into an integer part and a fraction, and the angles that
grow by ~1 degree a day are reduced modulo 360 in integer arithmetic before
any float sees them (``_sun_state``). No formula subtracts nearly equal
large numbers. ``tests/unit/test_sun.py`` runs this very file with every
float operation rounded to single precision and checks the whole year at
every site against astral.
"""

import math

ALT_SUNRISE = -0.833
ALT_CIVIL = -6.0
POLAR_DAY = "polar_day"
POLAR_NIGHT = "polar_night"

_RAD = math.pi / 180.0
_DEG = 180.0 / math.pi
_J2000_DAY = 10957  # day number of 2000-01-01; J2000.0 is its 12:00
_ITERATIONS = 3


def _sun_state(k, minute):
    # type: (int, float) -> tuple
    """(sin of declination, cos of declination, equation of time in minutes).

    At ``minute`` (a float, may pass 0 or 1440) of the UTC day that starts
    ``k`` days after 2000-01-01 (an int). Time scale: UT, the difference with
    TT (about 70 s) moves the sun by 0.001 degree, negligible here.
    """
    # days since J2000.0 = k + f; f stays small so no float holds a large number
    f = minute / 1440.0 - 0.5
    t = (k + f) / 36525.0  # Julian centuries, |t| < 1 this century
    # 0.98564736 deg/day = 1 - 0.01435264: the integer degrees are reduced exactly
    mean_long = (280.46646 + (k % 360) - 0.01435264 * k) + (0.98564736 * f + 0.0003032 * t * t)
    mean_anom = (357.52911 + (k % 360) - 0.01439972 * k) + (0.98560028 * f - 0.0001537 * t * t)
    mean_long = math.fmod(mean_long, 360.0) * _RAD
    mean_anom = math.fmod(mean_anom, 360.0) * _RAD
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    sin_m = math.sin(mean_anom)
    centre = (
        sin_m * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2.0 * mean_anom) * (0.019993 - 0.000101 * t)
        + math.sin(3.0 * mean_anom) * 0.000289
    )
    node = math.fmod(125.04 - 0.0529538 * k - 0.0529538 * f, 360.0) * _RAD
    app_long = mean_long + (centre - 0.00569 - 0.00478 * math.sin(node)) * _RAD
    # obliquity: 23 deg 26' 21.448" - 46.815" t - 0.00059" t^2 + 0.001813" t^3
    obliq = 23.43929111 - t * (0.0130041667 + t * (1.638889e-7 - 5.036111e-7 * t))
    obliq = (obliq + 0.00256 * math.cos(node)) * _RAD
    sin_decl = math.sin(obliq) * math.sin(app_long)
    cos_decl = math.sqrt(1.0 - sin_decl * sin_decl)
    y = math.tan(obliq * 0.5)
    y = y * y
    eot = (
        y * math.sin(2.0 * mean_long)
        - 2.0 * ecc * sin_m
        + 4.0 * ecc * y * sin_m * math.cos(2.0 * mean_long)
        - 0.5 * y * y * math.sin(4.0 * mean_long)
        - 1.25 * ecc * ecc * math.sin(2.0 * mean_anom)
    )
    return (sin_decl, cos_decl, 4.0 * _DEG * eot)


def _cos_hour_angle(sin_lat, cos_lat, sin_decl, cos_decl, sin_alt):
    # type: (float, float, float, float, float) -> float
    den = cos_lat * cos_decl
    if den < 1e-6:  # at a pole, or the sun at the zenith of one
        den = 1e-6
    return (sin_alt - sin_lat * sin_decl) / den


def _transit(k, lon):
    # type: (int, float) -> float
    """Minute (UTC, of day k after 2000-01-01) of the solar transit at lon."""
    minute = 720.0 - 4.0 * lon
    for _ in range(_ITERATIONS):
        minute = 720.0 - 4.0 * lon - _sun_state(k, minute)[2]
    return minute


def _event(k, lon, sin_lat, cos_lat, sin_alt, sign, minute):
    # type: (int, float, float, float, float, float, float) -> float | None
    """Minute of the crossing (sign -1 rising, +1 setting), refined from minute.

    None when the sun stops crossing the altitude while refining (a polar
    edge case).
    """
    for _ in range(_ITERATIONS):
        sin_decl, cos_decl, eot = _sun_state(k, minute)
        c = _cos_hour_angle(sin_lat, cos_lat, sin_decl, cos_decl, sin_alt)
        if c > 1.0 or c < -1.0:
            return None
        minute = 720.0 - 4.0 * lon - eot + sign * 4.0 * _DEG * math.acos(c)
    return minute


def _seconds(day, minute):
    # type: (int, float) -> int
    return day * 86400 + int(math.floor(minute * 60.0 + 0.5))


def solar_noon(day, lon):
    # type: (int, float) -> int
    """Unix time (s) of the sun's transit on the local date ``day`` at ``lon``."""
    return _seconds(day, _transit(day - _J2000_DAY, lon))


def sun_events(day, lat, lon, alt=ALT_SUNRISE):
    # type: (int, float, float, float) -> tuple
    """(rise, set, why) for the local date ``day`` at (lat, lon); see the module.

    Parameters
    ----------
    day : int
        Day number (days since 1970-01-01) of the local date.
    lat, lon : float
        Degrees; north and east positive.
    alt : float
        Altitude of the sun's centre that defines the event, degrees:
        ``ALT_SUNRISE`` (-0.833) or ``ALT_CIVIL`` (-6).

    Returns
    -------
    (int or None, int or None, str or None)
        Rise and set as Unix times in seconds, and None; or (None, None,
        POLAR_DAY / POLAR_NIGHT) when the sun does not cross ``alt``.

    Examples
    --------
    >>> sun_events(20625, 48.86, 2.35)  # Paris, 2026-06-21: 05:46:56, 21:57:55 CEST
    (1782013616, 1782071875, None)
    """
    k = day - _J2000_DAY
    lat_r = lat * _RAD
    sin_lat = math.sin(lat_r)
    cos_lat = math.cos(lat_r)
    sin_alt = math.sin(alt * _RAD)
    noon = _transit(k, lon)
    sin_decl, cos_decl, _eot = _sun_state(k, noon)
    c = _cos_hour_angle(sin_lat, cos_lat, sin_decl, cos_decl, sin_alt)
    if c >= 1.0:
        return (None, None, POLAR_NIGHT)
    if c <= -1.0:
        return (None, None, POLAR_DAY)
    half = 4.0 * _DEG * math.acos(c)  # half the day's length at noon, minutes
    rise = _event(k, lon, sin_lat, cos_lat, sin_alt, -1.0, noon - half)
    sets = _event(k, lon, sin_lat, cos_lat, sin_alt, 1.0, noon + half)
    if rise is None or sets is None:
        # the crossing vanishes between noon and the event: the sun is near
        # its limit all day; decide by the noon hour angle
        if c > 0.0:
            return (None, None, POLAR_NIGHT)
        return (None, None, POLAR_DAY)
    return (_seconds(day, rise), _seconds(day, sets), None)


def sunrise(day, lat, lon):
    # type: (int, float, float) -> int | None
    """Sunrise (altitude -0.833 deg) of the local date ``day``, or None."""
    return sun_events(day, lat, lon, ALT_SUNRISE)[0]


def sunset(day, lat, lon):
    # type: (int, float, float) -> int | None
    """Sunset (altitude -0.833 deg) of the local date ``day``, or None."""
    return sun_events(day, lat, lon, ALT_SUNRISE)[1]


def civil_dawn(day, lat, lon):
    # type: (int, float, float) -> int | None
    """Start of civil twilight (sun 6 deg below the horizon), or None."""
    return sun_events(day, lat, lon, ALT_CIVIL)[0]


def civil_dusk(day, lat, lon):
    # type: (int, float, float) -> int | None
    """End of civil twilight (sun 6 deg below the horizon), or None."""
    return sun_events(day, lat, lon, ALT_CIVIL)[1]
