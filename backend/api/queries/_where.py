"""A WHERE clause built from optional filters, with its parameters in order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql


class Where:
    """Collects ``AND``-ed conditions; a filter left as None adds nothing."""

    def __init__(self) -> None:
        self._clauses: list[sql.Composable] = []
        self.params: list[Any] = []

    def add(self, clause: str, *params: Any) -> None:
        """A condition written in SQL with ``%s`` placeholders (trusted text only)."""
        self._clauses.append(sql.SQL(clause))  # column names and SQL from our own literals
        self.params.extend(params)

    def equals(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"{column} = %s", value)

    def between(self, column: str, start: datetime | None, end: datetime | None) -> None:
        """``start <= column < end``, each bound optional."""
        if start is not None:
            self.add(f"{column} >= %s", start)
        if end is not None:
            self.add(f"{column} < %s", end)

    def sql(self) -> sql.Composable:
        if not self._clauses:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(self._clauses)
