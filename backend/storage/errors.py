"""Errors raised by the storage package.

::

    StorageError                  anything storage refuses to do
    ├── MigrationError            the migration files or their record are inconsistent
    └── EditionError              TimescaleDB is missing or of an unknown edition
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of the storage errors."""


class MigrationError(StorageError):
    """Migration files and the ``schema_migrations`` record disagree."""


class EditionError(StorageError):
    """TimescaleDB is not loaded, or reports a license this code does not know."""
