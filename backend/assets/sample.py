"""The sample town: a small fictional network the demo and the tests can load.

``Le Bourg`` (site ``bourg``, around lon 4.83, lat 45.76): 3 lighting cabinets
(controllers ``cab-0001``..``cab-0003``) with 2 circuits of 3 luminaires each,
a tree of 10 water nodes and 9 pipes fed by a reservoir, and 4 acoustic
sensors (``leak-0001``..``leak-0004``) on a valve, two hydrants and a pipe.
Load it with ``PUT /api/v1/assets`` (body: ``sample_town()``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

SAMPLE_TOWN_PATH: Final = Path(__file__).resolve().parent / "sample_town.geojson"


def sample_town() -> dict[str, Any]:
    """The sample town as a GeoJSON FeatureCollection (a fresh copy at each call)."""
    document: dict[str, Any] = json.loads(SAMPLE_TOWN_PATH.read_text(encoding="utf-8"))
    return document
