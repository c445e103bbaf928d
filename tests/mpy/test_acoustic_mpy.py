"""``edge.acoustic`` gives the same features under MicroPython and CPython.

The test signals are generated on each side by ``edge.acoustic_synth`` from
the same seed (integer xorshift32, IEEE-exact arithmetic): the samples must be
identical, and nothing of the recording crosses the wire. The features are
then computed inside MicroPython, block by block as on a sensor, and compared
with CPython's.

Tolerance: 1e-9 relative (and 1e-9 absolute, for levels near 0 dB) on every
float; integers exactly. Both interpreters use IEEE doubles here, so only the
libm functions (``cos``, ``sin``, ``log``, ``log10``: glibc under CPython,
musl under Emscripten) may differ, by an ulp; the measured differences are far
below the tolerance (usually zero). An ESP32 build computes in single
precision and is not covered by this comparison.

``test_heap_and_time`` measures (and only prints, ``pytest -s``) the heap and
the time of MicroPython's WebAssembly port and of CPython.
"""

from __future__ import annotations

import math
import sys
import time
import types
from typing import Any

import pytest

from .harness import (
    MicroPythonError,
    MicroPythonProcess,
    cpython_outcome,
    roundtrip,
)

pytestmark = pytest.mark.micropython

REL = 1e-9
ABS = 1e-9
DRIVER = "_acoustic_driver"

# Runs on both interpreters: written into MicroPython's /lib, and loaded as a
# module in CPython. Specs arrive through the wire, so floats are exact.
DRIVER_SOURCE = '''
import gc
import sys
import time

from edge.acoustic import NightFeatures, night_features
from edge.acoustic_synth import Synth

state = {}


def synth(spec):
    s = Synth(spec["fs"], seed=spec.get("seed", 1), dc=spec.get("dc", 0.0))
    for part in spec["parts"]:
        getattr(s, part[0])(*part[1:])
    return s


def samples(spec, n):
    return list(synth(spec).read(n))


def features(spec):
    s = synth(spec)
    nf = NightFeatures(spec["fs"], **spec.get("params", {}))
    sizes = spec.get("blocks", [1024])
    left = spec["samples"]
    k = 0
    while left > 0:
        n = sizes[k % len(sizes)]
        if n > left:
            n = left
        nf.feed(s.read(n))
        left -= n
        k += 1
    return {"result": nf.result(), "levels": list(nf.levels()), "bins": list(nf.bin_powers())}


def one_shot(samples, fs, kwargs):
    return night_features(samples, fs, **kwargs)


def clock():
    if sys.implementation.name == "micropython":
        return time.ticks_us() / 1e6
    return time.perf_counter()


def timed(spec):
    """Seconds spent in feed() and in result(), the synthesis not counted."""
    s = synth(spec)
    nf = NightFeatures(spec["fs"], **spec.get("params", {}))
    size = spec.get("block", 1024)
    left = spec["samples"]
    feeding = 0.0
    while left > 0:
        n = size if size < left else left
        block = s.read(n)
        t = clock()
        nf.feed(block)
        feeding += clock() - t
        left -= n
    t = clock()
    nf.result()
    return [feeding, clock() - t]


def mem():
    return gc.mem_alloc()


def start(spec):
    state["synth"] = synth(spec)
    state["block"] = spec.get("block", 1024)


def start_features(spec):
    state["nf"] = NightFeatures(spec["fs"], **spec.get("params", {}))


def feed_some(blocks):
    """Feed blocks; return the bytes allocated by feed() alone (garbage included)."""
    s = state["synth"]
    nf = state["nf"]
    worst = 0
    for _ in range(blocks):
        block = s.read(state["block"])
        a = gc.mem_alloc()
        nf.feed(block)
        d = gc.mem_alloc() - a
        if d > worst:
            worst = d
    return worst


def finish():
    a = gc.mem_alloc()
    r = state["nf"].result()
    return [gc.mem_alloc() - a, r]


def stop():
    state.clear()
'''


# ---------------------------------------------------------------- plumbing


def _cpython_driver() -> None:
    if DRIVER not in sys.modules:
        module = types.ModuleType(DRIVER)
        exec(compile(DRIVER_SOURCE, DRIVER + ".py", "exec"), module.__dict__)
        sys.modules[DRIVER] = module


def _install(mpy: MicroPythonProcess) -> None:
    """Write the driver into MicroPython's /lib (again after a restart)."""
    if getattr(mpy, "_acoustic_driver_start", None) != mpy.starts:
        mpy.run(f"f = open('/lib/{DRIVER}.py', 'w')\nf.write({DRIVER_SOURCE!r})\nf.close()")
        mpy._acoustic_driver_start = mpy.starts  # type: ignore[attr-defined]


