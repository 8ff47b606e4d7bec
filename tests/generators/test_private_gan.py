"""Differentially private TCN-GAN (cellsynth.generators.gan; docs/privacy.md): DP-SGD on the critic only, with
the gradient penalty kept. The per-station gradients computed with torch.func equal each station's own plain
backward pass (penalty included); each station's gradient is clipped and the sum divided by the expected
batch; the noise has the planned scale; the step count cannot exceed the plan; the spent epsilon is the
accountant's for the critic steps taken; bad budgets and cross-sample critics fail before training."""

from __future__ import annotations

import math

import pytest
import torch

from cellsynth import testing
from cellsynth.errors import ConfigError
from cellsynth.generators import get, get_class
from cellsynth.generators.gan import (
    WGANGPModule,
    _PrivateCritic,
    station_critic_gradients,
    train_private_critic,
)
from cellsynth.generators.privacy import PrivacyPlan, noisy_mean_gradient, spent_epsilon
from cellsynth.nn.baselines import TCNCritic, TCNGenerator, gradient_penalty

GP_WEIGHT = 10.0


def private_smoke(**privacy) -> dict:
    return get_class("tcn-gan").smoke_config() | {"privacy": privacy}


def plan(*, sigma: float = 0.0, clip: float = 1.0, rate: float = 0.5, stations: int = 4, steps: int = 10):
    return PrivacyPlan(
        noise_multiplier=sigma, max_grad_norm=clip, sample_rate=rate, steps=steps, delta=1e-3,
        accountant="rdp", n_stations=stations,
    )  # fmt: skip


def small_critic() -> TCNCritic:
    return TCNCritic(2, 3, 16, hidden=4, kernel_size=3, dilations=(1, 2), context_dim=4)


