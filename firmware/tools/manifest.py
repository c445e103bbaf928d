"""The bundle manifest (``manifest.json``) and its signature (``manifest.sig``).

The device checks both with ``edge.ota`` (the same code runs here, so what the
tools accept the board accepts). The manifest is canonical JSON: sorted keys,
one-space indent, ASCII, a final newline, so the same bundle always gives the
same bytes and the same signature::

    {
     "files": [{"path": "boot.py", "sha256": "…", "size": 412}, …],
     "format": "lumeau-bundle/1",
     "micropython": "1.27",
     "mpy_sub_version": 3,
     "mpy_version": 6,
     "role": "cabinet",
     "version": "0.1.0+g0123456789ab"
    }

``source_date_epoch`` is added only when the build ran with
``SOURCE_DATE_EPOCH`` set. Files are sorted by path; paths are relative to
the board's root file system.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge import ota

FORMAT = ota.FORMAT
MANIFEST = ota.MANIFEST
SIGNATURE = ota.SIGNATURE

# MicroPython release -> (.mpy version, sub-version) its loader accepts.
MPY_ABI: dict[str, tuple[int, int]] = {
    "1.23": (6, 3),
    "1.24": (6, 3),
    "1.25": (6, 3),
    "1.26": (6, 3),
    "1.27": (6, 3),
}
TARGET_MICROPYTHON = "1.27"


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def entry_for(path: str, data: bytes) -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest())


def manifest_dict(
    role: str,
    version: str,
    files: list[FileEntry],
    *,
    micropython: str = TARGET_MICROPYTHON,
    source_date_epoch: int | None = None,
) -> dict[str, Any]:
    mpy_version, mpy_sub = MPY_ABI[micropython]
    obj: dict[str, Any] = {
        "format": FORMAT,
        "role": role,
        "version": version,
        "micropython": micropython,
        "mpy_version": mpy_version,
        "mpy_sub_version": mpy_sub,
        "files": [f.as_json() for f in sorted(files, key=lambda f: f.path)],
    }
    if source_date_epoch is not None:
        obj["source_date_epoch"] = source_date_epoch
    return obj


def dump(obj: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a manifest."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


def load(data: bytes) -> dict[str, Any]:
    """Parse and check a manifest exactly as the board does (``edge.ota``)."""
    parsed: dict[str, Any] = ota.parse_manifest(data)
    return parsed


def sign(manifest_bytes: bytes, key: bytes) -> bytes:
    """The ``manifest.sig`` text: ``hmac-sha256:<hex>`` over the manifest's bytes."""
    digest = hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()
    return f"{ota.SIG_PREFIX}{digest}\n".encode()
