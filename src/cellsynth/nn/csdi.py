r"""CSDI's denoiser (Tashiro, Song, Song & Ermon, *CSDI: Conditional Score-based Diffusion Models for
Probabilistic Time Series Imputation*, NeurIPS 2021, arXiv:2107.03502), in its unconditional form: every
value is a target (nothing observed), so the network sees the noisy series alone and no conditional mask.

The input is ``x_t`` ``[B, K, L]``: ``K`` features by ``L`` time points. Its ``K * L`` values are projected
to ``channels`` (a 1x1 convolution + ReLU) and pass ``layers`` residual layers; in each

.. math::

    y &= h + W_e\,e(t)                                     && \text{(diffusion-step embedding)} \\
    y &= \mathrm{TF}_{time}(y)                              && \text{(attention along } L \text{, per feature)} \\
    y &= \mathrm{TF}_{feature}(y)                           && \text{(attention along } K \text{, per time point; none when } K = 1) \\
    a, b &= W_m\,y + W_c\,u                                 && \text{(side information } u\text{)} \\
    r, s &= W_o\,(\sigma(a) \odot \tanh(b))                 \\
    h &\leftarrow (h + r) / \sqrt 2,\quad \text{skip } s

each ``TF`` one Transformer encoder layer (``heads`` heads, feed-forward width ``ff_dim``, GELU). The side
information ``u`` ``[time_dim + feature_dim, K, L]`` is the sinusoidal embedding of each time point's index
(CSDI's time embedding, 128) and a learned embedding of each feature's index (16). The skips, summed and
divided by ``sqrt(layers)``, go through 1x1 -> ReLU -> 1x1 (zero-initialised) to the predicted noise.

The diffusion-step embedding is CSDI's: ``[sin(t f_j), cos(t f_j)]`` with ``f_j = 10^{4 j / (d/2 - 1)}``,
``j = 0..d/2-1`` (``d = step_dim``), then two FC + SiLU layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CSDINet", "csdi_step_features", "sinusoidal_positions"]


def csdi_step_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """CSDI's diffusion-step features ``[B, dim]``: ``[sin(t f_j), cos(t f_j)]``, ``f_j = 10^(4 j / (dim/2 - 1))``."""
    half = dim // 2
    freqs = 10.0 ** (torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1) * 4.0)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The Transformer's positional encoding ``[length, dim]`` (``dim`` even): ``PE[p, 2i] = sin(p w_i)``,
    ``PE[p, 2i + 1] = cos(p w_i)``, ``w_i = 10000^(-2i / dim)``."""
    if dim % 2:
        raise ValueError(f"the sinusoidal embedding needs an even dimension, got {dim}")
    position = torch.arange(length, dtype=torch.float64)[:, None]
    w = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position * w), torch.cos(position * w)
    return pe.float()


def _conv(in_channels: int, out_channels: int) -> nn.Conv1d:
    """A 1x1 convolution with Kaiming-normal weights (as CSDI's)."""
    conv = nn.Conv1d(in_channels, out_channels, 1)
    nn.init.kaiming_normal_(conv.weight)
    return conv


def _encoder(channels: int, heads: int, ff_dim: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        channels, heads, dim_feedforward=ff_dim, dropout=dropout, activation="gelu", batch_first=True
    )
    return nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)


