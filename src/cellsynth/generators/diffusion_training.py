"""Training of any Gaussian-diffusion denoiser with the DDPM epsilon objective (STOUTER, DiffWave,
DiffTraj):

.. math::  L(\\theta) = \\mathbb E_{x_0, t, \\varepsilon}\\,
           \\| \\varepsilon - \\varepsilon_\\theta(\\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon,\\ t,\\ c) \\|^2

with ``t`` uniform (or, ``timestep_power`` p > 1, drawn more often at low noise:
:meth:`~cellsynth.diffusion.gaussian.GaussianDiffusion.sample_timesteps`); or, with
``prediction="velocity"``, the same with the target
:math:`v = \\sqrt{\\bar\\alpha_t}\\,\\varepsilon - \\sqrt{1-\\bar\\alpha_t}\\,x_0` (Salimans & Ho 2022; the
samplers get the noise it implies,
:meth:`~cellsynth.diffusion.gaussian.GaussianDiffusion.implied_noise`), with an exponential moving average of
the weights (what generates; :class:`cellsynth.training.EMA`, warmed up as
``decay_n = min(decay, (1 + n) / (10 + n))`` at optimiser step n).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cellsynth.diffusion.gaussian import PREDICTIONS, GaussianDiffusion, Prediction
from cellsynth.generators.privacy import station_weeks
from cellsynth.training import EMA, TrainingModule

__all__ = ["EpsilonModule"]


class EpsilonModule(TrainingModule):
    """Batches are ``(x0, condition)``; :meth:`network_output` calls the network (override it when the
    condition needs looking up); a batch of stations ``[S, W, C, L]`` (private training,
    :mod:`cellsynth.generators.privacy`) is trained as its ``S * W`` weeks, station-major. ``history`` holds the mean loss of each epoch run in this process; after
    training, ``ema`` is the moving average of ``net`` (:class:`~cellsynth.training.EMA`)."""

    def __init__(
        self,
        net: torch.nn.Module,
        diffusion: GaussianDiffusion,
        *,
        lr: float,
        weight_decay: float,
        ema_decay: float,
        prediction: Prediction = "noise",
        timestep_power: float = 1.0,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net, self.diffusion, self.prediction = net, diffusion, prediction
        self.timestep_power = timestep_power
        self.ema: torch.nn.Module | None = None  # EMA.setup makes it a copy of net
        self.lr, self.weight_decay, self.ema_decay = lr, weight_decay, ema_decay
        self.history: list[float] = []
        self._epoch: list[float] = []

    def network_output(
        self, net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, condition
    ) -> torch.Tensor:
        """The network's prediction at ``x_t``: of the noise or of the velocity (``prediction``)."""
        return net(x_t, t, condition)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to predict at ``x_t``: the noise, or the velocity (module docstring)."""
        return self.diffusion.target(self.prediction, x0, noise, t)

    def training_step(self, batch, batch_idx):
        x0, condition = batch
        if x0.shape[0] == 0:  # an empty Poisson batch of DP-SGD: still a (noise-only) step, as accounted
            return sum(p.sum() for p in self.net.parameters()) * 0.0
        x0, condition = station_weeks(x0, condition)  # DP-SGD's batches are stations
        t = self.diffusion.sample_timesteps(x0.shape[0], power=self.timestep_power, device=x0.device)
        noise = torch.randn_like(x0)
        loss = F.mse_loss(
            self.network_output(self.net, self.diffusion.add_noise(x0, noise, t), t, condition),
            self.target(x0, noise, t),
        )
        self.log("mse", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x0.shape[0])
        self._epoch.append(float(loss.detach()))
        return loss

    def configure_callbacks(self):
        return [EMA(self.ema_decay)]

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
