"""Transition graphs: kNN (cosine, Euclidean, haversine) against brute force, the threshold rule, B and R,
and the linking of disconnected components."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.errors import ConfigError, DataError
from cellsynth.graphs.transitions import (
    EARTH_RADIUS_KM,
    connect_components,
    geographic_knn_graph,
    knn_graph,
    rate_matrix,
    station_embeddings,
)
from tests.conftest import shared_file


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: on a shared 2-core machine a second intra-op thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def brute_knn(dist: np.ndarray, k: int) -> np.ndarray:
    d = dist + np.diag(np.full(len(dist), np.inf))
    return np.sort(np.argsort(d, axis=1, kind="stable")[:, :k], axis=1)


def cosine_distances(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - u @ u.T


def haversine_km(lat, lon) -> np.ndarray:
    p, q = np.radians(lat), np.radians(lon)
    a = (
        np.sin((p[:, None] - p[None]) / 2) ** 2
        + np.cos(p[:, None]) * np.cos(p[None]) * np.sin((q[:, None] - q[None]) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def neighbours(adjacency: sp.csr_matrix) -> list[list[int]]:
    a = adjacency.tocsr()
    return [sorted(a.indices[a.indptr[i] : a.indptr[i + 1]].tolist()) for i in range(a.shape[0])]


def test_rate_matrix_from_adjacency():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0]])  # diagonal ignored
    r = rate_matrix(a, k=2)
    b = np.array([[0, 2, 0, 0], [2, 0, 1, 0], [0, 1, 0, 2], [0, 0, 2, 0]]) / 4  # 1/K mutual, 1/2K one-way
    np.testing.assert_allclose(r, b - np.diag(b.sum(1)))
    np.testing.assert_allclose(r, r.T)
    np.testing.assert_allclose(r.sum(1), 0, atol=1e-15)
    np.testing.assert_allclose(rate_matrix(sp.csr_matrix(a), 2), r)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_matches_brute_force(metric):
    x = np.random.default_rng(0).normal(size=(60, 5))
    k = 4
    g = knn_graph(x, k, metric=metric, quantile=None)
    dist = cosine_distances(x) if metric == "cosine" else np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert neighbours(g.adjacency) == brute_knn(dist, k).tolist()
    assert g.threshold == np.inf and g.k == k and g.metric == metric
    np.testing.assert_allclose(g.rate, g.rate.T)
    np.testing.assert_allclose(g.rate.sum(1), 0, atol=1e-12)
    np.testing.assert_allclose(
        g.rate - np.diag(np.diag(g.rate)), g.weights.toarray() - np.diag(g.weights.diagonal())
    )


def test_default_threshold_is_a_quantile_of_candidate_distances():
    x = np.random.default_rng(1).normal(size=(80, 3))
    k = 5
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    nn = brute_knn(dist, k)
    cand = np.take_along_axis(dist, nn, axis=1)
    g = knn_graph(x, k, metric="euclidean")
    assert g.threshold == pytest.approx(np.quantile(cand, 0.9))
    kept = cand <= g.threshold
    expect = [sorted(nn[i][kept[i]].tolist()) for i in range(len(x))]
    got = neighbours(g.adjacency)
    bridged = {int(i) for pair in g.bridges for i in pair}
    for i in range(len(x)):
        extra = set(got[i]) - set(expect[i])
        assert set(expect[i]) <= set(got[i]) and (not extra or i in bridged)
    assert g.adjacency.nnz - 2 * len(g.bridges) == kept.sum()
    explicit = knn_graph(x, k, metric="euclidean", threshold=0.5, connect=False)
    assert explicit.threshold == 0.5 and explicit.adjacency.nnz == (cand <= 0.5).sum()


def test_disconnected_clusters_are_linked_at_their_closest_pair():
    rng = np.random.default_rng(2)
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1).reshape(-1, 2)
    left = grid + rng.uniform(-0.1, 0.1, grid.shape)
    right = grid[:15] + np.array([40.0, 0.0]) + rng.uniform(-0.1, 0.1, (15, 2))
    x = np.vstack([left, right])
    g = knn_graph(x, 4, metric="euclidean", quantile=None)
    assert g.n_components == 2 and len(g.bridges) == 1
    dist = np.linalg.norm(left[:, None] - right[None], axis=-1)
    i, j = np.unravel_index(dist.argmin(), dist.shape)
    assert g.bridges.tolist() == [[i, 20 + j]]
    assert g.adjacency[i, 20 + j] == 1 and g.adjacency[20 + j, i] == 1
    assert connected_components(g.adjacency, directed=False)[0] == 1
    diff = GraphDiffusion(g.rate, steps=20)  # connected: Q-bar reaches uniform
    assert diff.tv_from_uniform() <= 0.05
    unlinked = knn_graph(x, 4, metric="euclidean", quantile=None, connect=False)
    assert len(unlinked.bridges) == 0
    with pytest.raises(DataError, match="2 connected components"):
        GraphDiffusion(unlinked.rate)


def test_many_components_are_linked_like_a_spanning_tree():
    """Borůvka rounds: with distinct distances the links form a spanning tree of the components (C - 1)."""
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 1000, size=(9, 2))
    x = np.vstack([c + rng.normal(size=(6, 2)) for c in centres])
    g = knn_graph(x, 2, metric="euclidean", quantile=None)
    assert g.n_components >= 9
    assert len(g.bridges) == g.n_components - 1
    assert connected_components(g.adjacency, directed=False)[0] == 1
    a, bridges = connect_components(sp.csr_matrix((len(x), len(x))), x)  # from no edges at all
    assert len(bridges) == len(x) - 1 and connected_components(a, directed=False)[0] == 1


def test_geographic_knn_uses_haversine_km():
    rng = np.random.default_rng(4)
    lat = 45.46 + rng.uniform(-0.1, 0.1, 50)
    lon = 9.19 + rng.uniform(-0.15, 0.15, 50)
    dist = haversine_km(lat, lon)
    g = geographic_knn_graph(lat, lon, 4, quantile=None)
    assert neighbours(g.adjacency) == brute_knn(dist, 4).tolist()
    assert g.metric == "haversine"
    nn = brute_knn(dist, 4)
    cand = np.take_along_axis(dist, nn, axis=1)
    g = geographic_knn_graph(lat, lon, 4)
    assert g.threshold == pytest.approx(np.quantile(cand, 0.9), rel=1e-9)  # km
    tight = geographic_knn_graph(lat, lon, 4, threshold_km=1.0, connect=False)
    rows, cols = tight.adjacency.nonzero()
    assert (dist[rows, cols] <= 1.0).all() and tight.adjacency.nnz == (cand <= 1.0).sum()
    # across the antimeridian: two stations 0.2 degrees of longitude apart are neighbours
    far = geographic_knn_graph([0.0, 0.0, 10.0], [179.9, -179.9, 0.0], 1, quantile=None)
    assert far.adjacency[0, 1] == 1 and far.adjacency[1, 0] == 1


def test_duplicate_points_and_station_rows():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    g = knn_graph(x, 1, quantile=None, connect=False)
    assert neighbours(g.adjacency) == [[1], [0], [3], [2]]  # the twin, never itself
    emb = np.arange(12.0).reshape(4, 3)
    names = ["area:1", "station:b", "region:x", "station:a"]
    np.testing.assert_array_equal(station_embeddings(emb, names, ["a", "b"]), emb[[3, 1]])


def test_bad_inputs_are_rejected():
    x = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ConfigError, match="k must be"):
        knn_graph(x, 5)
    with pytest.raises(ConfigError, match="metric"):
        knn_graph(x, 2, metric="manhattan")
    with pytest.raises(DataError, match="zero vector"):
        knn_graph(np.vstack([x, np.zeros(2)]), 2)
    with pytest.raises(DataError, match="NaN"):
        knn_graph(np.vstack([x, [np.nan, 1.0]]), 2)
    with pytest.raises(DataError, match="WGS84"):
        geographic_knn_graph([0, 95.0], [0, 0], 1)


@pytest.mark.realdata
def test_beijing_knowledge_graph_embeddings(shared_data):
    """The real 32-d KG embeddings of Beijing stations (the first 300 of 960, to keep the eigendecomposition
    cheap): the default graph is connected after linking, and its diffusion's schedule reaches uniform."""
    emb = np.load(shared_file(shared_data, "beijing-stkdiff/beijing.npz"))["bs_kge"][:300]
    g = knn_graph(emb, 8)
    assert connected_components(g.adjacency, directed=False)[0] == 1
    assert len(g.bridges) == g.n_components - 1
    diff = GraphDiffusion(g.rate, steps=100)
    assert diff.tv_bound_at(diff.abar[-1]) <= 0.05
    assert diff.abar[-1] > 100 * 1.97  # far beyond the authors' final alpha-bar
