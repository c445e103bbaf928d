"""The cabinet's schedule code, as the backend calls it.

``edge/schedule*.py`` is MicroPython code typed by comments (bare ``dict``
and ``tuple``), which mypy --strict rejects; it is loaded untyped here, as
``backend/commands/build.py`` does, and only this module touches it. The
functions below are the few the backend needs, with types.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

DEFAULT_ALT: Final = -0.833  # sunset and sunrise: the sun's centre 50' below the horizon


@dataclass(frozen=True)
class EdgeRefusal:
    """A ``ScheduleError`` of the cabinet's compiler: its code, reason and field."""

    code: str
    reason: str
    field: str | None


@cache
def _module(name: str) -> Any:
    return importlib.import_module(name)


def schedule() -> Any:
    """``edge.schedule``: compile_program, level_at, next_change, changes..."""
    return _module("edge.schedule")


def night() -> Any:
    """``edge.schedule_night``: window, sun_night, timeline, plan_for."""
    return _module("edge.schedule_night")


def tz() -> Any:
    """``edge.schedule_tz``: offset_at, utc_to_local."""
    return _module("edge.schedule_tz")


def compile_program(obj: Any) -> Any:
    """The compiled ``Program``; raises the cabinet's ``ScheduleError`` (a ValueError)."""
    return schedule().compile_program(obj)


def refusal(exc: BaseException) -> EdgeRefusal | None:
    """The code, reason and field of a ``ScheduleError``; None for anything else."""
    if not isinstance(exc, schedule().ScheduleError):
        return None
    return EdgeRefusal(str(exc.code), str(exc.reason), exc.field)


def sun_night(day: int, lat: float, lon: float, alt: float = DEFAULT_ALT) -> tuple[int, int]:
    """(dusk, dawn) Unix seconds of the night of ``day`` (polar nights: empty or whole)."""
    dusk, dawn = night().sun_night(day, lat, lon, alt)
    return int(dusk), int(dawn)


def window(day: int, lon: float) -> tuple[int, int]:
    """(start, end) of the night of ``day``: mean solar noon to the next one."""
    start, end = night().window(day, lon)
    return int(start), int(end)


def timeline(program: Any, circuit: int, day: int, lat: float, lon: float) -> list[tuple[int, int]]:
    """[(time, level)] of ``circuit``'s plan on the night of ``day``, as the cabinet resolves it."""
    calendar = program.circuits[circuit]
    steps = night().plan_for(calendar, program.holidays, day)
    line = night().timeline(steps, program.tz, day, lat, lon, program.alt)
    return [(int(t), int(level)) for t, level in line]


def plan_steps(program: Any, circuit: int, day: int) -> tuple[Any, ...]:
    """The compiled steps ``circuit`` runs on the night of ``day`` (identity of the plan)."""
    steps: tuple[Any, ...] = night().plan_for(program.circuits[circuit], program.holidays, day)
    return steps


def offset_minutes(tz_rule: tuple[int, str], t: int) -> int:
    """The program's UTC offset at Unix time ``t``, minutes east."""
    return int(tz().offset_at(tz_rule, t))


def local_hhmm(tz_rule: tuple[int, str], t: int) -> str:
    """``HH:MM`` of Unix time ``t`` in the program's local time."""
    _day, minute = tz().utc_to_local(tz_rule, t)
    return f"{minute // 60:02d}:{minute % 60:02d}"
