"""GeoJSON grids of square cells (the Telecom Italia Milan and Trentino grids) and per-cell Milan totals.

A grid cell becomes a station: id ``str(cellId)``, lat/lon the area-weighted centroid of its polygon. The
centroid is computed here with the shoelace formula (no geopandas/shapely); it is planar in degrees, which for
cells of 235 m to 1 km differs from the geodesic centroid by far less than a metre.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd

from cellsynth.data.loaders._common import (
    FLOAT32_MAX,
    existing_file,
    float32_overflow,
    number_hint,
    read_csv,
    read_text,
    source_name,
)
from cellsynth.data.model import Stations
from cellsynth.errors import DataError

__all__ = ["cell_positions", "load_grid", "load_milan_totals", "polygon_centroid"]

# CRS names that mean longitude/latitude in WGS84 degrees (GeoJSON's default, RFC 7946).
_WGS84 = {
    "urn:ogc:def:crs:EPSG::4326",
    "EPSG:4326",
    "urn:ogc:def:crs:OGC:1.3:CRS84",
    "urn:ogc:def:crs:OGC::CRS84",
}


def _ring_area_centroid(ring: list) -> tuple[float, float, float]:
    """Signed area and centroid of one linear ring ``[[x, y], ...]`` (closed or not), by the shoelace formula.

    Plain Python: grid rings have 5 vertices, where numpy's per-call overhead costs more than the arithmetic.
    """
    if not isinstance(ring, (list, tuple)) or len(ring) < 3:
        raise ValueError("a ring needs at least 3 [lon, lat] positions")
    try:
        points = [(float(p[0]), float(p[1])) for p in ring]
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as err:
        raise ValueError(f"ring positions must be [lon, lat] numbers: {err}") from err
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in points):
        raise ValueError("coordinates contain NaN or infinity")
    # Shift to the first vertex: cross products of raw degrees (~45 x 9) nearly cancel for 235 m cells and
    # would lose most of their digits; relative coordinates keep them.
    x0, y0 = points[0]
    area2 = sx = sy = 0.0
    for (xa, ya), (xb, yb) in zip(points, points[1:] + points[:1], strict=True):
        xa, ya, xb, yb = xa - x0, ya - y0, xb - x0, yb - y0
        cross = xa * yb - xb * ya  # the closing edge of a closed ring has zero cross: no special case
        area2 += cross
        sx += (xa + xb) * cross
        sy += (ya + yb) * cross
    if area2 == 0.0:
        return 0.0, x0, y0
    return area2 / 2.0, sx / (3.0 * area2) + x0, sy / (3.0 * area2) + y0


def polygon_centroid(geometry: dict) -> tuple[float, float]:
    """Area-weighted centroid ``(lon, lat)`` of a GeoJSON Polygon or MultiPolygon (holes subtracted).

    Raises :class:`ValueError` for other geometry types, malformed coordinates or a zero total area.
    """
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        polygons = [geometry.get("coordinates")]
    elif kind == "MultiPolygon":
        polygons = geometry.get("coordinates")
    else:
        raise ValueError(f"geometry type {kind!r} is not a Polygon or MultiPolygon")
    if not isinstance(polygons, list) or not all(isinstance(rings, list) for rings in polygons):
        raise ValueError(f"the {kind}'s coordinates are not lists of rings of [lon, lat] positions")
    total = sx = sy = 0.0
    for rings in polygons:
        for r, ring in enumerate(rings):
            area, cx, cy = _ring_area_centroid(ring)
            # The exterior ring adds, holes subtract, whatever their winding order.
            weight = abs(area) if r == 0 else -abs(area)
            total += weight
            sx += weight * cx
            sy += weight * cy
    if total <= 0.0:
        raise ValueError("the polygon has zero area")
    return sx / total, sy / total


def _load_geojson(path: str | os.PathLike) -> tuple[dict, str]:
    path = existing_file(path)
    src = source_name(path)
    text = read_text(path)  # ``.geojson.gz`` too; a damaged gzip or a wrong encoding named here
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON: {err}", source=src) from err
    return doc, src


def load_grid(geojson: str | os.PathLike, *, id_property: str = "cellId") -> Stations:
    """Read a GeoJSON FeatureCollection of cell polygons as :class:`Stations` (one per cell).

    Station ids are ``str(cellId)`` in increasing numeric cellId order; lat/lon are the polygon centroids;
    there are no features. Each feature needs an integer ``properties[id_property]`` (unique) and a Polygon
    (or MultiPolygon) in WGS84 longitude/latitude. Anything else raises :class:`DataError` naming the feature.
    """
    doc, src = _load_geojson(geojson)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise DataError("expected a GeoJSON FeatureCollection of cell polygons", source=src)
    crs = _crs_name(doc, src)
    if crs is not None and crs not in _WGS84:
        raise DataError(
            f"coordinates are in {crs!r}, not WGS84 longitude/latitude; reproject the grid to EPSG:4326",
            source=src,
        )
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise DataError("the FeatureCollection has no features", source=src)
    ids = np.empty(len(features), dtype=np.int64)
    lon = np.empty(len(features))
    lat = np.empty(len(features))
    for i, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise DataError(f"feature {i} is {feature!r:.60}, expected a GeoJSON Feature object", source=src)
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise DataError(
                f"feature {i}: properties is {props!r:.60}, expected an object with {id_property!r}",
                source=src,
            )
        cell = _cell_id(props.get(id_property))
        if cell is None:
            raise DataError(
                f"feature {i}: property {id_property!r} is {props.get(id_property)!r:.60}, expected an integer "
                "cell id",
                source=src,
            )
        ids[i] = cell
        try:
            lon[i], lat[i] = polygon_centroid(feature.get("geometry"))
        except ValueError as err:
            raise DataError(f"feature {i} ({id_property} {ids[i]}): {err}", source=src) from err
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DataError(
            f"duplicate {id_property} {', '.join(map(str, dup[:5]))}; cell ids must be unique", source=src
        )
    order = np.argsort(ids, kind="stable")
    return Stations(ids=ids[order].astype(str), lat=lat[order], lon=lon[order], source=src)


def _crs_name(doc: dict, src: str) -> str | None:
    """The name of a grid's coordinate system (``crs.properties.name``, GeoJSON 2008); None without one."""
    crs = doc.get("crs")
    properties = crs.get("properties") if isinstance(crs, dict) else crs
    name = properties.get("name") if isinstance(properties, dict) else properties
    if name is not None and not isinstance(name, str):
        raise DataError(
            f"crs {crs!r:.80} does not name a coordinate system (expected "
            '{"type": "name", "properties": {"name": "EPSG:4326"}}); fix it or remove it',
            source=src,
        )
    return name


