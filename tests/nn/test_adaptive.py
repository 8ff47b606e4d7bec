"""ADAPTIVE's networks: shapes, the station condition at work, the step features, and the transfer step
(an orthogonal alignment of two cities' station embeddings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.nn.adaptive import AdaptiveCritic, AdaptiveGenerator, align_embeddings, step_features
from cellsynth.nn.baselines import hour_of_week_features


def _nets(n_stations=5, d=3, steps=48):
    torch.manual_seed(0)
    table = torch.randn(n_stations, d)
    tau = step_features(np.arange(steps) % 336, 336)
    gen = AdaptiveGenerator(
        table, tau, noise_dim=4, hidden=8, enhanced_dim=4, context_dim=8, dilations=(1, 2)
    )
    critic = AdaptiveCritic(table, tau, hidden=8, enhanced_dim=4, context_dim=8, dilations=(1, 2))
    return gen, critic


def test_generator_and_critic_shapes():
    gen, critic = _nets()
    locations = torch.randint(0, 5, (3, 48))
    noise = gen.noise(3)
    assert noise.shape == (3, 4, 48)
    x = gen(noise, locations)
    assert x.shape == (3, 1, 48)
    assert critic(x, locations).shape == (3,)
    assert gen.receptive_field == 1 + 2 * 2 * (1 + 2)


def test_the_station_of_a_step_changes_the_traffic():
    gen, _ = _nets()
    noise = gen.noise(1, generator=torch.Generator().manual_seed(0))
    at_0, at_1 = torch.zeros(1, 48, dtype=torch.long), torch.ones(1, 48, dtype=torch.long)
    assert not torch.allclose(gen(noise, at_0), gen(noise, at_1))
    assert torch.equal(gen(noise, at_0), gen(noise, at_0))


def test_locations_of_the_wrong_length_are_refused():
    gen, _ = _nets()
    with pytest.raises(ValueError, match=r"locations must be \[B, 48\]"):
        gen(gen.noise(1), torch.zeros(1, 40, dtype=torch.long))


def test_step_features_are_the_week_features_of_each_position():
    week = hour_of_week_features(336)
    assert torch.equal(step_features(np.arange(336), 336), week)
    wednesday_noon = 2 * 48 + 24
    positions = (wednesday_noon + np.arange(10)) % 336
    assert torch.equal(step_features(positions, 336)[:, 0], week[:, wednesday_noon])
    with pytest.raises(ValueError, match="0..335"):
        step_features(np.array([336]), 336)


def _rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rotated_shuffled_copy_is_aligned_back(seed):
    rng = np.random.default_rng(seed)
    # skewed, with distinct variances along its axes: a generic cloud of 40 station embeddings
    source = rng.gamma(2.0, 1.0, size=(40, 4)) * np.array([3.0, 2.0, 1.2, 0.6])
    rotation, shift, order = _rotation(4, seed + 10), rng.normal(size=4), rng.permutation(40)
    target = (source @ rotation + shift)[order]
    aligned, q, matches = align_embeddings(source, target)
    np.testing.assert_allclose(q, rotation, atol=1e-8)
    np.testing.assert_allclose(aligned, source @ rotation + shift, atol=1e-8)
    np.testing.assert_array_equal(order[matches], np.arange(40))


def test_alignment_finds_the_rotation_under_noise_and_different_sizes():
    rng = np.random.default_rng(3)
    points = rng.gamma(2.0, 1.0, size=(60, 3)) * np.array([3.0, 1.5, 0.7])
    rotation = _rotation(3, 7)
    source = points[:50] + rng.normal(scale=0.02, size=(50, 3))
    target = points @ rotation
    aligned, q, _ = align_embeddings(source, target)
    assert np.allclose(q.T @ q, np.eye(3))
    assert np.abs(q - rotation).max() < 0.1
    # the aligned stations sit near their own copies in the target
    assert np.abs(aligned - target[:50]).max() < 0.5
    unaligned = source - source.mean(0) + target.mean(0)
    assert np.abs(aligned - target[:50]).mean() < 0.2 * np.abs(unaligned - target[:50]).mean()


def test_alignment_refuses_sets_of_other_dimensions():
    with pytest.raises(ValueError, match="same d"):
        align_embeddings(np.zeros((5, 3)), np.zeros((5, 4)))
