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
"""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.nn.baselines import gradient_penalty
from cellsynth.training import TrainingModule

__all__ = ["WGANGPModule"]


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

    def _fake(self, x: torch.Tensor, conditions: tuple) -> torch.Tensor:
        return self.generator(self.generator.noise(x.shape[0], device=x.device), *conditions)

    def training_step(self, batch, batch_idx):
        x, *conditions = batch
        opt_g, opt_d = self.optimizers()

        # Critic: L_D = E D(fake) - E D(real) + lambda * GP.
        with torch.no_grad():
            fake = self._fake(x, conditions)
        d_real = self.critic(x, *conditions)
        d_fake = self.critic(fake, *conditions)
        gp = gradient_penalty(lambda v: self.critic(v, *conditions), x, fake)
        wasserstein = d_real.mean() - d_fake.mean()
        loss_d = -wasserstein + self.gp_weight * gp
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self.critic_updates += 1

        # Generator: L_G = -E D(G(z, c)), every n_critic critic updates.
        if int(self.critic_updates) % self.n_critic == 0:
            loss_g = -self.critic(self._fake(x, conditions), *conditions).mean()
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            opt_d.zero_grad()  # the critic's gradients from L_G are not used

        self.log(
            "w_dist", wasserstein.detach(), prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0]
        )
        self._epoch.append(float(wasserstein.detach()))

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas),
            torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas),
        ]