def _cell_id(value) -> int | None:
    """A cell id as an int64, or None for anything else (text, NaN, 1.5, 2**70, true).

    Integral floats (1.0) are accepted since some GeoJSON writers emit every number as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():  # also NaN and infinities
        return None
    value = int(value)
    return value if -(2**63) <= value < 2**63 else None


def cell_positions(stations: Stations, *, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer cell ids of a grid's stations, sorted, and the station row of each: ``(sorted_ids, rows)``.

    Lets a reader map raw integer square ids to station rows with one ``np.searchsorted``.
    """
    try:
        cells = np.array([int(s) for s in stations.ids], dtype=np.int64)
    except ValueError as err:
        raise DataError(f"grid station ids must be integer cell ids: {err}", source=source) from err
    order = np.argsort(cells, kind="stable")
    return cells[order], order


def _grid_stations(grid: str | os.PathLike | Stations) -> Stations:
    return grid if isinstance(grid, Stations) else load_grid(grid)


def load_milan_totals(
    totals_csv: str | os.PathLike,
    grid: str | os.PathLike | Stations,
    *,
    column: str = "internet",
    feature: str = "internet_total",
    missing: str = "error",
) -> Stations:
    """Grid cells with a per-cell total as a feature (``square_totals_2mo.csv``: ``square_id,internet``).

    Returns the grid's :class:`Stations` (centroids) with one feature column ``feature`` holding the total of
    ``column``. Totals for square ids not in the grid, duplicated or non-integer square ids, and missing,
    non-numeric, NaN or negative totals raise :class:`DataError` naming the CSV line. Grid cells without a
    total raise too (``missing="error"``), or are left out of the result (``missing="drop"``, explicit).
    """
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', got {missing!r}")
    stations = _grid_stations(grid)
    path = existing_file(totals_csv)
    src = source_name(path)
    frame = read_csv(path, all_text=True)
    absent = [c for c in ("square_id", column) if c not in frame.columns]
    if absent:
        raise DataError(f"missing column(s) {absent} (columns: {list(frame.columns)})", source=src)
    if frame.empty:
        raise DataError("no rows", source=src)
    # CSV line of data row k: the header is line 1.
    squares = pd.to_numeric(frame["square_id"].str.strip(), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(squares) | (squares != np.round(squares))
    if bad.any():
        k = int(bad.argmax())
        raise DataError(
            f"line {k + 2}: square_id {frame['square_id'].iloc[k]!r} is not an integer", source=src
        )
    totals = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(totals) | (totals < 0)
    if bad.any():
        k = int(bad.argmax())
        raw = frame[column].iloc[k]
        raise DataError(
            f"line {k + 2}: {column} {raw!r} is not a non-negative number{number_hint(raw)}", source=src
        )
    too_large = totals > FLOAT32_MAX  # features are float32
    if too_large.any():
        k = int(too_large.argmax())
        raise DataError(f"line {k + 2}: {column} {float32_overflow(totals[k])}", source=src)
    squares = squares.astype(np.int64)
    _, first, counts = np.unique(squares, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(np.sort(first[counts > 1])[0])
        raise DataError(f"line {k + 2}: square_id {squares[k]} appears more than once", source=src)

    sorted_cells, rows = cell_positions(stations, source=src)
    at = np.clip(np.searchsorted(sorted_cells, squares), 0, len(sorted_cells) - 1)
    unknown = sorted_cells[at] != squares
    if unknown.any():
        k = int(unknown.argmax())
        raise DataError(
            f"line {k + 2}: square_id {squares[k]} is not a cell of the grid ({int(unknown.sum())} unknown "
            f"square id(s) in all)",
            source=src,
        )
    value = np.full(len(stations), np.nan)
    value[rows[at]] = totals
    without = np.isnan(value)
    if without.any() and missing == "error":
        ids = stations.ids[without]
        raise DataError(
            f"{len(ids)} grid cell(s) have no total: {', '.join(ids[:5])}"
            + (" ..." if len(ids) > 5 else "")
            + "; to keep only the cells with a total, pass missing='drop' (--missing drop on the command line)",
            source=src,
        )
    keep = ~without
    kept = stations.subset(keep)
    return Stations(
        ids=kept.ids,
        lat=kept.lat,
        lon=kept.lon,
        features=np.concatenate([kept.features, value[keep, None]], axis=1),
        feature_names=(*kept.feature_names, feature),
        source=src,
    )
