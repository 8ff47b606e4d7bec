"""The 168-node temporal graph: node count, edge counts and endpoints, hourly statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.errors import DataError
from cellsynth.graphs.temporal import (
    QUANTILES,
    STATISTICS,
    hour_of_week_statistics,
    steps_of_hours,
    temporal_edges,
    temporal_graph,
)


def weeks(n=3, w=2, length=168, c=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, w, length, c))


def test_nodes_edges_and_endpoints():
    g = temporal_graph(weeks())
    assert g.num_nodes == 168 and g.x.shape == (168, 2 * len(STATISTICS))
    assert g.edge_index.shape == (2, 336) and g.edge_index.dtype == torch.long
    src, dst = g.edge_index
    hourly, daily = g.edge_type == 0, g.edge_type == 1
    assert hourly.sum() == 168 and daily.sum() == 168
    assert torch.equal(dst[hourly], (src[hourly] + 1) % 168)
    assert torch.equal(dst[daily], (src[daily] + 24) % 168)
    pairs = set(map(tuple, g.edge_index.T.tolist()))
    assert (167, 0) in pairs  # the week wraps: last hour -> first hour
    assert (23, 24) in pairs and (5, 29) in pairs and (149, 5) in pairs  # Sunday 05:00 -> Monday 05:00
    assert (1, 0) not in pairs  # directed
    # every node has exactly one outgoing and one incoming edge of each kind
    for kind in (hourly, daily):
        assert torch.equal(torch.bincount(src[kind], minlength=168), torch.ones(168, dtype=torch.long))
        assert torch.equal(torch.bincount(dst[kind], minlength=168), torch.ones(168, dtype=torch.long))


def test_undirected_variant():
    edges = temporal_edges(undirected=True)
    assert edges.shape == (2, 672)
    pairs = set(map(tuple, edges.T.tolist()))
    assert all((b, a) in pairs for a, b in pairs)


def test_statistics_are_those_of_each_hour():
    data = weeks(n=4, w=3, c=1)
    raw = hour_of_week_statistics(data)
    sample = data[:, :, 37, 0].ravel()
    np.testing.assert_allclose(raw[37, 0], sample.mean())
    np.testing.assert_allclose(raw[37, 1], sample.std())
    np.testing.assert_allclose(raw[37, 2:], np.quantile(sample, QUANTILES))
    g = temporal_graph(data)  # columns standardised over the 168 nodes
    np.testing.assert_allclose(g.x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(g.x.std(0, unbiased=False).numpy(), 1, atol=1e-4)


def test_other_steps_map_onto_hours():
    half_hours = steps_of_hours(336)
    assert [list(s) for s in half_hours[:2]] == [[0, 1], [2, 3]]
    two_hours = steps_of_hours(84)
    assert [list(s) for s in two_hours[:3]] == [[0], [0], [1]]
    data = weeks(n=2, w=1, length=336, c=1)
    raw = hour_of_week_statistics(data)
    np.testing.assert_allclose(raw[3, 0], data[:, :, 6:8, 0].mean())


def test_bad_input():
    with pytest.raises(DataError):
        hour_of_week_statistics(np.zeros((3, 168)))
