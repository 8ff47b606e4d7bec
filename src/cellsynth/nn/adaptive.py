r"""ADAPTIVE's networks (Zhang et al., "Deep Transfer Learning for City-scale Cellular Traffic Generation
through Urban Knowledge Graph", KDD 2023, doi:10.1145/3580305.3599801), at the level of one user's week:
a feature-enhanced generator conditioned on the knowledge-graph embedding of the station serving the user
at every step, its critic, and the transfer step that aligns one city's station embeddings to another's.

**Conditions.** ``locations [B, T]`` (station indices) look up rows of a fixed, standardised station table
``E [N, d]`` (TuckER embeddings of the stations, or their standardised features); ``tau [D_t, T]`` is the
hour-of-week embedding of every step (:func:`step_features`).

**Feature enhancement** (:class:`LocationContext`): the station vector is enhanced by a learned MLP,
``h = [e ; MLP(e)]``, and the context of a step is

.. math::  c_t = W_2\, \mathrm{SiLU}(W_h h_{l_t} + W_\tau \tau_t + b_1) + b_2     \qquad [B, d_c, T]

**Generator** (:class:`AdaptiveGenerator`): a periodic pattern read from the enhanced station features,
``p_t = \sum_k (A h_{l_t})_k \tau_{k,t}`` (the station's expected hour-of-week profile, on the sinusoids of
``tau``), plus a residual TCN over ``[z ; c]`` with the context added in every block
(:class:`cellsynth.nn.baselines.TemporalBlock`): ``x_t = p_t + r_t``.

**Critic** (:class:`AdaptiveCritic`): the same TCN over ``[x ; c']`` (its own context), a score per step,
averaged over the week.

**Transfer** (:func:`align_embeddings`): an orthogonal map ``Q`` and the two means such that
``(S - mu_S) Q + mu_T`` lies on the target's stations ``T``: initialised by matching principal axes (signs
fixed by the third moment along each axis), refined by Procrustes on nearest-neighbour matches until the
matches stop changing. No station of one city corresponds to one of the other, so the matches are found,
not given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellsynth.nn.baselines import TemporalBlock, hour_of_week_features, receptive_field

__all__ = [
    "AdaptiveCritic",
    "AdaptiveGenerator",
    "LocationContext",
    "align_embeddings",
    "step_features",
]


def step_features(
    positions: np.ndarray, steps_per_week: int, weekly_harmonics: int = 3, daily_harmonics: int = 4
) -> torch.Tensor:
    """``[2 (K_w + K_d), T]``: the hour-of-week embedding (:func:`~cellsynth.nn.baselines.hour_of_week_features`
    of a week of ``steps_per_week`` steps) of the steps at ``positions`` (each step's index in its week,
    Monday 00:00 = 0), so a series that starts on a Wednesday gets Wednesday's features."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.ndim != 1 or (positions < 0).any() or (positions >= steps_per_week).any():
        raise ValueError(f"positions must be 1-D in 0..{steps_per_week - 1}")
    return hour_of_week_features(steps_per_week, weekly_harmonics, daily_harmonics)[:, positions]


class _Stack(nn.Module):
    """1x1 input convolution and residual dilated temporal blocks, each given the context ``[B, d_c, T]``."""

    def __init__(
        self, in_channels: int, hidden: int, kernel_size: int, dilations: Sequence[int], context: int
    ):
        super().__init__()
        self.input = nn.Conv1d(in_channels, hidden, 1)
        self.blocks = nn.ModuleList(TemporalBlock(hidden, kernel_size, d, context) for d in dilations)
        self.receptive_field = receptive_field(kernel_size, [d for d in dilations for _ in range(2)])

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h, context)
        return F.leaky_relu(h, 0.2)


