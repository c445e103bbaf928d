"""GeoJSON features <-> rows of the asset tables, with every check a single feature allows.

``parse_collection`` turns a FeatureCollection into ``ParsedFeature`` rows and
a list of ``Problem``s, one per bad feature and field, each naming the
feature's index and a specific reason; checks that need other features or
stored assets (references, duplicate device ids) are in ``references``.
``row_to_feature`` is the way back: a stored row becomes the feature that
``GET /api/v1/assets`` serves, which ``PUT`` accepts again unchanged.

Properties of a feature: ``kind`` (required), the kind's own fields (see
``docs/assets.md``), and the read-only ``updated_at`` / ``updated_by`` that
are ignored on input. Anything else is refused, so a typo
(``diamter_mm``) is an error rather than a silently lost value.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from backend.assets import kinds as k
from backend.assets.geo import Geometry, GeometryError, haversine_m, line_length_m, parse_geometry
from backend.assets.kinds import AssetKind

MAX_FEATURES: Final = 10_000  # per request: a town's whole network fits in one
READ_ONLY: Final = frozenset({"updated_at", "updated_by"})
_KIND_NAMES: Final = frozenset(kind.value for kind in AssetKind)

_ASSET_ID = re.compile(k.ASSET_ID_PATTERN)
_DEVICE_ID = re.compile(k.DEVICE_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Problem:
    """Why one feature (``index``) is refused; ``field`` is a path inside it, if any."""

    index: int | None
    code: str
    message: str
    field: str | None = None

    @property
    def location(self) -> str:
        where = "body" if self.index is None else f"body.features[{self.index}]"
        return f"{where}.{self.field}" if self.field else where


@dataclass(frozen=True)
class ParsedFeature:
    """A valid feature: its kind, its id within the kind, the row to store."""

    index: int
    kind: AssetKind
    key: str
    row: dict[str, Any]
    geometry: Geometry | None = field(default=None, compare=False)

    @property
    def feature_id(self) -> str:
        return f"{self.kind.value}:{self.key}"


class _Bad(ValueError):
    """One property's value is refused (``code`` and message)."""

    def __init__(self, message: str, code: str = "bad_value") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Parser = Callable[[object], Any]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def show(value: object) -> str:
    """``repr`` of a refused value, cut short: a hostile value must not fill the answer."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {type(value).__name__}")
    if not 1 <= len(value) <= k.MAX_TEXT or _CONTROL.search(value):
        raise _Bad(f"expected 1..{k.MAX_TEXT} printable characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" is valid JSON): the database would refuse it.
        raise _Bad("not valid Unicode (a lone surrogate)") from None
    return value


def asset_id(value: object) -> str:
    if not isinstance(value, str) or not _ASSET_ID.fullmatch(value):
        raise _Bad(
            f"{show(value)} is not an asset id: 1..64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def device_id(value: object) -> str:
    if not isinstance(value, str) or not _DEVICE_ID.fullmatch(value):
        raise _Bad(f"{show(value)} is not a device id: 1..64 of [a-z0-9._-]")
    return value


def choice(values: tuple[str, ...]) -> Parser:
    def parse(value: object) -> str:
        if value not in values:
            raise _Bad(f"{show(value)} is not one of {', '.join(values)}")
        assert isinstance(value, str)
        return value

    return parse


def number(low: float, high: float, *, low_open: bool = False) -> Parser:
    """A finite number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""

    def parse(value: object) -> float:
        if not _is_number(value):
            raise _Bad(f"expected a number, got {type(value).__name__}")
        assert isinstance(value, int | float)
        number = float(value)
        if not math.isfinite(number):
            raise _Bad("expected a finite number")
        too_low = number <= low if low_open else number < low
        if too_low or number > high:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise _Bad(f"{number:g} is out of range: must be {bound} and <= {high:g}")
        return number

    return parse


