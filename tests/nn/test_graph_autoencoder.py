"""GraphMAE autoencoders: the SCE loss, training reduces it, and inductive embeddings leave training
nodes untouched."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cellsynth.data.model import Stations
from cellsynth.graphs.stations import StationGraphBuilder
from cellsynth.graphs.temporal import temporal_graph
from cellsynth.nn.graph_autoencoder import gcn_autoencoder, gin_autoencoder, sce_loss


def at_angle(theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1.0, 0.0]])
    return x, torch.tensor([[math.cos(theta), math.sin(theta)]]) * 3.0  # the norm does not matter


def test_sce_zero_for_identical_and_scale_invariant():
    x = torch.randn(5, 4)
    assert sce_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert sce_loss(x, 2.5 * x).item() == pytest.approx(0.0, abs=1e-6)


def test_sce_increases_with_angle_and_gamma_behaviour():
    losses = [sce_loss(*at_angle(t), gamma=2).item() for t in np.linspace(0, math.pi, 7)]
    assert all(a < b for a, b in itertools.pairwise(losses))
    assert sce_loss(*at_angle(math.pi / 3), gamma=1).item() == pytest.approx(0.5, rel=1e-5)
    assert sce_loss(*at_angle(math.pi / 3), gamma=3).item() == pytest.approx(0.125, rel=1e-5)
    # gamma > 1 down-weights well reconstructed nodes (1 - cos < 1) and up-weights bad ones (> 1).
    easy, hard = at_angle(math.pi / 4), at_angle(3 * math.pi / 4)
    assert sce_loss(*easy, gamma=3) < sce_loss(*easy, gamma=1)
    assert sce_loss(*hard, gamma=3) > sce_loss(*hard, gamma=1)
    with pytest.raises(ValueError):
        sce_loss(*easy, gamma=0.5)


def fit(model, x, edge_index, steps=60):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    masks = [model.mask_nodes(x.shape[0], g) for _ in range(8)]  # a fixed set of masks: a fair before/after

    def evaluate():
        with torch.no_grad():
            return float(
                np.mean(
                    [
                        sce_loss(x[m], model.reconstruct(x, edge_index, m)[m], model.gamma).item()
                        for m in masks
                    ]
                )
            )

    before = evaluate()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(x, edge_index).backward()
        opt.step()
    return before, evaluate()


def test_gin_autoencoder_learns_the_temporal_graph():
    t = np.arange(168)
    daily = np.sin(2 * np.pi * t / 24)[None, None, :, None]
    weeks = daily + 0.1 * np.random.default_rng(0).normal(size=(4, 1, 168, 1))
    g = temporal_graph(weeks)
    torch.manual_seed(0)
    model = gin_autoencoder(g.num_features, hidden_dim=16, embed_dim=8)
    before, after = fit(model, g.x, g.edge_index)
    assert after < 0.7 * before
    assert model.encode(g.x, g.edge_index).shape == (168, 8)


def test_gcn_autoencoder_learns_and_is_inductive():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (10, 4)), rng.normal(4, 1, (10, 4))])
    builder = StationGraphBuilder(k=3).fit(Stations([f"s{i}" for i in range(20)], features=feats))
    g = builder.graph()
    torch.manual_seed(0)
    model = gcn_autoencoder(g.num_features, hidden_dim=16, embed_dim=8)
    before, after = fit(model, g.x, g.edge_index)
    assert after < 0.7 * before
    model.eval()
    with torch.no_grad():
        train_emb = model.encode(g.x, g.edge_index)
        ext = builder.extended_graph(Stations(["n0", "n1"], features=feats[[0, 15]] + 0.01))
        emb = model.encode(ext.x, ext.edge_index)
    torch.testing.assert_close(emb[:20], train_emb)  # training stations are unaffected by new ones
    # a new station next to a training one in feature space gets a similar embedding
    assert torch.cosine_similarity(emb[20], train_emb[0], dim=0) > torch.cosine_similarity(
        emb[20], train_emb[15], dim=0
    )
