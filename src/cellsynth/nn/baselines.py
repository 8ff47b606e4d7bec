"""Networks of STOUTER's three baselines, all conditioned the same way as STOUTER (station + hour of week).

Every network works on one week of normalised traffic ``x`` ``[B, C, L]`` (C channels, L steps, 168 at hourly
steps) and gets the same two conditions:

- ``s`` ``[B, D_s]``: the station's standardised feature vector (``D_s`` may be 0);
- ``tau`` ``[D_t, L]``: the hour-of-week embedding of every step, fixed sinusoids
  (:func:`hour_of_week_features`).

:class:`ConditionEmbedding` turns them into one context sequence ``c`` ``[B, d_c, L]``, a small MLP applied at
every step (1x1 convolutions):

.. math::  c = W_2\\,\\mathrm{SiLU}\\big(W_t\\,\\tau + W_s\\,s\\,\\mathbf 1^\\top + b_1\\big) + b_2

Each network injects ``c`` into every layer (added after a 1x1 projection), as STOUTER's STFFM injects its
context into every block.

- :class:`TCNGenerator` / :class:`TCNCritic` — temporal convolutional networks (Bai, Kolter & Koltun 2018:
  residual blocks of dilated convolutions) as generator and critic of a WGAN-GP (:func:`gradient_penalty`).
- :class:`ConvVAE` — a conditional convolutional VAE: strided-convolution encoder, transposed-convolution
  (deconvolution) decoder over time, after Semeniuta, Severyn & Barth (2017); :func:`gaussian_kl`,
  :func:`gaussian_nll`.
- :class:`DiffWaveNet` — DiffWave's denoiser (Kong et al. 2021): a WaveNet stack of dilated residual layers
  with gated activations, the diffusion-step embedding and the conditioning added in every layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

__all__ = [
    "ConditionEmbedding",
    "ConvVAE",
    "DiffWaveNet",
    "TCNCritic",
    "TCNGenerator",
    "TemporalBlock",
    "gaussian_kl",
    "gaussian_nll",
    "gradient_penalty",
    "hour_of_week_features",
    "receptive_field",
]


# -- shared conditioning --------------------------------------------------------------------------------------
def hour_of_week_features(length: int, weekly_harmonics: int = 3, daily_harmonics: int = 4) -> torch.Tensor:
    """Sinusoidal hour-of-week embedding ``[2 (K_w + K_d), L]`` of the ``L`` steps of one week.

    With the week phase ``phi_t = t / L`` (``t = 0..L-1``) and the frequencies ``f`` = 1..K_w cycles per week
    (weekday / weekend shape) and 7, 14, .., 7 K_d cycles per week (1..K_d cycles per day):

    .. math::  \\tau_t = \\big[\\sin(2\\pi f \\phi_t),\\ \\cos(2\\pi f \\phi_t)\\big]_f

    The same rows at any step size (168 hourly or 336 half-hourly steps describe the same hours).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    freqs = [float(k) for k in range(1, weekly_harmonics + 1)]
    freqs += [7.0 * k for k in range(1, daily_harmonics + 1)]
    phase = torch.arange(length, dtype=torch.float64) / length
    angles = 2 * math.pi * torch.tensor(freqs, dtype=torch.float64)[:, None] * phase[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)]).float()


