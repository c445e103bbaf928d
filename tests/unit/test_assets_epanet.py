"""EPANET .inp files as asset features, through WNTR (an optional extra)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from backend.assets.epanet import EpanetError, read_inp
from backend.assets.features import parse_collection
from backend.assets.geo import haversine_m
from backend.assets.references import Stored, check_references

if os.environ.get("CI"):
    # scripts/bootstrap installs the network extra: missing in CI is a failure
    importlib.import_module("wntr")
else:
    pytest.importorskip("wntr")

# Three nodes and two pipes in Lambert-93 metres (near Lyon), plus a valve.
INP = """\
[TITLE]
Lumeau test network

[JUNCTIONS]
;ID  Elev  Demand
J1   181   0
J2   178   0
J3   176   0

[RESERVOIRS]
;ID  Head
R1   230

[PIPES]
;ID  Node1  Node2  Length  Diameter  Roughness  MinorLoss  Status
P1   R1     J1     {p1}    200       100        0          Open
P2   J1     J2     {p2}    150       100        0          Open

[VALVES]
;ID  Node1  Node2  Diameter  Type  Setting  MinorLoss
V1   J2     J3     100       TCV   0        0

[OPTIONS]
Units  LPS

[COORDINATES]
;Node  X  Y
R1  {r1}
J1  {j1}
J2  {j2}
J3  {j3}

[VERTICES]
;Link  X  Y
P2  {v2}

[END]
"""

LAMBERT = {"r1": "842000 6519000", "j1": "842300 6519000", "j2": "842600 6519400"}
LAMBERT.update(j3="842700 6519400", v2="842600 6519000", p1="300", p2="700")


def shift(x: float, y: float) -> tuple[float, float]:
    """A stand-in transform for the test: metres from an origin to degrees near 45.76 N."""
    lat0, lon0 = 45.76, 4.83
    north = (y - 6_519_000) / 111_195.0
    east = (x - 842_000) / (111_195.0 * 0.6978)  # cos(45.76°)
    return lon0 + east, lat0 + north


def write(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "net.inp"
    path.write_text(INP.format(**{**LAMBERT, **values}))
    return path


def test_projected_coordinates_need_a_transform(tmp_path: Path) -> None:
    with pytest.raises(EpanetError, match="look projected: pass to_lonlat"):
        read_inp(write(tmp_path), site_id="s", to_lonlat="lonlat", material="pvc", sdr=11)


def test_a_transformed_network_passes_every_upload_check(tmp_path: Path) -> None:
    imported = read_inp(
        write(tmp_path), site_id="bourg", to_lonlat=shift, material="ductile_iron", sdr=25
    )
    assert imported.skipped == [
        "valve V1: EPANET valves are links;"
        " add them as nodes by hand if sensors are mounted on them"
    ]
    by_id = {
        f["properties"].get("node_id") or f["properties"]["pipe_id"]: f for f in imported.features
    }
    assert by_id["J1"]["properties"]["elevation_m"] == pytest.approx(181)
    assert by_id["R1"]["properties"]["node_type"] == "reservoir"
    assert "elevation_m" not in by_id["R1"]["properties"]
    p2 = by_id["P2"]
    assert p2["properties"]["diameter_mm"] == pytest.approx(150)
    assert p2["properties"]["wall_thickness_mm"] == pytest.approx(6)
    assert len(p2["geometry"]["coordinates"]) == 3  # the vertex is kept
    # 300 m east then 400 m north: the drawn length is the declared 700 m
    start, bend, end = p2["geometry"]["coordinates"]
    assert haversine_m(start, bend) + haversine_m(bend, end) == pytest.approx(700, rel=0.01)

    site = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [4.83, 45.76]},
        "properties": {"kind": "site", "site_id": "bourg", "name": "B", "timezone": "Europe/Paris"},
    }
    document = {"type": "FeatureCollection", "features": [site, *imported.features]}
    parsed, problems = parse_collection(document)
    assert problems == [] and len(parsed) == 7
    assert check_references(parsed, Stored()) == []


def test_a_wrong_hydraulic_length_is_caught_or_replaced(tmp_path: Path) -> None:
    path = write(tmp_path, p2="1500")
    imported = read_inp(path, site_id="bourg", to_lonlat=shift, material="pvc", sdr=11)
    _, problems = parse_collection({"type": "FeatureCollection", "features": imported.features})
    assert [p.code for p in problems] == ["length_mismatch"]
    kept = read_inp(
        path, site_id="bourg", to_lonlat=shift, material="pvc", sdr=11, keep_length=False
    )
    parsed, problems = parse_collection({"type": "FeatureCollection", "features": kept.features})
    assert problems == []
    assert {f.key: round(f.row["length_m"]) for f in parsed if f.kind.value == "pipe"} == {
        "P1": 300,
        "P2": 700,
    }


def test_lonlat_files_are_read_as_they_are(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        r1="4.8200 45.7600",
        j1="4.8238 45.7600",
        j2="4.8276 45.7636",
        j3="4.8290 45.7636",
        v2="4.8276 45.7600",
        p1="296",
        p2="700",
    )
    imported = read_inp(path, site_id="s", to_lonlat="lonlat", material="pe", sdr=11)
    assert imported.features[0]["geometry"]["coordinates"] == [4.8238, 45.76]


def test_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(EpanetError, match="material"):
        read_inp(write(tmp_path), site_id="s", to_lonlat=shift, material="wood", sdr=11)
    with pytest.raises(EpanetError, match="sdr"):
        read_inp(write(tmp_path), site_id="s", to_lonlat=shift, material="pe", sdr=2)
