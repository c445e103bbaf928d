"""backend.schedules.checks: what the API refuses (the cabinet's own reasons) and warns about."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from backend.schedules import checks, edge
from edge import schedule

# docs/schedule.md's example: the reference program of the format.
DOC_PROGRAM: dict[str, Any] = {
    "v": 1,
    "id": "ville-2026-03",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {
        "std": ["dusk", 100, "22:30", 50, "vmid", 30, "dawn-30", 50, "dawn", 0],
        "we": ["dusk", 100, "00:30", 70, "vmid+60", 30, "dawn", 0],
        "full": ["dusk", 100, "dawn", 0],
        "dark": ["dusk", 0],
    },
    "holidays": ["01-01", "easter+1", "05-01", "05-08", "easter+39", "easter+50", "07-14"],
    "circuits": {
        "1": {
            "week": {"1111001": "std", "0000110": "we"},
            "holiday": "we",
            "dates": {"07-14": "full", "2026-12-31": "full"},
        },
        "2": {"week": "std"},
        "3": {"week": "dark", "dates": {"2026-06-21": "full"}},
    },
}

SIMPLE: dict[str, Any] = {
    "v": 1,
    "id": "simple",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {"std": ["dusk", 100, "vmid", 50, "dawn", 0]},
    "circuits": {"1": {"week": "std"}, "2": {"week": "std"}},
}


def codes(found: checks.CheckedProgram) -> list[str]:
    return [f.code for f in found.warnings]


def test_the_documented_program_passes_with_its_two_warnings() -> None:
    found = checks.check_program(DOC_PROGRAM)
    assert sorted(found.program.circuits) == [1, 2, 3]
    assert codes(found) == ["dark_every_night", "not_relayable"]
    dark = found.warnings[0]
    assert dark.field == "circuits.3.week"
    assert "lit only on dates.2026-06-21 (full)" in dark.message
    # weekday masks and dates nest 4 levels in args: one more in a gateway's relay
    assert not found.relayable
    assert found.warnings[1].field is not None
    assert found.warnings[1].field.startswith("circuits.1.")


def test_a_program_without_masks_or_dates_reaches_cabinets_behind_a_gateway() -> None:
    found = checks.check_program(SIMPLE)
    assert found.relayable
    assert codes(found) == []


def test_warnings_for_unused_plans_a_circuit_never_lit_and_no_id() -> None:
    program = copy.deepcopy(SIMPLE)
    del program["id"]
    program["plans"]["spare"] = ["dusk", 80, "dawn", 0]
    program["plans"]["off"] = ["dusk", 0]
    program["circuits"]["2"] = {"week": "off"}
    found = checks.check_program(program)
    assert codes(found) == ["dark_every_night", "unused_plan", "no_id"]
    assert found.warnings[0].message.endswith("and is never lit")
    assert found.warnings[1].field == "plans.spare"


def std(*steps: Any) -> Any:
    return lambda p: p["plans"].update(std=list(steps))


def week(value: Any) -> Any:
    return lambda p: p["circuits"].update({"1": {"week": value}})


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        (std("dusk", 150, "dawn", 0), "out_of_range", "plans.std[1]"),
        (std("dusk", 50.5, "dawn", 0), "bad_type", "plans.std[1]"),
        (std("dusk", 100, "25:00", 0), "bad_time", "plans.std[2]"),
        (std("sunset", 100, "dawn", 0), "unknown_anchor", "plans.std[0]"),
        (std("dawn", 0, "dusk", 100), "unsorted", "plans.std[2]"),
        (std("23:00", 100, "22:00", 0), "unsorted", "plans.std[2]"),
        (std("dusk", 100, "dawn", 20), "no_switch_off", "plans.std[3]"),
        (week("nope"), "unknown_plan", "circuits.1.week"),
        (week({"1111100": "std"}), "uncovered", "circuits.1.week"),
        (lambda p: p["tz"].update(std=900), "out_of_range", "tz.std"),
        (lambda p: p.update(v=2), "bad_version", "v"),
        (lambda p: p.update(colour="red"), "unknown_field", "colour"),
    ],
)
def test_what_the_cabinet_refuses_is_refused_with_its_own_reason(
    change: Any, code: str, field: str
) -> None:
    program = copy.deepcopy(SIMPLE)
    change(program)
    with pytest.raises(checks.ProgramRefused) as refused:
        checks.check_program(program)
    assert (refused.value.code, refused.value.field) == (code, field)
    with pytest.raises(schedule.ScheduleError) as cabinet:
        schedule.compile_program(program)
    assert refused.value.reason == cabinet.value.reason  # the cabinet's words, unchanged
    assert refused.value.reason.startswith(field + ": ")


def test_a_program_too_large_for_a_command_is_refused_with_the_protocols_reason() -> None:
    program = copy.deepcopy(SIMPLE)
    # 16 plans of 16 steps: the cabinet compiles it, the protocol's 512 values do not fit.
    for i in range(16):
        steps: list[Any] = []
        for m in range(15):
            steps += [f"{18 + m // 60:02d}:{m % 60:02d}", 100 - m]
        program["plans"][f"p{i}"] = [*steps, "dawn", 0]
    del program["plans"]["std"]
    program["circuits"] = {"1": {"week": "p0"}}
    schedule.compile_program(program)  # the cabinet alone would take it
    with pytest.raises(checks.ProgramRefused) as refused:
        checks.check_program(program)
    assert refused.value.code == "too_large"
    assert "cannot be sent as a set_schedule command" in refused.value.reason


def test_not_an_object_is_refused() -> None:
    with pytest.raises(checks.ProgramRefused) as refused:
        checks.check_program([1, 2])  # type: ignore[arg-type]
    assert refused.value.code == "bad_type" and refused.value.field is None


def test_a_compiler_crash_is_a_refusal_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cabinet acks only ValueErrors; anything else must never be sent.
    def broken(obj: Any) -> Any:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(edge, "compile_program", broken)
    with pytest.raises(checks.ProgramRefused) as refused:
        checks.check_program(SIMPLE)
    assert refused.value.code == "compiler_error"
    assert "TypeError" in refused.value.reason


@pytest.mark.parametrize(
    ("rule", "zone", "differs_on"),
    [
        ((60, "eu"), "Europe/Paris", None),
        ((-240, "none"), "America/Guadeloupe", None),
        ((240, "none"), "Indian/Reunion", None),
        ((-180, "na"), "America/Miquelon", None),
        ((-300, "na"), "America/New_York", None),
        ((60, "eu"), "Indian/Reunion", "2026-01-01"),
        ((60, "none"), "Europe/Paris", "2026-03-29"),  # forgot summer time
        ((-300, "eu"), "America/New_York", "2026-03-08"),  # North American rule
    ],
)
def test_the_programs_time_zone_against_a_sites(
    rule: tuple[int, str], zone: str, differs_on: str | None
) -> None:
    problem = checks.tz_mismatch(rule, zone, 2026)
    if differs_on is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(f"on {differs_on} ")
        assert zone in problem


def test_an_unknown_time_zone_is_reported() -> None:
    problem = checks.tz_mismatch((60, "eu"), "Mars/Olympus_Mons", 2026)
    assert problem is not None and "unknown" in problem
