"""Cabinet fault detection from the meter: pure functions and one state machine.

A cabinet controller samples its meter (per circuit: voltage, current, active
power, energy counter) and its inputs (mains present, door contact) every few
seconds. This module turns those samples into protocol ``event`` bodies
(docs/protocol.md, section 2) and keeps per-circuit energy. No I/O, no
clock: the time ``t`` (Unix seconds) is passed in. Runs unchanged on
MicroPython 1.27 and CPython.

    driver_fraction(level_pct, curve) -> float     input power / rated power
    expected_power_w(lamps, rated_w, level_pct, curve) -> float
    expected_current_a(lamps, rated_w, level_pct, voltage_v, pf, curve) -> float
    failed_lamps(measured_w, lamps, rated_w, level_pct, curve) -> float
    integrate_wh(p0_w, p1_w, dt_s) -> float        trapezoid, watt-hours
    is_daylight(t, lat, lon, margin_s) -> bool | None
    Debounce(on_s, off_s)                          time hysteresis of one condition
    CabinetFaults(circuits, lat, lon, ...).update(t, sample) -> [event body, ...]

Event bodies are ``{"code", "sev", "active", "ch"?, "detail"?}``; the caller
adds the envelope (``v``, ``kind``, ``dev``, ``boot``, ``seq``, ``ts``).

Codes: ``mains_loss`` (critical), ``door_open`` (warning), ``lamp_failure``
(warning, per circuit, ``detail.failed_count``), ``day_burning`` (warning,
per circuit). A circuit whose reading has neither power nor current is
skipped for that sample (its events keep their state).

Units: W, V, A, Wh, seconds, percent (SI and SI-derived, as the protocol).

The lamp model. A circuit has ``lamps`` luminaires of ``rated_w`` each,
whose drivers draw ``rated_w * f(level)`` at dimming level ``level`` (%),
``f`` a piecewise-linear *driver curve* of ``(level_pct, fraction)`` points
(``DEFAULT_CURVE``: 10 % standby and driver losses at the lowest level up to
100 % at full level, a typical constant-current LED driver). Expected active
power is ``lamps * rated_w * f(level)``; from the measured power P the
estimate of failed lamps is ``lamps - P / (rated_w * f(level))``. Where the
meter gives only current, P = V * I * pf. Estimates are taken only when the
level has been steady for ``settle_s`` (drivers ramp) and mains are present.
"""

import math

from . import sun as _sun

DEFAULT_CURVE = ((0, 0.0), (1, 0.1), (100, 1.0))
DEFAULT_PF = 0.95
NOMINAL_V = 230.0

MAINS_LOSS = "mains_loss"
DOOR_OPEN = "door_open"
LAMP_FAILURE = "lamp_failure"
DAY_BURNING = "day_burning"


def _check_curve(curve):
    # type: (tuple) -> None
    if len(curve) < 2:
        raise ValueError("curve: needs at least 2 points, got " + str(len(curve)))
    last = None
    for pt in curve:
        lv, fr = pt
        if not 0 <= lv <= 100 or not 0.0 <= fr <= 1.5:
            raise ValueError("curve: point " + repr(pt) + " is outside level 0-100, fraction 0-1.5")
        if last is not None and lv <= last:
            raise ValueError("curve: levels must increase, " + repr(pt) + " does not")
        last = lv


def driver_fraction(level_pct, curve=DEFAULT_CURVE):
    # type: (float, tuple) -> float
    """Input power of one driver at ``level_pct``, as a fraction of its rating.

    Piecewise-linear interpolation in ``curve``; 0 for level 0 (switched off
    by the contactor), clamped to the curve's ends otherwise.

    >>> driver_fraction(50, ((0, 0.0), (1, 0.1), (100, 1.0)))
    0.5454545454545454
    """
    if level_pct <= 0:
        return 0.0
    if level_pct <= curve[0][0]:
        return float(curve[0][1])
    for i in range(1, len(curve)):
        l1, f1 = curve[i]
        if level_pct <= l1:
            l0, f0 = curve[i - 1]
            return f0 + (f1 - f0) * (level_pct - l0) / (l1 - l0)
    return float(curve[-1][1])


def expected_power_w(lamps, rated_w, level_pct, curve=DEFAULT_CURVE):
    # type: (int, float, float, tuple) -> float
    """Active power (W) of ``lamps`` healthy luminaires at ``level_pct``."""
    return lamps * rated_w * driver_fraction(level_pct, curve)


def expected_current_a(
    lamps, rated_w, level_pct, voltage_v=NOMINAL_V, pf=DEFAULT_PF, curve=DEFAULT_CURVE
):
    # type: (int, float, float, float, float, tuple) -> float
    """RMS current (A) of the circuit: P / (V * pf)."""
    return expected_power_w(lamps, rated_w, level_pct, curve) / (voltage_v * pf)


