"""Assets with geometry (migration 0013): listing, upsert of a collection, delete. Audited."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from backend.api.db import AsyncConn
from backend.api.queries._where import Where
from backend.api.queries.auth import audit
from backend.assets import kinds as k
from backend.assets.features import ParsedFeature, Problem
from backend.assets.kinds import AssetKind
from backend.assets.references import NodeAt, Stored, Wanted, check_references, wanted

_KIND_ORDER: Final = sql.SQL("array_position(%s::text[], kind)")
_KIND_NAMES: Final = [kind.value for kind in AssetKind]


class AssetProblems(Exception):
    """The request refers to assets that do not exist, or breaks a cross-asset rule."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = list(problems)


class ConcurrentChange(Exception):
    """The database refused the write because another one changed what it checked."""


@dataclass(frozen=True)
class Written:
    inserted: dict[str, int]
    updated: dict[str, int]


# --- reads ------------------------------------------------------------------------------


async def list_assets(
    conn: AsyncConn,
    *,
    kinds: Sequence[AssetKind] | None,
    site: str | None,
    bbox: tuple[float, float, float, float] | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of (kind, row) ordered by kind then id, and how many match in all."""
    where = Where()
    if kinds:
        where.add("kind = ANY(%s)", [kind.value for kind in kinds])
    where.equals("site_id", site)
    if bbox is not None:
        where.add("bbox && box(point(%s, %s), point(%s, %s))", *bbox)
    cur = await conn.execute(
        sql.SQL(
            "SELECT kind, row FROM asset_feature{} ORDER BY {}, asset_id LIMIT %s OFFSET %s"
        ).format(where.sql(), _KIND_ORDER),
        [*where.params, _KIND_NAMES, limit, offset],
    )
    rows = await cur.fetchall()
    cur = await conn.execute(
        sql.SQL("SELECT count(*) AS n FROM asset_feature{}").format(where.sql()), where.params
    )
    total = await cur.fetchone()
    return rows, int(total["n"]) if total else 0


async def get_asset(conn: AsyncConn, kind: AssetKind, key: str) -> dict[str, Any] | None:
    """The stored row of one asset (``to_jsonb`` of its table's row), or None."""
    cur = await conn.execute(
        "SELECT row FROM asset_feature WHERE kind = %s AND asset_id = %s", (kind.value, key)
    )
    found = await cur.fetchone()
    return None if found is None else dict(found["row"])


# --- upsert -------------------------------------------------------------------------------


async def _stored(conn: AsyncConn, want: Wanted) -> Stored:
    """What the database holds about the ids a request refers to."""
    stored = Stored()
    if want.sites:
        cur = await conn.execute(
            "SELECT site_id FROM site WHERE site_id = ANY(%s)", (list(want.sites),)
        )
        stored.sites = {row["site_id"] for row in await cur.fetchall()}
    if want.cabinets:
        cur = await conn.execute(
            "SELECT cabinet_id, site_id FROM cabinet WHERE cabinet_id = ANY(%s)",
            (list(want.cabinets),),
        )
        stored.cabinets = {row["cabinet_id"]: row["site_id"] for row in await cur.fetchall()}
    if want.circuits:
        cabinets, channels = zip(*sorted(want.circuits), strict=True)
        cur = await conn.execute(
            "SELECT cabinet_id, channel FROM circuit WHERE (cabinet_id, channel) IN"
            " (SELECT * FROM unnest(%s::text[], %s::int[]))",
            (list(cabinets), list(channels)),
        )
        stored.circuits = {(row["cabinet_id"], row["channel"]) for row in await cur.fetchall()}
    if want.nodes:
        cur = await conn.execute(
            "SELECT node_id, site_id, lon, lat FROM pipe_node WHERE node_id = ANY(%s)",
            (list(want.nodes),),
        )
        stored.nodes = {
            row["node_id"]: NodeAt(row["site_id"], row["lon"], row["lat"])
            for row in await cur.fetchall()
        }
    if want.pipes:
        cur = await conn.execute(
            "SELECT pipe_id, site_id FROM pipe WHERE pipe_id = ANY(%s)", (list(want.pipes),)
        )
        stored.pipes = {row["pipe_id"]: row["site_id"] for row in await cur.fetchall()}
    if want.devices:
        cur = await conn.execute(
            "SELECT device_id, 'cabinet:' || cabinet_id AS owner FROM cabinet"
            " WHERE device_id = ANY(%s)"
            " UNION ALL SELECT device_id, 'sensor:' || sensor_id FROM acoustic_sensor"
            " WHERE device_id = ANY(%s)",
            (list(want.devices), list(want.devices)),
        )
        stored.device_owners = {row["device_id"]: row["owner"] for row in await cur.fetchall()}
    return stored


def _upsert_statement(table: k.Table) -> sql.Composed:
    """``INSERT … SELECT FROM jsonb_to_recordset(rows) ON CONFLICT (key) DO UPDATE``.

    One statement per kind whatever the number of rows; ``xmax = 0`` tells a
    new row from an updated one.
    """
    names = [sql.Identifier(name) for name in table.column_names]
    record = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sqltype))
        for name, sqltype in table.columns
    )
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
        for name in (*table.column_names, "updated_by")
        if name not in table.key
    )
    return sql.SQL(
        "INSERT INTO {table} ({names}, updated_by)"
        " SELECT {names}, %s FROM jsonb_to_recordset(%s) AS r({record})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()"
        " RETURNING (xmax = 0) AS inserted"
    ).format(
        table=sql.Identifier(table.name),
        names=sql.SQL(", ").join(names),
        record=record,
        key=sql.SQL(", ").join(sql.Identifier(name) for name in table.key),
        updates=updates,
    )


