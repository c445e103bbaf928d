"""Throwaway databases on a running server, for tests and benchmarks.

Each gets TimescaleDB created by the administrator (the application role may
not create extensions) and is owned by the application role, like the
development stack's own database, so migrations run exactly as in real use.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query string kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_of(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def new_name(prefix: str = "scratch") -> str:
    """A database name nobody else uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_database(
    admin_url: str, app_url: str, prefix: str = "scratch", *, name: str | None = None
) -> str:
    """Create an empty database for the role of ``app_url``; return its URL.

    ``name`` (default: a new one from ``prefix``) lets a caller hand out the
    URL before the database exists, e.g. to test a service that starts first.
    """
    name = name or new_name(prefix)
    if not _NAME.match(name):
        raise ValueError(f"bad database name {name!r}")
    owner = unquote(urlsplit(app_url).username or "")
    if not owner:
        raise ValueError("app_url names no user")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
    with psycopg.connect(with_database(admin_url, name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return with_database(app_url, name)


def drop_database(admin_url: str, url_or_name: str) -> None:
    """Drop a database made by ``create_database``, closing its sessions."""
    name = database_of(url_or_name) if "://" in url_or_name else url_or_name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def scratch_database(admin_url: str, app_url: str, prefix: str = "scratch") -> Iterator[str]:
    """A fresh database for the duration of the ``with`` block."""
    url = create_database(admin_url, app_url, prefix)
    try:
        yield url
    finally:
        drop_database(admin_url, url)
