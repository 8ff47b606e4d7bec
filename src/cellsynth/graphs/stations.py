"""STOUTER's base-station graph, and its inductive extension to stations never seen in training.

Nodes are stations; node features are the stations' feature columns (POI counts per category, a
knowledge-graph embedding...) standardised with the *training* mean and standard deviation, which
:class:`StationGraphBuilder` keeps so that a new station is scaled exactly like the training ones. Stations
with no feature columns but with coordinates get their planar coordinates (km, standardised) as features.

Edges are undirected (both directions stored):

- with coordinates: every pair within ``radius_km`` (great-circle distance, haversine; default 1 km, as in
  the paper);
- without coordinates (the Beijing set has only 32-d embeddings): each station's ``k`` nearest
  neighbours in standardised feature space, symmetrised;
- a station left without a neighbour (nothing within the radius) is joined to its nearest station, so
  no node is isolated (GCN layers add self loops on top).

**Inductive embedding of new stations** (:meth:`StationGraphBuilder.extended_graph`). The graph is built
over the training stations plus the new ones; each new station gets edges *from* its training neighbours
(within the radius, else its nearest; or its ``k`` nearest in feature space), directed into the new
node only. Running the frozen encoder on it then (1) gives every training station exactly the
embedding it had in training — nothing flows into a training node that was not there before — and (2)
embeds each new station from its own features and its training neighbourhood only, independent of which
other new stations are generated in the same call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import Data

from cellsynth.data.model import Stations
from cellsynth.errors import DataError, NotFittedError

# EARTH_RADIUS_KM, haversine_km, unit_sphere: re-exported, the graphs' users (and tests) import them from here.
from cellsynth.geo import EARTH_RADIUS_KM, KM_PER_DEGREE, chord_of_km, haversine_km, unit_sphere

__all__ = ["EARTH_RADIUS_KM", "StationGraphBuilder", "haversine_km", "unit_sphere"]


@dataclass
class StationGraphBuilder:
    """Builds the station graph of training stations and embeds new stations against them.

    Call :meth:`fit` on the training stations (keeps the standardisation constants and the training
    table), then :meth:`graph` for the training graph and :meth:`extended_graph` for new stations.
    """

    radius_km: float = 1.0
    k: int = 10
    mean_: np.ndarray | None = field(default=None, repr=False)
    std_: np.ndarray | None = field(default=None, repr=False)
    stations_: Stations | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.radius_km <= 0:
            raise DataError(f"radius_km must be positive, got {self.radius_km}")
        if self.k < 1:
            raise DataError(f"k must be >= 1, got {self.k}")

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, stations: Stations) -> StationGraphBuilder:
        """Keep ``stations`` and the mean / standard deviation of their raw node features."""
        raw = self._raw_features(stations, stations)
        self.mean_, sd = raw.mean(0), raw.std(0)
        self.std_ = np.where(sd > 1e-12, sd, 1.0)  # a constant column becomes zeros, not NaN
        self.stations_ = stations
        return self

    @property
    def uses_coordinates(self) -> bool:
        """Whether edges come from coordinates (radius) rather than from features (kNN)."""
        self._fitted()
        return self.stations_.has_coordinates

    @property
    def num_features(self) -> int:
        self._fitted()
        return len(self.mean_)

    def features(self, stations: Stations) -> np.ndarray:
        """Standardised node features ``[N, F]`` (float64) with the training constants."""
        self._fitted()
        self.check_compatible(stations)
        return (self._raw_features(stations, self.stations_) - self.mean_) / self.std_

    def check_compatible(self, stations: Stations) -> None:
        """Raise a :class:`DataError` if ``stations`` cannot be placed in the training graph."""
        train = self.stations_
        if stations.feature_names != train.feature_names:
            raise DataError(
                f"stations have features {list(stations.feature_names)}, but the model was trained with features "
                f"{list(train.feature_names)}; give the same feature columns in the same order"
            )
        if train.has_coordinates and not stations.has_coordinates:
            raise DataError(
                "the model's station graph was built from coordinates (stations within "
                f"{self.radius_km} km); give lat/lon for the stations to generate"
            )

    # -- graphs --------------------------------------------------------------------------------------
    def graph(self) -> Data:
        """The training graph: ``Data(x=[N, F] float32, edge_index=[2, E])``, undirected, no isolated node."""
        self._fitted()
        train = self.stations_
        n = len(train)
        if train.has_coordinates:
            pts = unit_sphere(train.lat, train.lon)
            pairs = cKDTree(pts).query_pairs(chord_of_km(self.radius_km), output_type="ndarray")
            src, dst = pairs[:, 0], pairs[:, 1]
        else:
            x = self.features(train)
            k = min(self.k, n - 1)
            if k >= 1:
                _, nn = cKDTree(x).query(x, k=k + 1)  # the first hit is the station itself
                src = np.repeat(np.arange(n), k)
                dst = nn[:, 1:].reshape(-1)
                keep = src != dst  # duplicates of a station's features may come before itself
                src, dst = src[keep], dst[keep]
            else:
                src = dst = np.zeros(0, np.int64)
        src, dst = self._attach_isolated(n, src, dst)
        edge_index = torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))
        edge_index = torch.unique(edge_index.long(), dim=1)  # symmetrised kNN has duplicates
        return Data(x=torch.from_numpy(self.features(train)).float(), edge_index=edge_index, num_nodes=n)

    def extended_graph(self, new: Stations) -> Data:
        """Training graph plus ``new`` stations (nodes ``N..N+M-1``), each with edges from its training
        neighbours into it only (see module docstring). ``Data.new_nodes`` holds their node indices."""
        self._fitted()
        base = self.graph()
        n, m = len(self.stations_), len(new)
        x_new = torch.from_numpy(self.features(new)).float()
        if self.stations_.has_coordinates:
            tree = cKDTree(unit_sphere(self.stations_.lat, self.stations_.lon))
            query = unit_sphere(new.lat, new.lon)
            hits = tree.query_ball_point(query, chord_of_km(self.radius_km))
            _, nearest = tree.query(query, k=1)
            neighbours = [np.asarray(h if len(h) else [nearest[j]], np.int64) for j, h in enumerate(hits)]
        else:
            k = min(self.k, n)
            _, nn = cKDTree(self.features(self.stations_)).query(self.features(new), k=k)
            nn = np.asarray(nn).reshape(m, k)
            neighbours = [row.astype(np.int64) for row in nn]
        src = np.concatenate(neighbours)
        dst = np.repeat(np.arange(n, n + m), [len(h) for h in neighbours])
        new_edges = torch.from_numpy(np.stack([src, dst])).long()
        return Data(
            x=torch.cat([base.x, x_new]),
            edge_index=torch.cat([base.edge_index, new_edges], dim=1),
            num_nodes=n + m,
            new_nodes=torch.arange(n, n + m),
        )

    # -- helpers -------------------------------------------------------------------------------------
    def _attach_isolated(self, n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Join each station without any edge to its nearest other station."""
        if n < 2:
            return src.astype(np.int64), dst.astype(np.int64)
        degree = np.bincount(np.concatenate([src, dst]).astype(np.int64), minlength=n)
        lonely = np.flatnonzero(degree == 0)
        if lonely.size == 0:
            return src.astype(np.int64), dst.astype(np.int64)
        train = self.stations_
        pts = unit_sphere(train.lat, train.lon) if train.has_coordinates else self.features(train)
        _, nn = cKDTree(pts).query(pts[lonely], k=2)
        # nn[:, 0] is the station itself unless another one sits at the very same place.
        partner = np.where(nn[:, 0] == lonely, nn[:, 1], nn[:, 0])
        return (
            np.concatenate([src, lonely]).astype(np.int64),
            np.concatenate([dst, partner]).astype(np.int64),
        )

    @staticmethod
    def _raw_features(stations: Stations, reference: Stations) -> np.ndarray:
        if reference.features.shape[1] > 0:
            return np.asarray(stations.features, dtype=np.float64)
        if reference.has_coordinates and stations.has_coordinates:
            # No feature columns: place stations by planar km coordinates (north, then east; no offset: a
            # saved model's feature scaler holds these raw values' mean).
            lat0 = np.deg2rad(reference.lat.mean())
            return np.stack(
                [stations.lat * KM_PER_DEGREE, stations.lon * KM_PER_DEGREE * np.cos(lat0)], axis=1
            )
        raise DataError(
            "stations have neither feature columns nor coordinates: the station graph has nothing to be "
            "built from (disable the spatial embedding, e.g. use_spatial=False for STOUTER)"
        )

    def _fitted(self) -> None:
        if self.stations_ is None:
            raise NotFittedError("StationGraphBuilder: call fit(training stations) first")
