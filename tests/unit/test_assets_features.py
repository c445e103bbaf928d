"""GeoJSON features <-> rows, and each reason a feature is refused (backend.assets)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from backend.assets.features import (
    MAX_FEATURES,
    ParsedFeature,
    Problem,
    parse_collection,
    parse_feature,
    row_to_feature,
)
from backend.assets.geo import line_length_m
from backend.assets.kinds import TABLES, AssetKind
from backend.assets.references import NodeAt, Stored, check_references, wanted
from backend.assets.sample import sample_town

PIPE_LINE = [[4.8262, 45.7600], [4.8281, 45.7601], [4.8297, 45.7600]]


def pipe(**properties: Any) -> dict[str, Any]:
    props = {
        "kind": "pipe",
        "pipe_id": "p-1",
        "site_id": "bourg",
        "from_node": "n-1",
        "to_node": "n-2",
        "material": "ductile_iron",
        "diameter_mm": 150,
        "wall_thickness_mm": 6,
        "length_m": 275.0,
        "install_year": 1987,
    }
    props.update(properties)
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": PIPE_LINE},
        "properties": props,
    }


def point(kind: str, lon: float = 4.83, lat: float = 45.76, **properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"kind": kind, **properties},
    }


def ok(feature: object) -> ParsedFeature:
    result = parse_feature(0, feature)
    assert isinstance(result, ParsedFeature), result
    return result


def problems(feature: object) -> list[Problem]:
    result = parse_feature(7, feature)
    assert isinstance(result, list), f"accepted: {result}"
    assert all(p.index == 7 for p in result)
    return result


def only(feature: object, code: str, field: str | None = None) -> Problem:
    found = problems(feature)
    assert [p.code for p in found] == [code], found
    if field is not None:
        assert found[0].field == field
    return found[0]


def test_the_drawn_pipe_is_about_the_declared_length() -> None:
    # The fixtures below rely on it: 275 m declared for a 272.4 m drawing.
    assert line_length_m(PIPE_LINE) == pytest.approx(272.4, abs=0.05)


def test_a_pipe_becomes_its_row() -> None:
    parsed = ok(pipe())
    assert parsed.kind is AssetKind.PIPE and parsed.key == "p-1"
    assert parsed.feature_id == "pipe:p-1"
    row = parsed.row
    assert set(row) == set(TABLES[AssetKind.PIPE].column_names)
    assert row["diameter_mm"] == 150.0 and isinstance(row["diameter_mm"], float)
    assert (row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"]) == (
        4.8262,
        45.76,
        4.8297,
        45.7601,
    )
    assert row["geometry"] == {"type": "LineString", "coordinates": PIPE_LINE}


def test_a_missing_length_is_taken_from_the_geometry() -> None:
    feature = pipe()
    del feature["properties"]["length_m"]
    assert ok(feature).row["length_m"] == pytest.approx(line_length_m(PIPE_LINE), abs=0.01)


def test_every_kind_round_trips_feature_row_feature() -> None:
    """What GET serves is what PUT was given, plus the read-only updated_at/updated_by."""
    for feature in sample_town()["features"]:
        parsed = ok(feature)
        stored = {**parsed.row, "updated_at": "2026-01-12T09:30:00+00:00", "updated_by": "alice"}
        served = row_to_feature(parsed.kind, stored)
        assert served["id"] == feature["id"]
        assert served["geometry"] == feature["geometry"]
        assert served["properties"].pop("updated_by") == "alice"
        assert served["properties"].pop("updated_at") == "2026-01-12T09:30:00+00:00"
        given = {k: v for k, v in feature["properties"].items() if v is not None}
        assert {k: v for k, v in served["properties"].items() if v is not None} == given
        # and what is served is accepted again, unchanged
        assert ok(row_to_feature(parsed.kind, stored)).row == parsed.row


def test_a_circuit_has_null_geometry_and_a_composite_id() -> None:
    circuit = {
        "type": "Feature",
        "geometry": None,
        "properties": {"kind": "circuit", "cabinet_id": "cab-01", "channel": 2},
    }
    parsed = ok(circuit)
    assert parsed.key == "cab-01:2" and parsed.row == {
        "cabinet_id": "cab-01",
        "channel": 2,
        "name": None,
    }
    assert row_to_feature(AssetKind.CIRCUIT, parsed.row)["geometry"] is None
    with_point = {**circuit, "geometry": {"type": "Point", "coordinates": [4.8, 45.7]}}
    assert "null" in only(with_point, "wrong_geometry_type", "geometry").message


def test_a_site_centre_defaults_to_the_middle_of_its_box() -> None:
    ring = [[4.82, 45.75], [4.84, 45.75], [4.84, 45.77], [4.82, 45.75]]
    site = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"kind": "site", "site_id": "s", "name": "S", "timezone": "Europe/Paris"},
    }
    row = ok(site).row
    assert (row["centre_lon"], row["centre_lat"]) == pytest.approx((4.83, 45.76))
    site["properties"]["centre_lon"] = 4.83
    only(site, "bad_value", "properties")
    site["properties"]["timezone"] = "Mars/Olympus"
    site["properties"]["centre_lat"] = 45.76
    assert "IANA" in only(site, "bad_value", "properties.timezone").message


# --- each reason to refuse one feature -------------------------------------------------------


def test_unknown_kind() -> None:
    for kind in ("valve", None, ["pipe"], {"a": 1}):
        feature = {"type": "Feature", "geometry": None, "properties": {"kind": kind}}
        message = only(feature, "unknown_kind", "properties.kind").message
        assert "expected site, cabinet, circuit" in message


def test_not_a_feature() -> None:
    for value in (None, [], "Feature", {"type": "feature"}, {"type": "FeatureCollection"}):
        only(value, "not_a_feature")
    only({"type": "Feature", "geometry": None, "properties": None}, "bad_value", "properties")
    no_geometry = point("node", node_id="n", site_id="s", node_type="junction")
    del no_geometry["geometry"]
    only(no_geometry, "bad_geometry", "geometry")


def test_wrong_geometry_type_per_kind() -> None:
    as_point = pipe()
    as_point["geometry"] = {"type": "Point", "coordinates": [4.8, 45.7]}
    assert "LineString" in only(as_point, "wrong_geometry_type", "geometry").message
    line = {"type": "LineString", "coordinates": PIPE_LINE}
    luminaire = point(
        "luminaire",
        luminaire_id="l",
        cabinet_id="c",
        channel=1,
        rated_power_w=39,
        technology="led",
    )
    only({**luminaire, "geometry": line}, "wrong_geometry_type", "geometry")
    only({**luminaire, "geometry": None}, "wrong_geometry_type", "geometry")


def test_coordinates_out_of_range_name_the_position() -> None:
    node = point("node", 200.0, 45.7, node_id="n", site_id="s", node_type="junction")
    found = only(node, "coordinates_out_of_range", "geometry")
    assert "200.0" in found.message and found.location == "body.features[7].geometry"


def test_open_ring_and_short_line() -> None:
    short = pipe()
    short["geometry"]["coordinates"] = [[4.8, 45.7]]
    only(short, "too_few_positions", "geometry")
    zero = pipe()
    zero["geometry"]["coordinates"] = [[4.8, 45.7], [4.8, 45.7]]
    assert "zero length" in only(zero, "bad_geometry", "geometry").message


def test_negative_or_zero_diameter() -> None:
    found = only(pipe(diameter_mm=-100), "bad_value", "properties.diameter_mm")
    assert "-100" in found.message and "> 0" in found.message
    only(pipe(diameter_mm=0), "bad_value", "properties.diameter_mm")


def test_wall_thickness_must_be_less_than_the_radius() -> None:
    found = only(pipe(diameter_mm=110, wall_thickness_mm=55), "wall_too_thick")
    assert found.field == "properties.wall_thickness_mm"
    assert "radius (55 mm of a 110 mm diameter)" in found.message
    assert isinstance(
        parse_feature(0, pipe(diameter_mm=110, wall_thickness_mm=54.9)), ParsedFeature
    )


def test_length_far_from_the_geometry_names_the_tolerance() -> None:
    # 272.4 m drawn: 5 % is 13.6 m; 290 m is 17.6 m away, 285 and 260 are within
    found = only(pipe(length_m=290), "length_mismatch", "properties.length_m")
    assert "272.4 m" in found.message and "5%" in found.message and "13.6 m" in found.message
    assert isinstance(parse_feature(0, pipe(length_m=285)), ParsedFeature)
    assert isinstance(parse_feature(0, pipe(length_m=260)), ParsedFeature)
    only(pipe(length_m=258), "length_mismatch")


def test_short_pipes_get_an_absolute_tolerance() -> None:
    feature = pipe(length_m=5.0)
    feature["geometry"]["coordinates"] = [[4.8, 45.7], [4.80004, 45.7]]  # 3.1 m
    assert isinstance(parse_feature(0, feature), ParsedFeature)
    feature["properties"]["length_m"] = 5.2
    assert "2 m" in only(feature, "length_mismatch").message


def test_missing_unknown_and_badly_typed_properties_are_each_listed() -> None:
    feature = pipe(diamter_mm=150, material="unobtainium", install_year=1987.5)
    del feature["properties"]["diameter_mm"]
    found = {(p.code, p.field) for p in problems(feature)}
    assert found == {
        ("unknown_property", "properties"),
        ("missing_property", "properties.diameter_mm"),
        ("bad_value", "properties.material"),
        ("bad_value", "properties.install_year"),
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pipe_id", "has space"),
        ("pipe_id", "p:1"),
        ("pipe_id", "x" * 65),
        ("pipe_id", 12),
        ("site_id", "-leading-dash"),
        ("diameter_mm", "150"),
        ("diameter_mm", True),
        ("diameter_mm", float("nan")),
        ("diameter_mm", 1e400),
        ("install_year", 1492),
        ("material", "PVC"),
    ],
)
def test_hostile_or_wrong_values(name: str, value: object) -> None:
    only(pipe(**{name: value}), "bad_value", f"properties.{name}")


def test_text_refuses_control_characters_and_long_values() -> None:
    site = point("site", site_id="s", name="a\x00b", timezone="Europe/Paris")
    only(site, "bad_value", "properties.name")
    site["properties"]["name"] = "n" * 201
    only(site, "bad_value", "properties.name")
    site["properties"]["name"] = "caf\ud800"  # what json.loads makes of a lone "\ud800"
    assert "surrogate" in only(site, "bad_value", "properties.name").message
    site["properties"]["name"] = "Église Saint-Jean ☀"
    ok(site)


def test_a_refused_value_is_quoted_short() -> None:
    found = only(pipe(material="x" * 10_000), "bad_value")
    assert len(found.message) < 300


def test_luminaire_power_and_technology() -> None:
    base = {"luminaire_id": "l", "cabinet_id": "c", "channel": 1, "technology": "led"}
    only(point("luminaire", rated_power_w=0, **base), "bad_value", "properties.rated_power_w")
    only(point("luminaire", rated_power_w=-39, **base), "bad_value", "properties.rated_power_w")
    bad_channel = {**base, "channel": 256}
    only(point("luminaire", rated_power_w=39, **bad_channel), "bad_value", "properties.channel")
    bad_tech = {**base, "technology": "candle"}
    only(point("luminaire", rated_power_w=39, **bad_tech), "bad_value", "properties.technology")


def test_a_sensor_is_on_exactly_one_node_or_pipe() -> None:
    base = {"sensor_id": "s", "site_id": "bourg", "device_id": "leak-1"}
    ok(point("sensor", node_id="n-1", **base))
    ok(point("sensor", pipe_id="p-1", node_id=None, **base))
    only(point("sensor", **base), "bad_value", "properties")
    only(point("sensor", node_id="n", pipe_id="p", **base), "bad_value", "properties")
    only(point("sensor", node_id="n", **{**base, "device_id": "LEAK"}), "bad_value")


def test_a_feature_id_must_match_its_properties() -> None:
    assert ok({**pipe(), "id": "pipe:p-1"}).key == "p-1"
    assert "'pipe:p-1'" in only({**pipe(), "id": "pipe:p-2"}, "id_mismatch", "id").message
    only({**pipe(), "id": 3}, "id_mismatch")


def test_read_only_properties_are_ignored_on_input() -> None:
    parsed = ok(pipe(updated_at="2020-01-01", updated_by="mallory"))
    assert "updated_by" not in parsed.row


# --- the collection ---------------------------------------------------------------------------


def test_a_collection_lists_problems_by_index_and_keeps_good_features() -> None:
    features = [pipe(), pipe(pipe_id="p-2", diameter_mm=-1), {"type": "Feature"}, pipe()]
    parsed, found = parse_collection({"type": "FeatureCollection", "features": features})
    assert [f.index for f in parsed] == [0]
    assert [(p.index, p.code) for p in found] == [
        (1, "bad_value"),
        (2, "bad_value"),
        (3, "duplicate_id"),
    ]
    assert found[2].location == "body.features[3].id"
    assert "already feature 0" in found[2].message


def test_a_collection_must_be_one_and_not_too_big() -> None:
    for document in (None, [], {"type": "Feature"}, {"type": "FeatureCollection"}):
        _, found = parse_collection(document)
        assert [(p.index, p.code) for p in found] == [(None, "not_a_feature_collection")]
    too_many = {"type": "FeatureCollection", "features": [None] * (MAX_FEATURES + 1)}
    _, found = parse_collection(too_many)
    assert found[0].code == "too_many_features" and "10000" in found[0].message


# --- references (pure, with what the database would say in Stored) ---------------------------


def town() -> list[ParsedFeature]:
    parsed, found = parse_collection(sample_town())
    assert found == []
    return parsed


def codes(features: list[ParsedFeature], stored: Stored) -> list[tuple[str, str, str | None]]:
    by_index = {f.index: f.feature_id for f in features}
    return [
        (by_index[p.index], p.code, p.field)
        for p in check_references(features, stored)
        if p.index is not None
    ]


def test_the_sample_town_refers_only_to_itself() -> None:
    features = town()
    assert check_references(features, Stored()) == []
    want = wanted(features)
    assert not (want.sites or want.cabinets or want.circuits or want.nodes or want.pipes)
    assert want.devices == {"cab-0001", "cab-0002", "cab-0003"} | {
        f"leak-000{i}" for i in range(1, 5)
    }


def test_references_to_stored_assets_are_looked_up() -> None:
    features = [f for f in town() if f.kind in (AssetKind.PIPE,) and f.key == "p-03"]
    want = wanted(features)
    assert want.sites == {"bourg"} and want.nodes == {"n-03", "n-04"}
    assert [c for _, c, _ in codes(features, Stored())] == ["unknown_reference"] * 3
    stored = Stored(
        sites={"bourg"},
        nodes={"n-03": NodeAt("bourg", 4.8262, 45.76), "n-04": NodeAt("bourg", 4.8297, 45.76)},
    )
    assert codes(features, stored) == []


def test_unknown_node_cabinet_circuit_and_site() -> None:
    features = town()
    by_id = {f.feature_id: f for f in features}
    keep = [by_id["pipe:p-03"], by_id["luminaire:lum-0001"], by_id["circuit:cab-02:1"]]
    keep.append(by_id["sensor:s-04"])
    stored = Stored(sites={"bourg"}, nodes={"n-03": NodeAt("bourg", 4.8262, 45.76)})
    assert codes(keep, stored) == [
        ("pipe:p-03", "unknown_reference", "properties.to_node"),
        ("luminaire:lum-0001", "unknown_reference", "properties.cabinet_id"),
        ("circuit:cab-02:1", "unknown_reference", "properties.cabinet_id"),
        ("sensor:s-04", "unknown_reference", "properties.pipe_id"),
    ]
    stored.cabinets = {"cab-01": "bourg", "cab-02": "bourg"}
    assert ("luminaire:lum-0001", "unknown_reference", "properties.channel") in codes(keep, stored)


def test_a_pipe_must_end_on_its_nodes_and_stay_on_its_site() -> None:
    features = [f for f in town() if f.feature_id == "pipe:p-03"]
    moved = Stored(
        sites={"bourg"},
        nodes={
            "n-03": NodeAt("bourg", 4.8262, 45.7602),  # 22 m north
            "n-04": NodeAt("other", 4.8297, 45.76),
        },
    )
    found = check_references(features, moved)
    assert [(p.code, p.field) for p in found] == [
        ("endpoint_mismatch", "properties.from_node"),
        ("site_mismatch", "properties.to_node"),
    ]
    assert "22.2 m from node 'n-03'; at most 10 m" in found[0].message


def test_a_device_belongs_to_one_asset() -> None:
    features = town()
    stored = Stored(device_owners={"cab-0001": "cabinet:old-cab", "leak-0004": "sensor:s-04"})
    found = codes(features, stored)
    # leak-0004 is held by s-04, which the request redefines: no conflict
    assert found == [("cabinet:cab-01", "duplicate_device", "properties.device_id")]
    twice = copy.deepcopy(sample_town())
    for feature in twice["features"]:
        if feature["id"] == "cabinet:cab-02":
            feature["properties"]["device_id"] = "cab-0001"
    parsed, _ = parse_collection(twice)
    assert codes(parsed, Stored()) == [
        ("cabinet:cab-02", "duplicate_device", "properties.device_id")
    ]