class ConditionEmbedding(nn.Module):
    """``c = W_2 SiLU(W_t tau + W_s s + b_1) + b_2`` ``[B, d_c, L]`` (see module docstring).

    The hour-of-week features are a non-persistent buffer: they are recomputed from ``length``, not saved.
    """

    def __init__(
        self,
        station_dim: int,
        length: int,
        out_dim: int,
        *,
        weekly_harmonics: int = 3,
        daily_harmonics: int = 4,
    ) -> None:
        super().__init__()
        self.station_dim, self.length, self.out_dim = station_dim, length, out_dim
        tau = hour_of_week_features(length, weekly_harmonics, daily_harmonics)
        self.register_buffer("tau", tau, persistent=False)
        self.time_proj = nn.Conv1d(tau.shape[0], out_dim, 1)
        self.station_proj = nn.Linear(station_dim, out_dim, bias=False) if station_dim > 0 else None
        self.out = nn.Conv1d(out_dim, out_dim, 1)

    def forward(self, station: torch.Tensor) -> torch.Tensor:
        """``station`` ``[B, D_s]`` -> context ``[B, d_c, L]``."""
        if station.dim() != 2 or station.shape[1] != self.station_dim:
            raise ValueError(f"station features must be [B, {self.station_dim}], got {tuple(station.shape)}")
        # One row per series (not one shared row broadcast): per-sample gradients (DP-SGD) need the batch.
        h = self.time_proj(self.tau[None].expand(station.shape[0], -1, -1))
        if self.station_proj is not None:
            h = h + self.station_proj(station)[:, :, None]
        return self.out(F.silu(h))


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Steps that one output of a stack of dilated convolutions sees: ``1 + (k - 1) * sum(d)``."""
    return 1 + (kernel_size - 1) * sum(dilations)


# -- TCN-GAN ----------------------------------------------------------------------------------------------
class TemporalBlock(nn.Module):
    """Residual TCN block (Bai et al. 2018) with the context added between its two dilated convolutions:

    .. math::  h = \\sigma(\\mathrm{conv}_d(x)) + P c, \\qquad y = x + \\sigma(\\mathrm{conv}_d(h))

    ``sigma`` = LeakyReLU(0.2). ``causal``: pad on the left only, so step ``t`` sees steps ``<= t``;
    otherwise pad both sides (centred), so it sees ``t +- (k - 1) d / 2`` per convolution.
    """

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, context_dim: int, *, causal: bool = False
    ) -> None:
        super().__init__()
        if not causal and kernel_size % 2 == 0:
            raise ValueError(
                f"a centred (non-causal) convolution needs an odd kernel size, got {kernel_size}"
            )
        pad = (kernel_size - 1) * dilation
        self.padding = (pad, 0) if causal else (pad // 2, pad // 2)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.context = nn.Conv1d(context_dim, channels, 1) if context_dim > 0 else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(F.pad(x, self.padding)), 0.2)
        if self.context is not None:
            h = h + self.context(context)
        return x + F.leaky_relu(self.conv2(F.pad(h, self.padding)), 0.2)


class _TCN(nn.Module):
    """Input 1x1 convolution, residual temporal blocks (all given the context), nothing at the output."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        kernel_size: int,
        dilations: Sequence[int],
        context_dim: int,
        causal: bool,
    ) -> None:
        super().__init__()
        self.input = nn.Conv1d(in_channels, hidden, 1)
        self.blocks = nn.ModuleList(
            TemporalBlock(hidden, kernel_size, d, context_dim, causal=causal) for d in dilations
        )
        # Each block has two convolutions of dilation d.
        self.receptive_field = receptive_field(kernel_size, [d for d in dilations for _ in range(2)])

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h, context)
        return h


