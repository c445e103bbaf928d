"""The migration files on disk: names, edition variants, checksums, plan.

A step is ``NNNN_name`` and has one or more files:

- ``NNNN_name.sql``: runs on every edition;
- ``NNNN_name.timescale.sql``: runs only with the full ("timescale"
  license) edition of TimescaleDB;
- ``NNNN_name.apache.sql``: runs only with the Apache-only edition, as the
  fallback of a ``.timescale.sql`` step with the same name.

A step with only a ``.timescale.sql`` file is *skipped* on the Apache
edition: the runner records the skip, so ``status`` can say what the
database lacks. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from backend.storage.edition import Edition
from backend.storage.errors import MigrationError

Variant = Literal["all", "apache", "timescale"]

DEFAULT_DIRECTORY: Final = Path(__file__).resolve().parent / "migrations"

_FILE_NAME: Final = re.compile(
    r"^(?P<name>(?P<version>\d{4})_[a-z0-9_]+)(?:\.(?P<variant>apache|timescale))?\.sql$"
)


@dataclass(frozen=True)
class MigrationFile:
    """One SQL file of a step."""

    version: int
    name: str
    variant: Variant
    path: Path
    sql: bytes

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's bytes, hex: what ``schema_migrations`` keeps."""
        return hashlib.sha256(self.sql).hexdigest()


@dataclass(frozen=True)
class Step:
    """A numbered step and its files, keyed by variant."""

    version: int
    name: str
    files: dict[Variant, MigrationFile]

    def for_edition(self, edition: Edition) -> MigrationFile | None:
        """The file to run with ``edition``, or None when the step is skipped."""
        if "all" in self.files:
            return self.files["all"]
        return self.files.get(edition)

    def reference_file(self, edition: Edition) -> MigrationFile:
        """The file whose checksum is recorded, even for a skipped step."""
        chosen = self.for_edition(edition)
        if chosen is not None:
            return chosen
        return next(iter(self.files.values()))


def load_steps(directory: Path = DEFAULT_DIRECTORY) -> list[Step]:
    """Read every ``*.sql`` file of ``directory`` into steps ordered by version.

    Raises
    ------
    MigrationError
        On a ``.sql`` file whose name does not follow the pattern (a typo
        would otherwise be skipped silently), on two names sharing a version
        number, and on an ``all`` file mixed with edition variants.
    """
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    grouped: dict[str, dict[Variant, MigrationFile]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"badly named migration {path.name}: expected NNNN_name[.apache|.timescale].sql"
            )
        variant: Variant = match["variant"] or "all"  # type: ignore[assignment]
        migration = MigrationFile(
            version=int(match["version"]),
            name=match["name"],
            variant=variant,
            path=path,
            sql=path.read_bytes(),
        )
        grouped.setdefault(migration.name, {})[variant] = migration
    return _order(grouped)


def _order(grouped: dict[str, dict[Variant, MigrationFile]]) -> list[Step]:
    steps: list[Step] = []
    seen_versions: dict[int, str] = {}
    for name, files in grouped.items():
        version = next(iter(files.values())).version
        if version in seen_versions:
            raise MigrationError(
                f"two migrations share version {version:04d}: {seen_versions[version]} and {name}"
            )
        seen_versions[version] = name
        if "all" in files and len(files) > 1:
            raise MigrationError(
                f"{name}: a plain .sql file cannot have .apache/.timescale variants too"
            )
        steps.append(Step(version=version, name=name, files=files))
    steps.sort(key=lambda step: step.version)
    return steps
