"""PateGail: PPO's clipped objective and GAE on hand-computed cases, the PATE aggregation, the state
features and the user partitions, and the fit's up-front checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cellsynth.errors import DataError
from cellsynth.generators import get
from cellsynth.generators.baselines.trajectories.pategail import (
    PateGailGenerator,
    state_features,
    user_partitions,
)
from cellsynth.nn.pategail import aggregate_votes, gae, gail_reward, ppo_clip_loss
from cellsynth.testing import tiny_users


def test_ppo_clip_loss_on_four_hand_computed_cases():
    # ratios 1.5, 0.5, 0.5, 1.5 with advantages +1, +1, -1, -1 and epsilon 0.2:
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-0.5, -0.8) = -0.8; min(-1.5, -1.2) = -1.5
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5])
    old = torch.zeros(4)
    new = torch.log(ratio).requires_grad_(True)
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss = ppo_clip_loss(new, old, advantages, clip=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8 - 1.5) / 4)
    loss.backward()
    # clipped terms (first and third) pass no gradient; the others d(-rho A / 4)/d log pi = -rho A / 4
    assert new.grad.tolist() == pytest.approx([0.0, -0.5 / 4, 0.0, 1.5 / 4])


def test_gae_on_a_hand_computed_episode():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    advantages, returns = gae(rewards, values, gamma=0.9, lam=0.8)
    # delta_2 = 3 - 1.5 = 1.5; delta_1 = 2 + 0.9 * 1.5 - 1 = 2.35; delta_0 = 1 + 0.9 * 1 - 0.5 = 1.4
    a2 = 1.5
    a1 = 2.35 + 0.72 * a2
    a0 = 1.4 + 0.72 * a1
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2])
    assert returns[0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5])


def test_gae_limits_are_td_error_and_monte_carlo_advantage():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(3, 6, generator=g), torch.rand(3, 6, generator=g)
    td, _ = gae(rewards, values, gamma=0.9, lam=0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros(3, 1)], 1)
    assert torch.allclose(td, rewards + 0.9 * next_values - values)
    mc, returns = gae(rewards, values, gamma=0.9, lam=1.0)
    discounted = torch.stack([sum(0.9**k * rewards[:, t + k] for k in range(6 - t)) for t in range(6)], 1)
    assert torch.allclose(mc, discounted - values, atol=1e-6)
    assert torch.allclose(returns, discounted, atol=1e-6)


def test_aggregation_without_noise_is_the_mean_and_the_majority():
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.7, 0.4, 0.1], [0.2, 0.3, 0.8]])
    mean = aggregate_votes(probs, noise_scale=0.0)
    assert torch.allclose(mean, probs.mean(0))
    votes = aggregate_votes(probs, noise_scale=0.0, mode="vote")
    assert votes.tolist() == pytest.approx([2 / 3, 0.0, 2 / 3])
    majority = (probs > 0.5).sum(0) > 3 / 2
    assert ((votes > 0.5) == majority).all()
    penalised = aggregate_votes(probs, noise_scale=0.0, disagreement_weight=0.5)
    assert torch.allclose(penalised, probs.mean(0) - 0.5 * probs.std(0, unbiased=False))


def test_aggregation_noise_is_laplace_of_the_given_scale():
    probs = torch.full((4, 40_000), 0.5)
    g = torch.Generator().manual_seed(0)
    noise = aggregate_votes(probs, noise_scale=0.1, generator=g) - 0.5
    assert noise.abs().mean().item() == pytest.approx(0.1, rel=0.03)  # E|Lap(0, b)| = b
    assert noise.mean().item() == pytest.approx(0.0, abs=0.003)
    votes = aggregate_votes(probs[:, :4] + 0.2, noise_scale=0.1, mode="vote", generator=g)
    assert not torch.allclose(votes, torch.ones(4))  # the count is noisy too


def test_reward_is_high_where_discriminators_take_pairs_for_real():
    reward = gail_reward(torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]))
    assert (reward[:-1] > reward[1:]).all()
    assert reward[2].item() == pytest.approx(math.log(2))


def test_state_features_stay_and_visited_counts():
    locations = np.array([[0, 0, 1, 1, 1, 0, 2]])
    features = state_features(locations, np.arange(7), max_stay=1, max_visited=5)
    assert features[0, :, 0].tolist() == [0, 0, 1, 1, 1, 0, 2]
    assert features[0, :, 1].tolist() == list(range(7))
    assert features[0, :, 2].tolist() == [0, 1, 0, 1, 1, 0, 0]  # capped at max_stay = 1
    assert features[0, :, 3].tolist() == [1, 1, 2, 2, 2, 2, 3]


def test_user_partitions_are_disjoint_and_balanced():
    partition = user_partitions(23, 4, seed=1)
    sizes = np.bincount(partition, minlength=4)
    assert sizes.sum() == 23 and sizes.max() - sizes.min() <= 1
    assert not np.array_equal(partition, user_partitions(23, 4, seed=2))


def test_more_discriminators_than_users_is_refused_before_training():
    gen = get("pategail", PateGailGenerator.smoke_config() | {"discriminators": 13})
    with pytest.raises(DataError, match="12 users; set discriminators to at most 12"):
        gen.fit(tiny_users(12), progress=False)


def test_plain_gail_fits_and_generates_training_stations():
    gen = get("pategail", PateGailGenerator.smoke_config() | {"discriminators": 1, "noise_scale": 0.0})
    data = tiny_users()
    out = gen.fit(data, progress=False).generate(7, seed=0)
    assert out.locations.shape == (7, data.n_steps)
    # the first station is drawn from the training users' starts
    assert set(out.locations[:, 0]) <= set(data.locations[:, 0])
    assert out.traffic is not None and (out.traffic >= 0).all()


def test_resume_after_interruption_is_exact(tmp_path):
    """Rollouts, Laplace noise and the discriminators' draws come from the step seed, and the three Adam
    states are checkpointed: a run stopped after epoch 1 and resumed equals an uninterrupted one."""
    from cellsynth.generators.baselines.trajectories.pategail import PateGailConfig, _GailModule
    from cellsynth.training import Placement, loader, seed_everything, train

    cfg = PateGailConfig(**PateGailGenerator.smoke_config() | {"discriminator_iterations": 1})
    data = tiny_users(8)
    features = state_features(data.locations, np.arange(data.n_steps) % 168, cfg.max_stay, cfg.max_visited)
    states = torch.from_numpy(features[:, :-1].copy())
    actions = torch.from_numpy(np.ascontiguousarray(data.locations[:, 1:]))
    partition = torch.from_numpy(user_partitions(8, cfg.discriminators, 0))
    encoder = PateGailGenerator(cfg)._encoder_args(len(data.stations))
    users = torch.utils.data.TensorDataset(torch.arange(8))

    def fit(epochs, checkpoint_dir=None):
        seed_everything(0)
        module = _GailModule(cfg, encoder, states, actions, partition)
        train(
            module,
            loader(users, batch_size=cfg.batch_size, seed=0),
            max_epochs=epochs,
            stage="pategail",
            seed=0,
            checkpoint_dir=checkpoint_dir,
            progress=False,
            placement=Placement("cpu"),
            gradient_clip_val=None,
        )
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    uninterrupted = fit(2)
    stopped = fit(1, checkpoint_dir=tmp_path)
    assert torch.equal(fit(2, checkpoint_dir=tmp_path), uninterrupted)
    assert not torch.equal(stopped, uninterrupted)
