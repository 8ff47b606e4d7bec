r"""Transition graphs between stations: the rate matrix of MSTDiff's discrete trajectory diffusion.

From one point per station (a TuckER embedding of its knowledge-graph entity, or its coordinates)::

    A[i, j] = 1   if j is one of the K nearest neighbours of i and d(i, j) <= threshold   (directed)
    B       = (A + A^T) / 2K                         (symmetric; 1/K for a mutual pair, 1/2K for a one-way one)
    R       = B off the diagonal, R_ii = -sum_j B_ij (rows sum to 0; symmetric, so the uniform distribution is
              stationary and R = V diag(lambda) V^T with real lambda <= 0)

Distances (``metric``):

- ``"cosine"`` (default for embeddings): ``d = 1 - cos(x_i, x_j)`` in ``[0, 2]``. TuckER's entity norms
  grow with how often an entity occurs in training triplets, which says little about its role in the
  city; the direction does. Zero vectors are rejected.
- ``"euclidean"``: ``d = ||x_i - x_j||``.
- ``"haversine"`` (:func:`geographic_knn_graph`, for a user without a knowledge graph): great-circle
  distance in km on a sphere of radius 6371.0088 km.

All three are computed by one exact k-d tree search in a Euclidean space where the order of distances is
the metric's: unit-normalised vectors for cosine (``|u - v|^2 = 2 (1 - cos)``), 3-D unit vectors for
haversine (chord ``c``, great circle ``2 R asin(c / 2)``).

The default threshold is the ``quantile`` (0.9) of the N*K candidate neighbour distances: the longest 10 %
of the K-nearest-neighbour links are dropped. Those are the links of stations that lie in sparse parts of
the space (their K-th neighbour is far away, so "neighbour" means nothing there); with ``quantile=None``
and ``threshold=None`` nothing is dropped.

A disconnected graph would make ``R``'s null space more than one-dimensional: ``Q-bar_s = exp(alpha-bar_s R)``
would then converge to the uniform distribution *within each component* and never to the uniform prior.
:func:`connect_components` therefore links every component to its nearest other component (the closest
pair of points between them, one edge both ways in ``A``, so weight ``1/K`` in ``B`` like a mutual
neighbour pair) and repeats until the graph is connected: Borůvka's step of a minimum spanning tree over
components, which at least halves their number per round. The links added are kept in
:attr:`TransitionGraph.bridges`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cellsynth.data.knowledge import station_entity
from cellsynth.errors import ConfigError, DataError
from cellsynth.geo import EARTH_RADIUS_KM, km_of_chord, unit_sphere

__all__ = [
    "EARTH_RADIUS_KM",
    "TransitionGraph",
    "connect_components",
    "geographic_knn_graph",
    "knn_graph",
    "nearest_stations",
    "rate_matrix",
    "station_embeddings",
]

_METRICS = ("cosine", "euclidean", "haversine")


@dataclass(frozen=True, eq=False)
class TransitionGraph:
    """The result of :func:`knn_graph` / :func:`geographic_knn_graph`.

    ``adjacency``: ``A``, a 0/1 ``scipy.sparse.csr_matrix [N, N]``: the kept K-nearest-neighbour links
    (row i -> its neighbours) plus the ``bridges`` (both ways). ``rate``: ``R``, dense float64 ``[N, N]``
    (:func:`rate_matrix`). ``threshold`` is the distance threshold used (``inf`` for none), in the metric's
    units. ``bridges``: ``int64 [E, 2]``, the pairs added by :func:`connect_components`; ``n_components``:
    the number of connected components before they were added.
    """

    adjacency: sp.csr_matrix
    rate: np.ndarray
    k: int
    metric: str
    threshold: float
    bridges: np.ndarray
    n_components: int

    @property
    def n(self) -> int:
        return self.rate.shape[0]

    @property
    def weights(self) -> sp.csr_matrix:
        """``B = (A + A^T) / 2K`` (sparse)."""
        a = self.adjacency.astype(np.float64)
        return ((a + a.T) / (2.0 * self.k)).tocsr()

    @property
    def n_edges(self) -> int:
        """Number of undirected edges of ``B``."""
        b = self.weights
        return int((b.nnz - b.diagonal().astype(bool).sum()) // 2)


def rate_matrix(adjacency, k: int) -> np.ndarray:
    """``R`` from a directed 0/1 adjacency ``A`` (dense or sparse ``[N, N]``): ``B = (A + A^T) / 2K`` off the
    diagonal (the diagonal of ``A`` is ignored), minus ``B``'s row sums on the diagonal. Dense float64."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    a = adjacency.toarray() if sp.issparse(adjacency) else np.asarray(adjacency)
    a = a.astype(np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise DataError(f"adjacency must be square, got shape {a.shape}")
    np.fill_diagonal(a, 0.0)
    b = (a + a.T) / (2.0 * k)
    return b - np.diag(b.sum(axis=1))


def _space(points: np.ndarray, metric: str) -> np.ndarray:
    """Map points to the Euclidean space whose distance order is the metric's (see the module docstring)."""
    if metric == "cosine":
        norms = np.linalg.norm(points, axis=1)
        if (norms == 0).any():
            i = int(np.argmax(norms == 0))
            raise DataError(
                f"point {i} is the zero vector: its cosine distance is undefined (use 'euclidean')"
            )
        return points / norms[:, None]
    if metric == "euclidean":
        return points
    raise ConfigError(f"metric must be one of {_METRICS}, got {metric!r}")


def _from_chord(chord: np.ndarray, metric: str) -> np.ndarray:
    """Distance in the metric's units from the Euclidean distance in :func:`_space`."""
    if metric == "cosine":
        return 0.5 * chord**2
    if metric == "haversine":
        return km_of_chord(chord)
    return chord


def _check_points(points, name: str = "points") -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise DataError(f"{name} must be [N, d] with N >= 2, got shape {points.shape}")
    if not np.isfinite(points).all():
        i = int(np.argwhere(~np.isfinite(points))[0, 0])
        raise DataError(f"{name} row {i} has NaN/inf values")
    return points


def connect_components(adjacency, points, *, metric: str = "euclidean") -> tuple[sp.csr_matrix, np.ndarray]:
    """Link the components of ``A + A^T`` until connected: each round, every component gets one edge (both
    ways) to its nearest other component (closest pair of points, by ``metric``); returns the new ``A``
    (csr, 0/1) and the added pairs ``int64 [E, 2]``. ``points`` as for :func:`knn_graph`."""
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(
            f"metric must be 'cosine' or 'euclidean', got {metric!r} (for coordinates pass 3-D unit vectors)"
        )
    space = _space(_check_points(points), metric)
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    n = a.shape[0]
    if space.shape[0] != n:
        raise DataError(f"{space.shape[0]} points for an adjacency of {n} nodes")
    bridges: list[tuple[int, int]] = []
    while True:
        n_comp, labels = connected_components(a + a.T, directed=False)
        if n_comp == 1:
            break
        new = set()
        for c in range(n_comp):
            inside = np.flatnonzero(labels == c)
            outside = np.flatnonzero(labels != c)
            dist, j = cKDTree(space[outside]).query(space[inside], k=1)
            best = int(np.argmin(dist))
            i_, j_ = int(inside[best]), int(outside[j[best]])
            new.add((min(i_, j_), max(i_, j_)))
        rows = [i for i, j in new] + [j for i, j in new]
        cols = [j for i, j in new] + [i for i, j in new]
        a = a + sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        a.data[:] = 1.0  # 0/1, whether or not the pair was already a one-way link
        bridges.extend(sorted(new))
    return a.tocsr(), np.array(bridges, dtype=np.int64).reshape(-1, 2)


def _knn(space: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The K nearest other points of each point: (chord distances, indices), each ``[N, K]``."""
    n = space.shape[0]
    dist, idx = cKDTree(space).query(space, k=k + 1)
    # Drop each point itself; with duplicate points it need not come first, so remove it by index.
    not_self = idx != np.arange(n)[:, None]
    keep = np.cumsum(not_self, axis=1) <= k
    mask = not_self & keep
    return dist[mask].reshape(n, k), idx[mask].reshape(n, k)


def _build(
    space: np.ndarray,
    k: int,
    metric: str,
    threshold: float | None,
    quantile: float | None,
    connect: bool,
    connect_space: np.ndarray,
    connect_metric: str,
) -> TransitionGraph:
    n = space.shape[0]
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ConfigError(f"k must be an int in 1..N-1 = 1..{n - 1}, got {k!r}")
    chord, idx = _knn(space, int(k))
    dist = _from_chord(chord, metric)
    if threshold is None and quantile is not None:
        if not 0 < quantile <= 1:
            raise ConfigError(f"quantile must be in (0, 1], got {quantile}")
        threshold = float(np.quantile(dist, quantile))
    threshold = math.inf if threshold is None else float(threshold)
    keep = dist <= threshold
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    a = sp.csr_matrix((np.ones(len(rows)), (rows, idx.ravel()[keep.ravel()])), shape=(n, n))
    n_comp = connected_components(a + a.T, directed=False)[0]
    bridges = np.zeros((0, 2), dtype=np.int64)
    if connect and n_comp > 1:
        a, bridges = connect_components(a, connect_space, metric=connect_metric)
    return TransitionGraph(
        adjacency=a,
        rate=rate_matrix(a, int(k)),
        k=int(k),
        metric=metric,
        threshold=threshold,
        bridges=bridges,
        n_components=int(n_comp),
    )


def knn_graph(
    points,
    k: int,
    *,
    metric: str = "cosine",
    threshold: float | None = None,
    quantile: float | None = 0.9,
    connect: bool = True,
) -> TransitionGraph:
    """The transition graph of stations given one point each (``float [N, d]``, e.g. TuckER embeddings of
    the station entities, :func:`station_embeddings`): top-``k`` neighbours within ``threshold`` (default:
    the ``quantile`` of the candidate distances), ``B = (A + A^T) / 2K``, ``R``; components linked unless
    ``connect=False``. See the module docstring."""
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric must be 'cosine' or 'euclidean' for embeddings, got {metric!r}")
    space = _space(_check_points(points), metric)
    return _build(space, k, metric, threshold, quantile, connect, points, metric)


def _unit_vectors(lat, lon) -> np.ndarray:
    """``[N, 3]`` unit vectors of WGS84 degrees: their chord order is the great-circle order."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != lon.shape or lat.ndim != 1:
        raise DataError(f"lat and lon must be 1-D of equal length, got {lat.shape} and {lon.shape}")
    if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any() or not np.isfinite(lat + lon).all():
        raise DataError("lat/lon must be finite WGS84 degrees (|lat| <= 90, |lon| <= 180)")
    return _check_points(unit_sphere(lat, lon), "coordinates")


def geographic_knn_graph(
    lat,
    lon,
    k: int,
    *,
    threshold_km: float | None = None,
    quantile: float | None = 0.9,
    connect: bool = True,
) -> TransitionGraph:
    """As :func:`knn_graph` for stations without a knowledge graph: neighbours by great-circle (haversine)
    distance between WGS84 coordinates in degrees; ``threshold_km`` in km."""
    xyz = _unit_vectors(lat, lon)
    # Bridging uses the same unit vectors; chord order = great-circle order, so "euclidean" there is exact.
    return _build(xyz, k, "haversine", threshold_km, quantile, connect, xyz, "euclidean")


def nearest_stations(lat, lon, k: int) -> np.ndarray:
    """``int64 [N, k]``: each station's ``k`` nearest other stations by great-circle distance, nearest
    first (WGS84 degrees; needs ``k < N``)."""
    xyz = _unit_vectors(lat, lon)
    if not 1 <= k < len(xyz):
        raise DataError(f"k must be in 1..{len(xyz) - 1} (stations - 1), got {k}")
    return _knn(xyz, int(k))[1].astype(np.int64)


def station_embeddings(entity_embeddings, entity_names, station_ids) -> np.ndarray:
    """Rows of an entity-embedding matrix ``[n_entities, d]`` for the stations ``station_ids``, in that order.

    Station entities are named ``"station:<id>"`` (:func:`cellsynth.data.knowledge.station_entity`);
    ``entity_names`` is the name of each row (``KnowledgeGraph.encode()[1]``). Raises naming the stations
    that have no entity (a station with no triplet in the knowledge graph).
    """
    emb = np.asarray(entity_embeddings)
    names = [str(e) for e in entity_names]
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise DataError(f"{len(names)} entity names for an embedding matrix of shape {emb.shape}")
    lookup = {name: i for i, name in enumerate(names)}
    wanted = [station_entity(str(s)) for s in station_ids]
    missing = [w for w in wanted if w not in lookup]
    if missing:
        raise DataError(
            f"{len(missing)} station(s) have no entity in the knowledge graph: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return emb[[lookup[w] for w in wanted]]
