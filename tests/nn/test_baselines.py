"""The baselines' networks: shapes, conditioning, the WGAN-GP penalty, the ELBO terms, receptive fields."""

from __future__ import annotations

import math

import pytest
import torch

from cellsynth.nn.baselines import (
    ConditionEmbedding,
    ConvVAE,
    DiffWaveNet,
    TCNCritic,
    TCNGenerator,
    TemporalBlock,
    gaussian_kl,
    gaussian_nll,
    gradient_penalty,
    hour_of_week_features,
    receptive_field,
)

B, C, L, D = 3, 2, 168, 5


@pytest.fixture
def station():
    return torch.randn(B, D, generator=torch.Generator().manual_seed(0))


def test_hour_of_week_features_are_sinusoids_of_the_week_and_day():
    tau = hour_of_week_features(168, weekly_harmonics=2, daily_harmonics=3)
    assert tau.shape == (2 * (2 + 3), 168)
    # Daily rows repeat every 24 hours; weekly ones do not.
    daily = tau[[2, 3, 4, 7, 8, 9]]
    assert torch.allclose(daily[:, :24], daily[:, 24:48], atol=1e-5)
    assert not torch.allclose(tau[0, :24], tau[0, 24:48], atol=1e-3)
    # 30-minute steps give the same values at the same hours.
    assert torch.allclose(hour_of_week_features(336, 2, 3)[:, ::2], tau, atol=1e-5)


def test_condition_embedding_depends_on_station_and_hour(station):
    emb = ConditionEmbedding(D, L, 8)
    c = emb(station)
    assert c.shape == (B, 8, L)
    assert not torch.allclose(c[0], c[1])  # different stations
    assert not torch.allclose(c[0, :, 0], c[0, :, 12])  # different hours
    assert "tau" not in emb.state_dict()  # recomputed, not saved
    assert ConditionEmbedding(0, L, 8)(torch.zeros(B, 0)).shape == (B, 8, L)
    with pytest.raises(ValueError, match="station features"):
        emb(torch.zeros(B, D + 1))


def test_tcn_shapes_and_causality(station):
    gen = TCNGenerator(C, D, L, noise_dim=4, hidden=8, dilations=(1, 2, 4), context_dim=8)
    noise = torch.randn(B, 4, L)
    assert gen(noise, station).shape == (B, C, L)
    critic = TCNCritic(C, D, L, hidden=8, dilations=(1, 2, 4), context_dim=8)
    assert critic(torch.randn(B, C, L), station).shape == (B,)
    # A causal block's output at step t does not change when later steps change.
    block = TemporalBlock(4, 3, 2, 0, causal=True)
    x = torch.randn(1, 4, 40)
    y = x.clone()
    y[..., 20:] += 1.0
    assert torch.allclose(block(x, None)[..., :20], block(y, None)[..., :20])
    assert not torch.allclose(block(x, None)[..., 20:], block(y, None)[..., 20:])
    with pytest.raises(ValueError, match="odd kernel"):
        TemporalBlock(4, 2, 1, 0)


def test_gradient_penalty_of_a_linear_critic_is_analytic():
    # D(x) = <w, x>: the gradient is w at every point, so the penalty is (||w|| - 1)^2 whatever is mixed.
    w = torch.randn(C, L, generator=torch.Generator().manual_seed(1))
    real, fake = torch.randn(4, C, L), torch.randn(4, C, L)
    gp = gradient_penalty(lambda x: (x * w).sum(dim=(1, 2)), real, fake)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    # A unit-norm linear critic satisfies the 1-Lipschitz constraint exactly: no penalty.
    unit = w / w.norm()
    assert gradient_penalty(lambda x: (x * unit).sum(dim=(1, 2)), real, fake).item() == pytest.approx(
        0, abs=1e-8
    )


def test_gradient_penalty_trains_the_critic():
    weight = torch.nn.Parameter(torch.full((C, L), 0.5))
    gp = gradient_penalty(lambda x: (x * weight).sum(dim=(1, 2)), torch.randn(2, C, L), torch.randn(2, C, L))
    gp.backward()
    norm = math.sqrt(C * L) * 0.5
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(weight.grad, torch.full((C, L), 2 * (norm - 1) * 0.5 / norm), rtol=1e-4)


