"""DiffWave-style conditional diffusion — STOUTER's diffusion baseline.

Source: Kong, Ping, Huang, Zhao & Catanzaro, "DiffWave: A Versatile Diffusion Model for Audio Synthesis",
ICLR 2021 (arXiv:2009.09761). A denoising diffusion model whose network is non-autoregressive WaveNet: a
stack of residual layers with dilated convolutions (dilation doubling within a cycle), gated ``tanh *
sigmoid`` activations, the diffusion-step embedding added to every layer's input and the conditioner (here
the station vector and hour-of-week embedding, the same information STOUTER gets; see
:mod:`cellsynth.generators.conditioning`) added to every layer's pre-activation
(:class:`cellsynth.nn.baselines.DiffWaveNet`).

Everything but the network is STOUTER's: the same noise process
(:class:`~cellsynth.diffusion.gaussian.GaussianDiffusion`, linear betas 1e-4..0.02 over T = 1000 steps by
default), the epsilon-prediction objective

.. math::  L = \\mathbb E_{t, x_0, \\varepsilon}\\,
               \\lVert \\varepsilon - \\varepsilon_\\theta(\\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1 - \\bar\\alpha_t}\\,\\varepsilon,\\ t,\\ s) \\rVert^2

the same optimiser (AdamW, 5e-4, batch 32), an exponential moving average of the weights (decay 0.999 with
warm-up ``min(decay, (1 + n) / (10 + n))``) that is what generates, and the same samplers:
``generate(..., sampler="ddim"|"ddpm"|"dpm-solver", steps=...)`` (default DDIM, 50 steps), with the
predicted ``x_0`` clipped at every step to the training range of ``z`` widened by ``clip_margin``. EMA and
clipping are cellsynth's, in ``extensions``; the ``paper`` preset switches them off and samples with the
full DDPM chain.

The network is scaled to a week of hourly steps rather than to audio: 12 layers in two cycles of
dilations 1..32 (kernel 3: a receptive field of 253 steps, more than the 168 of a week) with 64 residual
channels, where DiffWave has 30 layers of cycle 10 over 16 kHz audio.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pydantic
import torch

from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.generators.conditioning import BaselineExtensions, BaselineGenerator, PrivateBaselineConfig
from cellsynth.generators.diffusion_training import EpsilonModule
from cellsynth.generators.sampling import GaussianSampling, SamplingConfig
from cellsynth.nn.baselines import DiffWaveNet

__all__ = ["DiffWaveConfig", "DiffWaveExtensions", "DiffWaveGenerator"]


class DiffWaveExtensions(BaselineExtensions):
    """The baselines' additions, and STOUTER's EMA (neither DiffWave nor STOUTER's paper averages weights)."""

    ema_decay: float = pydantic.Field(
        0.999,
        ge=0,
        lt=1,
        description="EMA of the weights, what generates (with warm-up; 0: the last weights).",
    )


class DiffWaveConfig(PrivateBaselineConfig, SamplingConfig):
    """Hyperparameters of the DiffWave baseline (diffusion and training settings equal to STOUTER's)."""

    residual_channels: int = pydantic.Field(64, ge=1, description="Width of the residual layers.")
    layers: int = pydantic.Field(12, ge=1, description="Residual layers.")
    dilation_cycle: int = pydantic.Field(
        6, ge=1, description="Dilations 2**(i mod cycle): 1, 2, .., 32 at 6."
    )
    kernel_size: int = pydantic.Field(3, ge=1, description="Kernel of the dilated convolutions (odd).")
    step_dim: int = pydantic.Field(
        128, ge=2, description="Sinusoidal diffusion-step embedding (DiffWave: 128)."
    )
    step_hidden: int = pydantic.Field(
        512, ge=1, description="Width of the step-embedding MLP (DiffWave: 512)."
    )
    num_train_timesteps: int = pydantic.Field(1000, ge=2, description="Diffusion steps T of training.")
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = pydantic.Field(
        "linear", description="Variance schedule."
    )
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1, description="First beta of the linear schedule.")
    beta_end: float = pydantic.Field(0.02, gt=0, lt=1, description="Last beta of the linear schedule.")
    weight_decay: float = pydantic.Field(0.0, ge=0, description="AdamW weight decay.")
    moved_fields: ClassVar[dict[str, str]] = SamplingConfig.moved_fields | {
        name: f"extensions.{name}" for name in DiffWaveExtensions.model_fields
    }
    sampling: GaussianSampling = pydantic.Field(default_factory=GaussianSampling)
    extensions: DiffWaveExtensions = pydantic.Field(default_factory=DiffWaveExtensions)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> DiffWaveConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred convolutions), got {self.kernel_size}")
        if self.beta_schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be < beta_end ({self.beta_end})")
        return self


class DiffWaveGenerator(BaselineGenerator):
    """DiffWave (WaveNet denoiser) on STOUTER's Gaussian diffusion, conditioned like STOUTER.

    ``generate(target, samples=k, seed=s, sampler="ddim"|"ddpm"|"dpm-solver", steps=None, progress=False,
    batch_size=None)``. After ``fit``, ``history_`` holds the mean denoising MSE of each epoch run in this
    process.
    """

    name = "diffwave"
    Config = DiffWaveConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "residual_channels": 8,
            "layers": 3,
            "dilation_cycle": 3,
            "step_dim": 8,
            "step_hidden": 16,
            "context_dim": 8,
            "epochs": 2,
            "batch_size": 8,
            "num_train_timesteps": 50,
            "beta_end": 0.2,  # about 10 / T, so that x_T is pure noise with so few steps
            "sampling": {"steps": 5},
            "accelerator": "cpu",
        }

    def _diffusion(self) -> GaussianDiffusion:
        cfg = self.config
        return GaussianDiffusion(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    def _network(self, n_channels: int, station_dim: int, length: int) -> DiffWaveNet:
        cfg = self.config
        return DiffWaveNet(
            n_channels,
            station_dim,
            length,
            residual_channels=cfg.residual_channels,
            layers=cfg.layers,
            dilation_cycle=cfg.dilation_cycle,
            kernel_size=cfg.kernel_size,
            step_dim=cfg.step_dim,
            step_hidden=cfg.step_hidden,
            context_dim=cfg.context_dim,
            weekly_harmonics=cfg.weekly_harmonics,
            daily_harmonics=cfg.daily_harmonics,
        )

    def _module(self, network: DiffWaveNet) -> EpsilonModule:
        cfg = self.config
        return EpsilonModule(
            network,
            self._diffusion(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            ema_decay=cfg.extensions.ema_decay,
        )

    def _trained(self, module: EpsilonModule) -> DiffWaveNet:
        return module.ema

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        return self.config.sampling_options(options, self.name)

    def _draw(self, net, station, *, generator, device, progress, sampler, steps, precision) -> torch.Tensor:
        return self._diffusion().sample(
            lambda x, t: net(x, t, station),
            (station.shape[0], net.n_channels, net.length),
            sampler=sampler,
            steps=steps,
            generator=generator,
            device=device,
            progress=progress,
            x0_range=self._x0_range(device),  # clips every step's x_0 prediction, as STOUTER does
            precision=precision,
        )
