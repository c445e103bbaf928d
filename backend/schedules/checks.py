"""Checks of a dimming program before it is stored or sent. Pure.

Two kinds of answer:

* a **refusal** (``ProgramRefused``): the cabinet would refuse the program
  (its own compiler, ``edge.schedule.compile_program``, says why, with its
  code and field), or the program cannot travel as a ``set_schedule``
  command (the protocol's limits: 512 values, 4 levels of nesting, 8 KiB),
  or the compiler itself breaks on it (the cabinet would then never ack);
* **warnings** (``Finding``): the cabinet would run it, but a planner
  probably did not mean it, e.g. a circuit dark on every ordinary night.
  They are answered with the program, never refused: switching streets off
  for part or all of the night is a legitimate municipal choice (many
  French towns switch off from 23:00 to 05:00), and decorative circuits lit
  only on some dates exist. The API shows them; the planner decides.

What depends on a place and a date (a plan dark on a night, lights on in
daylight) is in ``nights.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.schedules import edge
from edge import protocol

# Placeholders as long as the protocol allows: if the program fits with these,
# it fits with any real device, gateway and command id.
_LONGEST_ID: Final = "x" * protocol.MAX_ID_LEN
_SOME_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class ProgramRefused(ValueError):
    """A program the cabinet would not run: ``code``, ``reason`` (names the field), ``field``.

    ``field`` is the program's own dotted path (``plans.std[2]``), or None.
    """

    def __init__(self, code: str, reason: str, field: str | None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class Finding:
    """A warning about a program the cabinet would run all the same."""

    code: str
    field: str | None
    message: str


@dataclass(frozen=True)
class CheckedProgram:
    """A program that passed: its compiled form (``edge.schedule.Program``) and warnings."""

    program: Any
    warnings: tuple[Finding, ...]
    relayable: bool  # fits in a gateway's ``relay`` command (cabinets behind a gateway)


def check_program(obj: Mapping[str, Any]) -> CheckedProgram:
    """Refuse what the cabinet would refuse; warn about what it would run unmeant."""
    program = _compile(obj)
    _check_transport(obj)
    relay_problem = relay_refusal(obj)
    warnings = list(_plan_warnings(obj, program))
    if relay_problem is not None:
        warnings.append(
            Finding(
                "not_relayable",
                relay_problem.field,
                "cabinets behind a gateway cannot receive this program: "
                + relay_problem.reason
                + " (the gateway's relay command nests it one level deeper; protocol v1"
                " allows 4 levels of args). Cabinets on the backend broker can.",
            )
        )
    return CheckedProgram(program, tuple(warnings), relay_problem is None)


def _compile(obj: Mapping[str, Any]) -> Any:
    if not isinstance(obj, dict):
        raise ProgramRefused("bad_type", "the program must be a JSON object", None)
    try:
        return edge.compile_program(obj)
    except Exception as exc:  # any failure of the cabinet's compiler is an answer
        found = edge.refusal(exc)
        if found is not None:
            raise ProgramRefused(found.code, found.reason, found.field) from None
        # The cabinet catches ValueError only: anything else would stop its
        # command task before it acks, so the program must never be sent.
        raise ProgramRefused(
            "compiler_error",
            f"the cabinet's compiler fails on this program ({type(exc).__name__}); it would"
            " never acknowledge it",
            None,
        ) from None


def set_schedule_message(
    program: Mapping[str, Any], device_id: str = _LONGEST_ID
) -> dict[str, Any]:
    """The ``set_schedule`` cmd a cabinet gets (placeholder id, times)."""
    return {
        "v": protocol.VERSION,
        "kind": "cmd",
        "dev": device_id,
        "id": _LONGEST_ID,
        "name": "set_schedule",
        "args": dict(program),
        "ts": _SOME_MS,
        "exp": _SOME_MS,
        "src": "api",
    }


def _program_field(field: str | None) -> str | None:
    if field is None or field == "args":
        return None
    return field.removeprefix("args.")


def _check_transport(obj: Mapping[str, Any]) -> None:
    try:
        protocol.encode(set_schedule_message(obj))
    except protocol.ProtocolError as exc:
        raise ProgramRefused(
            str(exc.code),
            f"cannot be sent as a set_schedule command: {exc.reason}",
            _program_field(exc.field),
        ) from None


def relay_refusal(obj: Mapping[str, Any]) -> ProgramRefused | None:
    """Why a gateway's ``relay`` command cannot carry the program, or None if it can."""
    relay = {
        "v": protocol.VERSION,
        "kind": "cmd",
        "gw": _LONGEST_ID,
        "id": _LONGEST_ID,
        "name": "relay",
        "args": {"dev": _LONGEST_ID, "name": "set_schedule", "args": dict(obj)},
        "ts": _SOME_MS,
        "exp": _SOME_MS,
        "src": "api",
    }
    try:
        protocol.encode(relay)
    except protocol.ProtocolError as exc:
        field = exc.field or ""
        return ProgramRefused(
            str(exc.code), exc.reason.replace("args.args.", ""), _program_field(field[5:] or None)
        )
    return None


