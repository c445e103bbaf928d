"""Geometry checks and great-circle lengths (backend.assets.geo)."""

from __future__ import annotations

import math

import pytest

from backend.assets.geo import (
    MAX_POSITIONS,
    BBox,
    GeometryError,
    haversine_m,
    line_length_m,
    parse_geometry,
)

ALL = ("Point", "LineString", "Polygon", "MultiPolygon")


def refused(value: object, code: str, allowed: tuple[str, ...] = ALL) -> str:
    with pytest.raises(GeometryError) as caught:
        parse_geometry(value, allowed)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def test_one_degree_of_latitude_is_about_111_km() -> None:
    # 2 * pi * R / 360 with the IUGG mean radius
    assert haversine_m([4.83, 45.0], [4.83, 46.0]) == pytest.approx(111_195.1, abs=0.5)


def test_a_degree_of_longitude_shrinks_with_the_cosine_of_latitude() -> None:
    at_equator = haversine_m([0.0, 0.0], [0.001, 0.0])
    at_lyon = haversine_m([4.830, 45.76], [4.831, 45.76])
    assert at_lyon / at_equator == pytest.approx(math.cos(math.radians(45.76)), rel=1e-5)


def test_antipodes_are_half_the_circumference_and_the_formula_stays_finite() -> None:
    assert haversine_m([0.0, 0.0], [180.0, 0.0]) == pytest.approx(math.pi * 6_371_008.8)


def test_a_line_is_the_sum_of_its_segments() -> None:
    a, b, c = [4.826, 45.760], [4.828, 45.760], [4.828, 45.762]
    assert line_length_m([a, b, c]) == pytest.approx(haversine_m(a, b) + haversine_m(b, c))
    assert line_length_m([a, a]) == 0


def test_point_line_polygon_and_multipolygon_with_their_bounding_boxes() -> None:
    point = parse_geometry({"type": "Point", "coordinates": [4.83, 45.76]}, ALL)
    assert point.point == (4.83, 45.76) and point.bbox == BBox(4.83, 45.76, 4.83, 45.76)
    line = parse_geometry(
        {"type": "LineString", "coordinates": [[4.83, 45.76], [4.82, 45.77]]}, ALL
    )
    assert line.bbox == BBox(4.82, 45.76, 4.83, 45.77)
    ring = [[0, 0], [1, 0], [1, 1], [0, 0]]
    hole = [[0.5, 0.1], [0.9, 0.1], [0.9, 0.5], [0.5, 0.1]]
    polygon = parse_geometry({"type": "Polygon", "coordinates": [ring, hole]}, ALL)
    assert polygon.coordinates[1][0] == [0.5, 0.1]
    far = [[10, 10], [11, 10], [11, 12], [10, 10]]
    multi = parse_geometry({"type": "MultiPolygon", "coordinates": [[ring], [far]]}, ALL)
    assert multi.bbox == BBox(0, 0, 11, 12)
    # integers become floats, an altitude is kept, foreign members are dropped
    with_altitude = parse_geometry({"type": "Point", "coordinates": [4, 45, 180], "x": 1}, ALL)
    assert with_altitude.as_geojson() == {"type": "Point", "coordinates": [4.0, 45.0, 180.0]}


def test_edges_of_the_valid_range_are_accepted() -> None:
    for lon, lat in ((-180, -90), (180, 90)):
        assert parse_geometry({"type": "Point", "coordinates": [lon, lat]}, ALL).point == (lon, lat)


@pytest.mark.parametrize(
    "position",
    [[180.0001, 45.0], [-181, 0], [4.8, 90.5], [4.8, -91], [652_000.0, 6_862_000.0]],
    ids=["lon>180", "lon<-180", "lat>90", "lat<-90", "lambert93"],
)
def test_coordinates_out_of_range_are_refused(position: list[float]) -> None:
    message = refused({"type": "Point", "coordinates": position}, "coordinates_out_of_range")
    assert "WGS84" in message and "projected" in message


def test_an_absurd_altitude_is_refused() -> None:
    refused({"type": "Point", "coordinates": [4.8, 45.7, 1e6]}, "coordinates_out_of_range")


@pytest.mark.parametrize(
    "coordinates",
    [[4.8], [4.8, 45.7, 1, 2], ["4.8", 45.7], [True, 45.7], [math.nan, 45.7], [math.inf, 1.0], 3],
    ids=["one", "four", "string", "bool", "nan", "inf", "scalar"],
)
def test_malformed_positions_are_refused(coordinates: object) -> None:
    refused({"type": "Point", "coordinates": coordinates}, "bad_geometry")


def test_a_linestring_needs_two_positions() -> None:
    message = refused({"type": "LineString", "coordinates": [[4.8, 45.7]]}, "too_few_positions")
    assert "at least 2" in message


def test_a_ring_must_be_closed_and_have_four_positions() -> None:
    open_ring = [[0, 0], [1, 0], [1, 1], [0, 1]]
    message = refused({"type": "Polygon", "coordinates": [open_ring]}, "ring_not_closed")
    assert "coordinates[0]" in message
    refused({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "too_few_positions")
    refused({"type": "Polygon", "coordinates": []}, "bad_geometry")
    closed = [[0, 0], [1, 0], [1, 1], [0, 0]]
    refused({"type": "MultiPolygon", "coordinates": [[closed], [open_ring]]}, "ring_not_closed")


def test_the_type_must_be_one_the_use_allows() -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    message = refused(line, "wrong_geometry_type", ("Point",))
    assert "'LineString'" in message and "Point" in message
    refused({"type": "GeometryCollection", "geometries": []}, "wrong_geometry_type")
    refused({"type": "Point"}, "bad_geometry")
    refused([4.8, 45.7], "bad_geometry")


def test_too_many_positions_are_refused() -> None:
    line = [[4.8, 45.7 + i * 1e-6] for i in range(MAX_POSITIONS + 1)]
    refused({"type": "LineString", "coordinates": line}, "too_many_positions")


def test_bounding_boxes_meet_when_their_edges_touch() -> None:
    box = BBox(0, 0, 1, 1)
    assert box.intersects(BBox(1, 1, 2, 2))
    assert box.intersects(BBox(0.2, 0.2, 0.3, 0.3))
    assert not box.intersects(BBox(1.01, 0, 2, 1))