def test_gaussian_kl_matches_the_closed_form():
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    sigma = torch.tensor([[1.0, 0.5, 2.0]])
    kl = gaussian_kl(mu, torch.log(sigma**2))
    expected = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2))
    assert torch.allclose(kl, expected)
    assert kl[0, 0].item() == pytest.approx(0.0)  # N(0, 1) vs N(0, 1)
    # KL(N(1, 0.25) || N(0, 1)) = (1 + 0.25 - 1 - log 0.25) / 2
    assert kl[0, 1].item() == pytest.approx(0.5 * (1 + 0.25 - 1 - math.log(0.25)))
    # ... and against torch.distributions.
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0, 1)
    )
    assert torch.allclose(kl, ref, atol=1e-6)


def test_gaussian_nll_matches_torch_distributions():
    x, mean, log_scale = (
        torch.randn(4, C, 10),
        torch.randn(4, C, 10),
        torch.tensor([0.3, -0.7])[None, :, None],
    )
    ref = -torch.distributions.Normal(mean, log_scale.exp()).log_prob(x)
    assert torch.allclose(gaussian_nll(x, mean, log_scale), ref, atol=1e-5)


def test_conv_vae_shapes(station):
    vae = ConvVAE(C, D, L, latent_dim=4, hidden=8, levels=3, context_dim=8)
    x = torch.randn(B, C, L)
    mean, mu, logvar = vae(x, station)
    assert mean.shape == (B, C, L) and mu.shape == (B, 4) and logvar.shape == (B, 4)
    assert vae.decode(torch.randn(B, 4), station).shape == (B, C, L)
    # The reparameterised z with zero noise is the posterior mean.
    assert torch.allclose(vae(x, station, noise=torch.zeros(B, 4))[0], vae.decode(mu, station))
    with pytest.raises(ValueError, match="divisible"):
        ConvVAE(C, D, 100, levels=3)


def test_diffwave_shapes_and_zero_initial_output(station):
    net = DiffWaveNet(C, D, L, residual_channels=8, layers=4, dilation_cycle=2, step_dim=8, step_hidden=16)
    x = torch.randn(B, C, L)
    out = net(x, torch.tensor([0, 10, 999]), station)
    assert out.shape == (B, C, L)
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer, as DiffWave


def test_receptive_field_grows_with_dilation():
    assert receptive_field(3, [1, 1, 1]) == 7
    assert receptive_field(3, [1, 2, 4, 8]) == 31
    fields = [
        DiffWaveNet(1, 0, L, residual_channels=4, layers=6, dilation_cycle=k).receptive_field
        for k in (1, 3, 6)
    ]
    assert fields == [13, 1 + 2 * 2 * (1 + 2 + 4), 1 + 2 * 63]
    # The default nets see the whole week from any step.
    assert DiffWaveNet(1, 0, L).receptive_field > L
    assert TCNGenerator(1, 0, L).receptive_field > L


def test_diffwave_receptive_field_is_what_the_output_sees():
    """Perturb one input step: exactly the outputs within the receptive field change."""
    torch.manual_seed(0)
    net = DiffWaveNet(1, 0, 64, residual_channels=4, layers=3, dilation_cycle=3, step_dim=8, step_hidden=8)
    torch.nn.init.normal_(net.output.weight)  # undo the zero init so that outputs respond
    x = torch.randn(1, 1, 64)
    y = x.clone()
    y[..., 32] += 1.0
    t, s = torch.tensor([5]), torch.zeros(1, 0)
    changed = (net(x, t, s) - net(y, t, s)).abs().squeeze() > 1e-7
    half = (net.receptive_field - 1) // 2  # centred: 1 + 2 + 4 = 7 steps each side
    assert half == 7
    assert changed[32 - half : 32 + half + 1].all()
    assert not changed[: 32 - half].any() and not changed[32 + half + 1 :].any()
