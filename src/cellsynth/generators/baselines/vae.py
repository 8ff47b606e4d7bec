"""Conditional convolutional VAE — STOUTER's VAE baseline.

Source: Semeniuta, Severyn & Barth, "A Hybrid Convolutional Variational Autoencoder for Text Generation",
EMNLP 2017 (arXiv:1702.02390): a VAE whose encoder is a stack of strided convolutions and whose decoder is
a stack of transposed (de)convolutions over the sequence, trained with KL-term annealing. Here the sequence
is one week of normalised traffic ``x`` ``[C, L]``, and the VAE is conditional (CVAE; Sohn, Lee & Yan,
NeurIPS 2015) on the same information as STOUTER (station vector ``s`` and hour-of-week embedding; see
:mod:`cellsynth.generators.conditioning`). The paper's optional recurrent layer on top of the decoder is
left out: its purpose there is the autoregressive word model of text; the week is decoded in one pass.

Model (:class:`cellsynth.nn.baselines.ConvVAE`): encoder ``q(z | x, s) = N(mu, diag sigma^2)``, prior
``p(z) = N(0, I)``, decoder ``p(x | z, s) = N(m_theta(z, s), diag sigma_c^2)`` with one learned scale per
channel. Training maximises the ELBO; the loss per series, divided by its ``C L`` values, is

.. math::

    \\mathcal L = \\frac{1}{CL}\\Big( \\sum_{c,t} -\\log \\mathcal N(x_{ct};\\ m_{ct},\\ \\sigma_c^2)
        \\;+\\; \\beta_n \\sum_j \\max\\big(\\lambda,\\ \\overline{\\mathrm{KL}}_j\\big) \\Big),
    \\qquad \\mathrm{KL}_j = \\tfrac12(\\mu_j^2 + \\sigma_j^2 - 1 - \\log\\sigma_j^2)

- **KL annealing** (Bowman et al. 2016, as Semeniuta et al.): ``beta_n = min(1, n / N_anneal)`` at
  optimiser step ``n``, with ``N_anneal`` = ``kl_anneal_epochs`` epochs of steps; the decoder first learns
  to reconstruct, then the KL term is phased in (otherwise the posterior collapses onto the prior and the
  decoder ignores ``z``).
- **Free bits** (Kingma et al. 2016): ``KL-bar_j`` is the batch mean of dimension ``j``'s KL; a dimension
  costs at least ``lambda`` = ``free_bits`` nats, so the optimiser gains nothing from pushing it below that
  (again against posterior collapse). ``free_bits = 0`` gives the plain ELBO.

**Differential privacy** (a ``privacy`` section, ``cellsynth fit vae --epsilon``; docs/privacy.md): the
shared private fit of :class:`~cellsynth.generators.conditioning.BaselineGenerator`, with the free-bits
floor applied per series (``mean_b sum_j max(lambda, KL_bj)``), so that the loss is a mean of per-series
losses as per-series clipping needs.

Generation draws ``z ~ N(0, I)`` and returns ``m_theta(z, s) + sigma_c eps`` (``observation_noise``, the
model's full ``p(x | z, s)``) or the decoder mean ``m_theta(z, s)`` alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.generators.conditioning import BaselineGenerator, PrivateBaselineConfig
from cellsynth.generators.privacy import station_weeks
from cellsynth.nn.baselines import ConvVAE, gaussian_kl, gaussian_nll
from cellsynth.training import TrainingModule

__all__ = ["VAEConfig", "VAEGenerator", "elbo_loss"]


class VAEConfig(PrivateBaselineConfig):
    """Hyperparameters of the conditional convolutional VAE."""

    latent_dim: int = pydantic.Field(16, ge=1, description="Dimensions of the latent z.")
    hidden: int = pydantic.Field(32, ge=1, description="Width of the first level; doubles at every level.")
    levels: int = pydantic.Field(
        3, ge=1, description="Stride-2 (de)convolutions: the week is halved this often."
    )
    kl_anneal_epochs: float = pydantic.Field(
        20.0, ge=0, description="Epochs over which the KL weight beta rises linearly from 0 to 1 (0: off)."
    )
    free_bits: float = pydantic.Field(
        0.1, ge=0, description="Minimum KL (nats) charged per latent dimension, batch-averaged (0: off)."
    )
    observation_noise: bool = pydantic.Field(
        True, description="Generate m + sigma * eps (the model's p(x | z, s)); False: the decoder mean m."
    )


def elbo_loss(
    x: torch.Tensor,
    mean: torch.Tensor,
    log_scale: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float = 1.0,
    free_bits: float = 0.0,
    per_series_free_bits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, reconstruction NLL, KL)`` per value, as in the module docstring.

    ``x``, ``mean`` ``[B, C, L]``; ``log_scale`` ``[C]`` or ``[B, C]`` (one row per series); ``mu``,
    ``logvar`` ``[B, D_z]``. The NLL and KL returned are the batch means of the per-series sums divided by
    ``C L`` (KL without free bits); ``loss`` is ``NLL + beta * max(free_bits, KL-bar_j)`` summed over ``j``,
    divided by ``C L``. With ``per_series_free_bits`` the floor applies to each series' own ``KL_j`` before
    the batch mean, ``mean_b sum_j max(free_bits, KL_bj)``: the loss is then a mean of per-series losses,
    which DP-SGD needs (a series' gradient must not depend on the other series in its batch).
    """
    values = x.shape[1] * x.shape[2]
    scale = log_scale.expand(x.shape[0], -1)[:, :, None]
    nll = gaussian_nll(x, mean, scale).sum(dim=(1, 2)).mean() / values
    kl_each = gaussian_kl(mu, logvar)  # [B, D_z]
    kl = kl_each.sum(1).mean() / values
    if per_series_free_bits:
        charged = torch.clamp(kl_each, min=free_bits).sum(1).mean() / values
    else:
        charged = torch.clamp(kl_each.mean(0), min=free_bits).sum() / values  # batch mean per dimension
    return nll + beta * charged, nll, kl