@pytest.fixture
def mpy(micropython: MicroPythonProcess) -> MicroPythonProcess:
    _install(micropython)
    _cpython_driver()
    return micropython


def both(mpy: MicroPythonProcess, func: str, *args: Any) -> tuple[Any, Any]:
    """(MicroPython's value, CPython's value) of the driver's func(*args)."""
    got = mpy.call(DRIVER, func, *args)
    cpy = cpython_outcome(DRIVER, func, *args)
    assert cpy.ok, cpy.detail
    return got, cpy.value


def worst_difference(a: Any, b: Any, path: str = "") -> float:
    """Largest relative difference between two results; fails on any structural one."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        return max((worst_difference(a[k], b[k], f"{path}.{k}") for k in a), default=0.0)
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths"
        return max(
            (
                worst_difference(x, y, f"{path}[{i}]")
                for i, (x, y) in enumerate(zip(a, b, strict=True))
            ),
            default=0.0,
        )
    if isinstance(a, float):
        assert isinstance(b, float), f"{path}: {a!r} vs {b!r}"
        assert math.isclose(a, b, rel_tol=REL, abs_tol=ABS), f"{path}: {a!r} vs {b!r}"
        return abs(a - b) / max(abs(a), abs(b), 1e-300) if a != b else 0.0
    assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"
    return 0.0


FS = 8000
SCENARIOS: dict[str, dict[str, Any]] = {
    "tone": {"fs": FS, "parts": [["tone", 1234.5, 10000.0], ["white", 10.0]], "samples": 3 * FS},
    "white": {"fs": FS, "seed": 5, "parts": [["white", 1000.0]], "samples": 4 * FS},
    "leak": {
        "fs": FS,
        "seed": 7,
        "dc": -350.0,
        "parts": [["white", 20.0], ["band_noise", 400, 1200, 150.0]],
        "samples": 10 * FS,
    },
    "traffic": {
        "fs": FS,
        "seed": 8,
        "dc": -350.0,
        "parts": [["white", 20.0], ["bursts", 3.0, 1.0, 3000.0, 30, 600]],
        "samples": 10 * FS,
        "blocks": [512, 1000, 7],
    },
    "clipped": {
        "fs": FS,
        "parts": [["tone", 300.0, 40000.0], ["white", 100.0]],
        "samples": 2 * FS,
        "params": {"subwindow_s": 0.125},
    },
    "4 kHz, custom": {
        "fs": 4000,
        "seed": 9,
        "parts": [["band_noise", 150, 700, 400.0], ["tone", 97.0, 300.0]],
        "samples": 6 * 4000,
        "blocks": [333],
        "params": {
            "subwindow_s": 0.5,
            "bands": ((50, 150), (150, 700), (700, 2000)),
            "ref": 250.0,
            "exceeded": (5, 10, 50, 90, 95),
            "spread": (5, 95),
            "peak_range": (50, 2000),
            "spectrum_every": 2,
            "nfft": 256,
        },
    },
}


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_samples(mpy: MicroPythonProcess, name: str) -> None:
    got, expected = both(mpy, "samples", SCENARIOS[name], 8192)
    assert got == expected  # exactly: ints


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_features(mpy: MicroPythonProcess, name: str) -> None:
    got, expected = both(mpy, "features", SCENARIOS[name])
    worst = worst_difference(got, expected)
    assert worst <= REL
    assert got["result"]["noise_duration_s"] > 0


def test_same_features_from_a_list_in_one_shot(mpy: MicroPythonProcess) -> None:
    spec = SCENARIOS["leak"]
    x = mpy.call(DRIVER, "samples", spec, 3 * FS)
    assert x == cpython_outcome(DRIVER, "samples", spec, 3 * FS).value
    floats = [v / 7.0 for v in x[:FS]]  # float samples: exact on the wire
    for samples, kwargs in ((x, {}), (floats, {"full_scale": 10000.0, "nfft": 512})):
        got, expected = both(mpy, "one_shot", samples, FS, kwargs)
        worst_difference(got, expected)


def test_streamed_on_micropython_equals_one_shot_on_cpython(mpy: MicroPythonProcess) -> None:
    spec = dict(SCENARIOS["traffic"], blocks=[1, 4095, 100, 2048])
    streamed = mpy.call(DRIVER, "features", spec)["result"]
    x = cpython_outcome(DRIVER, "samples", spec, spec["samples"]).value
    one = cpython_outcome(DRIVER, "one_shot", x, FS, {}).value
    for name, value in one.items():
        assert math.isclose(streamed[name], value, rel_tol=REL, abs_tol=ABS), name


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((900,), {}),
        ((FS,), {"subwindow_s": 0.001}),
        ((FS,), {"bands": ((100, 5000),)}),
        ((FS,), {"bands": ((100.0, 300),)}),
        ((FS,), {"nfft": 1000}),
        ((FS,), {"ref": 0.0}),
        ((FS,), {"exceeded": (100,)}),
        ((FS,), {"spread": (90, 10)}),
        ((FS,), {"peak_range": (3000, 2000)}),
        ((FS,), {"spectrum_every": 0}),
    ],
)
def test_same_parameter_errors(
    micropython: MicroPythonProcess, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    mpy_err, cpy_err = micropython.assert_same_error(
        "edge.acoustic", "NightFeatures", *args, **kwargs
    )
    assert mpy_err.type == "AcousticError"
    assert mpy_err.args == cpy_err.args  # the same text too


def test_same_sample_errors(micropython: MicroPythonProcess) -> None:
    for samples in ([], [0] * 100, b"\x00\x01", [1.0, "x"]):
        err, _ = micropython.assert_same_error("edge.acoustic", "night_features", samples, FS)
        assert err.type == "AcousticError"


def test_errors_raise_inside_micropython(micropython: MicroPythonProcess) -> None:
    with pytest.raises(MicroPythonError) as info:
        micropython.call("edge.acoustic", "night_features", [0.0, math.inf] * 5000, FS)
    assert info.value.exception.param == "block"


# ---------------------------------------------------------------- measurements


def _live(proc: MicroPythonProcess) -> int:
    """Live heap bytes: a collection requested, done between jobs, then read.

    The WebAssembly port collects only at the top level, between jobs
    (``gc.collect()`` inside a job just schedules it), so inside a job
    ``gc.mem_alloc()`` differences count every allocation, garbage included.
    """
    proc.run("import gc\ngc.collect()")
    return int(proc.eval("__import__('gc').mem_alloc()"))


def test_heap_and_time(micropython: MicroPythonProcess) -> None:
    spec = {
        "fs": FS,
        "seed": 3,
        "parts": [["white", 20.0], ["band_noise", 400, 1200, 150.0]],
        "samples": 10 * FS,
        "block": 1024,
    }
    lines = []
    # a fresh interpreter, so the session's other tests do not weigh in
    with MicroPythonProcess(micropython.package, timeout=300) as proc:
        base = _live(proc)
        proc.run("import edge.acoustic")
        after_import = _live(proc)
        _install(proc)
        proc.call(DRIVER, "start", spec)
        with_synth = _live(proc)
        proc.call(DRIVER, "start_features", spec)
        with_state = _live(proc)
        per_block = [proc.call(DRIVER, "feed_some", 10) for _ in range(3)]
        live_while_streaming = [_live(proc)]
        for _ in range(3):
            proc.call(DRIVER, "feed_some", 10)
            live_while_streaming.append(_live(proc))
        result_garbage, _ = proc.call(DRIVER, "finish")
        proc.call(DRIVER, "stop")
        mpy_feed, mpy_result = proc.call(DRIVER, "timed", spec)
        fast = dict(spec, params={"spectrum_every": 4})
        mpy_feed4, _ = proc.call(DRIVER, "timed", fast)
        levels_only = dict(spec, params={"spectrum_every": 1000})
        mpy_levels, _ = proc.call(DRIVER, "timed", levels_only)
    _cpython_driver()
    t0 = time.perf_counter()
    cpy_feed, cpy_result = sys.modules[DRIVER].timed(roundtrip(spec))
    cpy_total = time.perf_counter() - t0
    lines.append(f"heap after import of edge.acoustic: {after_import - base} B")
    lines.append(f"test driver module + synth: {with_synth - after_import} B")
    lines.append(f"NightFeatures(8000) state: {with_state - with_synth} B")
    lines.append(f"garbage allocated by one feed() of 1024 samples: {max(per_block)} B")
    lines.append(f"live heap while streaming (between blocks): {live_while_streaming}")
    lines.append(f"garbage allocated by result(): {result_garbage} B")
    lines.append(
        f"MicroPython wasm, 10 s at 8 kHz: feed {mpy_feed:.3f} s, result {mpy_result:.3f} s"
    )
    lines.append(f"  spectrum_every=4: feed {mpy_feed4:.3f} s; levels only: {mpy_levels:.3f} s")
    lines.append(
        f"CPython, 10 s at 8 kHz: feed {cpy_feed:.3f} s, result {cpy_result:.3f} s "
        f"(with synthesis {cpy_total:.3f} s)"
    )
    print("\n" + "\n".join(lines))
    # the state does not grow while streaming
    assert max(live_while_streaming) - min(live_while_streaming) < 2048