def _plan_names(calendar: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, plan name) of every plan a circuit's calendar names."""
    week = calendar["week"]
    if isinstance(week, str):
        yield "week", week
    else:
        for mask, name in week.items():
            yield f"week.{mask}", name
    if "holiday" in calendar:
        yield "holiday", calendar["holiday"]
    for date, name in calendar.get("dates", {}).items():
        yield f"dates.{date}", name


def _week_names(calendar: Mapping[str, Any]) -> set[str]:
    week = calendar["week"]
    return {week} if isinstance(week, str) else set(week.values())


def _is_dark(plan: list[Any]) -> bool:
    return all(level == 0 for level in plan[1::2])


def _plan_warnings(obj: Mapping[str, Any], program: Any) -> Iterator[Finding]:
    """Warnings that need no place or date (``obj`` compiled already)."""
    plans: Mapping[str, list[Any]] = obj["plans"]
    used: set[str] = set()
    for key in sorted(obj["circuits"], key=int):
        calendar = obj["circuits"][key]
        used.update(name for _field, name in _plan_names(calendar))
        week = _week_names(calendar)
        if all(_is_dark(plans[name]) for name in week):
            lit = sorted(
                f"{where} ({name})"
                for where, name in _plan_names(calendar)
                if not _is_dark(plans[name])
            )
            message = f"circuit {key} is dark on every ordinary night (plans {sorted(week)})"
            message += f"; lit only on {', '.join(lit)}" if lit else " and is never lit"
            yield Finding("dark_every_night", f"circuits.{key}.week", message)
    for name in sorted(set(plans) - used):
        yield Finding("unused_plan", f"plans.{name}", f"plan {name!r} is not run by any circuit")
    if program.id is None:
        yield Finding(
            "no_id",
            "id",
            "no program id: a cabinet's get_config cannot then say which program it runs",
        )


def tz_mismatch(tz_rule: tuple[int, str], zone: str, year: int) -> str | None:
    """How the program's local time differs from time zone ``zone`` in ``year``, or None.

    Compared at noon UTC of every day of the year, so a different standard
    offset or DST rule shows (the first day it differs is named). An
    unknown zone name is reported as a difference: it cannot be checked.
    """
    try:
        zone_info = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"time zone {zone!r} is unknown here, so the program's tz cannot be checked"
    day = datetime(year, 1, 1, 12, tzinfo=UTC)
    while day.year == year:
        offset = day.astimezone(zone_info).utcoffset()
        theirs = int(offset.total_seconds() // 60) if offset is not None else 0
        ours = edge.offset_minutes(tz_rule, int(day.timestamp()))
        if ours != theirs:
            return (
                f"on {day.date().isoformat()} the program's local time is UTC{_hm(ours)}"
                f" (tz std {tz_rule[0]}, dst {tz_rule[1]!r}) but {zone} is UTC{_hm(theirs)}:"
                " its clock steps would run at the wrong hour"
            )
        day += timedelta(days=1)
    return None


def _hm(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