class _VAEModule(TrainingModule):
    """ELBO training of :class:`ConvVAE` with KL annealing and free bits."""

    def __init__(self, vae: ConvVAE, cfg: VAEConfig) -> None:
        super().__init__()
        self.net, self.lr = vae, cfg.lr  # "net": what DP-SGD wraps (generators.privacy.train_private)
        self.kl_anneal_epochs, self.free_bits = cfg.kl_anneal_epochs, cfg.free_bits
        self.private = cfg.privacy is not None
        self.history: list[float] = []
        self._epoch: list[float] = []

    def beta(self) -> float:
        """``min(1, n / N_anneal)`` at optimiser step ``n``; restored with the step on resume."""
        if self.kl_anneal_epochs <= 0:
            return 1.0
        anneal_steps = self.kl_anneal_epochs * max(1, self.trainer.num_training_batches)
        return min(1.0, self.global_step / anneal_steps)

    def training_step(self, batch, batch_idx):
        x, station = batch
        if x.shape[0] == 0:  # an empty Poisson batch of DP-SGD: still a (noise-only) step, as accounted
            return sum(p.sum() for p in self.net.parameters()) * 0.0
        x, station = station_weeks(x, station)  # DP-SGD's batches are stations
        mean, mu, logvar = self.net(x, station)
        # Through the module, not the bare parameter, so that DP-SGD gets its per-series gradient.
        log_scale = self.net.scale(x)
        loss, nll, kl = elbo_loss(
            x, mean, log_scale, mu, logvar, beta=self.beta(), free_bits=self.free_bits,
            per_series_free_bits=self.private,
        )  # fmt: skip
        self.log_dict(
            {"nll": nll.detach(), "kl": kl.detach()},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(x),
        )
        self._epoch.append(float((nll + kl).detach()))  # the negative ELBO per value
        return loss

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


class VAEGenerator(BaselineGenerator):
    """Conditional convolutional VAE (conv encoder / deconv decoder over the week), conditioned like STOUTER.

    ``generate(target, samples=k, seed=s, progress=False, batch_size=None)``. After ``fit``, ``history_``
    holds the negative ELBO per value of each epoch run in this process.
    """

    name = "vae"
    Config = VAEConfig

    @property
    def length_multiple(self) -> int:  # type: ignore[override]
        return 2**self.config.levels

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "hidden": 8,
            "latent_dim": 4,
            "context_dim": 8,
            "levels": 2,
            "epochs": 2,
            "batch_size": 8,
            "kl_anneal_epochs": 1.0,
            "accelerator": "cpu",
        }

    def _network(self, n_channels: int, station_dim: int, length: int) -> ConvVAE:
        cfg = self.config
        return ConvVAE(
            n_channels,
            station_dim,
            length,
            latent_dim=cfg.latent_dim,
            hidden=cfg.hidden,
            levels=cfg.levels,
            context_dim=cfg.context_dim,
            weekly_harmonics=cfg.weekly_harmonics,
            daily_harmonics=cfg.daily_harmonics,
        )

    def _module(self, network: ConvVAE) -> _VAEModule:
        return _VAEModule(network, self.config)

    def _trained(self, module: _VAEModule) -> ConvVAE:
        return module.net

    def _draw(self, net, station, *, generator, device, progress, **options) -> torch.Tensor:
        z = torch.randn((station.shape[0], net.latent_dim), generator=generator).to(device)
        mean = net.decode(z, station)
        if not self.config.observation_noise:
            return mean
        eps = torch.randn(mean.shape, generator=generator).to(device)
        return mean + torch.exp(net.log_scale)[None, :, None] * eps
