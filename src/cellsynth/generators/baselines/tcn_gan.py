"""TCN-GAN: a conditional Wasserstein GAN with gradient penalty whose generator and critic are temporal
convolutional networks — STOUTER's GAN baseline.

Sources: the GAN baseline family of cellular-traffic generation, after Hui et al., "Large-scale Urban
Cellular Traffic Generation via Knowledge-Enhanced GANs with Multi-Periodic Patterns", KDD 2023
(doi:10.1145/3580305.3599853); the temporal convolutional network of Bai, Kolter & Koltun, "An Empirical
Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling", 2018; WGAN-GP of
Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.

Model (:mod:`cellsynth.nn.baselines`): the generator ``G(z, s)`` maps per-step noise ``z ~ N(0, I)``
``[B, z_dim, L]`` and the conditions (station vector ``s``, hour-of-week embedding; see
:mod:`cellsynth.generators.conditioning`) to a normalised week ``[B, C, L]`` through residual dilated
temporal blocks (dilations 1, 2, .., 32, kernel 3: a receptive field of 253 steps, more than a week of 168
hours); the critic ``D(x, s)`` is the same kind of stack ending in a per-step score averaged over the week.

Objective (WGAN-GP, trained by :class:`cellsynth.generators.gan.WGANGPModule`), with
``x_hat = eps x + (1 - eps) G(z, s)``, ``eps ~ U[0, 1]`` per series:

.. math::

    L_D = \\mathbb E[D(G(z, s), s)] - \\mathbb E[D(x, s)]
          + \\lambda\\, \\mathbb E\\big[(\\lVert \\nabla_{\\hat x} D(\\hat x, s) \\rVert_2 - 1)^2\\big],
    \\qquad L_G = -\\mathbb E[D(G(z, s), s)]

with the paper's settings: ``lambda = 10``, ``n_critic = 5`` critic updates per generator update, Adam with
``beta_1 = 0``, ``beta_2 = 0.9``, learning rate 1e-4 for both networks. Each training batch is one critic
update; every ``n_critic``-th critic update is followed by a generator update on the same batch's stations.
The count of critic updates is a buffer of the module, saved in every checkpoint, so a resumed run takes
its generator steps exactly where an uninterrupted one would (manual optimisation: Lightning does not
clip gradients; the step seed of :func:`~cellsynth.training.train` still makes the noise a
function of the seed and the step).

**Differential privacy** (a ``privacy`` section, ``cellsynth fit tcn-gan --epsilon``; docs/privacy.md): the
critic, the only network that sees real traffic, is trained by DP-SGD with one station (all its weeks) the
privacy unit; the generator, trained only through the critic's scores, is covered by post-processing
(:func:`cellsynth.generators.gan.train_private_critic`). The gradient penalty stays: per-station
gradients of the critic loss, penalty included, come from ``torch.func`` rather than Opacus' hooks. Every
critic step is an accounted DP-SGD step (``epochs`` times the batches per epoch); under privacy a batch is
a Poisson sample of stations holding about ``batch_size`` weeks, and the generator steps draw their
conditions from all training stations. ``history_`` of a private fit is empty: the per-epoch Wasserstein
estimate is a statistic of the real traffic outside DP-SGD.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic
import torch

from cellsynth.generators.conditioning import BaselineGenerator, PrivateBaselineConfig
from cellsynth.generators.gan import WGANGPModule, train_private_critic
from cellsynth.nn.baselines import TCNCritic, TCNGenerator

__all__ = ["TCNGANConfig", "TCNGANGenerator"]


class TCNGANConfig(PrivateBaselineConfig):
    """Hyperparameters of TCN-GAN (WGAN-GP's published settings; widths sized like STOUTER's STUNet)."""

    noise_dim: int = pydantic.Field(16, ge=1, description="Noise channels per step fed to the generator.")
    hidden: int = pydantic.Field(64, ge=1, description="Width of the generator's TCN.")
    critic_hidden: int = pydantic.Field(
        32, ge=1, description="Width of the critic's TCN (it runs 5x as often, with a double backward pass)."
    )
    kernel_size: int = pydantic.Field(
        3, ge=2, description="Kernel of the dilated convolutions (odd unless causal)."
    )
    dilations: tuple[int, ...] = pydantic.Field(
        (1, 2, 4, 8, 16, 32), min_length=1, description="Dilation of each residual temporal block."
    )
    causal: bool = pydantic.Field(False, description="Causal generator convolutions (past steps only).")
    n_critic: int = pydantic.Field(5, ge=1, description="Critic updates per generator update (WGAN-GP: 5).")
    gp_weight: float = pydantic.Field(10.0, ge=0, description="Gradient-penalty weight lambda (WGAN-GP: 10).")
    lr: float = pydantic.Field(1e-4, gt=0, description="Adam learning rate of both networks (WGAN-GP: 1e-4).")
    betas: tuple[float, float] = pydantic.Field((0.0, 0.9), description="Adam betas (WGAN-GP: 0, 0.9).")
    epochs: int = pydantic.Field(
        400,
        ge=1,
        description="Passes over the training station-weeks; one critic update per batch, so the generator "
        "gets epochs * batches / n_critic updates.",
    )

    @pydantic.field_validator("dilations")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in value):
            raise ValueError("every dilation must be >= 1")
        return value

    @pydantic.model_validator(mode="after")
    def _odd_kernel(self) -> TCNGANConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (the critic's convolutions are centred), got {self.kernel_size}"
            )
        return self


class TCNGANGenerator(BaselineGenerator):
    """TCN-GAN (WGAN-GP, temporal-convolution generator and critic), conditioned like STOUTER.

    ``generate(target, samples=k, seed=s, progress=False, batch_size=None)``. After ``fit``, ``history_``
    holds the critic's mean Wasserstein estimate per epoch run in this process.
    """

    name = "tcn-gan"
    Config = TCNGANConfig
    gradient_clip_val: ClassVar[float | None] = None  # manual optimisation: Lightning cannot clip
    private_part: ClassVar[str] = (
        "the critic, and so for the generator, which learns only from the critic's scores"
    )

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "hidden": 8,
            "critic_hidden": 8,
            "noise_dim": 4,
            "context_dim": 8,
            "dilations": (1, 4),
            "epochs": 2,
            "batch_size": 8,
            "n_critic": 2,
            "accelerator": "cpu",
        }

    def _network(self, n_channels: int, station_dim: int, length: int) -> TCNGenerator:
        cfg = self.config
        return TCNGenerator(
            n_channels,
            station_dim,
            length,
            noise_dim=cfg.noise_dim,
            hidden=cfg.hidden,
            kernel_size=cfg.kernel_size,
            dilations=cfg.dilations,
            context_dim=cfg.context_dim,
            causal=cfg.causal,
            weekly_harmonics=cfg.weekly_harmonics,
            daily_harmonics=cfg.daily_harmonics,
        )

    def _module(self, network: TCNGenerator) -> WGANGPModule:
        cfg = self.config
        critic = TCNCritic(
            network.n_channels,
            network.condition.station_dim,
            network.length,
            hidden=cfg.critic_hidden,
            kernel_size=cfg.kernel_size,
            dilations=cfg.dilations,
            context_dim=cfg.context_dim,
            weekly_harmonics=cfg.weekly_harmonics,
            daily_harmonics=cfg.daily_harmonics,
        )
        return WGANGPModule(
            network, critic, n_critic=cfg.n_critic, gp_weight=cfg.gp_weight, lr=cfg.lr, betas=tuple(cfg.betas)
        )

    def _train_private(self, module: WGANGPModule, dataset, plan, **options) -> dict:
        return train_private_critic(module, dataset, plan, **options)

    def _trained(self, module: WGANGPModule) -> TCNGenerator:
        return module.generator

    def _draw(self, net, station, *, generator, device, progress, **options) -> torch.Tensor:
        return net(net.noise(station.shape[0], generator=generator).to(device), station)
