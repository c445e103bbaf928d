"""Migration files on disk: naming, variants, checksums (no database)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backend.storage import DEFAULT_DIRECTORY, MigrationError
from backend.storage.migration_files import load_steps


def write(folder: Path, **files: str) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_steps_are_ordered_by_version_with_their_variants(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "0002_rollup.apache.sql": "-- view",
            "0002_rollup.timescale.sql": "-- cagg",
            "0001_base.sql": "-- base",
            "0003_compress.timescale.sql": "-- compress",
            "README.md": "not a migration",
        },
    )
    steps = load_steps(tmp_path)
    assert [step.name for step in steps] == ["0001_base", "0002_rollup", "0003_compress"]
    base, rollup, compress = steps
    assert base.for_edition("apache") is base.files["all"]
    assert base.for_edition("timescale") is base.files["all"]
    assert rollup.for_edition("apache") is rollup.files["apache"]
    assert rollup.for_edition("timescale") is rollup.files["timescale"]
    assert compress.for_edition("apache") is None
    assert compress.reference_file("apache") is compress.files["timescale"]


def test_checksum_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    write(tmp_path, **{"0001_base.sql": "SELECT 1;\n"})
    (step,) = load_steps(tmp_path)
    assert step.files["all"].checksum == hashlib.sha256(b"SELECT 1;\n").hexdigest()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_base.sql": ""}, "badly named"),
        ({"0001-base.sql": ""}, "badly named"),
        ({"0001_base.postgres.sql": ""}, "badly named"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "share version 0001"),
        ({"0001_a.sql": "", "0001_a.apache.sql": ""}, "cannot have"),
    ],
)
def test_inconsistent_folders_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    write(tmp_path, **files)
    with pytest.raises(MigrationError, match=message):
        load_steps(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="not found"):
        load_steps(tmp_path / "nope")


def test_the_packaged_migrations_load() -> None:
    steps = load_steps(DEFAULT_DIRECTORY)
    assert steps[0].name == "0001_devices"
    assert [step.version for step in steps] == sorted({step.version for step in steps})
    # every full-edition-only feature has its file; the Apache fallback exists
    # for the rollup so that queries work on both editions
    rollup = next(step for step in steps if step.name.endswith("reading_hourly"))
    assert set(rollup.files) == {"apache", "timescale"}
