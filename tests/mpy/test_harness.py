"""The harness runs the real MicroPython, not CPython in disguise, and survives misuse."""

from __future__ import annotations

import pytest

from .harness import (
    MicroPythonCrashed,
    MicroPythonError,
    MicroPythonProcess,
    MicroPythonTimeout,
    call_cpython,
    difference,
    roundtrip,
    same,
)
from .install import REPO_ROOT

pytestmark = pytest.mark.micropython


def test_the_interpreter_is_micropython(micropython: MicroPythonProcess) -> None:
    assert micropython.eval("sys.implementation.name") == "micropython"
    assert micropython.eval("sys.implementation.version[:2]") == (1, 27)
    # the WebAssembly port, not a CPython that was told to say so
    assert micropython.eval("sys.platform") == "webassembly"


def test_micropython_lacks_what_cpython_has(micropython: MicroPythonProcess) -> None:
    with pytest.raises(MicroPythonError) as info:
        micropython.run("import dataclasses")
    assert info.value.exception.type == "ImportError"
    # and has what CPython lacks
    assert micropython.eval("hasattr(sys, 'print_exception')") is True
    assert micropython.run("import micropython\nprint(micropython.const(7))") == "7\n"
    # known semantic differences that edge/ code must live with
    assert micropython.eval("isinstance(True, int)") is False
    assert micropython.eval("hasattr('', 'isalnum')") is False
    # MicroPython's dict keeps no insertion order
    keys = ["v", "kind", "dev", "boot", "seq", "ts"]
    code = f"d = {{}}\nfor k in {keys!r}:\n    d[k] = 0\nprint(list(d))"
    assert micropython.run(code) != f"{keys!r}\n"


def test_floats_are_ieee_doubles(micropython: MicroPythonProcess) -> None:
    # the port computes in double precision (boards such as the ESP32 use single)
    assert micropython.eval("0.1 + 0.2") == 0.30000000000000004
    assert micropython.eval("2.0 ** 60 + 1.0 == 2.0 ** 60") is True
    assert micropython.eval("2.0 ** 52 + 1.0 == 2.0 ** 52") is False


def test_exceptions_surface_with_traceback_and_attributes(
    micropython: MicroPythonProcess,
) -> None:
    code = (
        "class Oops(ValueError):\n"
        "    def __init__(self, code):\n"
        "        super().__init__('oops ' + code)\n"
        "        self.code = code\n"
        "def f():\n"
        "    raise Oops('bad_thing')\n"
        "f()\n"
    )
    with pytest.raises(MicroPythonError) as info:
        micropython.run(code)
    exc = info.value.exception
    assert exc.type == "Oops"
    assert exc.args == ("oops bad_thing",)
    assert exc.code == "bad_thing"
    assert "in f" in info.value.traceback
    assert "Oops: oops bad_thing" in info.value.traceback


def test_state_survives_an_error(micropython: MicroPythonProcess) -> None:
    starts = micropython.starts
    with pytest.raises(MicroPythonError):
        micropython.eval("1 // 0")
    with pytest.raises(MicroPythonError):
        micropython.call("edge.no_such_module", "f")
    with pytest.raises(MicroPythonError):
        micropython.run("raise SystemExit(3)")
    with pytest.raises(MicroPythonError):
        micropython.run("def f(n):\n    return f(n + 1)\nf(0)")  # recursion limit
    assert micropython.eval("6 * 7") == 42
    assert micropython.starts == starts  # the same process kept serving


def test_prints_are_captured_apart_from_results(micropython: MicroPythonProcess) -> None:
    out = micropython.run('print("{\\"id\\": 1, \\"ok\\": true}")\nprint("no newline", end="")')
    assert out == '{"id": 1, "ok": true}\nno newline'
    # JavaScript's console, reached from Python, cannot break the channel either
    micropython.run("import js\njs.console.log('from js')")
    assert micropython.last_stdout == "from js\n"
    # input() sees end of file instead of reading the job channel
    with pytest.raises(MicroPythonError) as info:
        micropython.run("input()")
    assert info.value.exception.type == "EOFError"
    assert micropython.eval("'still here'") == "still here"


