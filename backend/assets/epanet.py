"""An EPANET ``.inp`` network as asset features (nodes and pipes), read with WNTR.

WNTR (``pip install wntr``; it also needs ``six``) is an optional extra:
imported when a file is read, never at start-up.

EPANET files rarely hold longitude/latitude: their coordinates are usually
in a projected system (Lambert-93, UTM...) or a drawing's arbitrary units.
The caller says which, explicitly: ``to_lonlat="lonlat"`` for coordinates
that are already WGS84 degrees, or a function ``(x, y) -> (lon, lat)``
(e.g. a ``pyproj.Transformer(...).transform`` with ``always_xy=True``).
Coordinates that are not degrees without a transform are refused rather
than placed somewhere on Earth.

What EPANET does not know is asked for too: pipe material and the wall
thickness (from the standard dimension ratio, ``diameter / sdr``). Junctions,
reservoirs and tanks become nodes; valves and pumps (links in EPANET) are
reported as skipped. The features go through the same checks as any upload
(``PUT /api/v1/assets``), so a length far from the drawn geometry is caught
there; ``keep_length=False`` takes the geometry's length instead.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from backend.assets.kinds import MATERIALS

Transform = Callable[[float, float], tuple[float, float]]

_NODE_TYPES = {"Junction": "junction", "Reservoir": "reservoir", "Tank": "tank"}


class EpanetError(ValueError):
    """The file cannot become assets as asked (coordinates, parameters, WNTR missing)."""


@dataclass
class Imported:
    features: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "valve V1: ..." — what was left out


def _degrees(x: float, y: float, what: str) -> tuple[float, float]:
    if not (math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90):
        raise EpanetError(
            f"{what} is at ({x}, {y}): not longitude/latitude; the file's coordinates look"
            " projected: pass to_lonlat=<a transform to WGS84>"
        )
    return x, y


def _load(path: Path) -> Any:
    try:
        wntr = importlib.import_module("wntr")
    except ImportError as exc:
        raise EpanetError(
            f"reading EPANET files needs WNTR (pip install wntr six): {exc}"
        ) from None
    return wntr.network.WaterNetworkModel(str(path))


def read_inp(
    path: Path,
    *,
    site_id: str,
    to_lonlat: Transform | Literal["lonlat"],
    material: str,
    sdr: float,
    keep_length: bool = True,
) -> Imported:
    """Nodes and pipes of the EPANET file at ``path`` as features of ``site_id``."""
    if material not in MATERIALS:
        raise EpanetError(f"material {material!r} is not one of {', '.join(MATERIALS)}")
    if not sdr > 2:
        raise EpanetError("sdr (diameter / wall thickness) must be greater than 2")
    network = _load(path)

    def place(xy: tuple[float, float], what: str) -> list[float]:
        x, y = float(xy[0]), float(xy[1])
        lon, lat = (x, y) if to_lonlat == "lonlat" else to_lonlat(x, y)
        return list(_degrees(lon, lat, what))

    imported = Imported()
    for name, node in network.nodes():
        properties: dict[str, Any] = {
            "kind": "node",
            "node_id": name,
            "site_id": site_id,
            "node_type": _NODE_TYPES[node.node_type],
        }
        elevation = getattr(node, "elevation", None)
        if elevation is not None:
            properties["elevation_m"] = round(float(elevation), 3)
        imported.features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": place(node.coordinates, name)},
                "properties": properties,
            }
        )
    for name, link in network.links():
        if link.link_type != "Pipe":
            imported.skipped.append(
                f"{link.link_type.lower()} {name}: EPANET {link.link_type.lower()}s are links;"
                " add them as nodes by hand if sensors are mounted on them"
            )
            continue
        start = network.get_node(link.start_node_name)
        end = network.get_node(link.end_node_name)
        line = [
            place(start.coordinates, link.start_node_name),
            *(place(v, f"a vertex of {name}") for v in link.vertices),
            place(end.coordinates, link.end_node_name),
        ]
        diameter_mm = round(float(link.diameter) * 1000, 3)  # WNTR works in SI units
        properties = {
            "kind": "pipe",
            "pipe_id": name,
            "site_id": site_id,
            "from_node": link.start_node_name,
            "to_node": link.end_node_name,
            "material": material,
            "diameter_mm": diameter_mm,
            "wall_thickness_mm": round(diameter_mm / sdr, 3),
        }
        if keep_length:
            properties["length_m"] = round(float(link.length), 3)
        imported.features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": properties,
            }
        )
    return imported
