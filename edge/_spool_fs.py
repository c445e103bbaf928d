"""The file system as ``edge.spool`` sees it: seven calls, one default implementation.

Part of ``edge.spool`` (import from there). ``PosixFs`` goes through the
``os`` module of whichever interpreter runs it: MicroPython's VFS (LittleFS
or FAT on the boards, the WebAssembly port's in-memory file system in the
tests) or CPython's. Tests pass their own object with the same methods to
inject faults (a power cut in the middle of a write, a full disk).

Durability: MicroPython's ``flush`` commits a file on LittleFS and FAT
(``lfs_file_sync`` / ``f_sync``) and it has no ``os.fsync``; CPython needs
``os.fsync`` on the file, and on the folder after a create, rename or remove.
"""

import os

_FSYNC = hasattr(os, "fsync")
_REPLACE = getattr(os, "replace", os.rename)  # CPython on Windows: rename fails on a file


class PosixFs:
    """Paths are strings joined with "/"; nothing is created until a call asks."""

    def listdir(self, path):
        # type: (str) -> list[str]
        return os.listdir(path)

    def mkdir(self, path):
        # type: (str) -> None
        """Create the folder unless it exists (its parent must exist)."""
        try:
            os.listdir(path)
            return
        except OSError:
            pass
        os.mkdir(path)

    def open(self, path, mode):
        # type: (str, str) -> object
        return open(path, mode)

    def size(self, path):
        # type: (str) -> int
        return os.stat(path)[6]

    def remove(self, path):
        # type: (str) -> None
        os.remove(path)

    def rename(self, src, dst):
        # type: (str, str) -> None
        """Move src over dst (dst replaced if it exists)."""
        _REPLACE(src, dst)

    def sync(self, f):
        # type: (object) -> None
        """Make what was written to the open file ``f`` durable."""
        f.flush()  # type: ignore[attr-defined]
        if _FSYNC:
            os.fsync(f.fileno())  # type: ignore[attr-defined]

    def sync_dir(self, path):
        # type: (str) -> None
        """Make the folder's entries (creations, renames, removals) durable."""
        if not _FSYNC:
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except (AttributeError, OSError):  # no os.open, or folders cannot be opened
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
