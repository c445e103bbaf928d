"""Firmware pieces inside the real MicroPython: cabinet faults, the MQTT codec, app imports.

``edge/cabinet_faults.py`` must give the same events and figures on both
interpreters; ``firmware/lib/mqtt_codec.py`` the same packet bytes; both
board applications must import cleanly (no hardware made at import). The
heap used by each import is printed (``-s`` shows it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

from .harness import MicroPythonProcess, difference
from .install import MicroPythonUnavailable, ensure_micropython

pytestmark = pytest.mark.micropython

FW = REPO_ROOT / "firmware"


@pytest.fixture(scope="module")
def mpy() -> Iterator[MicroPythonProcess]:
    import os

    try:
        proc = MicroPythonProcess(
            ensure_micropython(),
            trees={
                "/lib/edge": REPO_ROOT / "edge",
                "/lib": FW / "lib",
                "/lib/cabinet": FW / "cabinet",
                "/lib/leak_sensor": FW / "leak_sensor",
            },
        )
    except MicroPythonUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MicroPython unavailable here: {exc}")
    with proc:
        yield proc


SCENARIO = """
from edge import cabinet_faults as cf
LINEAR = ((0, 0.0), (100, 1.0))
def scenario():
    out = []
    out.append(cf.driver_fraction(50, ((0, 0.0), (10, 0.2), (100, 1.0))))
    out.append(cf.expected_current_a(24, 40.0, 50, 230.0, 0.95, LINEAR))
    out.append(cf.failed_lamps(420.0, 24, 40.0, 50, LINEAR))
    out.append(cf.is_daylight(1768478400, 48.86, 2.35))
    out.append(cf.is_daylight(1768521600, 48.86, 2.35))
    f = cf.CabinetFaults({1: {"lamps": 24, "rated_w": 40.0, "curve": LINEAR}},
                         48.86, 2.35, settle_s=60, lamp_hold_s=300, day_s=600)
    t0 = 1768521600
    for i in range(200):
        p = 480.0 if i < 50 else (420.0 if i < 120 else 480.0)
        s = {"mains_bool": 0 if 60 <= i < 63 else 1, "door_bool": 1 if 80 <= i < 90 else 0,
             "circuits": {1: {"level_pct": 50, "power_w": p, "voltage_v": 230.0}}}
        for ev in f.update(t0 + i * 10, s):
            out.append([i, ev])
    for i in range(100):
        s = {"circuits": {1: {"level_pct": 100, "power_w": 960.0}}}
        for ev in f.update(1768478400 + i * 60, s):
            out.append([i, ev])
    out.append(f.energy_wh()[1])
    return out
"""

CODEC = """
import mqtt_codec as c
def packets():
    d = c.Decoder(64)
    return [
        c.encode_connect("cab-0042", 60, False, "cab-0042", "pw\\u00e9",
                         ("lumeau/v1/dev/cab-0042/up/status", b'{"seq":0}', 1, True)),
        c.encode_connect("a", 0, True),
        c.encode_publish("lumeau/v1/dev/cab-0042/up/telemetry", b"x" * 200, 1, False, 513),
        c.encode_publish("t", b"", 0, True),
        c.encode_subscribe(7, [("lumeau/v1/dev/cab-0042/down/cmd", 1)]),
        c.encode_puback(65535),
        c.encode_length(268435455),
        d.feed(b"\\x20\\x02\\x01\\x00\\x32\\x09\\x00\\x03a/b\\x00\\x05hi\\x90"),
        d.feed(b"\\x03\\x00\\x07\\x01\\xd0\\x00"),
        c.parse_publish(2, b"\\x00\\x03a/b\\x00\\x05hi"),
        c.parse_connack(b"\\x01\\x00"),
    ]
"""


def _cpython(source: str, func: str) -> Any:
    sys.path.insert(0, str(FW / "lib"))
    try:
        ns: dict[str, Any] = {}
        exec(source, ns)
        return ns[func]()
    finally:
        sys.path.remove(str(FW / "lib"))


def _micropython(mpy: MicroPythonProcess, source: str, name: str) -> None:
    mpy.run(f"f = open('/lib/{name}.py', 'w')\nf.write({source!r})\nf.close()\n")


def test_cabinet_faults_same_on_both(mpy: MicroPythonProcess) -> None:
    _micropython(mpy, SCENARIO, "_fw_faults_scenario")
    got = mpy.call("_fw_faults_scenario", "scenario")
    want = _cpython(SCENARIO, "scenario")
    from .harness import roundtrip

    assert difference(got, roundtrip(want)) is None, difference(got, roundtrip(want))
    events = [(e[0], e[1]["code"], e[1]["active"]) for e in want if isinstance(e, list)]
    # hand-checked: mains out at samples 60-62 (5 s debounce), door open 80-89
    # (2 s), lamps out 50-119 (level settled long before; 300 s hold = sample
    # 80, clear 300 s after 120 = 150), lit at noon (600 s hold = minute 10);
    # samples are 10 s apart, so a debounce fires on the next sample
    assert events == [
        (61, "mains_loss", True), (64, "mains_loss", False), (80, "lamp_failure", True),
        (81, "door_open", True), (91, "door_open", False), (150, "lamp_failure", False),
        (10, "day_burning", True),
    ]  # fmt: skip


def test_mqtt_codec_same_bytes_on_both(mpy: MicroPythonProcess) -> None:
    _micropython(mpy, CODEC, "_fw_codec_scenario")
    got = mpy.call("_fw_codec_scenario", "packets")
    want = _cpython(CODEC, "packets")
    from .harness import roundtrip

    assert difference(got, roundtrip(want)) is None, difference(got, roundtrip(want))
    err = mpy.outcome("mqtt_codec", "parse_publish", 6, b"\x00\x01a")
    assert not err.ok and err.error is not None and err.error.type == "MQTTProtocolError"


@pytest.mark.parametrize(
    "module", ["mqtt", "uplink", "cabinet.app", "cabinet.board", "leak_sensor.app",
               "leak_sensor.board"],
)  # fmt: skip
def test_firmware_modules_import_cleanly(mpy: MicroPythonProcess, module: str) -> None:
    out = mpy.run(
        "import gc, sys\n"
        "for m in list(sys.modules):\n"
        "    if m not in ('_lumeau_agent', '_lumeau_wire'): del sys.modules[m]\n"
        "gc.collect(); before = gc.mem_alloc()\n"
        f"import {module}\n"
        "gc.collect(); print(gc.mem_alloc() - before, 'machine' in sys.modules)\n"
    )
    used, machine = out.split()
    print(f"\nMicroPython heap after importing {module}: {int(used)} bytes")
    assert machine == "False"
    # source compiled on the device; frozen bytecode (mpy-cross into the
    # firmware image) keeps the code in flash instead
    assert int(used) < 200_000
