"""STOUTER's temporal graph: one node per hour of the week (24 x 7 = 168), as a ``torch_geometric`` graph.

Node ``k`` is hour ``k`` of the week *counted from the first training timestamp* (its weekday and hour of
day are those of ``start + k hours``): the training weeks, the generated weeks and the temporal
embeddings then share one phase, whatever weekday the data starts on (Beijing's is undocumented).

Edges (directed, ``source -> target``, so messages flow forward in time as in the paper):

- hourly: ``k -> k + 1`` for every hour, the last hour of the week wrapping to the first (168 edges);
- daily: ``k -> k + 24``, the same hour on the next day, the last day wrapping to the first (168 edges).

With ``undirected=True`` each edge is added in both directions as well (672 edges).

Node features are hourly statistics of the *normalised* training traffic (see
:mod:`cellsynth.transforms.scaling`): for every channel, the mean, standard deviation and quantiles
(:data:`QUANTILES`) of all values at that hour of the week over stations and weeks. Each feature column
is then standardised over the 168 nodes, so that the scaled cosine error of the graph autoencoder
compares the *shape* of the nodes' statistics rather than their common offset.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from cellsynth.errors import DataError

__all__ = [
    "HOURS_PER_DAY",
    "HOURS_PER_WEEK",
    "QUANTILES",
    "hour_of_week_statistics",
    "steps_of_hours",
    "temporal_edges",
    "temporal_graph",
]

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
#: Quantiles in the node features, after the mean and standard deviation.
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
STATISTICS: tuple[str, ...] = ("mean", "std", *(f"q{int(q * 100):02d}" for q in QUANTILES))


def temporal_edges(undirected: bool = False) -> torch.Tensor:
    """``edge_index`` int64 ``[2, E]``: the hourly edges (first 168) then the daily edges (next 168)."""
    k = torch.arange(HOURS_PER_WEEK)
    hourly = torch.stack([k, (k + 1) % HOURS_PER_WEEK])
    daily = torch.stack([k, (k + HOURS_PER_DAY) % HOURS_PER_WEEK])
    edges = torch.cat([hourly, daily], dim=1)
    if undirected:
        edges = torch.cat([edges, edges.flip(0)], dim=1)
    return edges


def steps_of_hours(steps_per_week: int) -> list[np.ndarray]:
    """For each hour of the week, the time steps of a week of ``steps_per_week`` steps that overlap it.

    Step ``t`` covers hours ``[t * 168 / L, (t + 1) * 168 / L)``: at 30-minute steps each hour holds two
    steps; at 2-hour steps, two consecutive hours share one step.
    """
    if steps_per_week < 1:
        raise DataError(f"a week must have at least one step, got {steps_per_week}")
    width = HOURS_PER_WEEK / steps_per_week
    lo = np.arange(steps_per_week) * width
    hi = lo + width
    return [np.flatnonzero((lo < h + 1) & (hi > h)) for h in range(HOURS_PER_WEEK)]


def hour_of_week_statistics(weeks: np.ndarray) -> np.ndarray:
    """Raw node features ``[168, C * 7]`` from normalised training weeks ``[N, W, L, C]``.

    Columns are channel-major: for channel c, ``mean, std, q10, q25, q50, q75, q90`` (:data:`STATISTICS`).
    """
    weeks = np.asarray(weeks, dtype=np.float64)
    if weeks.ndim != 4 or weeks.size == 0:
        raise DataError(
            f"weeks must be a non-empty [stations, weeks, steps, channels] array, got {weeks.shape}"
        )
    n_channels = weeks.shape[3]
    features = np.empty((HOURS_PER_WEEK, n_channels * len(STATISTICS)))
    for h, steps in enumerate(steps_of_hours(weeks.shape[2])):
        for c in range(n_channels):
            sample = weeks[:, :, steps, c].ravel()
            stats = [sample.mean(), sample.std(), *np.quantile(sample, QUANTILES)]
            features[h, c * len(STATISTICS) : (c + 1) * len(STATISTICS)] = stats
    return features


def _standardise_columns(features: np.ndarray) -> np.ndarray:
    sd = features.std(0)
    # A column constant over the week carries no information about the hour: it becomes zeros.
    return (features - features.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def temporal_graph(weeks: np.ndarray, *, undirected: bool = False) -> Data:
    """The 168-node temporal graph of normalised training weeks ``[N, W, L, C]`` (see module docstring).

    Returns ``Data(x=[168, 7C] float32, edge_index=[2, 336])`` with ``edge_type`` (0 hourly, 1 daily).
    """
    x = _standardise_columns(hour_of_week_statistics(weeks))
    edge_index = temporal_edges(undirected)
    edge_type = torch.cat([torch.zeros(HOURS_PER_WEEK), torch.ones(HOURS_PER_WEEK)]).long()
    if undirected:
        edge_type = torch.cat([edge_type, edge_type])
    return Data(
        x=torch.from_numpy(x).float(), edge_index=edge_index, edge_type=edge_type, num_nodes=HOURS_PER_WEEK
    )
