"""GeoJSON geometry checks and great-circle lengths, on WGS84 longitude/latitude.

RFC 7946 positions are ``[longitude, latitude]`` (an optional third number is
the altitude) in WGS84 degrees; nothing else is accepted here: projected
coordinates (Lambert-93, UTM...) are out of range or, worse, look like
degrees near the origin, so converting them is the importer's job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

EARTH_RADIUS_M: Final = 6_371_008.8  # IUGG mean radius: haversine error < 0.5 %
MAX_POSITIONS: Final = 10_000  # per geometry: a street-long pipe needs tens
MAX_ALTITUDE_M: Final = 10_000.0

Position = tuple[float, ...]  # (lon, lat) or (lon, lat, altitude)


class GeometryError(ValueError):
    """A geometry that is not valid GeoJSON for its use; ``code`` says which rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def intersects(self, other: BBox) -> bool:
        """Boundaries touching count as intersecting (as SQL's ``box && box``)."""
        return (
            self.min_lon <= other.max_lon
            and other.min_lon <= self.max_lon
            and self.min_lat <= other.max_lat
            and other.min_lat <= self.max_lat
        )


@dataclass(frozen=True)
class Geometry:
    """A checked geometry, its coordinates as plain lists of floats."""

    type: str
    coordinates: Any
    bbox: BBox

    def as_geojson(self) -> dict[str, Any]:
        return {"type": self.type, "coordinates": self.coordinates}

    @property
    def point(self) -> Position:
        """The position of a Point geometry."""
        assert self.type == "Point"
        return tuple(self.coordinates)


def haversine_m(a: Sequence[float], b: Sequence[float]) -> float:
    """Great-circle distance in metres between two [lon, lat] positions."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def line_length_m(positions: Sequence[Sequence[float]]) -> float:
    """Length in metres of a LineString: the sum of its segments' great circles."""
    return sum(haversine_m(a, b) for a, b in pairwise(positions))


def _is_number(value: object) -> bool:
    # bool is an int in Python, and never a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_position(value: object, where: str) -> list[float]:
    """``[lon, lat]`` or ``[lon, lat, alt]`` as floats, or a ``GeometryError``."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise GeometryError(
            "bad_geometry", f"{where}: a position is an array of 2 or 3 numbers [lon, lat, alt?]"
        )
    if not all(_is_number(v) for v in value):
        raise GeometryError("bad_geometry", f"{where}: position {value!r} holds a non-number")
    numbers = [float(v) for v in value]
    if not all(math.isfinite(v) for v in numbers):
        raise GeometryError("bad_geometry", f"{where}: position holds a non-finite number")
    lon, lat = numbers[0], numbers[1]
    if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
        raise GeometryError(
            "coordinates_out_of_range",
            f"{where}: [{lon}, {lat}] is not WGS84 longitude/latitude (longitude within"
            " [-180, 180], latitude within [-90, 90]); projected coordinates must be"
            " transformed first",
        )
    if len(numbers) == 3 and abs(numbers[2]) > MAX_ALTITUDE_M:
        raise GeometryError(
            "coordinates_out_of_range",
            f"{where}: altitude {numbers[2]} m is beyond ±{MAX_ALTITUDE_M:.0f} m",
        )
    return numbers


def _positions(value: object, where: str, minimum: int) -> list[list[float]]:
    if not isinstance(value, list):
        raise GeometryError("bad_geometry", f"{where}: expected an array of positions")
    if len(value) < minimum:
        raise GeometryError(
            "too_few_positions",
            f"{where}: {len(value)} position(s); at least {minimum} are needed",
        )
    if len(value) > MAX_POSITIONS:
        raise GeometryError(
            "too_many_positions", f"{where}: {len(value)} positions; at most {MAX_POSITIONS}"
        )
    return [parse_position(p, f"{where}[{i}]") for i, p in enumerate(value)]


def _ring(value: object, where: str) -> list[list[float]]:
    ring = _positions(value, where, 4)
    if ring[0][:2] != ring[-1][:2]:
        raise GeometryError(
            "ring_not_closed",
            f"{where}: a linear ring must end where it starts ({ring[0][:2]} != {ring[-1][:2]})",
        )
    return ring


def _polygon(value: object, where: str) -> list[list[list[float]]]:
    if not isinstance(value, list) or not value:
        raise GeometryError("bad_geometry", f"{where}: a Polygon is a non-empty array of rings")
    return [_ring(ring, f"{where}[{i}]") for i, ring in enumerate(value)]


def _bbox(positions: list[list[float]]) -> BBox:
    lons = [p[0] for p in positions]
    lats = [p[1] for p in positions]
    return BBox(min(lons), min(lats), max(lons), max(lats))


def parse_geometry(value: object, allowed: Sequence[str]) -> Geometry:
    """Check ``value`` as a GeoJSON geometry of one of the ``allowed`` types.

    Rules: positions are WGS84 [lon, lat(, alt)], finite and in range; a
    LineString has at least 2 positions; a Polygon's rings have at least 4
    and are closed; at most ``MAX_POSITIONS`` per array. Winding order is not
    enforced (RFC 7946 section 3.1.6 asks parsers not to reject on it).
    """
    if not isinstance(value, dict):
        raise GeometryError("bad_geometry", "geometry: expected a GeoJSON geometry object")
    kind = value.get("type")
    if kind not in allowed:
        expected = " or ".join(allowed)
        raise GeometryError("wrong_geometry_type", f"geometry: type {kind!r}; expected {expected}")
    if "coordinates" not in value:
        raise GeometryError("bad_geometry", "geometry: 'coordinates' is missing")
    raw = value["coordinates"]
    where = "geometry.coordinates"
    if kind == "Point":
        position = parse_position(raw, where)
        return Geometry("Point", position, _bbox([position]))
    if kind == "LineString":
        line = _positions(raw, where, 2)
        return Geometry("LineString", line, _bbox(line))
    if kind == "Polygon":
        polygon = _polygon(raw, where)
        return Geometry("Polygon", polygon, _bbox([p for ring in polygon for p in ring]))
    if kind == "MultiPolygon":
        if not isinstance(raw, list) or not raw:
            raise GeometryError("bad_geometry", f"{where}: a MultiPolygon is an array of polygons")
        polygons = [_polygon(polygon, f"{where}[{i}]") for i, polygon in enumerate(raw)]
        flat = [p for polygon in polygons for ring in polygon for p in ring]
        return Geometry("MultiPolygon", polygons, _bbox(flat))
    raise GeometryError("wrong_geometry_type", f"geometry: type {kind!r} is not supported here")
