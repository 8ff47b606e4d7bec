r"""WGAN-GP training, shared by every GAN of cellsynth (``tcn-gan``, ``adaptive``, ``msh-gan``).

Objective (Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017), with the conditions
``c`` of a batch held fixed and ``x_hat = eps x + (1 - eps) G(z, c)``, ``eps ~ U[0, 1]`` per series:

.. math::

    L_D = \mathbb E[D(G(z, c), c)] - \mathbb E[D(x, c)]
          + \lambda\, \mathbb E\big[(\lVert \nabla_{\hat x} D(\hat x, c) \rVert_2 - 1)^2\big],
    \qquad L_G = -\mathbb E[D(G(z, c), c)]

Each training batch ``(x, *conditions)`` is one critic update; every ``n_critic``-th critic update is
followed by a generator update on the same batch's conditions. The count of critic updates is a buffer of
the module, saved in every checkpoint, so a resumed run takes its generator steps exactly where an
uninterrupted one would (manual optimisation: Lightning does not clip gradients; the step seed of
:func:`~cellsynth.training.train` makes the noise a function of the seed and the step).

The networks' contract: ``generator.noise(batch, device=...)`` draws the noise of ``batch`` series (a tensor
or a tuple of tensors), ``generator(noise, *conditions)`` gives ``[B, C, L]`` and ``critic(x, *conditions)``
gives ``[B]``.

**Differential privacy** (:func:`train_private_critic`; docs/privacy.md). Only the critic sees real traffic;
the generator learns only from the critic's scores of its own samples, so by post-processing it inherits
the critic's guarantee (Xie et al., "Differentially Private Generative Adversarial Network", 2018). The
critic is trained by DP-SGD with one station, all its ``W`` weeks, the privacy unit: stations drawn by
Poisson sampling, each station's gradient of its own critic loss

.. math::

    \ell_n = \sum_{w=1}^{W} \Big( D(G(z_{nw}, c_n), c_n) - D(x_{nw}, c_n)
              + \lambda \big(\lVert \nabla_{\hat x} D(\hat x_{nw}, c_n) \rVert_2 - 1\big)^2 \Big)

clipped to ``C`` and summed, Gaussian noise added (:func:`~cellsynth.generators.privacy.noisy_mean_gradient`).
The fake and penalty terms of a station are in its own clipped gradient, so the update reveals nothing of
which stations were drawn beyond what the noise allows. Opacus' per-sample-gradient hooks cannot take the
double backward that the penalty needs, so :func:`station_critic_gradients` computes the per-station
gradients with ``torch.func`` (``vmap`` over stations of ``grad`` of ``l_n``, the penalty's input gradient
by an inner ``grad``). Every critic step touches real data and is one accounted step; the generator steps,
every ``n_critic``-th, use conditions drawn from the public list of all training stations, not the batch's
(which would reveal the Poisson sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cellsynth.errors import ConfigError
from cellsynth.generators.privacy import PrivacyPlan, noisy_mean_gradient, poisson_stations, station_weeks
from cellsynth.nn.baselines import gradient_penalty
from cellsynth.training import TrainingModule

__all__ = ["WGANGPModule", "station_critic_gradients", "train_private_critic"]


class WGANGPModule(TrainingModule):
    """WGAN-GP with manual optimisation (module docstring); Adam for both networks. ``history`` holds the
    critic's mean Wasserstein estimate ``E D(x) - E D(G(z))`` per epoch (it should shrink as G learns)."""

    def __init__(
        self,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        *,
        n_critic: int,
        gp_weight: float,
        lr: float,
        betas: tuple[float, float],
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.critic = generator, critic
        self.n_critic, self.gp_weight = n_critic, gp_weight
        self.lr, self.betas = lr, tuple(betas)
        # Saved in the checkpoint with the weights: a resumed run continues the critic/generator rhythm.
        self.register_buffer("critic_updates", torch.zeros((), dtype=torch.long))
        self.history: list[float] = []
        self._epoch: list[float] = []
        self.private: _PrivateCritic | None = None  # set by train_private_critic for its run

    def _fake(self, batch: int, device: torch.device, conditions: tuple) -> torch.Tensor:
        return self.generator(self.generator.noise(batch, device=device), *conditions)

    def training_step(self, batch, batch_idx):
        x, *conditions = batch
        conditions = tuple(conditions)
        opt_g, opt_d = self.optimizers()
        if self.private is None:
            wasserstein = self._critic_step(x, conditions, opt_d)
        else:
            wasserstein = self._private_critic_step(x, conditions, opt_d)
            conditions = self.private.generator_conditions(x.device)
        self.critic_updates += 1

        # Generator: L_G = -E D(G(z, c)), every n_critic critic updates.
        if int(self.critic_updates) % self.n_critic == 0:
            rows = len(conditions[0]) if conditions else x.shape[0]
            loss_g = -self.critic(self._fake(rows, x.device, conditions), *conditions).mean()
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            opt_d.zero_grad()  # the critic's gradients from L_G are not used

        if wasserstein is not None:
            self.log("w_dist", wasserstein, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x))
            if self.private is None:  # a private fit keeps no statistic of the real traffic outside DP-SGD
                self._epoch.append(float(wasserstein))

    def _critic_step(self, x: torch.Tensor, conditions: tuple, opt_d) -> torch.Tensor:
        """L_D = E D(fake) - E D(real) + lambda * GP on the batch; returns the Wasserstein estimate."""
        with torch.no_grad():
            fake = self._fake(x.shape[0], x.device, conditions)
        d_real = self.critic(x, *conditions)
        d_fake = self.critic(fake, *conditions)
        gp = gradient_penalty(lambda v: self.critic(v, *conditions), x, fake)
        wasserstein = d_real.mean() - d_fake.mean()
        loss_d = -wasserstein + self.gp_weight * gp
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        return wasserstein.detach()

    def _private_critic_step(self, x: torch.Tensor, conditions: tuple, opt_d) -> torch.Tensor | None:
        """One DP-SGD step of the critic on a Poisson batch of stations ``x`` ``[S, W, C, L]`` (module
        docstring); returns the Wasserstein estimate (``None`` for an empty batch, a noise-only step)."""
        plan = self.private.plan
        if int(self.critic_updates) >= plan.steps:  # the guarantee was planned for plan.steps steps
            raise RuntimeError(
                f"DP-SGD would take critic step {int(self.critic_updates) + 1} of {plan.steps}"
            )
        params = list(self.critic.parameters())
        stations, weeks = x.shape[:2]
        wasserstein = None
        if stations == 0:
            per_station = [p.new_zeros((0, *p.shape)) for p in params]
        else:
            real, week_conditions = station_weeks(x, conditions)
            with torch.no_grad():
                fake = self._fake(len(real), x.device, week_conditions).reshape(x.shape)
            mix = torch.rand((stations, weeks) + (1,) * (x.dim() - 2), device=x.device)
            per_station, wasserstein = station_critic_gradients(
                self.critic, self.gp_weight, x, fake, mix, conditions
            )
        opt_d.zero_grad()
        for p, g in zip(params, noisy_mean_gradient(per_station, plan, self.private.noise), strict=True):
            p.grad = g
        opt_d.step()
        return wasserstein

    def on_train_epoch_end(self) -> None:
        if self._epoch:
            self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas),
            torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas),
        ]


