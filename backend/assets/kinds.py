"""The asset kinds, their tables and columns (migration ``0013_assets.sql``), as data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class AssetKind(StrEnum):
    """An asset kind: the ``kind`` property of a feature, the first part of its id."""

    SITE = "site"
    CABINET = "cabinet"
    CIRCUIT = "circuit"
    LUMINAIRE = "luminaire"
    NODE = "node"
    PIPE = "pipe"
    SENSOR = "sensor"


# Lamp technologies: the dimming model and the energy baseline depend on them.
TECHNOLOGIES: Final = ("led", "hps", "lps", "mh", "cmh", "fluorescent", "cfl", "mercury", "other")

# Pipe materials: the acoustic wave speed used to locate a leak depends on them
# (metal pipes carry sound far; PE and PVC damp it within a few hundred metres).
MATERIALS: Final = (
    "pe",
    "hdpe",
    "pvc",
    "ductile_iron",
    "cast_iron",
    "steel",
    "asbestos_cement",
    "concrete",
    "copper",
    "lead",
    "other",
)

NODE_TYPES: Final = ("junction", "reservoir", "tank", "valve", "hydrant")

ASSET_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEVICE_ID_PATTERN: Final = r"^[a-z0-9._-]{1,64}$"  # the CHECK of device.device_id

MAX_CHANNEL: Final = 255
MAX_RATED_POWER_W: Final = 5_000.0
MAX_DIAMETER_MM: Final = 5_000.0
MAX_LENGTH_M: Final = 100_000.0
ELEVATION_RANGE_M: Final = (-500.0, 9_000.0)
INSTALL_YEARS: Final = (1800, 2100)
MAX_TEXT: Final = 200

# A declared pipe length may differ from the great circle of its geometry by
# this much (surveyed along the trench vs a drawn line, projected-plane lengths
# from a GIS: Lambert-93's scale error alone reaches 0.3 %).
LENGTH_TOLERANCE_RATIO: Final = 0.05
LENGTH_TOLERANCE_M: Final = 2.0
# A pipe's geometry must start at its from_node and end at its to_node, within:
ENDPOINT_TOLERANCE_M: Final = 10.0


@dataclass(frozen=True)
class Table:
    """Where a kind is stored: table, key columns, columns with their SQL types.

    The columns are exactly the keys of the rows ``features`` produces, in
    table order; ``updated_at`` and ``updated_by`` are set by the writer.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


_BBOX: Final = (
    ("min_lon", "float8"),
    ("min_lat", "float8"),
    ("max_lon", "float8"),
    ("max_lat", "float8"),
)
_POINT: Final = (("lon", "float8"), ("lat", "float8"), ("geometry", "jsonb"))

TABLES: Final[dict[AssetKind, Table]] = {
    AssetKind.SITE: Table(
        "site",
        ("site_id",),
        (
            ("site_id", "text"),
            ("name", "text"),
            ("timezone", "text"),
            ("centre_lon", "float8"),
            ("centre_lat", "float8"),
            ("geometry", "jsonb"),
            *_BBOX,
        ),
    ),
    AssetKind.CABINET: Table(
        "cabinet",
        ("cabinet_id",),
        (
            ("cabinet_id", "text"),
            ("site_id", "text"),
            ("device_id", "text"),
            ("name", "text"),
            *_POINT,
        ),
    ),
    AssetKind.CIRCUIT: Table(
        "circuit",
        ("cabinet_id", "channel"),
        (("cabinet_id", "text"), ("channel", "int4"), ("name", "text")),
    ),
    AssetKind.LUMINAIRE: Table(
        "luminaire",
        ("luminaire_id",),
        (
            ("luminaire_id", "text"),
            ("cabinet_id", "text"),
            ("channel", "int4"),
            ("rated_power_w", "float8"),
            ("technology", "text"),
            *_POINT,
        ),
    ),
    AssetKind.NODE: Table(
        "pipe_node",
        ("node_id",),
        (
            ("node_id", "text"),
            ("site_id", "text"),
            ("node_type", "text"),
            ("elevation_m", "float8"),
            *_POINT,
        ),
    ),
    AssetKind.PIPE: Table(
        "pipe",
        ("pipe_id",),
        (
            ("pipe_id", "text"),
            ("site_id", "text"),
            ("from_node", "text"),
            ("to_node", "text"),
            ("material", "text"),
            ("diameter_mm", "float8"),
            ("wall_thickness_mm", "float8"),
            ("length_m", "float8"),
            ("install_year", "int4"),
            ("geometry", "jsonb"),
            *_BBOX,
        ),
    ),
    AssetKind.SENSOR: Table(
        "acoustic_sensor",
        ("sensor_id",),
        (
            ("sensor_id", "text"),
            ("site_id", "text"),
            ("device_id", "text"),
            ("node_id", "text"),
            ("pipe_id", "text"),
            *_POINT,
        ),
    ),
}

# Written in this order so that what a row references is already there.
WRITE_ORDER: Final = (
    AssetKind.SITE,
    AssetKind.CABINET,
    AssetKind.CIRCUIT,
    AssetKind.LUMINAIRE,
    AssetKind.NODE,
    AssetKind.PIPE,
    AssetKind.SENSOR,
)

GEOMETRY_TYPES: Final[dict[AssetKind, tuple[str, ...]]] = {
    AssetKind.SITE: ("Polygon", "MultiPolygon", "Point"),
    AssetKind.CABINET: ("Point",),
    AssetKind.CIRCUIT: (),  # no geometry of its own: null (RFC 7946 section 3.2)
    AssetKind.LUMINAIRE: ("Point",),
    AssetKind.NODE: ("Point",),
    AssetKind.PIPE: ("LineString",),
    AssetKind.SENSOR: ("Point",),
}


def circuit_key(cabinet_id: str, channel: int) -> str:
    """The id of a circuit: ``<cabinet_id>:<channel>`` (':' is not allowed in ids)."""
    return f"{cabinet_id}:{channel}"
