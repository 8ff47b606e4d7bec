r"""DiffTraj's denoiser (Zhu, Ye, Zhang, Zhao & Yu, "DiffTraj: Generating GPS Trajectory with Diffusion
Probabilistic Model", NeurIPS 2023, arXiv:2304.11582): a 1-D U-Net over a trajectory of positions with the
trip attributes embedded by a Wide & Deep network and added to the diffusion-step embedding.

- :class:`TrajUNet` ``eps(x_t, t, e)``: ``x`` ``[B, 2, L]`` (two coordinates per step). DDPM's U-Net in one
  dimension: a 3-convolution stem, per level ``num_res_blocks`` residual blocks (GroupNorm, swish, kernel-3
  convolutions, the step embedding projected and added, dropout) and self-attention where the level's length
  is in ``attention_lengths``; a stride-2 convolution between levels, a middle of block-attention-block, and
  the mirrored decoder with skip connections and nearest-neighbour upsampling. Lengths that do not halve
  evenly are handled by cropping each upsampled map to its skip's length. The step embedding is the
  sinusoidal one of DDPM, then ``Linear -> swish -> Linear`` to ``4 ch``; the attribute embedding ``e``
  ``[B, 4 ch]`` is added to it.
- :class:`WideAndDeep` ``e(a)``: continuous attributes through one linear layer (wide) plus categorical ones
  embedded, concatenated, ``Linear -> ReLU -> Linear`` (deep); the two summed.
- :class:`DiffTrajNet`: both, with a learned "no attributes" embedding for the unconditional branch of
  classifier-free guidance, ``eps_w = eps(x, t, e(a)) + w (eps(x, t, e(a)) - eps(x, t, e_null))``
  (:meth:`DiffTrajNet.guided`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

__all__ = ["DiffTrajNet", "TrajUNet", "WideAndDeep"]


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with DDPM's 32 groups, or the largest count dividing ``channels`` below that."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the steps, residual (DDPM's AttnBlock)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)  # [B, C, L] each
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(x.shape[1]), dim=-1)
        return x + self.out(torch.einsum("bij,bcj->bci", weights, v))


class TrajUNet(nn.Module):
    """``forward(x [B, C, L], t [B], extra [B, 4 ch] | None) -> [B, C, L]`` (module docstring)."""

    def __init__(
        self,
        in_channels: int = 2,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_lengths: Sequence[int] = (16,),
        dropout: float = 0.1,
        length: int | None = None,
    ) -> None:
        super().__init__()
        self.ch, self.emb_dim = ch, 4 * ch
        self.step_mlp = nn.Sequential(
            nn.Linear(ch, self.emb_dim), nn.SiLU(), nn.Linear(self.emb_dim, self.emb_dim)
        )
        self.stem = nn.Conv1d(in_channels, ch, 3, padding=1)
        levels = len(ch_mult)
        widths = [ch * m for m in ch_mult]
        lengths = [None] * levels if length is None else [_halved(length, i) for i in range(levels)]
        self.down_blocks, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        skips, c = [ch], ch
        for i, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down_blocks.append(_ResBlock(c, width, self.emb_dim, dropout))
                c = width
                self.down_attn.append(_Attention(c) if lengths[i] in attention_lengths else nn.Identity())
                skips.append(c)
            if i < levels - 1:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2))
                skips.append(c)
        self.mid1 = _ResBlock(c, c, self.emb_dim, dropout)
        self.mid_attn = _Attention(c)
        self.mid2 = _ResBlock(c, c, self.emb_dim, dropout)
        self.up_blocks, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels)):
            for _ in range(num_res_blocks + 1):
                self.up_blocks.append(_ResBlock(c + skips.pop(), widths[i], self.emb_dim, dropout))
                c = widths[i]
                self.up_attn.append(_Attention(c) if lengths[i] in attention_lengths else nn.Identity())
            if i > 0:
                self.upsample.append(nn.Conv1d(c, c, 3, padding=1))
        self.head = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv1d(c, in_channels, 3, padding=1))
        self.levels, self.num_res_blocks = levels, num_res_blocks

    def forward(self, x: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        emb = get_timestep_embedding(t, self.ch, flip_sin_to_cos=False, downscale_freq_shift=1)
        emb = self.step_mlp(emb.to(x.dtype))
        if extra is not None:
            emb = emb + extra
        hs = [self.stem(x)]
        blocks = iter(zip(self.down_blocks, self.down_attn, strict=True))
        for i in range(self.levels):
            for _ in range(self.num_res_blocks):
                block, attn = next(blocks)
                hs.append(attn(block(hs[-1], emb)))
            if i < self.levels - 1:
                hs.append(self.downsample[i](F.pad(hs[-1], (1, 1))))
        h = self.mid2(self.mid_attn(self.mid1(hs[-1], emb)), emb)
        blocks = iter(zip(self.up_blocks, self.up_attn, strict=True))
        for j in range(self.levels):
            for _ in range(self.num_res_blocks + 1):
                block, attn = next(blocks)
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if j < self.levels - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")[..., : hs[-1].shape[-1]]
                h = self.upsample[j](h)
        return self.head(h)


def _halved(length: int, times: int) -> int:
    """The length after ``times`` stride-2 convolutions with padding 1 and kernel 3: ``ceil(L / 2)`` each."""
    for _ in range(times):
        length = (length + 1) // 2
    return length


class WideAndDeep(nn.Module):
    """``forward(continuous [B, n_c], categories [B, n_k] long) -> [B, embedding_dim]`` (module docstring)."""

    def __init__(
        self, n_continuous: int, category_sizes: Sequence[int], embedding_dim: int, hidden_dim: int
    ) -> None:
        super().__init__()
        self.wide = nn.Linear(n_continuous, embedding_dim)
        self.embeddings = nn.ModuleList(nn.Embedding(size, hidden_dim) for size in category_sizes)
        self.deep = nn.Sequential(
            nn.Linear(hidden_dim * len(category_sizes), embedding_dim),
            nn.ReLU(),
            nn.Linear(embedding_dim, embedding_dim),
        )

    def forward(self, continuous: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        deep = torch.cat([emb(categories[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)
        return self.wide(continuous) + self.deep(deep)


class DiffTrajNet(nn.Module):
    """The U-Net with Wide & Deep attribute conditioning and classifier-free guidance (module docstring)."""

    def __init__(
        self,
        length: int,
        n_continuous: int,
        category_sizes: Sequence[int],
        *,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_lengths: Sequence[int] = (16,),
        dropout: float = 0.1,
        hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.length = length
        self.unet = TrajUNet(2, ch, ch_mult, num_res_blocks, attention_lengths, dropout, length)
        self.attributes = WideAndDeep(n_continuous, category_sizes, self.unet.emb_dim, hidden_dim)
        self.null = nn.Parameter(torch.zeros(self.unet.emb_dim))

    def embed(self, continuous: torch.Tensor, categories: torch.Tensor, keep: torch.Tensor | None = None):
        """``[B, 4 ch]``: the attributes' embedding, or the null embedding where ``keep`` is False."""
        emb = self.attributes(continuous, categories)
        if keep is None:
            return emb
        return torch.where(keep[:, None], emb, self.null.expand_as(emb))

    def forward(self, x, t, continuous, categories, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, t, self.embed(continuous, categories, keep))

    def guided(self, x, t, continuous, categories, scale: float) -> torch.Tensor:
        """``eps + scale (eps - eps_null)``; both branches in one batch."""
        if scale == 0:
            return self(x, t, continuous, categories)
        cond = self.embed(continuous, categories)
        both = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, self.null.expand_as(cond)]))
        eps, eps_null = both.chunk(2)
        return eps + scale * (eps - eps_null)
