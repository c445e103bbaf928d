"""The board code inside MicroPython 1.27 (the official WebAssembly port under Node.js).

- ``micropython.heap``: the heap that importing each board application and the
  main edge modules takes, loaded from the ``.mpy`` bundle that
  ``firmware.tools.build`` makes (what goes on a board) and, for comparison,
  from source (compiled on the device).
- ``micropython.compute``: one night's computation on a board: the leak
  sensor's ``edge.acoustic.NightFeatures`` over 10 s of 8 kHz audio (time and
  the garbage one 1024-sample block allocates) and the cabinet's schedule
  levels once a minute for 24 h (``edge.schedule.level_at``), timed under the
  WebAssembly port and under CPython.

The WebAssembly port is not an ESP32: its speed says little about a 240 MHz
Xtensa core, and its heap figures are indicative (same object layout, 32-bit
words, but another port's builtins). This port reclaims garbage only between
jobs, so every heap reading is a job of its own after a collection job, and
the reading kept is the smallest of three; each import is measured in a fresh
interpreter.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.harness.context import Context
from bench.harness.registry import Result, benchmark
from bench.harness.stats import summarize
from bench.harness.table import format_value, summary_note

REPO = Path(__file__).resolve().parent.parent

# (label, import statement); each is run alone, in a fresh interpreter
IMPORTS: tuple[tuple[str, str], ...] = (
    ("cabinet.app", "import cabinet.app"),
    ("leak_sensor.app", "import leak_sensor.app"),
    ("edge.protocol", "import edge.protocol"),
    ("edge.schedule", "import edge.schedule"),
    ("edge.acoustic", "import edge.acoustic"),
    ("edge.spool", "import edge.spool"),
    # what each main.py imports before it makes the app (machine excluded)
    (
        "cabinet main.py imports",
        "import asyncio, json, os, netup, uplink, cabinet.app, cabinet.board, edge.spool",
    ),
    (
        "leak_sensor main.py imports",
        "import json, os, netup, uplink, leak_sensor.app, leak_sensor.board, edge.spool",
    ),
)
READINGS = 3  # heap readings per figure; the smallest is kept

# The same code runs on both interpreters (exec on CPython, a job on MicroPython).
DRIVER = '''
import json, time
from array import array

try:
    from time import ticks_diff, ticks_us

    def elapsed_us(t0):
        return ticks_diff(ticks_us(), t0)

    now_us = ticks_us
except ImportError:  # CPython

    def now_us():
        return time.perf_counter_ns() // 1000

    def elapsed_us(t0):
        return now_us() - t0

try:
    from gc import mem_alloc
except ImportError:  # CPython: no heap figures
    def mem_alloc():
        return 0


def fill(buf, x):
    """Pseudo-random samples (ZX81 LCG, small ints only) plus a 500 Hz square."""
    for i in range(len(buf)):
        x = (x * 75 + 74) % 65537
        buf[i] = ((x - 32768) >> 4) + (1500 if (i // 8) % 2 else -1500)
    return x


def night_features(seconds, fs=8000, block=1024):
    from edge import acoustic

    nf = acoustic.NightFeatures(fs)
    buf = array("h", bytes(2 * block))
    x, left, feed_us, garbage = 1, seconds * fs, 0, []
    while left > 0:
        x = fill(buf, x)
        n = block if left >= block else left
        part = buf if n == block else buf[:n]
        a = mem_alloc()
        t = now_us()
        nf.feed(part)
        feed_us += elapsed_us(t)
        if n == block:
            garbage.append(mem_alloc() - a)
        left -= n
    a = mem_alloc()
    t = now_us()
    out = nf.result()
    return {"feed_us": feed_us, "result_us": elapsed_us(t), "result_garbage": mem_alloc() - a,
            "block_garbage": garbage, "noise_l50_db": out.get("noise_l50_db")}


def night_levels(program_json, start, lat, lon, step_s=60):
    from edge import schedule

    program = schedule.compile_program(json.loads(program_json))
    n, changes, last = 0, 0, None
    a = mem_alloc()
    t = now_us()
    for s in range(start, start + 86400, step_s):
        levels = schedule.level_at(program, s, lat, lon)
        if levels != last:
            changes += 1
            last = levels
        n += 1
    return {"us": elapsed_us(t), "calls": n, "changes": changes, "garbage": mem_alloc() - a}
'''

# docs/schedule.md's example program, three circuits
PROGRAM = {
    "v": 1,
    "id": "ville-2026-03",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {
        "std": ["dusk", 100, "22:30", 50, "vmid", 30, "dawn-30", 50, "dawn", 0],
        "we": ["dusk", 100, "00:30", 70, "vmid+60", 30, "dawn", 0],
        "full": ["dusk", 100, "dawn", 0],
        "dark": ["dusk", 0],
    },
    "holidays": ["01-01", "easter+1", "05-01", "05-08", "easter+39", "easter+50",
                 "07-14", "08-15", "11-01", "11-11", "12-25"],
    "circuits": {
        "1": {"week": {"1111001": "std", "0000110": "we"}, "holiday": "we",
              "dates": {"07-14": "full", "2026-12-31": "full"}},
        "2": {"week": "std"},
        "3": {"week": "dark", "dates": {"2026-06-21": "full"}},
    },
}  # fmt: skip
NIGHT_START = 1768478400  # 2026-01-15 12:00 UTC: a January night in Paris
LAT, LON = 48.86, 2.35


def _process(trees: dict[str, Path], timeout: float = 300.0) -> Any:
    from tests.mpy.harness import MicroPythonProcess
    from tests.mpy.install import ensure_micropython

    return MicroPythonProcess(ensure_micropython(), trees=trees, timeout=timeout)


def _live(proc: Any) -> int:
    """Live heap bytes: the smallest of READINGS (collect in one job, read in the next)."""
    readings = []
    for _ in range(READINGS):
        proc.run("import gc\ngc.collect()")
        readings.append(int(proc.eval("__import__('gc').mem_alloc()")))
    return min(readings)


def _import_heaps(proc: Any) -> dict[str, int]:
    """Heap taken by each import, each in a fresh interpreter.

    Not one interpreter with ``sys.modules`` emptied between imports: the
    interned names (qstrs) an import creates stay on the heap for good, so a
    later import that shares them would be counted short.
    """
    heaps = {}
    for label, statement in IMPORTS:
        proc.start()  # a fresh interpreter
        before = _live(proc)
        proc.run(statement)
        heaps[label] = _live(proc) - before
    return heaps


def _bundle_lib(ctx: Context) -> tuple[Path, dict[str, int]]:
    """Both roles' bundles built into the scratch folder, their /lib merged.

    Returns the merged folder and the .mpy bytes of each bundle.
    """
    from firmware.tools import build

    out = ctx.scratch_dir / "micropython-firmware"
    merged = out / "lib"
    shutil.rmtree(merged, ignore_errors=True)
    sizes = {}
    for role in ("cabinet", "leak-sensor"):
        result = build.build(role, out / "bundles")
        sizes[role] = result.bundle_bytes
        # the edge modules both roles ship are the same .mpy files
        shutil.copytree(result.folder / "lib", merged, dirs_exist_ok=True)
    return merged, sizes


@benchmark(
    "micropython.heap",
    "heap taken by importing the board apps and edge modules, .mpy bundle vs source "
    "(MicroPython 1.27, WebAssembly port)",
    order=40,
    needs_services=False,
)
def import_heap(ctx: Context) -> list[Result]:
    merged, bundle_bytes = _bundle_lib(ctx)
    ctx.log(f"  bundles built ({', '.join(f'{r} {b:,} B' for r, b in bundle_bytes.items())})")
    with _process({"/lib": merged}) as proc:
        from_mpy = _import_heaps(proc)
    fw = REPO / "firmware"
    source_trees = {
        "/lib": fw / "lib",
        "/lib/cabinet": fw / "cabinet",
        "/lib/leak_sensor": fw / "leak_sensor",
        "/lib/edge": REPO / "edge",
    }
    with _process(source_trees) as proc:
        from_source = _import_heaps(proc)
    results = []
    for label, _statement in IMPORTS:
        mpy, src = from_mpy[label], from_source[label]
        ctx.log(f"  {label}: .mpy {mpy:,} B, source {src:,} B")
        results.append(
            Result(
                f"import {label} (.mpy)",
                mpy,
                "B",
                f"from source {format_value(src)} B ({src / mpy:.1f}x); "
                f"min of {READINGS} readings; ESP32 free heap ~100-150 KB",
            )
        )
    return results


def _cpython_driver() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "bench_micropython_driver"}
    exec(compile(DRIVER, "<micropython_firmware driver>", "exec"), namespace)
    return namespace


@benchmark(
    "micropython.compute",
    "one night's computation: NightFeatures over 10 s at 8 kHz, schedule levels every "
    "minute for 24 h (MicroPython WebAssembly port vs CPython)",
    order=41,
    needs_services=False,
)
def night_compute(ctx: Context) -> list[Result]:
    seconds = ctx.size(10, 2)
    program = json.dumps(PROGRAM)
    runs: dict[str, list[dict[str, Any]]] = {"mpy_nf": [], "cpy_nf": [], "mpy_s": [], "cpy_s": []}
    call_nf = f"print(json.dumps(night_features({seconds})))"
    call_s = f"print(json.dumps(night_levels({program!r}, {NIGHT_START}, {LAT}, {LON})))"
    with _process({"/lib/edge": REPO / "edge"}) as proc:
        for _ in range(ctx.repeats):
            nf = json.loads(proc.run(DRIVER + call_nf).splitlines()[-1])
            levels = json.loads(proc.run(DRIVER + call_s).splitlines()[-1])
            ctx.log(
                f"  MicroPython NightFeatures {(nf['feed_us'] + nf['result_us']) / 1e6:.3f} s, "
                f"schedule night {levels['us'] / 1e3:.1f} ms"
            )
            runs["mpy_nf"].append(nf)
            runs["mpy_s"].append(levels)
    cpy = _cpython_driver()
    for _ in range(ctx.repeats):
        t = time.perf_counter()
        runs["cpy_nf"].append(cpy["night_features"](seconds))
        ctx.log(f"  CPython NightFeatures {time.perf_counter() - t:.3f} s")
        runs["cpy_s"].append(cpy["night_levels"](program, NIGHT_START, LAT, LON))
        ctx.log(f"  CPython schedule night {runs['cpy_s'][-1]['us'] / 1e3:.1f} ms")

    def total_s(r: dict[str, Any]) -> float:
        return float(r["feed_us"] + r["result_us"]) / 1e6

    mpy_nf = summarize([total_s(r) for r in runs["mpy_nf"]])
    cpy_nf = summarize([total_s(r) for r in runs["cpy_nf"]])
    garbage = [g for r in runs["mpy_nf"] for g in r["block_garbage"]]
    garbage_sorted = sorted(garbage)
    result_garbage = max(r["result_garbage"] for r in runs["mpy_nf"])
    mpy_feed = summarize([r["feed_us"] / 1e3 for r in runs["mpy_nf"]])
    mpy_res = summarize([r["result_us"] / 1e3 for r in runs["mpy_nf"]])
    mpy_s = summarize([r["us"] / 1e3 for r in runs["mpy_s"]])
    cpy_s = summarize([r["us"] / 1e3 for r in runs["cpy_s"]])
    first_s = runs["mpy_s"][0]
    per_call = format_value(first_s["garbage"] / first_s["calls"])
    same_l50 = {r["noise_l50_db"] for r in runs["mpy_nf"] + runs["cpy_nf"]}
    audio = f"{seconds} s at 8 kHz"
    ctx.log(f"  noise_l50_db on both interpreters: {sorted(same_l50)}")
    return [
        Result(
            "NightFeatures, MicroPython",
            mpy_nf.median,
            "s",
            summary_note(
                mpy_nf,
                f"{audio}; feed {format_value(mpy_feed.median)} ms + "
                f"result() {format_value(mpy_res.median)} ms; "
                f"{mpy_nf.median / seconds * 100:.1f} % of real time",
            ),
        ),
        Result(
            "NightFeatures, CPython",
            cpy_nf.median,
            "s",
            summary_note(
                cpy_nf, f"{audio}; MicroPython/CPython {mpy_nf.median / cpy_nf.median:.0f}x"
            ),
        ),
        Result(
            "garbage per 1024-sample feed()",
            garbage_sorted[len(garbage_sorted) // 2],
            "B",
            f"median of {len(garbage)} blocks (min {format_value(garbage_sorted[0])}, "
            f"max {format_value(garbage_sorted[-1])}); result() {format_value(result_garbage)} B",
        ),
        Result(
            "schedule night, MicroPython",
            mpy_s.median,
            "ms",
            summary_note(
                mpy_s,
                f"{first_s['calls']:,} level_at calls (3 circuits, every minute for 24 h), "
                f"{first_s['changes']} changes; {per_call} B garbage/call",
            ),
        ),
        Result(
            "schedule night, CPython",
            cpy_s.median,
            "ms",
            summary_note(cpy_s, f"MicroPython/CPython {mpy_s.median / cpy_s.median:.0f}x"),
        ),
    ]
