"""The station graph: the 1 km radius on known points, kNN without coordinates, no isolated node,
training standardisation reused, and new stations attached to training neighbours only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.data.model import Stations
from cellsynth.errors import DataError
from cellsynth.graphs.stations import EARTH_RADIUS_KM, StationGraphBuilder, haversine_km

LAT0, LON0 = 45.0, 9.0
KM_LAT = 180 / (np.pi * EARTH_RADIUS_KM)  # degrees of latitude per km


def pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.T.tolist()))


def three_points() -> Stations:
    # a-b 0.8 km apart (linked), b-c 1.5 km apart, a-c 2.3 km apart (not linked).
    lat = LAT0 + np.array([0.0, 0.8, 2.3]) * KM_LAT
    return Stations(["a", "b", "c"], lat, np.full(3, LON0), [[1.0], [2.0], [3.0]], ("poi",))


def test_haversine_known_distance():
    assert haversine_km(LAT0, LON0, LAT0 + KM_LAT, LON0) == pytest.approx(1.0, rel=1e-9)
    # one degree of longitude at the equator
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(111.195, rel=1e-4)


def test_radius_graph_on_three_points():
    builder = StationGraphBuilder(radius_km=1.0).fit(three_points())
    g = builder.graph()
    # a-b within 1 km; c has nothing within 1 km, so it is joined to its nearest station, b.
    assert pairs(g.edge_index) == {(0, 1), (1, 0), (1, 2), (2, 1)}
    wide = StationGraphBuilder(radius_km=2.5).fit(three_points()).graph()
    assert len(pairs(wide.edge_index)) == 6
    assert torch.equal(torch.bincount(g.edge_index[0], minlength=3) > 0, torch.ones(3, dtype=torch.bool))


def test_features_are_standardised_with_training_constants():
    builder = StationGraphBuilder().fit(three_points())
    x = builder.graph().x.numpy()
    np.testing.assert_allclose(x[:, 0], (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]), rtol=1e-6)
    new = Stations(["n"], [LAT0], [LON0], [[5.0]], ("poi",))
    np.testing.assert_allclose(builder.features(new), [[(5 - 2) / np.std([1, 2, 3])]])


def test_knn_without_coordinates():
    feats = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    stations = Stations([f"s{i}" for i in range(6)], features=feats)
    g = StationGraphBuilder(k=2).fit(stations).graph()
    assert pairs(g.edge_index) == {
        (i, j) for grp in ((0, 1, 2), (3, 4, 5)) for i in grp for j in grp if i != j
    }


def test_coordinates_without_features_become_features():
    st = Stations(["a", "b"], [LAT0, LAT0 + 0.5 * KM_LAT], [LON0, LON0])
    builder = StationGraphBuilder().fit(st)
    assert builder.num_features == 2 and pairs(builder.graph().edge_index) == {(0, 1), (1, 0)}
    with pytest.raises(DataError, match="neither feature columns nor coordinates"):
        StationGraphBuilder().fit(Stations(["a", "b"]))


def test_new_station_attaches_to_training_neighbours_only():
    builder = StationGraphBuilder(radius_km=1.0).fit(three_points())
    base = builder.graph()
    near_a = LAT0 + 0.3 * KM_LAT  # within 1 km of a (0.3) and b (0.5), 2.0 km from c
    far = LAT0 + 10 * KM_LAT  # nothing within 1 km: nearest training station is c
    new = Stations(["n1", "n2"], [near_a, far], [LON0, LON0], [[1.5], [9.0]], ("poi",))
    g = builder.extended_graph(new)
    assert g.num_nodes == 5 and torch.equal(g.new_nodes, torch.tensor([3, 4]))
    added = pairs(g.edge_index) - pairs(base.edge_index)
    assert added == {(0, 3), (1, 3), (2, 4)}  # into the new nodes only, from training stations only
    assert torch.equal(g.x[:3], base.x)


def test_new_station_knn_without_coordinates():
    feats = np.array([[0.0], [1.0], [2.0], [10.0]])
    builder = StationGraphBuilder(k=2).fit(Stations(["a", "b", "c", "d"], features=feats))
    g = builder.extended_graph(Stations(["n"], features=[[9.0]]))
    added = pairs(g.edge_index) - pairs(builder.graph().edge_index)
    assert added == {(3, 4), (2, 4)}


def test_incompatible_new_stations():
    builder = StationGraphBuilder().fit(three_points())
    with pytest.raises(DataError, match="features"):
        builder.features(Stations(["x"], [LAT0], [LON0], [[1.0]], ("other",)))
    with pytest.raises(DataError, match="lat/lon"):
        builder.extended_graph(Stations(["x"], features=[[1.0]], feature_names=("poi",)))
