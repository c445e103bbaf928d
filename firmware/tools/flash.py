"""Copy a bundle (and a device configuration) to a board with mpremote, then verify it.

    flash("/dev/ttyUSB0", Path(".run/firmware/cabinet"), config_dir=Path(".run/devices/cab-1"))

Steps, each with its own ``FlashError`` code:

1. the bundle folder matches its manifest (``edge.ota.verify_bundle``)  -> ``bad_bundle``
2. the port exists (``a0``/``u0``/``c0`` shortcuts as in mpremote)      -> ``no_such_port``
3. it opens and a MicroPython REPL answers (``mpremote exec``)        -> ``cannot_open``,
   ``not_micropython``, ``timeout``
4. its version and .mpy ABI are the manifest's                        -> ``wrong_micropython``
5. copy: files of the previous bundle (``/ota/current.json``) and the
   update state are removed, then every file is copied (``fs cp``)     -> ``copy_failed``
6. verify: the board hashes every file it was given; the report must
   match the manifest and the configuration                           -> ``verify_failed``

On the board: the bundle at ``/`` (``boot.py``, ``main.py``, ``lib/``), the
configuration at ``/config.json`` (+ ``/ca.pem``), the manifest at
``/ota/current.json`` (the running bundle, for ``edge.ota``).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import ota

from . import manifest as mf
from .provision import CA_FILE, CONFIG

MPREMOTE_TIMEOUT = 120.0
_PROBE = (
    "import sys\n"
    "print('LUMEAU-PROBE', sys.implementation.name,"
    " '.'.join(str(x) for x in sys.implementation.version[:3]),"
    " getattr(sys.implementation, '_mpy', -1))\n"
)


class FlashError(Exception):
    """A flash step failed: ``code`` says which (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BoardInfo:
    name: str
    version: str  # "1.27.0"
    mpy: int  # sys.implementation._mpy, -1 when absent

    @property
    def mpy_version(self) -> int:
        return self.mpy & 0xFF if self.mpy >= 0 else -1


@dataclass(frozen=True)
class Upload:
    local: Path
    remote: str  # path on the board, relative to "/"
    entry: mf.FileEntry


# --- ports ---------------------------------------------------------------------------


def list_ports() -> list[str]:
    """Serial devices present (what ``mpremote connect list`` shows)."""
    try:
        module: Any = importlib.import_module("serial.tools.list_ports")
    except ImportError:
        return []
    return sorted(str(p.device) for p in module.comports())


def resolve_port(port: str) -> str:
    """mpremote's shortcuts (``a0`` -> /dev/ttyACM0, ``u1``, ``c3``); URLs pass through."""
    match = re.fullmatch(r"([auc])(\d+)", port)
    if match:
        prefix = {"a": "/dev/ttyACM", "u": "/dev/ttyUSB", "c": "COM"}[match.group(1)]
        return prefix + match.group(2)
    return port


def check_port(port: str) -> str:
    """The resolved port, or ``no_such_port`` listing the boards that are there."""
    resolved = resolve_port(port)
    if "://" in resolved or resolved.upper().startswith("COM"):
        return resolved
    if not Path(resolved).exists():
        found = list_ports()
        hint = ", ".join(found) if found else "no serial port found: is the board plugged in?"
        raise FlashError("no_such_port", f"port {resolved} does not exist ({hint})")
    return resolved


# --- mpremote ------------------------------------------------------------------------


def mpremote(port: str, *args: str, timeout: float = MPREMOTE_TIMEOUT) -> str:
    """Run ``mpremote connect PORT ARGS...``; stdout, or a ``FlashError`` with a code."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FlashError("timeout", f"no answer from {port} within {timeout:.0f} s") from None
    if proc.returncode == 0:
        return proc.stdout
    text = (proc.stdout + "\n" + proc.stderr).strip()
    lower = text.lower()
    if "no module named mpremote" in lower:
        raise FlashError("no_mpremote", "mpremote is not installed (the 'firmware' extra)")
    if "could not enter raw repl" in lower or "raw repl" in lower:
        raise FlashError("not_micropython", f"{port} is not a MicroPython REPL: {_last(text)}")
    if "failed to access" in lower or "no device found" in lower:
        # mpremote says this for every open failure, adding "may be in use"
        raise FlashError(
            "cannot_open",
            f"cannot open {port} as a serial port (not a serial device, unplugged, "
            f"or used by another program such as a serial console): {_last(text)}",
        )
    raise FlashError("copy_failed", f"mpremote {' '.join(args[:2])} on {port}: {_last(text)}")


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def parse_probe(text: str) -> BoardInfo:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "LUMEAU-PROBE":
            try:
                return BoardInfo(parts[1], parts[2], int(parts[3]))
            except ValueError:
                break
    raise FlashError("not_micropython", f"the board's answer is not understood: {text!r}")


def check_board(info: BoardInfo, manifest: dict[str, Any]) -> None:
    """``wrong_micropython`` unless the board runs the manifest's release and .mpy ABI."""
    if info.name != "micropython":
        raise FlashError("wrong_micropython", f"the board runs {info.name}, not MicroPython")
    release = ".".join(info.version.split(".")[:2])
    if release != manifest["micropython"]:
        raise FlashError(
            "wrong_micropython",
            f"the board runs MicroPython {info.version}, the bundle is for "
            f"{manifest['micropython']} (flash that MicroPython firmware first)",
        )
    if info.mpy_version != manifest["mpy_version"]:
        raise FlashError(
            "wrong_micropython",
            f"the board loads .mpy v{info.mpy_version}, the bundle is v{manifest['mpy_version']}",
        )


# --- what to copy, and the verification ----------------------------------------------


def uploads(bundle_dir: Path, config_dir: Path | None = None) -> list[Upload]:
    """Every file to copy with its expected entry; the manifest goes to ota/current.json."""
    data = (bundle_dir / mf.MANIFEST).read_bytes()
    manifest = mf.load(data)
    out = [
        Upload(bundle_dir / f["path"], f["path"], mf.FileEntry(f["path"], f["size"], f["sha256"]))
        for f in manifest["files"]
    ]
    out.append(Upload(bundle_dir / mf.MANIFEST, "ota/current.json", mf.entry_for("", data)))
    if config_dir is not None:
        for name in (CONFIG, CA_FILE):
            path = config_dir / name
            if path.is_file():
                out.append(Upload(path, name, mf.entry_for(name, path.read_bytes())))
    return [
        Upload(u.local, u.remote, mf.FileEntry(u.remote, u.entry.size, u.entry.sha256)) for u in out
    ]


def prepare_script(root: str = "/") -> str:
    """Board script: remove the previous bundle's files and the update state."""
    return (
        "import os, json\n"
        f"R = {root!r}\n"
        "def rm(p):\n"
        "    try:\n"
        "        if os.stat(p)[0] & 0x4000:\n"
        "            for n in os.listdir(p):\n"
        "                rm(p + '/' + n)\n"
        "            os.rmdir(p)\n"
        "        else:\n"
        "            os.remove(p)\n"
        "    except OSError:\n"
        "        pass\n"
        "try:\n"
        "    with open(R + 'ota/current.json') as f:\n"
        "        for e in json.load(f)['files']:\n"
        "            rm(R + e['path'])\n"
        "except (OSError, ValueError, KeyError, TypeError):\n"
        "    pass\n"
        "for p in ('ota/state.json', 'ota/previous.json', 'ota/staging', 'ota/previous'):\n"
        "    rm(R + p)\n"
    )


def mkdir_script(paths: Iterable[str], root: str = "/") -> str:
    folders: set[str] = {root.rstrip("/")} if root != "/" else set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add(root + "/".join(parts[:i]))
    return (
        "import os\n"
        f"for d in {sorted(folders)!r}:\n"
        "    try:\n"
        "        os.mkdir(d)\n"
        "    except OSError:\n"
        "        pass\n"
    )


def hash_script(paths: Iterable[str], root: str = "/") -> str:
    """Board script printing ``LUMEAU-HASH <path> <size> <sha256>`` (or ``- -`` if absent)."""
    return (
        "import hashlib, binascii, os\n"
        f"R = {root!r}\n"
        f"for p in {sorted(paths)!r}:\n"
        "    try:\n"
        "        h = hashlib.sha256()\n"
        "        n = 0\n"
        "        with open(R + p, 'rb') as f:\n"
        "            while True:\n"
        "                b = f.read(1024)\n"
        "                if not b:\n"
        "                    break\n"
        "                n += len(b)\n"
        "                h.update(b)\n"
        "        print('LUMEAU-HASH', p, n, binascii.hexlify(h.digest()).decode())\n"
        "    except OSError:\n"
        "        print('LUMEAU-HASH', p, '-', '-')\n"
    )


def parse_hash_report(text: str) -> dict[str, tuple[int, str]]:
    """{path: (size, sha256)} of the files the board reported present."""
    out: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "LUMEAU-HASH" and parts[2] != "-":
            out[parts[1]] = (int(parts[2]), parts[3])
    return out


def verify_report(expected: Iterable[mf.FileEntry], report: dict[str, tuple[int, str]]) -> None:
    """Pure: ``verify_failed`` naming the first file missing, of the wrong size or hash.

    Files the board has beyond ``expected`` are not looked at (logs, spool).
    """
    entries = [e.as_json() for e in sorted(expected, key=lambda e: e.path)]
    wanted = {e["path"] for e in entries}
    listing = {path: report[path] for path in report if path in wanted}
    try:
        ota.check_files(entries, listing)
    except ota.OtaError as exc:
        raise FlashError("verify_failed", f"on the board, {exc.path}: {exc.reason}") from None


# --- the whole thing ---------------------------------------------------------------------


def flash(
    port: str,
    bundle_dir: Path,
    config_dir: Path | None = None,
    *,
    role: str | None = None,
    runner: Any = None,
    board_root: str = "/",
) -> list[Upload]:
    """Check, copy, verify; returns what was copied.

    ``runner(port, *mpremote_args) -> stdout`` replaces :func:`mpremote` (tests
    drive a MicroPython stand-in with it); ``board_root`` is where the bundle
    goes on the board (``/`` except in tests).
    """
    if not board_root.startswith("/") or not board_root.endswith("/"):
        raise ValueError(f"board_root must start and end with '/': {board_root!r}")
    run = runner or mpremote
    try:
        manifest = ota.verify_bundle(str(bundle_dir), role=role)
    except ota.OtaError as exc:
        code = "wrong_role" if exc.code == "wrong_role" else "bad_bundle"
        raise FlashError(code, f"{bundle_dir}: {exc.path}: {exc.reason}") from None
    if config_dir is not None and not (config_dir / CONFIG).is_file():
        raise FlashError(
            "bad_config", f"no {CONFIG} in {config_dir}: run lumeau firmware provision"
        )
    resolved = check_port(port) if runner is None else port
    check_board(parse_probe(run(resolved, "exec", _PROBE)), manifest)

    files = uploads(bundle_dir, config_dir)
    run(resolved, "exec", prepare_script(board_root))
    run(resolved, "exec", mkdir_script((u.remote for u in files), board_root))
    args: list[str] = []
    for upload in files:
        if args:
            args.append("+")
        args += ["fs", "cp", str(upload.local), ":" + board_root + upload.remote]
    run(resolved, *args)
    report = parse_hash_report(
        run(resolved, "exec", hash_script((u.remote for u in files), board_root))
    )
    verify_report((u.entry for u in files), report)
    return files
