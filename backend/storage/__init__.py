"""The TimescaleDB schema of Lumeau and the runner that applies it.

>>> from backend.storage import migrate, status
>>> migrate("postgresql://lumeau@127.0.0.1/lumeau")  # doctest: +SKIP
['0001_devices', '0002_uplink_hypertables', ...]
"""

from __future__ import annotations

from backend.storage.edition import Edition, timescaledb_edition
from backend.storage.errors import EditionError, MigrationError, StorageError
from backend.storage.migrate import MigrationStatus, Record, migrate, status
from backend.storage.migration_files import DEFAULT_DIRECTORY

__all__ = [
    "DEFAULT_DIRECTORY",
    "Edition",
    "EditionError",
    "MigrationError",
    "MigrationStatus",
    "Record",
    "StorageError",
    "migrate",
    "status",
    "timescaledb_edition",
]
