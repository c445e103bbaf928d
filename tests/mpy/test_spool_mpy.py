"""``edge/spool.py`` behaves the same, byte for byte, under MicroPython and CPython.

The scenarios live in ``spool_scenario.py``, a helper that runs on both
interpreters: it is copied into MicroPython's in-memory file system and run
there on a folder of that file system, and run in CPython on a real folder.
The traces (every id, length, byte count, counter and payload) and the files
left behind (names and bytes) must be identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import MicroPythonProcess, call_cpython, difference

pytestmark = pytest.mark.micropython

HELPER = "_lumeau_spool_scenario"
CPYTHON_HELPER = "tests.mpy.spool_scenario"


@pytest.fixture(scope="module")
def mpy(micropython: MicroPythonProcess) -> Iterator[MicroPythonProcess]:
    """The session's interpreter with the scenario helper on its path."""
    source = Path(__file__).with_name("spool_scenario.py").read_text(encoding="utf-8")
    micropython.run(
        f"f = open('/lib/{HELPER}.py', 'w')\nf.write({source!r})\nf.close()\nimport {HELPER}\n"
    )
    yield micropython


def both(mpy: MicroPythonProcess, tmp_path: Path, func: str, *args: Any) -> Any:
    """Run func(folder, *args) in MicroPython and CPython; assert the same result."""
    folder = "/spool-" + func
    mpy.call(HELPER, "clean", folder)
    in_mpy = mpy.call(HELPER, func, folder, *args)
    in_cpy = call_cpython(CPYTHON_HELPER, func, str(tmp_path / "spool"), *args)
    diff = difference(in_mpy, in_cpy)
    assert diff is None, f"{func}: MicroPython and CPython differ {diff}"
    return in_cpy


def test_scenario_is_identical(mpy: MicroPythonProcess, tmp_path: Path) -> None:
    trace = both(mpy, tmp_path, "scenario")
    steps = {step[0]: step for step in trace}
    # the scenario did what it says (the values are CPython's, equal to MicroPython's)
    assert trace[9][5] == 1  # the count bound started dropping at the tenth append
    assert steps["torn"][2][4] == 1  # torn == 1 after the cut append
    assert steps["corrupt"][1][3] == 1  # corrupt == 1 after the bit flip
    assert steps["corrupt_again"][1][3] == 0  # repaired: not counted again
    assert steps["corrupt_again"][1][2] == steps["corrupt"][1][2]  # dropped kept
    assert steps["empty"][1][0] == 0
    names = [name for name, _ in steps["after"][2]]
    assert names[-1] == "head.log" and all(n.endswith(".seg") for n in names[:-1])


def test_torn_write_at_every_offset_is_identical(mpy: MicroPythonProcess, tmp_path: Path) -> None:
    cuts = both(mpy, tmp_path, "torn_sweep")
    # cutting the file earlier never keeps more, and the full file keeps all
    kept = [len(ids) for _, _, _, ids, _ in cuts]
    assert kept == sorted(kept)
    assert cuts[-1][2] == 0 and cuts[-1][1] == kept[-1]


def test_heap_of_a_thousand_queued_records(mpy: MicroPythonProcess) -> None:
    """RAM does not grow with the queue: one short list per segment file."""
    mpy.call(HELPER, "clean", "/spool-heap")

    def alloc() -> int:  # the first job after a change still sees some of its garbage
        return min(mpy.call(HELPER, "heap_alloc") for _ in range(3))

    used = mpy.call(HELPER, "heap_fill", "/spool-heap", 1000, 150)
    with_object = alloc()
    mpy.call(HELPER, "heap_release")
    without = alloc()
    assert mpy.call(HELPER, "heap_reopen", "/spool-heap", 1000) == 1000
    reopened = alloc()
    mpy.call(HELPER, "heap_release")
    held, held_reopened = with_object - without, reopened - without
    print(
        f"\nMicroPython heap held by a Spool with 1000 records of 150 B "
        f"({used} B in 16 KiB segment files): {held} B after appending, "
        f"{held_reopened} B after recovery"
    )
    assert 0 < held < 4096 and 0 < held_reopened < 4096
