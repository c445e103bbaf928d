"""What a program does on a night at a place, as the cabinet computes it. Pure.

``preview_night`` resolves each circuit's plan with the cabinet's own code
(``edge.schedule_night.timeline``: the same clamping, the same "last listed
wins") and answers the level changes, the lit time and the energy fraction:
the sum of level x duration over the night divided by full power from
sunset to sunrise (what a cabinet without a program does: 100 % dusk to
dawn, ``edge.schedule`` "fallback"). 1.0 is no saving; 0.6 is 40 % saved.

``sweep_year`` runs the same over a year of nights and folds what a
planner should hear into ``Finding`` s:

* ``never_lit`` (a refusal when deploying): a plan with a lit level that
  stays dark on every night it runs at that place (its switch-off resolves
  before its switch-on, e.g. ``["05:00", 100, "dusk+60", 0]``);
* ``dark_nights``: a plan with a lit level dark on some nights;
* ``short_lit``: lit less than ``MIN_LIT_S`` on some nights;
* ``lit_in_daylight``: lit more than ``DAYLIGHT_SLACK_S`` before sunset or
  after sunrise (a clock step that fits winter but not summer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from backend.schedules import edge
from backend.schedules.checks import Finding

MIN_LIT_S: Final = 3600  # lit less than an hour: probably not meant
DAYLIGHT_SLACK_S: Final = 1800  # lit up to 30 min before sunset / after sunrise is usual
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def day_number(day: date) -> int:
    """The edge's day number (days since 1970-01-01) of a date."""
    return day.toordinal() - _EPOCH_ORDINAL


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@dataclass(frozen=True)
class Change:
    """From ``at`` (Unix s) the circuit is at ``level`` percent."""

    at: int
    circuit: int
    level: int
    source: str = "step"  # the circuit's plan (edge.schedule's source)


@dataclass(frozen=True)
class CircuitNight:
    circuit: int
    plans: tuple[str, ...]  # names of the plan it runs tonight (equal plans share)
    changes: tuple[Change, ...]
    lit_s: int  # seconds at a level above 0
    dark_s: int  # seconds between sunset and sunrise at level 0
    energy_fraction: float | None  # None on a night without darkness (polar day)
    first_lit: int | None
    last_lit: int | None  # when it goes dark for the rest of the night


