"""The board applications of ``firmware/``, imported as they are on a board.

On a board, ``firmware/lib`` and the role's package sit on ``sys.path`` at
the root of the file system; here the two folders are put on ``sys.path``
once and the modules are returned untyped (they carry type comments for
MicroPython, not annotations mypy reads across this boundary).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def load(name: str) -> ModuleType:
    """``load("cabinet.app")``, ``load("mqtt")``, ``load("uplink")``..."""
    for folder in (FIRMWARE / "lib", FIRMWARE):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(name)