class LocationContext(nn.Module):
    """``c_t = W_2 SiLU(W_h h_{l_t} + W_tau tau_t + b_1) + b_2`` with ``h = [e ; MLP(e)]`` (module docstring).

    ``station_table [N, d]`` is a buffer saved with the weights (the stations' standardised embeddings);
    ``tau`` is a non-persistent buffer rebuilt from the time axis."""

    def __init__(
        self, station_table: torch.Tensor, tau: torch.Tensor, enhanced_dim: int, out_dim: int
    ) -> None:
        super().__init__()
        self.register_buffer("station_table", torch.as_tensor(station_table, dtype=torch.float32).clone())
        self.register_buffer("tau", torch.as_tensor(tau, dtype=torch.float32).clone(), persistent=False)
        d = self.station_table.shape[1]
        self.enhance = nn.Sequential(
            nn.Linear(d, enhanced_dim), nn.SiLU(), nn.Linear(enhanced_dim, enhanced_dim)
        )
        self.enhanced_dim = d + enhanced_dim
        self.station_proj = nn.Linear(self.enhanced_dim, out_dim)
        self.time_proj = nn.Conv1d(self.tau.shape[0], out_dim, 1, bias=False)
        self.out = nn.Conv1d(out_dim, out_dim, 1)

    def enhanced(self, locations: torch.Tensor) -> torch.Tensor:
        """``h`` of the station at every step: ``[B, T, d + enhanced_dim]``."""
        e = self.station_table[locations]
        return torch.cat([e, self.enhance(e)], dim=-1)

    def forward(self, locations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c [B, d_c, T], h [B, T, d_h])`` for ``locations`` ``[B, T]``."""
        if locations.dim() != 2 or locations.shape[1] != self.tau.shape[1]:
            raise ValueError(f"locations must be [B, {self.tau.shape[1]}], got {tuple(locations.shape)}")
        h = self.enhanced(locations)
        pre = self.station_proj(h).transpose(1, 2) + self.time_proj(self.tau[None])
        return self.out(F.silu(pre)), h


class AdaptiveGenerator(nn.Module):
    """``G(z, l) -> x`` ``[B, 1, T]``: the station pattern ``p`` plus a residual TCN (module docstring)."""

    def __init__(
        self,
        station_table: torch.Tensor,
        tau: torch.Tensor,
        *,
        noise_dim: int = 16,
        hidden: int = 64,
        enhanced_dim: int = 32,
        context_dim: int = 32,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    ) -> None:
        super().__init__()
        self.noise_dim, self.length = noise_dim, tau.shape[1]
        self.context = LocationContext(station_table, tau, enhanced_dim, context_dim)
        self.pattern = nn.Linear(self.context.enhanced_dim, tau.shape[0])
        self.stack = _Stack(noise_dim + context_dim, hidden, kernel_size, dilations, context_dim)
        self.output = nn.Conv1d(hidden, 1, 1)

    @property
    def receptive_field(self) -> int:
        return self.stack.receptive_field

    def noise(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``z ~ N(0, I)`` ``[batch, noise_dim, T]``."""
        return torch.randn((batch, self.noise_dim, self.length), generator=generator, device=device)

    def periodic(self, h: torch.Tensor) -> torch.Tensor:
        """``p_t = sum_k (A h_t)_k tau_{k,t}`` ``[B, 1, T]`` from enhanced features ``h [B, T, d_h]``."""
        weights = self.pattern(h) / math.sqrt(self.context.tau.shape[0])  # [B, T, D_t]
        return (weights * self.context.tau.T[None]).sum(-1)[:, None, :]

    def forward(self, noise: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        context, h = self.context(locations)
        residual = self.output(self.stack(torch.cat([noise, context], dim=1), context))
        return self.periodic(h) + residual


class AdaptiveCritic(nn.Module):
    """``D(x, l) -> [B]``: TCN over ``[x ; c']``, a score per step, the mean over the week. No batch
    normalisation (the gradient penalty is per sample)."""

    def __init__(
        self,
        station_table: torch.Tensor,
        tau: torch.Tensor,
        *,
        hidden: int = 32,
        enhanced_dim: int = 32,
        context_dim: int = 32,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    ) -> None:
        super().__init__()
        self.context = LocationContext(station_table, tau, enhanced_dim, context_dim)
        self.stack = _Stack(1 + context_dim, hidden, kernel_size, dilations, context_dim)
        self.output = nn.Conv1d(hidden, 1, 1)

    def forward(self, x: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        context, _ = self.context(locations)
        return self.output(self.stack(torch.cat([x, context], dim=1), context)).mean(dim=(1, 2))


# -- transfer ------------------------------------------------------------------------------------------------
def _principal_axes(points: np.ndarray) -> np.ndarray:
    """``[d, d]`` eigenvectors of the covariance of centred ``points`` (columns, largest variance first), each
    signed so that the third moment of the points along it is >= 0."""
    _, vectors = np.linalg.eigh(points.T @ points / len(points))
    vectors = vectors[:, ::-1]
    skew = ((points @ vectors) ** 3).mean(0)
    return vectors * np.where(skew < 0, -1.0, 1.0)


def _nearest(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each row of ``source``, the index of its nearest row of ``target`` (Euclidean)."""
    d2 = (source**2).sum(1)[:, None] - 2 * source @ target.T + (target**2).sum(1)[None, :]
    return d2.argmin(1)


def align_embeddings(
    source: np.ndarray, target: np.ndarray, *, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""ADAPTIVE's transfer step: map the source city's station embeddings onto the target city's.

    Returns ``(aligned [N_s, d], Q [d, d], matches [N_s])`` with ``aligned = (S - mu_S) Q + mu_T``, ``Q``
    orthogonal (``Q^T Q = I``) and ``matches`` the target station each source station ended nearest to.

    1. ``Q_0 = U_S U_T^T`` from the principal axes of the centred sets (:func:`_principal_axes`), which is
       exact for a rotated (or reflected) copy with distinct variances along its axes and skewed marginals;
    2. Procrustes on nearest-neighbour matches ``m(i)``, until the matches stop changing (at most
       ``iterations`` rounds): ``Q = U V^T`` with ``U \Sigma V^T = \mathrm{SVD}(S_c^T T_c[m])``, the
       orthogonal ``Q`` minimising ``\sum_i \lVert S_{c,i} Q - T_{c,m(i)} \rVert^2``.

    The sets may differ in size but not in dimension.
    """
    s = np.asarray(source, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if s.ndim != 2 or t.ndim != 2 or s.shape[1] != t.shape[1] or len(s) < 2 or len(t) < 2:
        raise ValueError(
            f"align_embeddings needs two [N, d] sets of the same d and N >= 2, got {s.shape} and {t.shape}"
        )
    mu_s, mu_t = s.mean(0), t.mean(0)
    sc, tc = s - mu_s, t - mu_t
    q = _principal_axes(sc) @ _principal_axes(tc).T
    matches = _nearest(sc @ q, tc)
    for _ in range(iterations):
        u, _, vt = np.linalg.svd(sc.T @ tc[matches])
        q = u @ vt
        again = _nearest(sc @ q, tc)
        if np.array_equal(again, matches):
            break
        matches = again
    return sc @ q + mu_t, q, matches