async def upsert_assets(
    conn: AsyncConn,
    features: Sequence[ParsedFeature],
    *,
    actor: str,
    actor_token_id: int | None,
) -> Written:
    """Write every feature, or nothing: one transaction, audited.

    References are checked inside the transaction, against the request and
    the stored assets; ``AssetProblems`` rolls everything back. Rows are
    written kind by kind in ``WRITE_ORDER`` and by id, so concurrent uploads
    lock rows in the same order.
    """
    inserted: Counter[str] = Counter()
    updated: Counter[str] = Counter()
    by_kind: dict[AssetKind, list[ParsedFeature]] = {}
    for f in features:
        by_kind.setdefault(f.kind, []).append(f)
    try:
        async with conn.transaction():
            problems = check_references(features, await _stored(conn, wanted(features)))
            if problems:
                raise AssetProblems(problems)
            for kind in k.WRITE_ORDER:
                batch = sorted(by_kind.get(kind, []), key=lambda f: f.key)
                if not batch:
                    continue
                cur = await conn.execute(
                    _upsert_statement(k.TABLES[kind]),
                    (actor, Jsonb([f.row for f in batch])),
                )
                for row in await cur.fetchall():
                    (inserted if row["inserted"] else updated)[kind.value] += 1
            placed = await _place_devices(conn)
            await audit(
                conn,
                actor=actor,
                actor_token_id=actor_token_id,
                action="asset.upsert",
                target="assets",
                detail={
                    "inserted": dict(inserted),
                    "updated": dict(updated),
                    "ids": sorted(f.feature_id for f in features),
                    "devices_placed": placed,
                },
            )
    except psycopg.errors.IntegrityError as exc:
        # Checked above; only a concurrent write can make the database refuse now.
        raise ConcurrentChange(_constraint(exc)) from None
    return Written(inserted=dict(inserted), updated=dict(updated))


# The asset register is where a device is installed: a cabinet's controller
# and a sensor take their asset's site (alerts, notifications per site and
# the site rollups read device.site). A device not heard from yet gets its row
# now; ingest fills in the rest when it reports.
_PLACE_DEVICES: Final = """
INSERT INTO device AS d (device_id, site)
SELECT device_id, site_id FROM cabinet WHERE device_id IS NOT NULL
UNION ALL
SELECT device_id, site_id FROM acoustic_sensor WHERE device_id IS NOT NULL
ON CONFLICT (device_id) DO UPDATE SET site = EXCLUDED.site
WHERE d.site IS DISTINCT FROM EXCLUDED.site
"""


