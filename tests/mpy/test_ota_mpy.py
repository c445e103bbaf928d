"""``edge/ota.py`` gives the same verdicts under MicroPython as under CPython.

Each tampered bundle of ``tests/unit/test_firmware_tools.py`` is written into
MicroPython's in-memory file system and into a CPython folder, and verified
on both; the update state machine runs there on a board-like tree; and
``firmware.tools.flash`` copies and verifies a real build against this
interpreter standing in for a board (everything but the serial link).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firmware.tools import build as b
from firmware.tools import flash as fl
from firmware.tools import manifest as mf
from tests.unit.test_firmware_tools import (
    KEY,
    RFC4231,
    _second_bundle,
    bundle_files,
    tamper_cases,
    write_tree,
)

from .harness import MicroPythonProcess, cpython_outcome, outcome_difference

pytestmark = pytest.mark.micropython


def write_mpy(mpy: MicroPythonProcess, root: str, files: dict[str, bytes]) -> None:
    """Replace the folder ``root`` of MicroPython's file system by ``files``."""
    lines = [
        "import os",
        "def rm(p):",
        "    try:",
        "        if os.stat(p)[0] & 0x4000:",
        "            for n in os.listdir(p):",
        "                rm(p + '/' + n)",
        "            os.rmdir(p)",
        "        else:",
        "            os.remove(p)",
        "    except OSError:",
        "        pass",
        "def mk(p):",
        "    cur = ''",
        "    for part in p.strip('/').split('/'):",
        "        cur += '/' + part",
        "        try:",
        "            os.mkdir(cur)",
        "        except OSError:",
        "            pass",
        f"rm({root!r})",
        f"mk({root!r})",
    ]
    for path, data in sorted(files.items()):
        full = f"{root}/{path}"
        lines.append(f"mk({full.rsplit('/', 1)[0]!r})")
        lines.append(f"f = open({full!r}, 'wb')\nf.write({data!r})\nf.close()")
    mpy.run("\n".join(lines))


def read_mpy(mpy: MicroPythonProcess, root: str) -> dict[str, bytes]:
    code = (
        "import os\n"
        "out = {}\n"
        "def walk(rel):\n"
        f"    for n in os.listdir({root!r} + rel):\n"
        "        p = rel + '/' + n\n"
        f"        if os.stat({root!r} + p)[0] & 0x4000:\n"
        "            walk(p)\n"
        "        else:\n"
        f"            with open({root!r} + p, 'rb') as f:\n"
        "                out[p[1:]] = f.read()\n"
        "walk('')\n"
        "print(repr(sorted(out.items())))\n"
    )
    import ast

    return dict(ast.literal_eval(mpy.run(code)))


@pytest.mark.parametrize("case", tamper_cases(), ids=lambda c: c[0])
def test_verdicts_are_identical(
    micropython: MicroPythonProcess,
    case: tuple[str, dict[str, bytes], dict[str, Any], tuple[str, str | None]],
    tmp_path: Path,
) -> None:
    name, files, kwargs, expected = case
    root = "/ota-case/" + name
    write_mpy(micropython, root, files)
    write_tree(tmp_path, files)
    in_mpy = micropython.outcome("edge.ota", "verify_bundle", root, **kwargs)
    in_cpy = cpython_outcome("edge.ota", "verify_bundle", str(tmp_path), **kwargs)
    diff = outcome_difference(in_mpy, in_cpy, only=("code", "path", "reason"))
    assert diff is None, f"{name}: {diff}"
    if expected[0] == "ok":
        assert in_mpy.ok, in_mpy.describe()
    else:
        assert in_mpy.error is not None
        assert (in_mpy.error.code, in_mpy.error.path) == expected


def test_hmac_rfc4231_in_micropython(micropython: MicroPythonProcess) -> None:
    for key, msg, expected in RFC4231:
        assert micropython.call("edge.ota", "hmac_sha256", key, msg).hex() == expected
    data = bundle_files()[mf.MANIFEST]
    assert micropython.call("edge.ota", "sign", data, KEY) == mf.sign(data, KEY)


def test_decide_is_identical(micropython: MicroPythonProcess) -> None:
    pending = {"state": "pending", "attempts": 0, "version": "2"}
    micropython.assert_same_many(
        "edge.ota",
        "decide",
        [
            (None, 2),
            ({"state": "confirmed", "attempts": 0}, 2),
            (pending, 2),
            ({**pending, "attempts": 2}, 2),
            ({**pending, "attempts": True}, 1),
            ({"state": "swapping"}, 2),
            ({"state": "rolling_back"}, 2),
        ],
    )
    assert micropython.call("edge.ota", "board_mpy_version") == 6


