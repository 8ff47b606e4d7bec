r"""The Gaussian-diffusion user-traffic baselines (``csdi``, ``dit``): a denoiser of users' normalised traffic
series trained with the DDPM epsilon objective (:class:`~cellsynth.generators.diffusion_training.EpsilonModule`)

.. math::  L = \mathbb E_{t, z_0, \varepsilon}\,
           \lVert \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}\,z_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon,\ t) \rVert^2

on :class:`~cellsynth.diffusion.gaussian.GaussianDiffusion`, and sampled by its samplers
(``generate(n, sampler="ddpm"|"ddim"|"dpm-solver", steps=...)``), with the predicted ``z_0`` clipped at every
step to the widened training range (``extensions.clip_margin``, as STOUTER and DiffWave). An EMA of the
weights (``extensions.ema_decay``, 0: the last weights) is what generates. Traffic and trajectories as in
:mod:`._trajectory`: the model is unconditional (users are exchangeable), so a user's traffic is drawn
independently of the trajectory it is given.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

import pydantic
import torch

from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.generators.baselines.users._trajectory import UserTrafficConfig, UserTrafficGenerator
from cellsynth.generators.conditioning import BaselineExtensions
from cellsynth.generators.diffusion_training import EpsilonModule
from cellsynth.generators.sampling import GaussianSampling, SamplingConfig

__all__ = ["DiffusionUserConfig", "DiffusionUserExtensions", "DiffusionUserGenerator", "ShapedEpsilonModule"]


class DiffusionUserExtensions(BaselineExtensions):
    """The user-traffic additions (normalisation, clipping), and an EMA of the weights."""

    ema_decay: float = pydantic.Field(
        0.999,
        ge=0,
        lt=1,
        description="EMA of the weights, what generates (with warm-up; 0: the last weights).",
    )


class DiffusionUserConfig(UserTrafficConfig, SamplingConfig):
    """The noise process and optimiser of a diffusion user-traffic baseline (a model redeclares its paper's
    defaults)."""

    moved_fields: ClassVar[dict[str, str]] = SamplingConfig.moved_fields
    num_train_timesteps: int = pydantic.Field(1000, ge=2, description="Diffusion steps T of training.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = pydantic.Field(
        "linear",
        description="Variance schedule (diffusers' names; scaled_linear: betas = linspace(sqrt(beta_start), "
        "sqrt(beta_end))^2, CSDI's 'quad').",
    )
    beta_start: float = pydantic.Field(
        1e-4, gt=0, lt=1, description="First beta (not for squaredcos_cap_v2)."
    )
    beta_end: float = pydantic.Field(0.02, gt=0, lt=1, description="Last beta (not for squaredcos_cap_v2).")
    weight_decay: float = pydantic.Field(0.0, ge=0, description="Weight decay of the optimiser.")
    sampling: GaussianSampling = pydantic.Field(default_factory=GaussianSampling)
    extensions: DiffusionUserExtensions = pydantic.Field(default_factory=DiffusionUserExtensions)

    @pydantic.model_validator(mode="after")
    def _ordered_betas(self):
        if self.beta_schedule != "squaredcos_cap_v2" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be < beta_end ({self.beta_end})")
        return self


class ShapedEpsilonModule(EpsilonModule):
    """:class:`EpsilonModule` on batches ``(z [B, T],)`` for a network that takes ``[B, *shape]``."""

    def __init__(self, net: torch.nn.Module, diffusion: GaussianDiffusion, shape: tuple[int, ...], **options):
        super().__init__(net, diffusion, **options)
        self.shape = tuple(shape)

    def network_output(self, net, x_t, t, condition):
        return net(x_t, t)

    def training_step(self, batch, batch_idx):
        (z,) = batch
        return super().training_step((z.reshape(z.shape[0], *self.shape), None), batch_idx)


class DiffusionUserGenerator(UserTrafficGenerator):
    """A diffusion user-traffic baseline (module docstring); a subclass gives the network, the shape it takes a
    series in (:meth:`_series_shape`) and, if its optimiser differs, :attr:`training_module` and
    :meth:`_optimiser_options`.

    ``generate(n_users, seed=s, sampler=..., steps=..., progress=False, batch_size=None)``. After ``fit``,
    ``history_`` holds the mean denoising MSE of each epoch.
    """

    Config: ClassVar[type[DiffusionUserConfig]] = DiffusionUserConfig
    #: The Lightning module that trains the network (a model with its own optimiser subclasses it).
    training_module: ClassVar[type[ShapedEpsilonModule]] = ShapedEpsilonModule

    @abstractmethod
    def _series_shape(self, length: int) -> tuple[int, ...]:
        """The shape the network takes one series of ``length`` steps in (e.g. ``(1, length)``)."""

    def _diffusion(self) -> GaussianDiffusion:
        cfg = self.config
        return GaussianDiffusion(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    def _module(self, network: torch.nn.Module) -> ShapedEpsilonModule:
        cfg = self.config
        return self.training_module(
            network,
            self._diffusion(),
            self._series_shape(self.n_steps_),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            ema_decay=cfg.extensions.ema_decay,
            **self._optimiser_options(),
        )

    def _optimiser_options(self) -> dict[str, Any]:
        """Further keyword arguments of :attr:`training_module` (a model with its own optimiser)."""
        return {}

    def _trained(self, module: EpsilonModule) -> torch.nn.Module:
        return module.ema

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        return self.config.sampling_options(options, self.name)

    def _draw(
        self, net, locations, *, generator, device, progress, sampler, steps, precision
    ) -> torch.Tensor:
        """Unconditional: ``locations`` give only the number of series."""
        n, shape = len(locations), self._series_shape(self.n_steps_)
        z = self._diffusion().sample(
            lambda x, t: net(x, t),
            (n, *shape),
            sampler=sampler,
            steps=steps,
            generator=generator,
            device=device,
            progress=progress,
            x0_range=self._z_range(device),  # clips every step's z_0 prediction, as STOUTER does
            precision=precision,
        )
        return z.reshape(n, self.n_steps_)