def test_a_hanging_job_is_killed_and_the_next_job_restarts(
    micropython: MicroPythonProcess,
) -> None:
    assert micropython.eval("'alive'") == "alive"
    starts = micropython.starts
    with pytest.raises(MicroPythonTimeout):
        micropython.run("while True:\n    pass", timeout=1.0)
    assert micropython.eval("1 + 1") == 2
    assert micropython.starts == starts + 1


def test_a_crash_is_reported_and_the_next_job_restarts(
    micropython: MicroPythonProcess,
) -> None:
    assert micropython.eval("'alive'") == "alive"
    starts = micropython.starts
    with pytest.raises(MicroPythonCrashed, match="exit 3"):
        micropython.run("import js\njs.process.exit(3)")
    assert micropython.eval("1 + 1") == 2
    assert micropython.starts == starts + 1


VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**64 + 1,
    -(10**30),
    0.1,
    -0.0,
    1e308,
    5e-324,
    float("inf"),
    float("nan"),
    "",
    "plain",
    'quote" back\\slash \n\t\x00\x7f',
    "é€😀",
    "lone \ud800 surrogate",
    b"",
    b"\x00\xff\x80",
    bytearray(b"ab"),
    (),
    (1, (2, [3])),
    [1.5, "x", [b"y"]],
    {"a": 1, "b": [1, {"c": 2.5}]},
    {1: "int key", (1, 2): "tuple key"},
    {"__bytes__": "00"},  # a plain dict that looks like a tag
    {1, 2, 3},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_cross_the_wire_exactly(micropython: MicroPythonProcess, value: object) -> None:
    assert same(roundtrip(value), value)
    # CPython -> MicroPython -> CPython, through both sides' wire code
    assert same(micropython.call("_lumeau_agent", "echo", value), value)


def test_malformed_micropython_strings_are_not_blurred(micropython: MicroPythonProcess) -> None:
    # MicroPython's decode() keeps an overlong "/" as its raw bytes; the wire
    # must carry those bytes, not a look-alike "a/b" or U+FFFD.
    got = micropython.eval("b'a\\xc0\\xafb'.decode()")
    assert got == "a\udcc0\udcafb"


def test_edge_is_the_repository_copy(micropython: MicroPythonProcess) -> None:
    here = REPO_ROOT / "edge" / "protocol.py"
    size = micropython.eval("__import__('os').stat('/lib/edge/protocol.py')[6]")
    assert size == here.stat().st_size
    assert micropython.eval("__import__('edge.protocol').protocol.__file__") == (
        "/lib/edge/protocol.py"
    )


def test_assert_same_reports_a_difference(micropython: MicroPythonProcess) -> None:
    # json.dumps follows dict order, which MicroPython does not keep
    value = {k: i for i, k in enumerate("zyxwvutsrq")}
    with pytest.raises(AssertionError, match="MicroPython and CPython differ"):
        micropython.assert_same("json", "dumps", value)
    with pytest.raises(AssertionError, match="expected a value from both"):
        micropython.assert_same("math", "sqrt", -1.0)
    mpy, cpy = micropython.assert_same_error("math", "sqrt", -1.0, only=())
    assert mpy.type == cpy.type == "ValueError"


def test_difference_is_strict() -> None:
    assert difference(1, 1.0) is not None
    assert difference(1, True) is not None
    assert difference([1], (1,)) is not None
    assert difference(0.0, -0.0) is not None
    assert difference(float("nan"), float("nan")) is None
    assert difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "at ['a'][1]['b']: 2 vs 3"


def test_call_cpython_mirrors_the_wire() -> None:
    assert call_cpython("binascii", "hexlify", b"\x01\xff") == b"01ff"
    assert call_cpython("builtins", "divmod", 7, 2) == (3, 1)
