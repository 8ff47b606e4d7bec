"""CSDI adapted from imputation to generation — a baseline of MSTDiff's user traffic.

Source: Tashiro, Song, Song & Ermon, "CSDI: Conditional Score-based Diffusion Models for Probabilistic Time
Series Imputation", NeurIPS 2021 (arXiv:2107.03502). CSDI imputes the missing values of a ``K x L`` series
conditioned on the observed ones; with **every value missing** it is an unconditional generator, and its
network is then CSDI's own unconditional variant: the noisy series alone as input, no conditional mask in
the side information (:class:`cellsynth.nn.csdi.CSDINet`: residual layers each with a temporal and a feature
Transformer layer, a time embedding and a feature embedding as side information).

Everything of the paper's setting is kept: 4 residual layers of 64 channels, 8 heads, feed-forward 64, a
128-d diffusion-step embedding, the 128-d time and 16-d feature embeddings; the quadratic schedule of 50
steps ``beta_t = (linspace(sqrt(1e-4), sqrt(0.5), 50))_t^2`` (diffusers' ``scaled_linear``); Adam, lr 1e-3,
weight decay 1e-6, batch 16, 200 epochs, the learning rate divided by 10 at 75 % and 90 % of the epochs;
DDPM's ancestral sampler over all 50 steps.

**How a user's week becomes CSDI's ``K x L``.** A user has one traffic channel. Taken as it is (``K = 1``,
``L = T``; the ``paper`` preset), CSDI's feature Transformer has nothing to attend to and is skipped, as in
CSDI's code. With ``extensions.days_as_features`` (the default and ``recommended``) the week is folded
into its days: ``K = T / (steps per day)`` rows of ``L = steps per day`` (``7 x 48`` at 30 minutes), so
the temporal Transformer attends along the hours of a day and the feature Transformer across the days at the
same hour — CSDI's two axes of dependence, applied to the daily and the weekly cycle. The time embedding is
then the position within the day and the feature embedding the day of the series.

cellsynth's additions, in ``extensions`` and off in the ``paper`` preset: the fold, an EMA of the weights,
clipping of the predicted ``z_0`` (:mod:`._diffusion`). Trajectories: :mod:`._trajectory`.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
import pydantic
import torch

from cellsynth.errors import DataError
from cellsynth.generators.baselines.users._diffusion import (
    DiffusionUserConfig,
    DiffusionUserExtensions,
    DiffusionUserGenerator,
    ShapedEpsilonModule,
)
from cellsynth.generators.sampling import GaussianSampling
from cellsynth.nn.csdi import CSDINet

__all__ = ["CSDIConfig", "CSDIExtensions", "CSDIGenerator", "CSDIModule"]


class CSDIExtensions(DiffusionUserExtensions):
    """cellsynth's additions to CSDI (the ``paper`` preset switches them off)."""

    days_as_features: bool = pydantic.Field(
        True,
        description="Fold the series into days: K = days (feature axis), L = steps per day; False: K = 1, "
        "L = T (CSDI then skips its feature Transformer).",
    )