def integer(low: int, high: int) -> Parser:
    def parse(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Bad(f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise _Bad(f"{value} is out of range {low}..{high}")
        return value

    return parse


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone(value: object) -> str:
    if not isinstance(value, str) or value not in _timezones():
        raise _Bad(f"{show(value)} is not an IANA time zone name such as 'Europe/Paris'")
    return value


@dataclass(frozen=True)
class Prop:
    parse: Parser
    required: bool = True


_LONGITUDE: Final = number(-180.0, 180.0)
_LATITUDE: Final = number(-90.0, 90.0)

PROPERTIES: Final[dict[AssetKind, dict[str, Prop]]] = {
    AssetKind.SITE: {
        "site_id": Prop(asset_id),
        "name": Prop(text),
        "timezone": Prop(timezone),
        "centre_lon": Prop(_LONGITUDE, required=False),
        "centre_lat": Prop(_LATITUDE, required=False),
    },
    AssetKind.CABINET: {
        "cabinet_id": Prop(asset_id),
        "site_id": Prop(asset_id),
        "device_id": Prop(device_id, required=False),
        "name": Prop(text, required=False),
    },
    AssetKind.CIRCUIT: {
        "cabinet_id": Prop(asset_id),
        "channel": Prop(integer(1, k.MAX_CHANNEL)),
        "name": Prop(text, required=False),
    },
    AssetKind.LUMINAIRE: {
        "luminaire_id": Prop(asset_id),
        "cabinet_id": Prop(asset_id),
        "channel": Prop(integer(1, k.MAX_CHANNEL)),
        "rated_power_w": Prop(number(0.0, k.MAX_RATED_POWER_W, low_open=True)),
        "technology": Prop(choice(k.TECHNOLOGIES)),
    },
    AssetKind.NODE: {
        "node_id": Prop(asset_id),
        "site_id": Prop(asset_id),
        "node_type": Prop(choice(k.NODE_TYPES)),
        "elevation_m": Prop(number(*k.ELEVATION_RANGE_M), required=False),
    },
    AssetKind.PIPE: {
        "pipe_id": Prop(asset_id),
        "site_id": Prop(asset_id),
        "from_node": Prop(asset_id),
        "to_node": Prop(asset_id),
        "material": Prop(choice(k.MATERIALS)),
        "diameter_mm": Prop(number(0.0, k.MAX_DIAMETER_MM, low_open=True)),
        "wall_thickness_mm": Prop(number(0.0, k.MAX_DIAMETER_MM, low_open=True)),
        "length_m": Prop(number(0.0, k.MAX_LENGTH_M, low_open=True), required=False),
        "install_year": Prop(integer(*k.INSTALL_YEARS), required=False),
    },
    AssetKind.SENSOR: {
        "sensor_id": Prop(asset_id),
        "site_id": Prop(asset_id),
        "device_id": Prop(device_id, required=False),
        "node_id": Prop(asset_id, required=False),
        "pipe_id": Prop(asset_id, required=False),
    },
}


def key_of(kind: AssetKind, row: Mapping[str, Any]) -> str:
    """The id of a row within its kind (a circuit's is ``<cabinet_id>:<channel>``)."""
    if kind is AssetKind.CIRCUIT:
        return k.circuit_key(row["cabinet_id"], row["channel"])
    return str(row[k.TABLES[kind].key[0]])


def _pipe_rules(row: dict[str, Any], geometry: Geometry) -> list[tuple[str, str, str]]:
    """(code, field, message) for the rules between a pipe's own fields and geometry."""
    found = []
    radius = row["diameter_mm"] / 2
    if row["wall_thickness_mm"] >= radius:
        found.append(
            (
                "wall_too_thick",
                "properties.wall_thickness_mm",
                f"wall thickness {row['wall_thickness_mm']:g} mm must be less than the"
                f" radius ({radius:g} mm of a {row['diameter_mm']:g} mm diameter)",
            )
        )
    if row["from_node"] == row["to_node"]:
        found.append(("bad_value", "properties.to_node", "a pipe joins two different nodes"))
    drawn = line_length_m(geometry.coordinates)
    if drawn == 0:
        found.append(("bad_geometry", "geometry", "the pipe's geometry has zero length"))
    elif row.get("length_m") is None:
        row["length_m"] = round(drawn, 2)
    else:
        tolerance = max(k.LENGTH_TOLERANCE_M, k.LENGTH_TOLERANCE_RATIO * drawn)
        if abs(row["length_m"] - drawn) > tolerance:
            found.append(
                (
                    "length_mismatch",
                    "properties.length_m",
                    f"length_m {row['length_m']:g} m differs from the geometry's great-circle"
                    f" length {drawn:.1f} m by more than the tolerance"
                    f" ({k.LENGTH_TOLERANCE_RATIO:.0%} or {k.LENGTH_TOLERANCE_M:g} m,"
                    f" the larger: {tolerance:.1f} m); omit length_m to use the geometry's",
                )
            )
    return found


def _set_geometry_columns(kind: AssetKind, row: dict[str, Any], geometry: Geometry | None) -> None:
    if geometry is None:
        return
    row["geometry"] = geometry.as_geojson()
    columns = k.TABLES[kind].column_names
    if "lon" in columns:
        row["lon"], row["lat"] = geometry.point[0], geometry.point[1]
    if "min_lon" in columns:
        box = geometry.bbox
        row.update(
            min_lon=box.min_lon, min_lat=box.min_lat, max_lon=box.max_lon, max_lat=box.max_lat
        )


def parse_feature(index: int, feature: object) -> ParsedFeature | list[Problem]:
    """One feature checked on its own: the parsed row, or every problem found."""

    def bad(code: str, message: str, where: str | None = None) -> list[Problem]:
        return [Problem(index, code, message, where)]

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return bad("not_a_feature", "expected a GeoJSON Feature object ('type': 'Feature')")
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        return bad("bad_value", "'properties' must be an object", "properties")
    raw_kind = properties.get("kind")
    if not isinstance(raw_kind, str) or raw_kind not in _KIND_NAMES:
        known = ", ".join(kind.value for kind in AssetKind)
        return bad(
            "unknown_kind", f"unknown kind {show(raw_kind)}; expected {known}", "properties.kind"
        )
    kind = AssetKind(raw_kind)
    if "geometry" not in feature:
        return bad("bad_geometry", "'geometry' is missing (null for no geometry)", "geometry")

    problems: list[Problem] = []
    spec = PROPERTIES[kind]
    row: dict[str, Any] = {name: None for name in k.TABLES[kind].column_names}
    for name in sorted(set(properties) - set(spec) - READ_ONLY - {"kind"}):
        problems.append(
            Problem(
                index,
                "unknown_property",
                f"{kind.value} has no property {show(name)}; known: {', '.join(spec)}",
                "properties",
            )
        )
    for name, prop in spec.items():
        value = properties.get(name)
        if value is None:
            if prop.required:
                problems.append(
                    Problem(
                        index,
                        "missing_property",
                        f"{kind.value} needs '{name}'",
                        f"properties.{name}",
                    )
                )
            continue
        try:
            row[name] = prop.parse(value)
        except _Bad as exc:
            problems.append(Problem(index, exc.code, exc.message, f"properties.{name}"))

    geometry: Geometry | None = None
    allowed = k.GEOMETRY_TYPES[kind]
    raw_geometry = feature["geometry"]
    if not allowed:
        if raw_geometry is not None:
            problems.append(
                Problem(
                    index,
                    "wrong_geometry_type",
                    f"a {kind.value} has no geometry of its own: send null",
                    "geometry",
                )
            )
    elif raw_geometry is None:
        expected = " or ".join(allowed)
        problems.append(
            Problem(index, "wrong_geometry_type", f"a {kind.value} needs a {expected}", "geometry")
        )
    else:
        try:
            geometry = parse_geometry(raw_geometry, allowed)
        except GeometryError as exc:
            problems.append(Problem(index, exc.code, exc.message, "geometry"))
    if problems:
        return problems

    problems.extend(_cross_field(index, kind, row, geometry))
    if problems:
        return problems
    _set_geometry_columns(kind, row, geometry)
    key = key_of(kind, row)
    given_id = feature.get("id")
    if given_id is not None and given_id != f"{kind.value}:{key}":
        return bad(
            "id_mismatch",
            f"feature id {show(given_id)} does not match its properties ('{kind.value}:{key}')",
            "id",
        )
    return ParsedFeature(index, kind, key, row, geometry)


def _cross_field(
    index: int, kind: AssetKind, row: dict[str, Any], geometry: Geometry | None
) -> list[Problem]:
    if kind is AssetKind.PIPE:
        assert geometry is not None
        return [Problem(index, c, m, f) for c, f, m in _pipe_rules(row, geometry)]
    if kind is AssetKind.SITE:
        given = (row["centre_lon"] is None, row["centre_lat"] is None)
        if given[0] != given[1]:
            return [
                Problem(
                    index,
                    "bad_value",
                    "give both centre_lon and centre_lat, or neither",
                    "properties",
                )
            ]
        if row["centre_lon"] is None and geometry is not None:
            box = geometry.bbox
            row["centre_lon"] = (box.min_lon + box.max_lon) / 2
            row["centre_lat"] = (box.min_lat + box.max_lat) / 2
    if kind is AssetKind.SENSOR and (row["node_id"] is None) == (row["pipe_id"] is None):
        return [
            Problem(
                index,
                "bad_value",
                "a sensor is mounted on exactly one of node_id or pipe_id",
                "properties",
            )
        ]
    return []


def parse_collection(document: object) -> tuple[list[ParsedFeature], list[Problem]]:
    """Every feature of a FeatureCollection parsed, and every problem found.

    Ids repeated in the collection are problems too (the second and later
    ones), so that one request never writes the same asset twice.
    """
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        return [], [
            Problem(None, "not_a_feature_collection", "expected a GeoJSON FeatureCollection")
        ]
    features = document.get("features")
    if not isinstance(features, list):
        return [], [Problem(None, "not_a_feature_collection", "'features' must be an array")]
    if len(features) > MAX_FEATURES:
        return [], [
            Problem(
                None,
                "too_many_features",
                f"{len(features)} features; at most {MAX_FEATURES} per request: split the upload",
            )
        ]
    parsed: list[ParsedFeature] = []
    problems: list[Problem] = []
    first_at: dict[tuple[AssetKind, str], int] = {}
    for index, feature in enumerate(features):
        result = parse_feature(index, feature)
        if isinstance(result, list):
            problems.extend(result)
            continue
        seen = first_at.setdefault((result.kind, result.key), index)
        if seen != index:
            problems.append(
                Problem(
                    index,
                    "duplicate_id",
                    f"{result.feature_id} is already feature {seen} of this request",
                    "id",
                )
            )
            continue
        parsed.append(result)
    return parsed, problems


def row_to_feature(kind: AssetKind, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row (columns plus ``updated_at``/``updated_by``) as a GeoJSON Feature."""
    properties: dict[str, Any] = {"kind": kind.value}
    for name in PROPERTIES[kind]:
        properties[name] = row.get(name)
    for name in sorted(READ_ONLY):
        if name in row:
            properties[name] = row[name]
    return {
        "type": "Feature",
        "id": f"{kind.value}:{key_of(kind, row)}",
        "geometry": row.get("geometry"),
        "properties": properties,
    }


def endpoint_gap_m(geometry: Geometry, at_start: bool, node: tuple[float, float]) -> float:
    """Distance in metres between a pipe's first (or last) position and a node."""
    end = geometry.coordinates[0 if at_start else -1]
    return haversine_m(end, node)