class TCNGenerator(nn.Module):
    """WGAN generator ``G(z, s) -> x`` ``[B, C, L]`` from per-step noise ``z`` ``[B, z_dim, L]``.

    ``[z ; c]`` -> 1x1 conv -> residual dilated temporal blocks (context added in each) -> LeakyReLU ->
    1x1 conv to the C channels (linear output: the data are standardised, not bounded).
    """

    def __init__(
        self,
        n_channels: int,
        station_dim: int,
        length: int,
        *,
        noise_dim: int = 16,
        hidden: int = 64,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
        context_dim: int = 32,
        causal: bool = False,
        weekly_harmonics: int = 3,
        daily_harmonics: int = 4,
    ) -> None:
        super().__init__()
        self.n_channels, self.noise_dim, self.length = n_channels, noise_dim, length
        self.condition = ConditionEmbedding(
            station_dim,
            length,
            context_dim,
            weekly_harmonics=weekly_harmonics,
            daily_harmonics=daily_harmonics,
        )
        self.tcn = _TCN(noise_dim + context_dim, hidden, kernel_size, dilations, context_dim, causal)
        self.output = nn.Conv1d(hidden, n_channels, 1)

    @property
    def receptive_field(self) -> int:
        return self.tcn.receptive_field

    def noise(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``z ~ N(0, I)`` ``[batch, z_dim, L]`` (from ``generator`` when given, on its device)."""
        return torch.randn((batch, self.noise_dim, self.length), generator=generator, device=device)

    def forward(self, noise: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        context = self.condition(station)
        h = self.tcn(torch.cat([noise, context], dim=1), context)
        return self.output(F.leaky_relu(h, 0.2))


class TCNCritic(nn.Module):
    """WGAN critic ``D(x, s) -> [B]``: ``[x ; c]`` -> 1x1 conv -> residual dilated temporal blocks (context in
    each) -> a score per step (1x1 conv) -> mean over the week.

    No batch normalisation: the gradient penalty is defined per sample (Gulrajani et al. 2017, section 4).
    """

    def __init__(
        self,
        n_channels: int,
        station_dim: int,
        length: int,
        *,
        hidden: int = 64,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
        context_dim: int = 32,
        weekly_harmonics: int = 3,
        daily_harmonics: int = 4,
    ) -> None:
        super().__init__()
        self.condition = ConditionEmbedding(
            station_dim,
            length,
            context_dim,
            weekly_harmonics=weekly_harmonics,
            daily_harmonics=daily_harmonics,
        )
        self.tcn = _TCN(n_channels + context_dim, hidden, kernel_size, dilations, context_dim, causal=False)
        self.output = nn.Conv1d(hidden, 1, 1)

    @property
    def receptive_field(self) -> int:
        return self.tcn.receptive_field

    def forward(self, x: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        context = self.condition(station)
        h = self.tcn(torch.cat([x, context], dim=1), context)
        return self.output(F.leaky_relu(h, 0.2)).mean(dim=(1, 2))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017), the mean over the batch of

    .. math::  \\big(\\lVert \\nabla_{\\hat x} D(\\hat x) \\rVert_2 - 1\\big)^2, \\qquad
               \\hat x = \\epsilon\\, x_{real} + (1 - \\epsilon)\\, x_{fake},\\ \\epsilon \\sim U[0, 1]

    with one ``epsilon`` per sample; the norm is over all of a sample's entries. ``critic`` maps ``[B, ...]``
    to ``[B]`` (the conditions held fixed). The graph is kept (``create_graph``) so the penalty trains the
    critic.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=generator.device if generator else real.device)
    mixed = (eps.to(real.device) * real + (1 - eps.to(real.device)) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


# -- convolutional VAE -------------------------------------------------------------------------------------
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` per dimension (same shape as ``mu``), in nats:

    .. math::  \\mathrm{KL}_j = \\tfrac12\\big(\\mu_j^2 + \\sigma_j^2 - 1 - \\log \\sigma_j^2\\big)
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """``-log N(x; mean, exp(log_scale)^2)`` elementwise, in nats (``log_scale`` broadcasts):

    .. math::  \\tfrac12\\Big(\\frac{(x - m)^2}{\\sigma^2} + \\log(2\\pi) \\Big) + \\log\\sigma
    """
    return 0.5 * ((x - mean) * torch.exp(-log_scale)).pow(2) + log_scale + 0.5 * math.log(2 * math.pi)


class ChannelLogScale(nn.Module):
    """One learned ``log sigma_c`` per channel, returned once per series: ``[B, C]`` for a batch ``x``.

    A module rather than a bare parameter of the VAE so that DP-SGD (Opacus) sees it used per series and
    can compute its per-series gradient like every other weight's (docs/privacy.md)."""

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(n_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale.expand(x.shape[0], -1)


def _renamed_log_scale(state_dict, prefix, *args) -> None:
    if prefix + "log_scale" in state_dict:
        state_dict[prefix + "scale.log_scale"] = state_dict.pop(prefix + "log_scale")


class ConvVAE(nn.Module):
    """Conditional convolutional VAE over a week: encoder ``q(z | x, s)``, decoder ``p(x | z, s)``.

    - Encoder: ``[x ; c]`` -> conv(k=3) -> ``levels`` x [conv(k=4, stride 2) + GELU] (``L -> L / 2^levels``)
      -> flatten -> linear -> ``(mu, log sigma^2)`` of ``z`` ``[B, latent_dim]``.
    - Decoder: ``[z ; s]`` -> linear -> ``[B, w, L / 2^levels]`` -> ``levels`` x [+ context pooled to that
      length, transposed conv(k=4, stride 2) + GELU] -> + context -> conv(k=3) -> the mean ``m`` ``[B, C, L]``.
      The observation scale is one learned ``log sigma_c`` per channel: ``p(x | z, s) = N(m, diag sigma_c^2)``.

    Widths double at every level from ``hidden`` (encoder) and halve back (decoder). ``L`` must be divisible
    by ``2 ** levels``.
    """

    def __init__(
        self,
        n_channels: int,
        station_dim: int,
        length: int,
        *,
        latent_dim: int = 16,
        hidden: int = 32,
        levels: int = 3,
        context_dim: int = 32,
        weekly_harmonics: int = 3,
        daily_harmonics: int = 4,
    ) -> None:
        super().__init__()
        if length % (2**levels):
            raise ValueError(f"length {length} must be divisible by 2 ** levels = {2**levels}")
        self.n_channels, self.station_dim, self.length = n_channels, station_dim, length
        self.latent_dim, self.levels = latent_dim, levels
        self.condition = ConditionEmbedding(
            station_dim,
            length,
            context_dim,
            weekly_harmonics=weekly_harmonics,
            daily_harmonics=daily_harmonics,
        )
        widths = [hidden * 2**i for i in range(levels + 1)]
        self.bottom = length // 2**levels
        # Encoder
        self.enc_in = nn.Conv1d(n_channels + context_dim, widths[0], 3, padding=1)
        self.enc = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], 4, stride=2, padding=1) for i in range(levels)
        )
        self.enc_out = nn.Linear(widths[-1] * self.bottom, 2 * latent_dim)
        # Decoder
        self.dec_in = nn.Linear(latent_dim + station_dim, widths[-1] * self.bottom)
        self.dec_ctx = nn.ModuleList(nn.Conv1d(context_dim, widths[levels - i], 1) for i in range(levels + 1))
        self.dec = nn.ModuleList(
            nn.ConvTranspose1d(widths[levels - i], widths[levels - i - 1], 4, stride=2, padding=1)
            for i in range(levels)
        )
        self.dec_out = nn.Conv1d(widths[0], n_channels, 3, padding=1)
        self.scale = ChannelLogScale(n_channels)
        # Models saved before the scale became a submodule hold it as "log_scale": load them as they are.
        self._register_load_state_dict_pre_hook(_renamed_log_scale)

    @property
    def log_scale(self) -> torch.Tensor:
        """``log sigma_c`` ``[C]``."""
        return self.scale.log_scale

    def encode(self, x: torch.Tensor, station: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z | x, s)``, each ``[B, latent_dim]``."""
        context = self.condition(station)
        h = F.gelu(self.enc_in(torch.cat([x, context], dim=1)))
        for conv in self.enc:
            h = F.gelu(conv(h))
        mu, logvar = self.enc_out(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)  # keeps exp(logvar) finite early in training

    def decode(self, z: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        """The mean ``m`` ``[B, C, L]`` of ``p(x | z, s)``."""
        context = self.condition(station)
        h = self.dec_in(torch.cat([z, station], dim=1)).view(z.shape[0], -1, self.bottom)
        for i, deconv in enumerate(self.dec):
            length = self.bottom * 2**i
            h = h + self.dec_ctx[i](F.adaptive_avg_pool1d(context, length))
            h = F.gelu(deconv(h))
        h = h + self.dec_ctx[self.levels](context)
        return self.dec_out(h)

    def forward(
        self, x: torch.Tensor, station: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean of p(x | z, s), mu, logvar)`` with ``z = mu + sigma * noise`` (reparameterisation;
        ``noise`` defaults to a fresh standard normal draw)."""
        mu, logvar = self.encode(x, station)
        if noise is None:
            noise = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * noise
        return self.decode(z, station), mu, logvar