class CSDIConfig(DiffusionUserConfig):
    """CSDI's hyperparameters (the paper's defaults); cellsynth's additions in ``extensions``."""

    layers: int = pydantic.Field(4, ge=1, description="Residual layers.")
    channels: int = pydantic.Field(64, ge=1, description="Width of the residual layers.")
    heads: int = pydantic.Field(8, ge=1, description="Attention heads of both Transformer layers.")
    ff_dim: int = pydantic.Field(64, ge=1, description="Feed-forward width of the Transformer layers.")
    dropout: float = pydantic.Field(0.1, ge=0, lt=1, description="Dropout in the Transformer layers.")
    step_dim: int = pydantic.Field(128, ge=2, description="Diffusion-step embedding (even).")
    time_dim: int = pydantic.Field(
        128, ge=2, description="Sinusoidal time embedding of the side information (even)."
    )
    feature_dim: int = pydantic.Field(
        16, ge=1, description="Learned feature embedding of the side information."
    )
    num_train_timesteps: int = pydantic.Field(50, ge=2, description="Diffusion steps T.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = pydantic.Field(
        "scaled_linear",
        description="CSDI's 'quad' schedule: betas = linspace(sqrt(beta_start), sqrt(beta_end))^2.",
    )
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1, description="First beta.")
    beta_end: float = pydantic.Field(0.5, gt=0, lt=1, description="Last beta.")
    epochs: int = pydantic.Field(200, ge=1, description="Passes over all training users.")
    batch_size: int = pydantic.Field(16, ge=1, description="Users per training batch.")
    lr: float = pydantic.Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = pydantic.Field(1e-6, ge=0, description="Adam's L2 weight decay.")
    lr_milestones: tuple[float, ...] = pydantic.Field(
        (0.75, 0.9),
        description="Shares of the epochs after which the learning rate is multiplied by lr_gamma.",
    )
    lr_gamma: float = pydantic.Field(0.1, gt=0, le=1, description="Learning-rate factor at each milestone.")
    sampling: GaussianSampling = pydantic.Field(
        default_factory=lambda: GaussianSampling(sampler="ddpm", steps=None)
    )
    extensions: CSDIExtensions = pydantic.Field(default_factory=CSDIExtensions)

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.channels % self.heads:
            raise ValueError(f"channels ({self.channels}) must be divisible by heads ({self.heads})")
        if self.step_dim % 2 or self.time_dim % 2:
            raise ValueError(f"step_dim ({self.step_dim}) and time_dim ({self.time_dim}) must be even")
        if any(not 0 < m <= 1 for m in self.lr_milestones):
            raise ValueError(
                f"lr_milestones are shares of the epochs in (0, 1], got {list(self.lr_milestones)}"
            )
        return self


class CSDIModule(ShapedEpsilonModule):
    """CSDI's optimiser: Adam with L2 weight decay, the learning rate multiplied by ``gamma`` after each epoch
    milestone."""

    def __init__(self, *args, milestones: list[int], gamma: float, **options) -> None:
        super().__init__(*args, **options)
        self.milestones, self.gamma = milestones, gamma

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=self.milestones, gamma=self.gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


class CSDIGenerator(DiffusionUserGenerator):
    """CSDI (Tashiro et al., NeurIPS 2021) with every value missing: a diffusion generator of users' traffic
    (temporal and feature Transformers); Markov-floor trajectories.

    Details and departures from the paper: the module docstring."""

    name = "csdi"
    Config = CSDIConfig
    training_module = CSDIModule

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "layers": 1,
            "channels": 8,
            "heads": 2,
            "ff_dim": 8,
            "step_dim": 8,
            "time_dim": 8,
            "feature_dim": 4,
            "num_train_timesteps": 10,
            "beta_end": 0.9,  # so that x_T is pure noise (alpha-bar_T = 0.004) with so few steps
            "epochs": 2,
            "batch_size": 8,
            "accelerator": "cpu",
        }

    def _steps_per_day(self, step: pd.Timedelta) -> int | None:
        ratio = pd.Timedelta("1D") / step
        return int(ratio) if ratio == int(ratio) else None

    def _check_series(self, data, what: str) -> None:
        if not self.config.extensions.days_as_features:
            return
        per_day = self._steps_per_day(data.step)
        if per_day is None or data.n_steps % per_day:
            raise DataError(
                f"{self.name} with extensions.days_as_features folds the series into days, but {data.n_steps} "
                f"steps of {data.step} are not whole days; give whole days at a step dividing a day, or set "
                "extensions.days_as_features: false",
                source=data.source,
            )

    def _series_shape(self, length: int) -> tuple[int, int]:
        if not self.config.extensions.days_as_features:
            return (1, length)
        per_day = self._steps_per_day(pd.Timedelta(self.time_["step"]))
        return (length // per_day, per_day)

    def _network(self, length: int) -> CSDINet:
        cfg = self.config
        return CSDINet(
            *self._series_shape(length),
            channels=cfg.channels,
            layers=cfg.layers,
            heads=cfg.heads,
            ff_dim=cfg.ff_dim,
            dropout=cfg.dropout,
            step_dim=cfg.step_dim,
            time_dim=cfg.time_dim,
            feature_dim=cfg.feature_dim,
        )

    def _optimiser_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "milestones": sorted({int(m * cfg.epochs) for m in cfg.lr_milestones}),
            "gamma": cfg.lr_gamma,
        }
