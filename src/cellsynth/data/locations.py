"""Putting user sets on one stations table: a training set and a held-out set read from two files
(:func:`share_stations`), and fewer, busier locations for data with too many of them
(:func:`keep_top_locations`).

    train, test = share_stations(load_location_sequences("real.data", "gps"),
                                 load_location_sequences("test.data", "gps"))
    (train, test), report = keep_top_locations([train, test], keep=400)   # GeoLife: ~18,000 locations
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.geo import unit_sphere

__all__ = ["LocationReport", "keep_top_locations", "share_stations"]


def share_stations(*datasets: UserMobility) -> tuple[UserMobility, ...]:
    """The datasets re-indexed onto one stations table: the first dataset's stations in their order, then the
    stations only later datasets have, in order of appearance. Returned unchanged when every dataset already
    has the same table.

    A station id in several tables must have the same coordinates and features in each (the same place);
    otherwise :class:`DataError` names the id. Tables must all have coordinates or all lack them, and have
    the same feature columns.
    """
    if not datasets:
        raise DataError("share_stations needs at least one dataset")
    first = datasets[0].stations
    if all(d.stations.equals(first) for d in datasets[1:]):
        return tuple(datasets)
    for data in datasets[1:]:
        if data.stations.has_coordinates != first.has_coordinates:
            raise DataError(
                "one stations table has coordinates and the other has none; give both users' tables with "
                "coordinates (or both without)",
                source=data.stations.source or data.source,
            )
        if tuple(data.stations.feature_names) != tuple(first.feature_names):
            raise DataError(
                f"the stations tables have different feature columns ({list(first.feature_names)} and "
                f"{list(data.stations.feature_names)}); give both users' tables the same columns",
                source=data.stations.source or data.source,
            )
    position: dict[str, tuple[int, int]] = {}  # station id -> (dataset, row) where it first appears
    for k, data in enumerate(datasets):
        table = data.stations
        for row, sid in enumerate(table.ids):
            sid = str(sid)
            if sid not in position:
                position[sid] = (k, row)
                continue
            k0, row0 = position[sid]
            other = datasets[k0].stations
            if not _same_station(other, row0, table, row):
                raise DataError(
                    f"station {sid!r} has other coordinates or features here than in "
                    f"{other.source or f'dataset {k0 + 1}'}; one id must name one place in every table",
                    source=table.source or data.source,
                )
    ids = list(position)
    tables = [d.stations for d in datasets]
    rows = [position[sid] for sid in ids]
    union = Stations(
        ids=np.asarray(ids, dtype=object),
        lat=None if first.lat is None else np.array([tables[k].lat[r] for k, r in rows]),
        lon=None if first.lon is None else np.array([tables[k].lon[r] for k, r in rows]),
        features=np.array([tables[k].features[r] for k, r in rows], dtype=np.float32).reshape(
            len(ids), len(first.feature_names)
        ),
        feature_names=first.feature_names,
        source=first.source,
    )
    return tuple(
        replace(d, locations=union.index_of(d.stations.ids)[d.locations], stations=union) for d in datasets
    )


def _same_station(a: Stations, i: int, b: Stations, j: int) -> bool:
    same_place = not a.has_coordinates or (a.lat[i] == b.lat[j] and a.lon[i] == b.lon[j])
    return bool(same_place and np.array_equal(a.features[i], b.features[j]))


@dataclass(frozen=True)
class LocationReport:
    """What :func:`keep_top_locations` did: ``kept`` of ``visited`` locations the reference users visit,
    carrying ``share`` of their visits; every other location was mapped to its nearest kept one."""

    kept: int
    visited: int
    share: float

    def __str__(self) -> str:
        return (
            f"kept the {self.kept} most visited of {self.visited} visited locations ({self.share:.1%} of the "
            "training users' visits); every other location is mapped to the nearest kept one (great-circle)"
        )


def keep_top_locations(
    datasets: Sequence[UserMobility], keep: int, *, reference: int = 0
) -> tuple[tuple[UserMobility, ...], LocationReport]:
    """Keep the ``keep`` locations that ``datasets[reference]`` (the training users) visits most, and move
    every visit elsewhere to the nearest kept location by great-circle distance (ties in visits: the lower
    station index). All datasets must share one stations table with coordinates (:func:`share_stations`).

    For data with far more locations than a model can hold (GeoLife: ~18,000 visited; MSTDiff's rate matrix
    is dense ``N x N``). The same mapping applies to every dataset, so the held-out users are compared on the
    locations the model can produce; the report says how much of the data it moved.
    """
    if isinstance(keep, bool) or not isinstance(keep, int | np.integer) or keep < 2:
        raise DataError(f"keep must be a whole number of locations >= 2, got {keep!r}")
    stations = datasets[reference].stations
    for data in datasets:
        if not data.stations.equals(stations):
            raise DataError(
                "the user sets have different stations tables; put them on one first (share_stations)",
                source=data.source,
            )
    if not stations.has_coordinates:
        raise DataError(
            "mapping locations to the nearest kept one needs station coordinates; this stations table has none",
            source=stations.source,
        )
    counts = np.bincount(datasets[reference].locations.ravel(), minlength=len(stations))
    visited = int((counts > 0).sum())
    kept = np.sort(np.argsort(-counts, kind="stable")[: min(int(keep), visited)])
    points = unit_sphere(stations.lat, stations.lon)
    nearest_kept = cKDTree(points[kept]).query(points)[1]  # every station -> index into ``kept``
    table = stations.subset(kept)
    moved = tuple(replace(d, locations=nearest_kept[d.locations], stations=table) for d in datasets)
    share = float(counts[kept].sum() / counts.sum())
    return moved, LocationReport(kept=len(kept), visited=visited, share=share)