# -- DiffWave ------------------------------------------------------------------------------------------------
class _ResidualLayer(nn.Module):
    """DiffWave residual layer: ``y = x + W_e e_t``; ``a, b = conv_d(y) + V c``; ``g = tanh(a) * sigmoid(b)``;
    ``r, skip = W_o g``; returns ``((x + r) / sqrt 2, skip)``."""

    def __init__(
        self, channels: int, dilation: int, kernel_size: int, step_dim: int, context_dim: int
    ) -> None:
        super().__init__()
        self.step = nn.Linear(step_dim, channels)
        self.conv = nn.Conv1d(
            channels, 2 * channels, kernel_size, dilation=dilation, padding=(kernel_size - 1) * dilation // 2
        )
        self.context = nn.Conv1d(context_dim, 2 * channels, 1)
        self.output = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, step: torch.Tensor, context: torch.Tensor):
        y = x + self.step(step)[:, :, None]
        a, b = (self.conv(y) + self.context(context)).chunk(2, dim=1)
        residual, skip = self.output(torch.tanh(a) * torch.sigmoid(b)).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class DiffWaveNet(nn.Module):
    """DiffWave's epsilon-predictor ``eps_theta(x_t, t, s)`` ``[B, C, L]`` (Kong et al. 2021, section 3).

    ``x_t`` -> 1x1 conv + ReLU to ``residual_channels`` -> ``layers`` residual layers with dilations
    ``2 ** (i mod dilation_cycle)`` (kernel 3, centred), each given the diffusion-step embedding (sinusoidal
    ``PE(t)`` [128] -> FC 512 + swish -> FC 512 + swish, shared; a per-layer FC) and the conditioning context
    (a per-layer 1x1 conv, DiffWave's "local conditioner") -> skips summed and divided by ``sqrt(layers)`` ->
    1x1 -> ReLU -> 1x1 (zero-initialised, as in DiffWave) to the C channels.
    """

    def __init__(
        self,
        n_channels: int,
        station_dim: int,
        length: int,
        *,
        residual_channels: int = 64,
        layers: int = 12,
        dilation_cycle: int = 6,
        kernel_size: int = 3,
        step_dim: int = 128,
        step_hidden: int = 512,
        context_dim: int = 32,
        weekly_harmonics: int = 3,
        daily_harmonics: int = 4,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred convolutions), got {kernel_size}")
        self.n_channels, self.length = n_channels, length
        self.condition = ConditionEmbedding(
            station_dim,
            length,
            context_dim,
            weekly_harmonics=weekly_harmonics,
            daily_harmonics=daily_harmonics,
        )
        self.step_features = Timesteps(step_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.step_mlp = TimestepEmbedding(step_dim, step_hidden)  # FC -> SiLU (swish) -> FC
        self.input = nn.Conv1d(n_channels, residual_channels, 1)
        self.dilations = [2 ** (i % dilation_cycle) for i in range(layers)]
        self.layers = nn.ModuleList(
            _ResidualLayer(residual_channels, d, kernel_size, step_hidden, context_dim)
            for d in self.dilations
        )
        self.skip = nn.Conv1d(residual_channels, residual_channels, 1)
        self.output = nn.Conv1d(residual_channels, n_channels, 1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.receptive_field = receptive_field(kernel_size, self.dilations)

    def forward(self, x: torch.Tensor, t: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        context = self.condition(station)
        step = F.silu(self.step_mlp(self.step_features(t).to(x.dtype)))
        h = F.relu(self.input(x))
        skips = 0
        for layer in self.layers:
            h, skip = layer(h, step, context)
            skips = skips + skip
        h = F.relu(self.skip(skips / math.sqrt(len(self.layers))))
        return self.output(h)