class _ResidualLayer(nn.Module):
    """One CSDI residual layer (module docstring); ``h`` ``[B, C, K * L]``."""

    def __init__(self, channels: int, side_dim: int, step_dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.step = nn.Linear(step_dim, channels)
        self.side = _conv(side_dim, 2 * channels)
        self.mid = _conv(channels, 2 * channels)
        self.output = _conv(channels, 2 * channels)
        self.time_layer = _encoder(channels, heads, ff_dim, dropout)
        self.feature_layer = _encoder(channels, heads, ff_dim, dropout)

    def _along_time(self, y: torch.Tensor, k: int, length: int) -> torch.Tensor:
        b, c, _ = y.shape
        seq = y.reshape(b, c, k, length).permute(0, 2, 3, 1).reshape(b * k, length, c)
        out = self.time_layer(seq)
        return out.reshape(b, k, length, c).permute(0, 3, 1, 2).reshape(b, c, k * length)

    def _along_features(self, y: torch.Tensor, k: int, length: int) -> torch.Tensor:
        if k == 1:  # nothing to attend to across features (CSDI skips the layer too)
            return y
        b, c, _ = y.shape
        seq = y.reshape(b, c, k, length).permute(0, 3, 2, 1).reshape(b * length, k, c)
        out = self.feature_layer(seq)
        return out.reshape(b, length, k, c).permute(0, 3, 2, 1).reshape(b, c, k * length)

    def forward(self, h: torch.Tensor, step: torch.Tensor, side: torch.Tensor, k: int, length: int):
        y = h + self.step(step)[:, :, None]
        y = self._along_features(self._along_time(y, k, length), k, length)
        gate, filt = (self.mid(y) + self.side(side)).chunk(2, dim=1)
        residual, skip = self.output(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        return (h + residual) / math.sqrt(2.0), skip


class CSDINet(nn.Module):
    """CSDI's epsilon-predictor ``eps_theta(x_t, t)`` ``[B, K, L]`` with nothing observed (module docstring).

    ``n_features`` K and ``length`` L fix the side information (a feature-index embedding per feature, the
    time embedding of positions ``0..L-1``).
    """

    def __init__(
        self,
        n_features: int,
        length: int,
        *,
        channels: int = 64,
        layers: int = 4,
        heads: int = 8,
        ff_dim: int = 64,
        dropout: float = 0.1,
        step_dim: int = 128,
        time_dim: int = 128,
        feature_dim: int = 16,
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        if step_dim % 2 or time_dim % 2:
            raise ValueError(f"step_dim ({step_dim}) and time_dim ({time_dim}) must be even")
        self.n_features, self.length = n_features, length
        self.step_dim = step_dim
        self.register_buffer("time_embedding", sinusoidal_positions(length, time_dim), persistent=False)
        self.feature_embedding = nn.Embedding(n_features, feature_dim)
        self.step_mlp = nn.Sequential(
            nn.Linear(step_dim, step_dim), nn.SiLU(), nn.Linear(step_dim, step_dim), nn.SiLU()
        )
        self.input = _conv(1, channels)
        self.layers = nn.ModuleList(
            _ResidualLayer(channels, time_dim + feature_dim, step_dim, heads, ff_dim, dropout)
            for _ in range(layers)
        )
        self.skip = _conv(channels, channels)
        self.output = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def side_information(self) -> torch.Tensor:
        """``u`` ``[time_dim + feature_dim, K * L]``: each value's time embedding and feature embedding."""
        k, length = self.n_features, self.length
        time = self.time_embedding.T[:, None, :].expand(-1, k, length)  # [time_dim, K, L]
        feature = self.feature_embedding.weight.T[:, :, None].expand(-1, k, length)  # [feature_dim, K, L]
        return torch.cat([time, feature]).reshape(-1, k * length)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, K, L]``, ``t`` int ``[B]`` -> the predicted noise ``[B, K, L]``."""
        b, k, length = x.shape
        if (k, length) != (self.n_features, self.length):
            raise ValueError(
                f"expected x of shape [B, {self.n_features}, {self.length}], got {tuple(x.shape)}"
            )
        step = self.step_mlp(csdi_step_features(t, self.step_dim).to(x.dtype))
        side = self.side_information()[None].expand(b, -1, -1)
        h = F.relu(self.input(x.reshape(b, 1, k * length)))
        skips = 0
        for layer in self.layers:
            h, skip = layer(h, step, side, k, length)
            skips = skips + skip
        h = F.relu(self.skip(skips / math.sqrt(len(self.layers))))
        return self.output(h).reshape(b, k, length)