def test_per_station_critic_gradients_equal_each_stations_own_backward_pass():
    """The torch.func path (vmap over stations, the penalty's input gradient by an inner grad) gives, for each
    station, the gradient that a plain autograd backward of that station's weeks alone gives, with the
    penalty of nn.baselines.gradient_penalty (same mixing weights) summed over the weeks."""
    torch.manual_seed(0)
    critic = small_critic()
    stations, weeks = 3, 2
    real, fake, station = (
        torch.randn(stations, weeks, 2, 16),
        torch.randn(stations, weeks, 2, 16),
        torch.randn(3, 3),
    )
    mix = torch.stack(
        [torch.rand((weeks, 1, 1), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    )
    per_station, wasserstein = station_critic_gradients(critic, GP_WEIGHT, real, fake, mix, (station,))

    scores = []
    for s in range(stations):
        rows = station[s].expand(weeks, -1)
        d_real, d_fake = critic(real[s], rows), critic(fake[s], rows)
        penalty = gradient_penalty(
            lambda v, rows=rows: critic(v, rows), real[s], fake[s], generator=torch.Generator().manual_seed(s)
        )
        own = weeks * (d_fake.mean() - d_real.mean() + GP_WEIGHT * penalty)  # sums over the station's weeks
        expected = torch.autograd.grad(own, list(critic.parameters()))
        for (name, _), got, want in zip(critic.named_parameters(), per_station, expected, strict=True):
            torch.testing.assert_close(got[s], want, atol=1e-5, rtol=1e-4, msg=name)
        scores.append((d_real - d_fake).detach())
    assert wasserstein.item() == pytest.approx(torch.cat(scores).mean().item(), rel=1e-5)
    assert any(g.abs().sum() > 0 for g in per_station)  # the comparison is not of zeros


def test_each_station_is_clipped_over_all_parameters_and_the_sum_divided_by_the_expected_batch():
    # Station 0: (3, 0 | 4), norm 5 -> scaled to norm C = 1; station 1: (0.3, 0 | 0.4), norm 0.5, kept.
    weight = torch.tensor([[3.0, 0.0], [0.3, 0.0]])
    bias = torch.tensor([[4.0], [0.4]])
    out = noisy_mean_gradient([weight, bias], plan(rate=0.5, stations=4), torch.Generator().manual_seed(0))
    expected_batch = 2  # q N
    torch.testing.assert_close(out[0], torch.tensor([0.6 + 0.3, 0.0]) / expected_batch)
    torch.testing.assert_close(out[1], torch.tensor([0.8 + 0.4]) / expected_batch)


def test_noise_has_standard_deviation_sigma_c_over_the_expected_batch_and_an_empty_batch_gets_it_alone():
    empty = [torch.zeros(0, 200, 100)]  # no station drawn: still a step, of noise only
    out = noisy_mean_gradient(empty, plan(sigma=2.0, clip=0.5, rate=0.5, stations=4), torch.Generator())[0]
    assert out.shape == (200, 100)
    assert out.std().item() == pytest.approx(2.0 * 0.5 / 2, rel=0.03) and abs(out.mean().item()) < 0.02


def _module(critic=None) -> WGANGPModule:
    generator = TCNGenerator(2, 3, 16, noise_dim=2, hidden=4, dilations=(1,), context_dim=4)
    return WGANGPModule(generator, critic or small_critic(), n_critic=2, gp_weight=GP_WEIGHT, lr=1e-3,
                        betas=(0.0, 0.9))  # fmt: skip


class _RecordingOptimizer:
    def zero_grad(self):
        pass

    def step(self):
        pass


def test_a_private_critic_step_is_bounded_by_c_times_the_batch_and_refuses_steps_beyond_the_plan():
    """Noise 0 and a tiny C: every station is clipped, so the critic's gradient has norm <= C |B| / (q N)."""
    torch.manual_seed(0)
    module = _module()
    budget = plan(sigma=0.0, clip=1e-3, rate=0.5, stations=8, steps=1)
    public = (torch.randn(8, 3),)
    module.private = _PrivateCritic(budget, torch.Generator().manual_seed(0), public, weeks=2)
    x = torch.randn(3, 2, 2, 16)  # a Poisson batch of 3 stations, 2 weeks each
    module._private_critic_step(x, (public[0][:3],), _RecordingOptimizer())
    norm = torch.cat([p.grad.flatten() for p in module.critic.parameters()]).norm().item()
    assert 0 < norm <= 1e-3 * 3 / 4 * (1 + 1e-4)
    module.critic_updates += 1  # what training_step counts
    with pytest.raises(RuntimeError, match="critic step 2 of 1"):
        module._private_critic_step(x, (public[0][:3],), _RecordingOptimizer())


def test_an_empty_poisson_batch_is_a_noise_only_critic_step():
    module = _module()
    budget = plan(sigma=1.0, clip=1.0, rate=0.5, stations=8, steps=1)
    module.private = _PrivateCritic(budget, torch.Generator().manual_seed(0), (torch.randn(8, 3),), weeks=2)
    assert (
        module._private_critic_step(torch.zeros(0, 2, 2, 16), (torch.zeros(0, 3),), _RecordingOptimizer())
        is None
    )
    noise = torch.cat([p.grad.flatten() for p in module.critic.parameters()])
    assert noise.std().item() == pytest.approx(
        1.0 / 4, rel=0.2
    )  # sigma C / (q N), over a few hundred weights


def test_generator_steps_draw_their_conditions_from_all_stations_not_the_batch():
    public = (torch.arange(10.0)[:, None],)
    state = _PrivateCritic(plan(rate=0.3, stations=10), torch.Generator(), public, weeks=2)
    rows = state.generator_conditions(torch.device("cpu"))[0][:, 0]
    assert len(rows) == 3 * 2 and torch.equal(rows[0::2], rows[1::2])  # int(q N) stations, W weeks each
    assert len(set(rows.tolist())) == 3 and set(rows.tolist()) <= set(range(10))


def test_private_tcn_gan_spends_the_accountants_epsilon_for_every_critic_step(tmp_path):
    data = testing.tiny_traffic()
    config = private_smoke(noise_multiplier=1.5)
    gen = get("tcn-gan", config).fit(data, progress=False, checkpoint_dir=tmp_path)
    spent = gen.privacy_
    weeks = data.values.shape[1] // 168
    stations_per_batch = max(1, round(config["batch_size"] / weeks))
    batches = math.ceil(data.n_stations / stations_per_batch)
    assert spent["steps"] == config["epochs"] * batches and spent["sample_rate"] == 1 / batches
    assert spent["epsilon"] == spent_epsilon(1.5, 1 / batches, spent["steps"], spent["delta"], "rdp")
    assert spent["delta"] == pytest.approx(1 / (10 * data.n_stations))
    saved = torch.load(tmp_path / "checkpoints" / "tcn-gan" / "last.ckpt", weights_only=True)
    assert int(saved["state_dict"]["critic_updates"]) == spent["steps"]  # every critic step was accounted
    assert gen.history_ == {}  # no statistic of the real traffic outside DP-SGD
    assert "DP per station (all its weeks) for the critic, and so for the generator" in gen.fit_notes()[0]


def test_an_unreachable_tcn_gan_budget_fails_before_training(tmp_path):
    gen = get("tcn-gan", private_smoke(epsilon=0.01) | {"epochs": 50})
    with pytest.raises(ConfigError, match=r"tcn-gan: epsilon = 0.01 over .* raise privacy.epsilon"):
        gen.fit(testing.tiny_traffic(), progress=False, checkpoint_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_critic_that_mixes_the_series_of_a_batch_is_refused_before_training(tmp_path):
    critic = torch.nn.Sequential(small_critic(), torch.nn.BatchNorm1d(1))
    stations = torch.utils.data.TensorDataset(torch.randn(4, 2, 2, 16), torch.randn(4, 3))
    with pytest.raises(ConfigError, match="this critic cannot be trained with DP-SGD: .*BatchNorm"):
        train_private_critic(
            _module(critic), stations, plan(), weeks=2, batch_size=2, seed=0, max_epochs=1, stage="gan",
            checkpoint_dir=tmp_path, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "checkpoints").exists()