def test_update_and_rollback_on_micropython(micropython: MicroPythonProcess) -> None:
    old = bundle_files()
    board = {k: v for k, v in old.items() if k != mf.MANIFEST}
    board["ota/current.json"] = old[mf.MANIFEST]
    for path, data in _second_bundle().items():
        board["ota/staging/" + path] = data
    write_mpy(micropython, "/board-ota", board)
    out = micropython.run(
        "from edge import ota\n"
        "u = ota.Updater('/board-ota', '/board-ota/ota', 2)\n"
        f"m = u.apply_staged({KEY!r}, 'cabinet')\n"
        "print(m['version'], u.state()['state'])\n"
        "print(open('/board-ota/main.py').read().strip())\n"
        "print(','.join(u.boot_step() for _ in range(3)))\n"
        "s = u.state()\n"
        "print(s['state'], s['rolled_back'])\n"
    )
    assert out.split("\n")[:4] == [
        "2.0.0 pending",
        "import app2",
        "run,run,rollback",
        "confirmed 2.0.0",
    ]
    after = read_mpy(micropython, "/board-ota")
    assert {k: v for k, v in after.items() if not k.startswith("ota/")} == {
        k: v for k, v in old.items() if k != mf.MANIFEST
    }


def test_flash_copies_and_verifies_on_micropython(
    micropython: MicroPythonProcess, tmp_path: Path
) -> None:
    """The whole flash path with this interpreter as the board (no serial link)."""
    bundle = b.build("leak-sensor", tmp_path / "build").folder
    config = tmp_path / "dev"
    config.mkdir()
    (config / "config.json").write_text('{"format": "lumeau-device/1"}\n')
    calls: list[str] = []

    def board(port: str, *args: str) -> str:
        calls.append(args[0] if args[0] == "exec" else "fs")
        if args[0] == "exec":
            return micropython.run(args[1])
        assert port == "stand-in"
        files: dict[str, bytes] = {}
        for i in range(0, len(args), 5):  # fs cp LOCAL :REMOTE [+]
            assert args[i : i + 2] == ("fs", "cp")
            files[args[i + 3][len(":/flash/") :]] = Path(args[i + 2]).read_bytes()
        write_mpy(micropython, "/flash-tmp", files)  # then moved under /flash/
        micropython.run(
            "import os\n"
            "def mv(src, dst):\n"
            "    if os.stat(src)[0] & 0x4000:\n"
            "        try:\n"
            "            os.mkdir(dst)\n"
            "        except OSError:\n"
            "            pass\n"
            "        for n in os.listdir(src):\n"
            "            mv(src + '/' + n, dst + '/' + n)\n"
            "    else:\n"
            "        try:\n"
            "            os.remove(dst)\n"
            "        except OSError:\n"
            "            pass\n"
            "        os.rename(src, dst)\n"
            "mv('/flash-tmp', '/flash')\n"
        )
        return ""

    copied = fl.flash("stand-in", bundle, config, role="leak-sensor", runner=board,
                      board_root="/flash/")  # fmt: skip
    assert calls == ["exec", "exec", "exec", "fs", "exec"]
    assert {u.remote for u in copied} >= {"main.py", "lib/edge/acoustic.mpy", "config.json"}
    on_board = read_mpy(micropython, "/flash")
    assert on_board["ota/current.json"] == (bundle / "manifest.json").read_bytes()
    # a byte changed on the board after the copy is caught by the verification
    micropython.run("f = open('/flash/lib/edge/ota.mpy', 'r+b')\nf.write(b'X')\nf.close()")
    report = fl.parse_hash_report(micropython.run(fl.hash_script([u.remote for u in copied],
                                                                  "/flash/")))  # fmt: skip
    with pytest.raises(fl.FlashError, match=r"lib/edge/ota\.mpy: SHA-256 differs") as err:
        fl.verify_report((u.entry for u in copied), report)
    assert err.value.code == "verify_failed"


def test_flash_refuses_a_board_with_another_micropython(
    micropython: MicroPythonProcess, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    files = bundle_files()
    obj = mf.load(files[mf.MANIFEST])
    obj["micropython"] = "1.26"
    files[mf.MANIFEST] = mf.dump(obj)
    write_tree(bundle, files)
    with pytest.raises(fl.FlashError, match=r"runs MicroPython 1\.27\.0") as err:
        fl.flash("stand-in", bundle, runner=lambda port, *a: micropython.run(a[1]))
    assert err.value.code == "wrong_micropython"