@dataclass
class _PrivateCritic:
    """What a private run of :class:`WGANGPModule` needs besides the module: the plan, DP-SGD's noise
    generator, and the conditions of every training station ``[N, ...]`` (public, docs/privacy.md)."""

    plan: PrivacyPlan
    noise: torch.Generator
    public_conditions: tuple[torch.Tensor, ...]
    weeks: int

    def generator_conditions(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Conditions of a generator step: ``max(1, int(q N))`` stations drawn at random from all training
        stations (as many as a batch holds on average), each repeated for its ``W`` weeks; independent of
        which stations the Poisson batch drew."""
        n = len(self.public_conditions[0])
        drawn = torch.randperm(n)[: max(1, int(self.plan.sample_rate * n))]
        return tuple(c[drawn].repeat_interleave(self.weeks, dim=0).to(device) for c in self.public_conditions)


def station_critic_gradients(
    critic: torch.nn.Module,
    gp_weight: float,
    real: torch.Tensor,
    fake: torch.Tensor,
    mix: torch.Tensor,
    conditions: tuple,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    r"""Each station's gradient of its own critic loss (module docstring)

    .. math::  \ell_n = \sum_w D(G_{nw}, c_n) - D(x_{nw}, c_n)
               + \lambda \big(\lVert \nabla_{\hat x} D(\hat x_{nw}, c_n) \rVert_2 - 1\big)^2,
               \qquad \hat x_{nw} = \epsilon_{nw} x_{nw} + (1 - \epsilon_{nw}) G_{nw}

    for ``real`` and ``fake`` ``[S, W, ...]``, ``mix`` (the ``epsilon``) ``[S, W, 1, ..]`` and ``conditions``
    (tensors ``[S, ...]``, one row per station, repeated for its weeks): the penalty of
    :func:`~cellsynth.nn.baselines.gradient_penalty` per week, summed over the weeks rather than averaged
    over a batch. Computed with ``torch.func``: ``vmap`` over stations of ``grad`` of ``l_n``, with the
    input gradient of the penalty by an inner ``grad``; Opacus' hooks cannot differentiate through the
    penalty's backward pass, and ``torch.autograd.grad`` cannot run under ``vmap``. Returns the gradients
    (``[S, *p.shape]`` for each of ``critic.parameters()``, in that order) and the batch's Wasserstein
    estimate per week, ``mean D(x) - mean D(G)``, detached.
    """
    from torch.func import functional_call, grad, vmap

    names = [name for name, _ in critic.named_parameters()]
    params = {name: p.detach() for name, p in critic.named_parameters()}
    buffers = dict(critic.named_buffers())
    weeks = real.shape[1]

    def station_loss(params, real, fake, mix, *conditions):
        rows = tuple(c.expand(weeks, *c.shape) for c in conditions)  # the station's condition per week

        def score(v):
            return functional_call(critic, (params, buffers), (v, *rows))

        input_grad = grad(lambda v: score(v).sum())(mix * real + (1 - mix) * fake)
        penalty = (input_grad.flatten(1).norm(dim=1) - 1) ** 2
        d_real, d_fake = score(real), score(fake)
        return (d_fake - d_real + gp_weight * penalty).sum(), (d_real - d_fake).sum()

    in_dims = (None, 0, 0, 0) + (0,) * len(conditions)
    grads, wasserstein = vmap(grad(station_loss, has_aux=True), in_dims=in_dims)(
        params, real, fake, mix, *conditions
    )
    return [grads[name] for name in names], wasserstein.sum().detach() / (real.shape[0] * weeks)


def train_private_critic(
    module: WGANGPModule,
    dataset: torch.utils.data.Dataset,
    plan: PrivacyPlan,
    *,
    weeks: int,
    batch_size: int,
    seed: int,
    **train_options,
) -> dict:
    """Train ``module`` with its critic under DP-SGD (module docstring) on ``dataset``, whose items are one
    station each (``[W, C, L]`` weeks, then its conditions), through :func:`cellsynth.training.train`
    (``train_options`` as for :func:`~cellsynth.generators.privacy.train_private`). Each Poisson batch is one
    critic step, so a run takes ``plan.steps`` of them (``epochs`` times the batches per epoch). Returns the
    spent guarantee for the critic steps taken (resumed ones included: the count is saved in checkpoints).
    A critic with layers that mix the series of a batch (batch normalisation) is refused."""
    from opacus.validators import ModuleValidator

    from cellsynth.training import train

    problems = ModuleValidator.validate(module.critic, strict=False)
    if problems:
        raise ConfigError(f"this critic cannot be trained with DP-SGD: {problems[0]}")
    poisson, noise = poisson_stations(dataset, batch_size=batch_size, seed=seed)
    if not np.isclose(poisson.sample_rate, plan.sample_rate):
        raise RuntimeError(f"Poisson rate {poisson.sample_rate} differs from the planned {plan.sample_rate}")
    items = [dataset[i][1:] for i in range(len(dataset))]
    public = tuple(torch.stack(column) for column in zip(*items, strict=True))
    module.private = _PrivateCritic(plan, noise, public, weeks)
    try:
        train(module, poisson, seed=seed, gradient_clip_val=None, **train_options)
    finally:
        module.private = None
    taken = int(module.critic_updates)
    if taken > plan.steps:
        raise RuntimeError(
            f"DP-SGD ran {taken} critic steps, more than the {plan.steps} its budget was planned for"
        )
    return plan.spent(taken)