@dataclass(frozen=True)
class NightPreview:
    day: date  # the night's evening date
    lat: float
    lon: float
    window: tuple[int, int]  # mean solar noon to the next
    sunset: int
    sunrise: int
    dusk: int  # the program's dusk and dawn (its ``alt``), what steps anchor to
    dawn: int
    circuits: tuple[CircuitNight, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def energy_fraction(self) -> float | None:
        """Mean of the circuits' (each circuit weighs the same: no power in the program)."""
        values = [c.energy_fraction for c in self.circuits if c.energy_fraction is not None]
        return sum(values) / len(values) if values else None


def _plan_names(program: Any, steps: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(sorted(name for name, plan in program.plans.items() if plan == steps))


def _changes(circuit: int, line: Sequence[tuple[int, int]]) -> list[Change]:
    """The level changes of a resolved timeline (0 before its first step, as the cabinet)."""
    at_time: dict[int, int] = {}
    for when, level in line:
        at_time[when] = level  # steps reaching the same time: the last listed wins
    out: list[Change] = []
    current = 0
    for when in sorted(at_time):
        if at_time[when] != current:
            current = at_time[when]
            out.append(Change(when, circuit, current))
    return out


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _circuit_night(
    program: Any, circuit: int, day: int, lat: float, lon: float, dark: tuple[int, int]
) -> CircuitNight:
    window_end = edge.window(day, lon)[1]
    changes = _changes(circuit, edge.timeline(program, circuit, day, lat, lon))
    lit_s = 0
    weighted = 0
    dark_lit = 0  # seconds lit between sunset and sunrise
    first_lit: int | None = None
    last_lit: int | None = None
    for i, change in enumerate(changes):
        if change.level == 0:
            continue
        # A resolved plan ends with its switch-off (level 0), so a lit change has
        # a next one; the window's end only guards that promise.
        span = (change.at, changes[i + 1].at if i + 1 < len(changes) else window_end)
        lit_s += span[1] - span[0]
        weighted += change.level * (span[1] - span[0])
        dark_lit += _overlap(span, dark)
        first_lit = change.at if first_lit is None else first_lit
        last_lit = span[1]
    night_s = dark[1] - dark[0]
    return CircuitNight(
        circuit=circuit,
        plans=_plan_names(program, edge.plan_steps(program, circuit, day)),
        changes=tuple(changes),
        lit_s=lit_s,
        dark_s=night_s - dark_lit,
        energy_fraction=weighted / (100 * night_s) if night_s > 0 else None,
        first_lit=first_lit,
        last_lit=last_lit,
    )


def _night_findings(night: CircuitNight, sunset: int, sunrise: int, lit_plan: bool) -> list[str]:
    """Codes of what is odd about one circuit's night."""
    codes = []
    if lit_plan and night.lit_s == 0 and sunrise > sunset:
        codes.append("dark_night")
    if 0 < night.lit_s < MIN_LIT_S and sunrise - sunset >= MIN_LIT_S:
        codes.append("short_lit")
    if night.first_lit is not None and night.last_lit is not None:
        early = sunset - night.first_lit
        late = night.last_lit - sunrise
        if early > DAYLIGHT_SLACK_S or late > DAYLIGHT_SLACK_S:
            codes.append("lit_in_daylight")
    return codes


def _has_light(steps: tuple[Any, ...]) -> bool:
    return any(level > 0 for _kind, _value, level in steps)


_MESSAGES: Final = {
    "dark_night": "stays dark all night although it has a lit level (its switch-off resolves"
    " before its switch-on)",
    "short_lit": f"is lit less than {MIN_LIT_S // 60} minutes",
    "lit_in_daylight": f"is lit more than {DAYLIGHT_SLACK_S // 60} minutes before sunset or"
    " after sunrise",
}


def preview_night(program: Any, day: date, lat: float, lon: float) -> NightPreview:
    """The night of ``day`` (its evening's date) at (lat, lon), every circuit of ``program``."""
    n = day_number(day)
    sunset, sunrise = edge.sun_night(n, lat, lon)
    dusk, dawn = edge.sun_night(n, lat, lon, program.alt)
    circuits = tuple(
        _circuit_night(program, ch, n, lat, lon, (sunset, sunrise))
        for ch in sorted(program.circuits)
    )
    findings = []
    for night in circuits:
        lit_plan = _has_light(edge.plan_steps(program, night.circuit, n))
        for code in _night_findings(night, sunset, sunrise, lit_plan):
            plans = "/".join(night.plans)
            findings.append(
                Finding(
                    code,
                    f"circuits.{night.circuit}",
                    f"circuit {night.circuit} (plan {plans}) {_MESSAGES[code]}",
                )
            )
    return NightPreview(
        day=day,
        lat=lat,
        lon=lon,
        window=edge.window(n, lon),
        sunset=sunset,
        sunrise=sunrise,
        dusk=dusk,
        dawn=dawn,
        circuits=circuits,
        findings=tuple(findings),
    )


@dataclass
class _Tally:
    nights: int = 0
    dates: dict[str, list[date]] = field(default_factory=dict)


def sweep_year(
    program: Any, lat: float, lon: float, first: date, nights: int = 365
) -> list[Finding]:
    """Findings over ``nights`` nights from ``first`` at (lat, lon); see the module.

    One finding per (circuit, plan, code), with how many of the nights it ran
    showed it and the first such date. ``never_lit`` replaces ``dark_nights``
    when a lit plan was dark on every night it ran.
    """
    tallies: dict[tuple[int, tuple[str, ...]], _Tally] = {}
    lit_plans: set[tuple[int, tuple[str, ...]]] = set()
    start = day_number(first)
    for n in range(start, start + nights):
        sunset, sunrise = edge.sun_night(n, lat, lon)
        for ch in sorted(program.circuits):
            steps = edge.plan_steps(program, ch, n)
            night = _circuit_night(program, ch, n, lat, lon, (sunset, sunrise))
            key = (ch, night.plans)
            tally = tallies.setdefault(key, _Tally())
            tally.nights += 1
            if _has_light(steps):
                lit_plans.add(key)
            for code in _night_findings(night, sunset, sunrise, _has_light(steps)):
                tally.dates.setdefault(code, []).append(date.fromordinal(n + _EPOCH_ORDINAL))
    return list(_fold(tallies, lit_plans))


def _fold(
    tallies: dict[tuple[int, tuple[str, ...]], _Tally],
    lit_plans: set[tuple[int, tuple[str, ...]]],
) -> Iterable[Finding]:
    for (ch, plans), tally in sorted(tallies.items()):
        name = "/".join(plans)
        where = f"circuits.{ch}"
        for code in ("dark_night", "short_lit", "lit_in_daylight"):
            days = tally.dates.get(code)
            if not days:
                continue
            if code == "dark_night" and len(days) == tally.nights and (ch, plans) in lit_plans:
                yield Finding(
                    "never_lit",
                    where,
                    f"circuit {ch}, plan {name}: {_MESSAGES[code]} on every one of the"
                    f" {tally.nights} nights it runs",
                )
                continue
            code_out = "dark_nights" if code == "dark_night" else code
            yield Finding(
                code_out,
                where,
                f"circuit {ch}, plan {name}: {_MESSAGES[code]} on {len(days)} of the"
                f" {tally.nights} nights it runs (first {days[0].isoformat()})",
            )
