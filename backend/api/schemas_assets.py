"""Request and response models of ``/api/v1/assets`` (GeoJSON, RFC 7946).

The upload (``PUT``) is not parsed by a model: ``backend.assets.features``
checks it feature by feature so that a 422 can name each bad feature by its
index; ``UPLOAD_SCHEMA`` documents its shape in OpenAPI.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.api.schemas import MAX_OFFSET, TEXT_PATTERN
from backend.assets.kinds import AssetKind

GEOJSON_MEDIA_TYPE: Final = "application/geo+json"
ASSET_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[0-9]{1,3})?$"
_NUMBER: Final = r"-?[0-9]{1,3}(\.[0-9]{1,15})?"
BBOX_PATTERN: Final = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"
MAX_PAGE: Final = 10_000

BBox = tuple[float, float, float, float]


def parse_bbox(text: str) -> BBox:
    """``minlon,minlat,maxlon,maxlat`` in WGS84 degrees; ``ValueError`` says what is wrong."""
    min_lon, min_lat, max_lon, max_lat = (float(part) for part in text.split(","))
    if not all(-180 <= lon <= 180 for lon in (min_lon, max_lon)):
        raise ValueError("bbox longitudes must be within [-180, 180]")
    if not all(-90 <= lat <= 90 for lat in (min_lat, max_lat)):
        raise ValueError("bbox latitudes must be within [-90, 90]")
    if min_lon > max_lon:
        raise ValueError(
            "bbox minlon is greater than maxlon: a box across the antimeridian is not"
            " supported, ask for its two halves"
        )
    if min_lat > max_lat:
        raise ValueError("bbox minlat is greater than maxlat")
    return min_lon, min_lat, max_lon, max_lat


class AssetsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: list[AssetKind] | None = Field(
        None, description="asset kinds to list (repeat the parameter); default all"
    )
    site: str | None = Field(
        None, min_length=1, max_length=64, pattern=TEXT_PATTERN, description="site id"
    )
    bbox: str | None = Field(
        None,
        pattern=BBOX_PATTERN,
        description="minlon,minlat,maxlon,maxlat (WGS84): assets whose bounding box meets it",
        examples=["4.82,45.75,4.84,45.77"],
    )
    limit: int = Field(1000, ge=1, le=MAX_PAGE, description="page size")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="features to skip")

    @model_validator(mode="after")
    def _box(self) -> Self:
        if self.bbox is not None:
            parse_bbox(self.bbox)
        return self

    @property
    def box(self) -> BBox | None:
        return None if self.bbox is None else parse_bbox(self.bbox)


_PIPE_EXAMPLE: Final[dict[str, Any]] = {
    "type": "Feature",
    "id": "pipe:p-03",
    "geometry": {
        "type": "LineString",
        "coordinates": [[4.8262, 45.7598], [4.8281, 45.7601], [4.8297, 45.7597]],
    },
    "properties": {
        "kind": "pipe",
        "pipe_id": "p-03",
        "site_id": "bourg",
        "from_node": "n-03",
        "to_node": "n-04",
        "material": "ductile_iron",
        "diameter_mm": 150.0,
        "wall_thickness_mm": 6.0,
        "length_m": 275.7,
        "install_year": 1987,
        "updated_at": "2026-01-12T09:30:00.120000+00:00",
        "updated_by": "claire",
    },
}


class FeatureOut(BaseModel):
    """One asset as a GeoJSON Feature; ``id`` is ``<kind>:<asset id>``."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PIPE_EXAMPLE]})

    type: Literal["Feature"] = "Feature"
    id: str = Field(examples=["pipe:p-03", "circuit:cab-01:2"])
    geometry: dict[str, Any] | None = Field(
        description="GeoJSON geometry in WGS84 lon/lat; null for a circuit"
    )
    properties: dict[str, Any] = Field(description="'kind', the kind's fields, updated_at/by")


class FeatureCollectionOut(BaseModel):
    """A page of assets; ``total``, ``limit`` and ``offset`` are foreign members."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "FeatureCollection",
                    "features": [_PIPE_EXAMPLE],
                    "total": 1,
                    "limit": 1000,
                    "offset": 0,
                }
            ]
        }
    )

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[FeatureOut]
    total: int = Field(description="assets matching the filters, all pages")
    limit: int
    offset: int


class AssetsWritten(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "written": 48,
                    "inserted": {"site": 1, "cabinet": 3, "circuit": 6, "pipe": 9},
                    "updated": {"node": 10},
                }
            ]
        }
    )

    written: int = Field(description="features written (all of the request's)")
    inserted: dict[str, int] = Field(description="new assets per kind")
    updated: dict[str, int] = Field(description="assets replaced per kind")


_UPLOAD_EXAMPLE: Final = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[4.82, 45.755], [4.84, 45.755], [4.84, 45.765], [4.82, 45.765], [4.82, 45.755]]
                ],
            },
            "properties": {
                "kind": "site",
                "site_id": "bourg",
                "name": "Le Bourg",
                "timezone": "Europe/Paris",
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.8262, 45.7598]},
            "properties": {
                "kind": "cabinet",
                "cabinet_id": "cab-01",
                "site_id": "bourg",
                "device_id": "cab-0001",
                "name": "Place de l'Église",
            },
        },
        {
            "type": "Feature",
            "geometry": None,
            "properties": {"kind": "circuit", "cabinet_id": "cab-01", "channel": 1},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.8265, 45.7601]},
            "properties": {
                "kind": "luminaire",
                "luminaire_id": "lum-0001",
                "cabinet_id": "cab-01",
                "channel": 1,
                "rated_power_w": 39.0,
                "technology": "led",
            },
        },
    ],
}

# OpenAPI only: the route reads the body itself (size cap, NaN refused, errors per feature).
UPLOAD_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {
            "type": "array",
            "maxItems": 10_000,
            "items": {
                "type": "object",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "string", "description": "optional: <kind>:<asset id>"},
                    "geometry": {
                        "description": "GeoJSON geometry (WGS84 lon/lat) or null",
                        "anyOf": [
                            {
                                "type": "object",
                                "required": ["type", "coordinates"],
                                "properties": {
                                    "type": {
                                        "type": "string",
                                        "enum": ["Point", "LineString", "Polygon", "MultiPolygon"],
                                    },
                                    "coordinates": {"type": "array"},
                                },
                            },
                            {"type": "null"},
                        ],
                    },
                    "properties": {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {
                            "kind": {"type": "string", "enum": [k.value for k in AssetKind]}
                        },
                    },
                },
            },
        },
    },
}

UPLOAD_OPENAPI: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "description": (
            "A GeoJSON FeatureCollection of assets (at most 10,000 features, 32 MiB)."
            " Every feature is written or none."
        ),
        "content": {
            media: {"schema": UPLOAD_SCHEMA, "example": _UPLOAD_EXAMPLE}
            for media in (GEOJSON_MEDIA_TYPE, "application/json")
        },
    }
}
