"""GeoJSON grids (centroids by the shoelace formula), Milan per-cell totals, and the FORMATS registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellsynth.data.loaders import FORMATS, load_grid, load_milan_totals, polygon_centroid
from cellsynth.data.model import Stations
from cellsynth.errors import DataError
from tests.conftest import shared_file


def feature(cell, rings, kind="Polygon"):
    return {
        "type": "Feature",
        "geometry": {"type": kind, "coordinates": rings},
        "properties": {"cellId": cell},
    }


def unit_square(x, y, s=1.0):
    return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]


def write_grid(path, features, **extra):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **extra}))
    return path


def test_centroids_by_hand():
    # Square: its middle, whatever the winding and whether the ring is closed.
    assert polygon_centroid({"type": "Polygon", "coordinates": [unit_square(2, 3, 2)]}) == pytest.approx(
        (3, 4)
    )
    assert polygon_centroid(
        {"type": "Polygon", "coordinates": [unit_square(2, 3, 2)[::-1][:-1]]}
    ) == pytest.approx((3, 4))
    # L shape = 2x1 bar [0,2]x[0,1] (area 2, centre (1, .5)) + 1x1 square [0,1]x[1,2] (area 1, centre (.5, 1.5)):
    # centroid ((2*1 + 1*.5)/3, (2*.5 + 1*1.5)/3) = (5/6, 5/6).
    ell = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 0]]
    assert polygon_centroid({"type": "Polygon", "coordinates": [ell]}) == pytest.approx((5 / 6, 5 / 6))
    # A 4x4 square with a 1x1 hole at [0,1]x[0,1]: (16*(2,2) - 1*(.5,.5)) / 15.
    holed = {"type": "Polygon", "coordinates": [unit_square(0, 0, 4), unit_square(0, 0, 1)]}
    assert polygon_centroid(holed) == pytest.approx((31.5 / 15, 31.5 / 15))
    # MultiPolygon: two unit squares, area-weighted.
    multi = {"type": "MultiPolygon", "coordinates": [[unit_square(0, 0)], [unit_square(4, 0)]]}
    assert polygon_centroid(multi) == pytest.approx((2.5, 0.5))
    # Tiny cells far from the origin (Milan-sized, in degrees) keep their precision.
    tiny = unit_square(9.0114910478323, 45.35668565341486, 0.003)
    assert polygon_centroid({"type": "Polygon", "coordinates": [tiny]}) == pytest.approx(
        (9.0129910478323, 45.35818565341486), abs=1e-12
    )


def test_load_grid_ids_sorted_numerically(tmp_path):
    path = write_grid(
        tmp_path / "g.geojson",
        [feature(10, [unit_square(9.2, 45.5, 0.01)]), feature(2, [unit_square(9.1, 45.4, 0.01)])],
        crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}},
    )
    grid = load_grid(path)
    assert list(grid.ids) == ["2", "10"]
    np.testing.assert_allclose(grid.lon, [9.105, 9.205])
    np.testing.assert_allclose(grid.lat, [45.405, 45.505])
    assert grid.feature_names == ()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": "Feature"}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "no features"),
        (
            {"type": "FeatureCollection", "features": [feature("a", [unit_square(0, 0)])]},
            "feature 0: property",
        ),
        (
            {"type": "FeatureCollection", "features": [feature(1, [[0, 0], [1, 1]], "LineString")]},
            "LineString",
        ),
        (
            {"type": "FeatureCollection", "features": [feature(1, [[[0, 0], [1, 1], [2, 2], [0, 0]]])]},
            "zero area",
        ),
        ({"type": "FeatureCollection", "features": [feature(1, [[[0, 0], [1, "x"], [2, 2]]])]}, "numbers"),
        (
            {
                "type": "FeatureCollection",
                "features": [feature(1, [unit_square(0, 0)]), feature(1, [unit_square(1, 0)])],
            },
            "duplicate cellId 1",
        ),
        (
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32632"}},
                "features": [feature(1, [unit_square(0, 0)])],
            },
            "reproject",
        ),
        # Found by tests/test_fuzz.py: each of these ended in a traceback (AttributeError, TypeError...).
        (
            {"type": "FeatureCollection", "features": [[None]]},
            r"feature 0 is \[None\], expected a GeoJSON Feature",
        ),
        (
            {"type": "FeatureCollection", "features": [{"properties": [1]}]},
            r"feature 0: properties is \[1\], expected an object with 'cellId'",
        ),
        (
            {"type": "FeatureCollection", "crs": [1], "features": [feature(1, [unit_square(0, 0)])]},
            r"crs \[1\] does not name a coordinate system",
        ),
        (
            {
                "type": "FeatureCollection",
                "crs": {"properties": {"name": ["EPSG:4326"]}},
                "features": [feature(1, [unit_square(0, 0)])],
            },
            "does not name a coordinate system",
        ),
        *(
            (
                {"type": "FeatureCollection", "features": [feature(cell, [unit_square(0, 0)])]},
                f"is {shown}, expected",
            )
            for cell, shown in [(float("nan"), "nan"), (float("inf"), "inf"), (2**70, str(2**70))]
        ),
        (
            {"type": "FeatureCollection", "features": [feature(1, 5)]},
            "feature 0 \\(cellId 1\\): the Polygon's coordinates are not lists of rings",
        ),
        (
            {"type": "FeatureCollection", "features": [feature(1, [5], "MultiPolygon")]},
            "the MultiPolygon's coordinates are not lists of rings",
        ),
        ({"type": "FeatureCollection", "features": [feature(1, [[{}, {}, {}]])]}, "numbers"),
        (
            {"type": "FeatureCollection", "features": [feature(1, [[[10**400, 0], [1, 0], [1, 1]]])]},
            "numbers",
        ),
    ],
)
def test_bad_grids(tmp_path, doc, message):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message) as err:
        load_grid(path)
    assert str(path) in str(err.value)


def test_not_json(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text("{nope")
    with pytest.raises(DataError, match="not valid JSON"):
        load_grid(path)


@pytest.fixture
def three_cells(tmp_path):
    features = [feature(c, [unit_square(9 + c / 100, 45.4, 0.01)]) for c in (1, 2, 3)]
    return write_grid(tmp_path / "g.geojson", features)


def test_milan_totals(tmp_path, three_cells):
    totals = tmp_path / "totals.csv"
    totals.write_text("square_id,internet\n3,30.5\n1,10\n2,0\n")
    stations = load_milan_totals(totals, three_cells)
    assert list(stations.ids) == ["1", "2", "3"] and stations.feature_names == ("internet_total",)
    np.testing.assert_allclose(stations.features[:, 0], [10, 0, 30.5])
    np.testing.assert_allclose(stations.lon, [9.015, 9.025, 9.035])
    # Cells without a total: an error, or left out on request.
    totals.write_text("square_id,internet\n1,10\n3,30\n")
    with pytest.raises(DataError, match="1 grid cell.* no total: 2"):
        load_milan_totals(totals, three_cells)
    dropped = load_milan_totals(totals, load_grid(three_cells), missing="drop")
    assert list(dropped.ids) == ["1", "3"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("square_id,internet\n1,1\n2,2\n3,3\n4,4\n", "line 5: square_id 4 is not a cell of the grid"),
        ("square_id,internet\n1,1\n2,2\n2,3\n3,3\n", "line 3: square_id 2 appears more than once"),
        ("square_id,internet\n1,1\n2,-2\n3,3\n", "line 3: internet '-2' is not a non-negative number"),
        ("square_id,internet\n1,1\n2,abc\n3,3\n", "line 3: internet 'abc'"),
        ("square_id,internet\n1,1\n2,\n3,3\n", "line 3: internet ''"),
        ("square_id,internet\n1,1\n2.5,2\n3,3\n", "line 3: square_id '2.5' is not an integer"),
        ("square_id,total\n1,1\n", r"missing column\(s\) \['internet'\]"),
    ],
)
def test_bad_totals(tmp_path, three_cells, body, message):
    totals = tmp_path / "totals.csv"
    totals.write_text(body)
    with pytest.raises(DataError, match=message) as err:
        load_milan_totals(totals, three_cells)
    assert str(err.value).startswith(str(totals))


def test_formats_registry():
    assert {
        "telecom-italia",
        "stkdiff",
        "csv",
        "mobility-csv",
        "location-sequences",
        "grid",
        "milan-totals",
    } <= set(FORMATS)
    for name, fmt in FORMATS.items():
        assert callable(fmt.loader) and fmt.returns in ("traffic", "mobility", "stations"), name
        assert fmt.description and "\n" not in fmt.description and fmt.loader.__doc__


@pytest.mark.realdata
def test_real_grids_and_totals(shared_data):
    milan = load_grid(shared_file(shared_data, "milan/milano-grid.geojson"))
    assert len(milan) == 10_000 and milan.ids[0] == "1" and milan.ids[-1] == "10000"
    # Milan's bounding box, roughly the comune and surroundings.
    assert (45.3 < milan.lat).all() and (milan.lat < 45.6).all()
    assert (9.0 < milan.lon).all() and (milan.lon < 9.35).all()
    # Cell 1 is the south-west corner; ids run west to east, then south to north (100 x 100).
    assert milan.lon[1] > milan.lon[0] and milan.lat[100] > milan.lat[0]
    trentino = load_grid(shared_file(shared_data, "milan/trentino-grid.geojson"))
    assert len(trentino) == 6_575 and trentino.ids[0] == "38" and trentino.ids[-1] == "11454"
    assert (45.6 < trentino.lat).all() and (trentino.lat < 46.6).all()
    assert (10.4 < trentino.lon).all() and (trentino.lon < 12.0).all()

    totals = load_milan_totals(shared_file(shared_data, "milan/square_totals_2mo.csv"), milan)
    assert isinstance(totals, Stations) and len(totals) == 10_000
    internet = totals.features[:, 0]
    assert internet.min() > 0 and abs(internet.mean() - 555_289) / 555_289 < 1e-3