async def _place_devices(conn: AsyncConn) -> int:
    """Set ``device.site`` from the register; how many devices changed site."""
    cur = await conn.execute(_PLACE_DEVICES)
    return cur.rowcount


def _constraint(exc: psycopg.Error) -> str:
    name = exc.diag.constraint_name or "a constraint"
    return f"{name} refused the write: another request changed these assets meanwhile; retry"


# --- delete -------------------------------------------------------------------------------

# (referencing kind, its id expression, FROM/WHERE with one %s per key column)
_DEPENDENTS: Final[dict[AssetKind, tuple[tuple[str, str, str], ...]]] = {
    AssetKind.SITE: (
        ("cabinet", "cabinet_id", "cabinet WHERE site_id = %s"),
        ("node", "node_id", "pipe_node WHERE site_id = %s"),
        ("pipe", "pipe_id", "pipe WHERE site_id = %s"),
        ("sensor", "sensor_id", "acoustic_sensor WHERE site_id = %s"),
    ),
    AssetKind.CABINET: (
        ("circuit", "cabinet_id || ':' || channel", "circuit WHERE cabinet_id = %s"),
    ),
    AssetKind.CIRCUIT: (
        ("luminaire", "luminaire_id", "luminaire WHERE cabinet_id = %s AND channel = %s"),
    ),
    AssetKind.NODE: (
        ("pipe", "pipe_id", "pipe WHERE from_node = %s OR to_node = %s"),
        ("sensor", "sensor_id", "acoustic_sensor WHERE node_id = %s"),
    ),
    AssetKind.PIPE: (("sensor", "sensor_id", "acoustic_sensor WHERE pipe_id = %s"),),
}


def key_values(kind: AssetKind, key: str) -> tuple[Any, ...]:
    """The key columns' values of an asset id (a circuit's ``cab:3`` is two)."""
    if kind is AssetKind.CIRCUIT:
        cabinet_id, _, channel = key.rpartition(":")
        return cabinet_id, int(channel)
    return (key,)


async def _dependents(conn: AsyncConn, kind: AssetKind, key: str) -> list[str]:
    """Up to 5 assets per kind that refer to this one, as ``kind:id``."""
    found: list[str] = []
    for other, id_sql, where in _DEPENDENTS.get(kind, ()):
        values = key_values(kind, key)
        params = values * where.count("%s") if len(values) == 1 else values
        cur = await conn.execute(
            sql.SQL("SELECT {} AS id FROM {} ORDER BY 1 LIMIT 5").format(
                sql.SQL(id_sql), sql.SQL(where)
            ),
            params,
        )
        found.extend(f"{other}:{row['id']}" for row in await cur.fetchall())
    return found


async def delete_asset(
    conn: AsyncConn, kind: AssetKind, key: str, *, actor: str, actor_token_id: int | None
) -> tuple[Literal["deleted", "unknown", "referenced"], list[str]]:
    """Delete one asset unless others refer to it (then: who, up to 5 per kind). Audited."""
    table = k.TABLES[kind]
    match = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in table.key
    )
    try:
        async with conn.transaction():
            cur = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} RETURNING to_jsonb({}.*) AS row").format(
                    sql.Identifier(table.name), match, sql.Identifier(table.name)
                ),
                key_values(kind, key),
            )
            gone = await cur.fetchone()
            if gone is None:
                return "unknown", []
            row = dict(gone["row"])
            row.pop("geometry", None)  # the audit keeps what identifies it, not the shape
            await audit(
                conn,
                actor=actor,
                actor_token_id=actor_token_id,
                action="asset.delete",
                target=f"{kind.value}:{key}",
                detail=row,
            )
    except psycopg.errors.ForeignKeyViolation:
        return "referenced", await _dependents(conn, kind, key)
    return "deleted", []