def failed_lamps(measured_w, lamps, rated_w, level_pct, curve=DEFAULT_CURVE):
    # type: (float, int, float, float, tuple) -> float | None
    """Estimated number of dark luminaires (a float; None at level 0)."""
    per_lamp = rated_w * driver_fraction(level_pct, curve)
    if per_lamp <= 0:
        return None
    return lamps - measured_w / per_lamp


def integrate_wh(p0_w, p1_w, dt_s):
    # type: (float, float, float) -> float
    """Energy (Wh) between two power samples ``dt_s`` apart (trapezoid)."""
    return (p0_w + p1_w) * 0.5 * dt_s / 3600.0


def is_daylight(t, lat, lon, margin_s=1800):
    # type: (int, float, float, int) -> bool | None
    """True between sunrise + margin and sunset - margin at (lat, lon).

    None when the position is unknown. The local date is the mean solar
    date at ``lon``, so the day's own sunrise and sunset are used.
    """
    if lat is None or lon is None:
        return None
    day = int((t + lon * 240.0) // 86400)
    rise, sets, why = _sun.sun_events(day, lat, lon)
    if why == _sun.POLAR_DAY:
        return True
    if why == _sun.POLAR_NIGHT:
        return False
    return rise + margin_s <= t <= sets - margin_s


class Debounce:
    """One condition with time hysteresis.

    ``active`` turns true once the condition has held for ``on_s`` seconds,
    and false once it has been absent for ``off_s`` seconds; a condition that
    flickers faster than that changes nothing. ``update(t, cond)`` returns
    True (raised), False (cleared) or None (no change).
    """

    def __init__(self, on_s, off_s):
        # type: (float, float) -> None
        self.on_s = on_s
        self.off_s = off_s
        self.active = False
        self._since = None  # when the condition started disagreeing with ``active``

    def update(self, t, cond):
        # type: (float, bool) -> bool | None
        if bool(cond) == self.active:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        if t - self._since >= (self.off_s if self.active else self.on_s):
            self.active = not self.active
            self._since = None
            return self.active
        return None


def _event(code, sev, active, ch=None, detail=None):
    # type: (str, str, bool, int | None, dict | None) -> dict
    ev = {"code": code, "sev": sev, "active": active}
    if ch is not None:
        ev["ch"] = ch
    if detail:
        ev["detail"] = detail
    return ev


def _num(x):
    # type: (object) -> float | None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if x != x or x in (math.inf, -math.inf):
        return None
    return x


class _Circuit:
    def __init__(self, ch, lamps, rated_w, curve):
        # type: (int, int, float, tuple) -> None
        self.ch = ch
        self.lamps = lamps
        self.rated_w = rated_w
        self.curve = curve
        self.energy_wh = 0.0
        self.last_t = None  # type: float | None
        self.last_p = None  # type: float | None
        self.level = None  # type: float | None
        self.level_since = None  # type: float | None
        self.lamp = None  # type: Debounce | None
        self.reported_failed = 0
        self.day = None  # type: Debounce | None


class CabinetFaults:
    """Turns meter samples into fault events, with hysteresis.

    Parameters
    ----------
    circuits : dict
        ``{ch: {"lamps": int, "rated_w": float, "curve": ((level, fraction), ...)}}``;
        ``curve`` optional (``DEFAULT_CURVE``).
    lat, lon : float or None
        The cabinet's position; without it ``day_burning`` is not checked.
    pf : float
        Power factor used when a circuit reports current but no power.
    lamp_on, lamp_off : float
        Estimated failed lamps that raise / clear ``lamp_failure`` (the gap
        between them is the value hysteresis; defaults 1.5 and 0.5 lamps).
    settle_s : float
        A level must be steady this long before lamps are estimated.
    lamp_hold_s, door_s, mains_s, day_s : float
        How long a condition must hold (and be gone) to raise (and clear)
        its event: the time hysteresis.
    day_margin_s : float
        Daylight starts this long after sunrise and ends this long before
        sunset (the schedule's dusk/dawn offsets must stay inside it).
    day_min_w : float
        Power above which a circuit counts as lit.

    ``update(t, sample)`` takes ``{"mains_bool": 0|1, "door_bool": 0|1,
    "circuits": {ch: {"level_pct", "power_w"?, "current_a"?, "voltage_v"?,
    "energy_wh"?}}}`` and returns the events that changed, in a stable order.
    """

    def __init__(
        self,
        circuits,
        lat=None,
        lon=None,
        pf=DEFAULT_PF,
        lamp_on=1.5,
        lamp_off=0.5,
        settle_s=60,
        lamp_hold_s=300,
        door_s=2,
        mains_s=5,
        day_s=600,
        day_margin_s=1800,
        day_min_w=20.0,
    ):
        # type: (dict, float | None, float | None, float, float, float, float, float, float, float, float, int, float) -> None
        if not lamp_off < lamp_on:
            raise ValueError("lamp_off must be below lamp_on (hysteresis)")
        self.lat = lat
        self.lon = lon
        self.pf = pf
        self.lamp_on = lamp_on
        self.lamp_off = lamp_off
        self.settle_s = settle_s
        self.day_margin_s = day_margin_s
        self.day_min_w = day_min_w
        self.mains = Debounce(mains_s, mains_s)
        self.door = Debounce(door_s, door_s)
        self.circuits = {}
        for ch in sorted(circuits):
            c = circuits[ch]
            curve = tuple(c.get("curve", DEFAULT_CURVE))
            _check_curve(curve)
            if int(c["lamps"]) < 1 or float(c["rated_w"]) <= 0:
                raise ValueError("circuit " + str(ch) + ": lamps >= 1 and rated_w > 0 needed")
            cc = _Circuit(int(ch), int(c["lamps"]), float(c["rated_w"]), curve)
            cc.lamp = Debounce(lamp_hold_s, lamp_hold_s)
            cc.day = Debounce(day_s, day_s)
            self.circuits[int(ch)] = cc

    def energy_wh(self):
        # type: () -> dict
        """{ch: Wh integrated from power since this object was made}."""
        return {ch: c.energy_wh for ch, c in self.circuits.items()}

    def active(self):
        # type: () -> list
        """The raised conditions as ``[(code, ch or None), ...]``."""
        out = []
        if self.mains.active:
            out.append((MAINS_LOSS, None))
        if self.door.active:
            out.append((DOOR_OPEN, None))
        for ch, c in sorted(self.circuits.items()):
            if c.lamp.active:
                out.append((LAMP_FAILURE, ch))
            if c.day.active:
                out.append((DAY_BURNING, ch))
        return out

    def _power(self, r):
        # type: (dict) -> float | None
        p = _num(r.get("power_w"))
        if p is not None:
            return p
        i = _num(r.get("current_a"))
        v = _num(r.get("voltage_v"))
        if i is None:
            return None
        return (v if v is not None else NOMINAL_V) * i * self.pf

    def update(self, t, sample):
        # type: (float, dict) -> list
        events = []
        mains_ok = sample.get("mains_bool", 1) == 1
        ch_ = self.mains.update(t, not mains_ok)
        if ch_ is not None:
            events.append(_event(MAINS_LOSS, "critical", ch_))
        d = self.door.update(t, sample.get("door_bool", 0) == 1)
        if d is not None:
            events.append(_event(DOOR_OPEN, "warning", d))
        daylight = None
        readings = sample.get("circuits", {})
        for ch, c in sorted(self.circuits.items()):
            r = readings.get(ch)
            if r is None:
                r = readings.get(str(ch))
            if r is None:
                continue
            events.extend(self._circuit(t, c, r, mains_ok))
            p = c.last_p
            if p is not None and mains_ok:
                if daylight is None:
                    daylight = is_daylight(t, self.lat, self.lon, self.day_margin_s)
                if daylight is not None:
                    lit = p >= self.day_min_w
                    changed = c.day.update(t, daylight and lit)
                    if changed is not None:
                        det = {"power_w": _round(p)} if changed else None
                        events.append(_event(DAY_BURNING, "warning", changed, ch, det))
        return events

    def _circuit(self, t, c, r, mains_ok):
        # type: (float, _Circuit, dict, bool) -> list
        out = []
        p = self._power(r)
        if p is not None and c.last_t is not None and c.last_p is not None and t > c.last_t:
            c.energy_wh += integrate_wh(c.last_p, p, t - c.last_t)
        c.last_t = t
        c.last_p = p
        level = _num(r.get("level_pct"))
        if level != c.level:
            c.level = level
            c.level_since = t
        if p is None or level is None or level <= 0 or not mains_ok:
            return out  # nothing to judge; a raised lamp_failure stays as it is
        if t - c.level_since < self.settle_s:
            return out
        est = failed_lamps(p, c.lamps, c.rated_w, level, c.curve)
        if est is None:
            return out
        cond = est >= self.lamp_off if c.lamp.active else est >= self.lamp_on
        changed = c.lamp.update(t, cond)
        n = int(est + 0.5)
        if changed is True or (changed is None and c.lamp.active and n > c.reported_failed):
            c.reported_failed = max(n, 1)
            exp = expected_power_w(c.lamps, c.rated_w, level, c.curve)
            det = {
                "failed_count": c.reported_failed,
                "expected_w": _round(exp),
                "measured_w": _round(p),
            }
            out.append(_event(LAMP_FAILURE, "warning", True, c.ch, det))
        elif changed is False:
            c.reported_failed = 0
            out.append(_event(LAMP_FAILURE, "warning", False, c.ch))
        return out


def _round(x):
    # type: (float) -> float
    return float(int(x * 10.0 + (0.5 if x >= 0 else -0.5))) / 10.0
