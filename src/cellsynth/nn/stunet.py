"""STUNet: STOUTER's denoiser, a 1-D U-Net over one week with a Spatio-Temporal Feature Fusion Module.

Input ``x_t`` ``[B, C, L]`` (C traffic channels, L steps of a week), output the predicted noise
``eps_theta(x_t, t, F_t, F_s)`` of the same shape.

**STFFM** (one per resolution of the U-Net, so "at every block"). At a resolution of length ``L_l``:

.. math::  c_l = W_l\\,[\\,\\mathrm{R}_l(F_t)\\ ;\\ F_s \\mathbf 1^\\top\\,] + b_l + \\mathrm{MLP}(\\mathrm{PE}(t))\\,\\mathbf 1^\\top
           \\in \\mathbb R^{d_c \\times L_l}

- ``F_t`` ``[168, d_t]``: temporal embeddings of the 168 hours of the week (frozen GIN encoder), resampled
  to the resolution by ``R_l`` (average pooling of consecutive hours when ``L_l <= 168``, linear
  interpolation when the week has more steps than hours, e.g. 30-minute data);
- ``F_s`` ``[B, d_s]``: the station's embedding (frozen GCN encoder), broadcast over time;
- ``PE(t)``: the sinusoidal diffusion-step embedding (diffusers' ``Timesteps``), passed through an MLP
  (diffusers' ``TimestepEmbedding``) shared by all resolutions;
- ``W_l``: the linear projection (a 1x1 convolution: the same linear map at every time step).

Every residual block at that resolution is FiLM-modulated by the context: with ``N`` the block's
normalisation (the identity by default, GroupNorm with ``norm="group"``),

.. math::  h \\leftarrow \\mathrm{N}(h) \\odot (1 + \\gamma(c_l)) + \\beta(c_l)

where ``gamma, beta`` are a per-block 1x1 convolution of ``SiLU(c_l)`` (zero-initialised, so training
starts from the unconditioned network). The context varies along time (through F_t), so the modulation
tells each step which hour of the week it is.

**Ablations** (STOUTER's):

- ``use_temporal=False``: no F_t in the context; ``use_spatial=False``: no F_s;
- ``use_stffm=False``: plain conditioning — the step embedding, F_s and F_t (those enabled) are
  concatenated to the input once (broadcast over time) and the blocks are unmodulated. The information
  is the same; only the fusion at every block is removed.

**Our additions** to the paper's U-Net, each with a switch back: self-attention over time between the two
middle blocks (``attention_heads``, 0 = off): convolutions alone see about a day at the coarsest
resolution, and without a global view the generated level of a station drifts within its week; attention
across the week's 7 days at every resolution on the way up (``day_attention``, 0 = off, see
:class:`_DayAttention`); no GroupNorm by default (``norm``, see :class:`STUNet`); and a reference week
concatenated to ``x_t`` at the input (``profile_channels``, 0 = off): ``[x_t ; p ; m]`` with ``p`` ``[C, L]``
a known station's mean training week and ``m`` a channel of ones where it is given (zeros, and ``m = 0``,
where it is not), the image-conditioning of SR3 and CSDI's observed values for a week.

``L`` must be divisible by ``2 ** (len(channel_mults) - 1)`` (one halving per lower resolution).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

#: Days of the week STUNet generates: with ``day_attention`` every resolution's length is 7 days of steps.
DAYS = 7

__all__ = ["STFFM", "STUNet", "resample_time"]


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.GroupNorm(_groups(channels), channels) if kind == "group" else nn.Identity()


def resample_time(features: torch.Tensor, length: int) -> torch.Tensor:
    """Resample ``[..., D, T]`` along the last axis to ``length``: mean pooling to shorten, linear to lengthen.

    When ``T`` is a multiple of ``length`` the pooling is the exact mean of consecutive blocks.
    """
    t = features.shape[-1]
    if t == length:
        return features
    lead = features.shape[:-1]
    flat = features.reshape(-1, 1, t) if features.dim() != 3 else features
    if length < t:
        out = F.adaptive_avg_pool1d(flat, length)
    else:
        out = F.interpolate(flat, size=length, mode="linear", align_corners=False)
    return out.reshape(*lead, length)


class STFFM(nn.Module):
    """Spatio-Temporal Feature Fusion Module of one resolution: ``c = W [F_t ; F_s] + step embedding``."""

    def __init__(self, temporal_dim: int, spatial_dim: int, context_dim: int) -> None:
        super().__init__()
        self.temporal_dim, self.spatial_dim = temporal_dim, spatial_dim
        in_dim = temporal_dim + spatial_dim
        self.proj = nn.Conv1d(in_dim, context_dim, 1) if in_dim > 0 else None

    def forward(
        self, step: torch.Tensor, length: int, temporal: torch.Tensor | None, spatial: torch.Tensor | None
    ) -> torch.Tensor:
        """``step`` ``[B, d_c]``; ``temporal`` ``[d_t, 168]`` or ``[B, d_t, 168]``; ``spatial`` ``[B, d_s]``.
        Returns the context ``[B, d_c, length]``.

        Without gradients (sampling), ``W`` is split by its input columns,
        ``W [R(F_t) ; F_s 1^T] = W_t R(F_t) + (W_s F_s) 1^T``: the temporal part is one ``[d_c, length]``
        product for the whole batch (F_t is shared) and the spatial part one ``d_c``-vector per station,
        instead of a projection of every station's concatenation at every step (the same map; about 5 % of
        STUNet's products at the recommended size). With gradients the projection is called as the module
        it is, on the batch: Opacus's per-sample gradients (``privacy``) hook module calls, and a weight
        used outside its module would get none."""
        context = step[:, :, None]
        if self.proj is None:
            return context.expand(-1, -1, length)
        if torch.is_grad_enabled():
            parts, batch = [], step.shape[0]
            if self.temporal_dim:
                ft = resample_time(temporal, length)
                parts.append(ft.expand(batch, -1, -1) if ft.dim() == 2 or ft.shape[0] == 1 else ft)
            if self.spatial_dim:
                parts.append(spatial[:, :, None].expand(-1, -1, length))
            return context + self.proj(torch.cat(parts, dim=1))
        weight = self.proj.weight[:, :, 0]  # [d_c, d_t + d_s]
        context = context + self.proj.bias[None, :, None]
        if self.temporal_dim:
            context = context + weight[:, : self.temporal_dim] @ resample_time(temporal, length)
        if self.spatial_dim:
            context = context + (spatial @ weight[:, self.temporal_dim :].T)[:, :, None]
        return context.expand(-1, -1, length)


class _ResBlock(nn.Module):
    """[norm] -> SiLU -> conv -> [norm] + FiLM(context) -> SiLU -> dropout -> conv, plus a (1x1) skip.

    ``forward`` takes the context already through its SiLU (``SiLU(c_l)``): every block of a resolution
    shares it, so STUNet activates it once per resolution."""

    def __init__(self, in_ch: int, out_ch: int, context_dim: int | None, dropout: float, norm: str) -> None:
        super().__init__()
        self.norm1 = _norm(norm, in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _norm(norm, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.film = None
        if context_dim is not None:
            self.film = nn.Conv1d(context_dim, 2 * out_ch, 1)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, activated_context: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(activated_context).chunk(2, dim=1)
            h = torch.addcmul(shift, h, 1 + scale)  # h (1 + gamma) + beta
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


def _identity_attention(channels: int, heads: int) -> nn.MultiheadAttention:
    """Multi-head attention whose output projection starts at zero: with a residual around it, a block that
    starts as the identity and learns what to add."""
    attn = nn.MultiheadAttention(channels, heads, batch_first=True)
    nn.init.zeros_(attn.out_proj.weight)
    nn.init.zeros_(attn.out_proj.bias)
    return attn


class _SelfAttention(nn.Module):
    """Multi-head self-attention over time with a residual: every step of the week sees every other one.

    The convolutions alone see about a day at the coarsest resolution, too little to keep a station's level
    consistent over its week; attention at the bottleneck (as in DDPM's U-Net) gives the global view.
    The output projection starts at zero, so the block starts as the identity.
    """

    def __init__(self, channels: int, heads: int, norm: str) -> None:
        super().__init__()
        self.norm = _norm(norm, channels)
        self.attn = _identity_attention(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # [B, L, C]
        h, _ = self.attn(h, h, h, need_weights=False)
        return x + h.transpose(1, 2)


class _DayAttention(nn.Module):
    """Self-attention across the 7 days of the week at each position of the day, with a residual.

    ``h [B, C, L]`` is read as ``[B, C, 7, L / 7]``; position ``p`` of every day attends to position ``p``
    of the other six days (``B * L / 7`` sequences of 7 tokens). Why: a real week repeats its day (busy
    Nanchang cells: the hours' deviation from the week's mean day is 0.3 of the mean day's swing), and a
    U-Net's convolutions see the other days only through the bottleneck, so the days of a generated week
    drift apart (0.9 of the swing). This block lets each resolution line a day up with the others, and
    with no position encoding it treats the days alike, the way the 24-hour period does. Zero-initialised
    output projection: the block starts as the identity. The attention reads a LayerNorm of each position's
    features (a pre-norm transformer block; the residual keeps the level): unnormalised, one extreme day
    (an event in a Milan square, 9 standard deviations) dominates the softmax and is copied to the others.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = _identity_attention(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        if length % DAYS:
            raise ValueError(f"day attention needs a length divisible by {DAYS} days, got {length}")
        per_day = length // DAYS
        # [B, C, 7, P] -> [B, P, 7, C] -> [B P, 7, C]
        h = x.reshape(batch, channels, DAYS, per_day).permute(0, 3, 2, 1)
        h = self.norm(h.reshape(batch * per_day, DAYS, channels))
        h, _ = self.attn(h, h, h, need_weights=False)
        h = h.reshape(batch, per_day, DAYS, channels).permute(0, 3, 2, 1).reshape(batch, channels, length)
        return x + h


class STUNet(nn.Module):
    """1-D U-Net epsilon-predictor with STFFM conditioning (see module docstring).

    Parameters
    ----------
    in_channels: traffic channels C.
    channels: width of the first resolution; resolution ``l`` has ``channels * channel_mults[l]``.
    channel_mults: one entry per resolution; ``len - 1`` halvings of the length.
    temporal_dim, spatial_dim: widths of F_t and F_s (ignored when the switch is off).
    context_dim: width of the STFFM context and of the step embedding.
    blocks_per_level: residual blocks per resolution on the way down (and up).
    attention_heads: heads of the self-attention between the two middle blocks (0: none, the paper's
        plain U-Net); the width of the coarsest resolution must be divisible by it.
    day_attention: heads of the attention across the week's 7 days after each resolution's blocks on the
        way up (0: none); every width must be divisible by it, and the length at every resolution by 7.
    norm: ``"none"`` (default) or ``"group"`` (GroupNorm before each convolution, as image U-Nets do).
        GroupNorm normalises each series over time, which hides its overall level from the block: on
        series whose level varies a lot between stations, the sampled levels then come out too spread
        (measured: sd 1.43 with GroupNorm vs 0.87 without for a true 0.94, after 1200 steps of the same
        training). DiffWave and CSDI use no normalisation either.
    profile_channels: channels of a reference series concatenated to ``x`` at the input (``profile`` in
        :meth:`forward`; 0: none, the paper's U-Net).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: int = 48,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        temporal_dim: int = 32,
        spatial_dim: int = 32,
        context_dim: int = 64,
        blocks_per_level: int = 1,
        attention_heads: int = 4,
        day_attention: int = 0,
        norm: Literal["none", "group"] = "none",
        dropout: float = 0.0,
        use_temporal: bool = True,
        use_spatial: bool = True,
        use_stffm: bool = True,
        profile_channels: int = 0,
    ) -> None:
        super().__init__()
        if not channel_mults:
            raise ValueError("channel_mults needs at least one resolution")
        if norm not in ("none", "group"):
            raise ValueError(f"norm must be 'none' or 'group', got {norm!r}")
        self.in_channels, self.profile_channels = in_channels, profile_channels
        self.use_temporal, self.use_spatial, self.use_stffm = use_temporal, use_spatial, use_stffm
        self.temporal_dim = temporal_dim if use_temporal else 0
        self.spatial_dim = spatial_dim if use_spatial else 0
        self.factor = 2 ** (len(channel_mults) - 1)

        self.step_features = Timesteps(context_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.step_mlp = TimestepEmbedding(context_dim, context_dim)

        widths = [channels * m for m in channel_mults]
        ctx = context_dim if use_stffm else None
        extra = 0 if use_stffm else context_dim + self.temporal_dim + self.spatial_dim
        self.input = nn.Conv1d(in_channels + profile_channels + extra, widths[0], 3, padding=1)

        n_levels = len(widths)
        if use_stffm:
            self.fusion = nn.ModuleList(
                STFFM(self.temporal_dim, self.spatial_dim, context_dim) for _ in range(n_levels)
            )
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, ch = [], widths[0]
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(_ResBlock(ch, width, ctx, dropout, norm))
                ch = width
                skips.append(ch)
            self.down.append(blocks)
            if level < n_levels - 1:
                self.downsample.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList(
            [_ResBlock(ch, ch, ctx, dropout, norm), _ResBlock(ch, ch, ctx, dropout, norm)]
        )
        if attention_heads and ch % attention_heads:
            raise ValueError(f"the coarsest width {ch} is not divisible by attention_heads={attention_heads}")
        self.mid_attention = _SelfAttention(ch, attention_heads, norm) if attention_heads else None
        if day_attention and any(width % day_attention for width in widths):
            raise ValueError(f"every width {widths} must be divisible by day_attention={day_attention}")
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        self.day_attention = nn.ModuleList()
        for level in reversed(range(n_levels)):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(_ResBlock(ch + skips.pop(), widths[level], ctx, dropout, norm))
                ch = widths[level]
            self.up.append(blocks)
            if day_attention:
                self.day_attention.append(_DayAttention(ch, day_attention))
            if level > 0:
                self.upsample.append(nn.Conv1d(ch, ch, 3, padding=1))
        self.out_norm = _norm(norm, ch)
        self.output = nn.Conv1d(ch, in_channels, 3, padding=1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        spatial: torch.Tensor | None = None,
        temporal: torch.Tensor | None = None,
        profile: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, C, L]``, ``timesteps`` ``[B]`` (or scalar), ``spatial`` F_s ``[B, d_s]``, ``temporal``
        F_t ``[168, d_t]`` (shared) or ``[B, 168, d_t]``, ``profile`` ``[B, profile_channels, L]`` (when the
        network has profile channels). Returns predicted noise ``[B, C, L]``."""
        batch, _, length = x.shape
        if length % self.factor:
            raise ValueError(f"STUNet needs a length divisible by {self.factor}, got {length}")
        if self.profile_channels:
            expected = (batch, self.profile_channels, length)
            if profile is None or profile.shape != expected:
                got = None if profile is None else tuple(profile.shape)
                raise ValueError(f"STUNet expects a profile {list(expected)}, got {got}")
            x = torch.cat([x, profile.to(x.dtype)], dim=1)
        if self.spatial_dim and (spatial is None or spatial.shape != (batch, self.spatial_dim)):
            got = None if spatial is None else tuple(spatial.shape)
            raise ValueError(f"STUNet expects spatial embeddings [{batch}, {self.spatial_dim}], got {got}")
        ft = None
        if self.temporal_dim:
            if temporal is None or temporal.shape[-1] != self.temporal_dim:
                got = None if temporal is None else tuple(temporal.shape)
                raise ValueError(f"STUNet expects temporal embeddings [168, {self.temporal_dim}], got {got}")
            ft = temporal.transpose(-1, -2).to(x.dtype)  # [(B,) d_t, 168]
        timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(batch)
        step = self.step_mlp(self.step_features(timesteps).to(x.dtype))  # [B, d_c]

        if self.use_stffm:
            cache: dict[int, torch.Tensor] = {}

            def context(level: int, size: int):
                # One context per resolution, shared by the blocks down, in the middle and up: its SiLU
                # (the only way a block reads it) is taken once.
                if level not in cache:
                    cache[level] = F.silu(self.fusion[level](step, size, ft, spatial))
                return cache[level]

            h = self.input(x)
        else:
            parts = [x, step[:, :, None].expand(-1, -1, length)]
            if ft is not None:
                ft_full = resample_time(ft, length)
                parts.append(
                    ft_full.expand(batch, -1, -1) if ft_full.dim() == 2 or ft_full.shape[0] == 1 else ft_full
                )
            if self.spatial_dim:
                parts.append(spatial[:, :, None].expand(-1, -1, length))
            h = self.input(torch.cat(parts, dim=1))

            def context(level: int, size: int):
                return None

        n_levels = len(self.down)
        skips = []
        for level, blocks in enumerate(self.down):
            c = context(level, h.shape[-1])
            for block in blocks:
                h = block(h, c)
                skips.append(h)
            if level < n_levels - 1:
                h = self.downsample[level](h)
        c = context(n_levels - 1, h.shape[-1])
        h = self.mid[0](h, c)
        if self.mid_attention is not None:
            h = self.mid_attention(h)
        h = self.mid[1](h, c)
        for i, blocks in enumerate(self.up):
            level = n_levels - 1 - i
            c = context(level, h.shape[-1])
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), c)
            if self.day_attention:
                h = self.day_attention[i](h)
            if level > 0:
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.output(F.silu(self.out_norm(h)))
