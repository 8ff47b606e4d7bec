r"""MSTDiff's denoiser: a multi-scale Transformer that co-denoises a user's traffic (in the wavelet domain)
and trajectory (station ids), coarse to fine over the wavelet scales.

Inputs (``T`` steps, ``J`` wavelet levels, ``N`` stations)::

    x_t [B, T]   noisy standardised wavelet coefficients [cA_J, cD_J, ..., cD_1] (cellsynth.transforms.wavelets)
    l_s [B, T]   noisy station ids, in time order
    t   [B]      Gaussian diffusion step of x_t;   s [B]: discrete diffusion step of l_s

Outputs::

    eps   [B, T]      predicted noise of x_t, same band layout
    logits [B, T, N]  p_theta(l_0 | x_t, l_s) per time step, IN TIME ORDER (logits[:, k] is about step k)

**Scales.** Scale ``k = 0..J-1`` has resolution ``r_k = T / 2^(J-k)`` (42, 84, 168 for T = 336, J = 3).
Its traffic tokens are the coefficients of its bands, one token per coefficient: ``cA_J`` and ``cD_J`` at
``k = 0``, ``cD_{J-k}`` at ``k >= 1``. Its trajectory tokens are the station embeddings of ``l_s`` averaged
over blocks of ``T / r_k`` consecutive steps (the trajectory "pooled to the scale's resolution"), so
that token ``p`` of either stream covers the same steps ``[p T/r_k, (p+1) T/r_k)``. Each token is::

    h = value + type(band | trajectory) + pos_k(p) + step

- value: ``W_v x`` for a coefficient (a linear map of the scalar), ``P E[l]`` (pooled) for trajectory,
  with ``E [N, d_s]`` the station embedding table (optionally initialised from the TuckER embeddings
  of the stations) and ``P`` a projection;
- ``pos_k(p)``: a learned table over the ``T`` steps, averaged over the token's block (so positions at
  every scale refer to the same clock, and the weekly rhythm is learnable);
- step: ``MLP(PE(t))`` on traffic tokens, ``MLP'(PE(s))`` on trajectory tokens, where ``PE`` is the
  sinusoidal embedding of diffusers (``get_timestep_embedding``); both on the CLS tokens.

At the coarsest ``vq_scales`` scales (default 1) a coefficient token's value is fused with the pretrained
VQ-VAE of its band (:mod:`cellsynth.nn.vqvae`) by a gate, per token and channel::

    e = W_q z_q(x_band),    g = sigmoid(W_g [v ; e] + b_g),    v <- g * e + (1 - g) * v

where ``v`` is the raw value embedding plus the step embedding (so the gate can learn to trust the code
only at low noise).

Each stream gets a **learned** CLS token per scale (an ``nn.Parameter``; the authors' code used an
unlearned random tensor), prepended to its sequence; the CLS output of a scale is added to the next
scale's CLS.

**Blocks** (``layers_per_scale`` per scale, pre-LayerNorm): self-attention within each stream, then
cross-attention both ways (traffic queries attend to trajectory tokens and trajectory queries to traffic
tokens, both from the states before the exchange), then a feed-forward layer per stream.

**Coarse to fine.** After scale ``k``, the traffic states of its bands (concatenated per position and
projected) and the trajectory states are upsampled x2 (repeat) and added, through a linear map, to the
next scale's tokens. After the last scale the trajectory states are upsampled to the full ``T`` steps and
added to full-resolution trajectory tokens (``P E[l_s[k]] + pos(k) + type + step``), which go through
``full_res_layers`` self-attention blocks and a linear head to the logits: a token at step ``k`` is built
from ``l_s[k]``, so logits come out in time order (the authors' logits came out in wavelet-band order).
Each coefficient token's final state at its own scale gives its ``eps``.

**Self-conditioning** (``self_condition=True``; Chen, Zhang and Hinton, "Analog Bits", 2022; not in the
paper). The trajectory tokens also carry the denoiser's previous prediction of ``l_0``, given as
probabilities ``p [B, T, N]`` (``l0_probs``), as an expected station embedding::

    value <- P E[l_s[k]] + W_c (p[k] E)         (zero p when there is no previous prediction)

In training half of the batches get ``p = softmax(logits)`` of a first, gradient-free pass on the same
``l_s``; in sampling every call gets the previous call's. A reverse step draws each position independently;
this lets the next step see what the previous one believed about all of them.

**Anchors** (``n_anchors = k > 0``; :mod:`cellsynth.generators.mstdiff.anchors`; not in the paper). The
trajectory stream is also given the user's ``k`` most-visited stations ``a [B, k]``, in two ways::

    c = MLP([E[a_1] ; ... ; E[a_k]])                  added to every trajectory token and both CLS tokens
    logits[:, t, a_r] += u_r . LN(h_t)                a pointer to each anchor (Vinyals et al., 2015)

so "at this step the user is at their second anchor" is one scalar per anchor, whichever station it is,
rather than a row of the station head that has to be learned for every station.

Either stream may be absent: ``n_stations=None`` is traffic only (the paper's no-trajectory ablation),
``traffic=False`` is trajectory only (data without traffic, e.g. GeoLife).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from cellsynth.errors import ConfigError
from cellsynth.transforms.wavelets import band_slices

__all__ = ["CoAttentionBlock", "MSTDiffNet", "StepEmbedding", "count_parameters"]


class StepEmbedding(nn.Module):
    """``MLP(PE(step))``: diffusers' sinusoidal embedding of an integer step, then Linear-SiLU-Linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        pe = get_timestep_embedding(step, self.dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        return self.mlp(pe.to(self.mlp[0].weight.dtype))


class _Attention(nn.Module):
    """Pre-LN multi-head attention, ``x + W_o Attn(W_q LN(x), W_kv LN'(kv))``, through
    ``F.scaled_dot_product_attention`` (fused kernels). No dropout on the attention weights: drawing a mask
    of ``B x heads x L x L`` per layer cost more than the attention itself on CPU (measured); the
    feed-forward layers carry the dropout."""

    def __init__(self, dim: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        q_in = self.norm_q(x)
        kv_in = q_in if self.norm_kv is None else self.norm_kv(kv)
        b, lq, d = q_in.shape
        h = self.heads
        q = self.q(q_in).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(kv_in).view(b, kv_in.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(att.transpose(1, 2).reshape(b, lq, d))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, mult * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mult * dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class CoAttentionBlock(nn.Module):
    """Self-attention per stream, cross-attention both ways, feed-forward per stream (module docstring).

    ``forward(a, b)``: ``a`` traffic tokens ``[B, La, d]`` or None, ``b`` trajectory tokens ``[B, Lb, d]`` or None.
    """

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float, traffic: bool, trajectory: bool):
        super().__init__()
        self.has_a, self.has_b = traffic, trajectory
        if traffic:
            self.self_a, self.ff_a = (
                _Attention(dim, heads, False),
                _FeedForward(dim, ff_mult, dropout),
            )
        if trajectory:
            self.self_b, self.ff_b = (
                _Attention(dim, heads, False),
                _FeedForward(dim, ff_mult, dropout),
            )
        if traffic and trajectory:
            self.cross_ab = _Attention(dim, heads, True)  # traffic attends to trajectory
            self.cross_ba = _Attention(dim, heads, True)  # trajectory attends to traffic

    def forward(self, a: torch.Tensor | None, b: torch.Tensor | None):
        if self.has_a:
            a = self.self_a(a)
        if self.has_b:
            b = self.self_b(b)
        if self.has_a and self.has_b:
            a, b = self.cross_ab(a, b), self.cross_ba(b, a)
        if self.has_a:
            a = self.ff_a(a)
        if self.has_b:
            b = self.ff_b(b)
        return a, b


def _pool(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Mean over consecutive blocks along dim 1: ``[B, T, d] -> [B, resolution, d]`` (T divisible)."""
    b, t, d = x.shape
    return x.reshape(b, resolution, t // resolution, d).mean(2)


def _up(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Repeat each token ``factor`` times along dim 1 (token p covers the steps of tokens factor*p...)."""
    return x.repeat_interleave(factor, dim=1)


class MSTDiffNet(nn.Module):
    """The multi-scale co-denoiser (see the module docstring for the architecture and the formulas).

    Parameters
    ----------
    n_steps, level:
        ``T`` and ``J`` (``T`` divisible by ``2^J``).
    n_stations:
        ``N``, or None for traffic only.
    traffic:
        False for trajectory only.
    station_init:
        Optional ``[N, station_dim]`` initial station embeddings (the TuckER station rows).
    vqvaes:
        Optional pretrained :class:`~cellsynth.nn.vqvae.BandVQVAE` per band (``J + 1``), gated in at the
        ``vq_scales`` coarsest scales; frozen unless ``freeze_vqvae=False``.
    self_condition:
        Accept the previous prediction of ``l_0`` (``forward(..., l0_probs=p)``; module docstring).
    n_anchors:
        ``k``: condition the trajectory on each user's ``k`` anchors (``forward(..., anchors=a)``; module
        docstring). 0: none.
    """

    def __init__(
        self,
        *,
        n_steps: int,
        level: int = 3,
        n_stations: int | None = None,
        traffic: bool = True,
        d_model: int = 64,
        heads: int = 4,
        layers_per_scale: int = 2,
        full_res_layers: int = 1,
        ff_mult: int = 4,
        dropout: float = 0.0,
        station_dim: int = 32,
        station_init: torch.Tensor | None = None,
        vqvaes: nn.ModuleList | None = None,
        vq_scales: int = 1,
        freeze_vqvae: bool = True,
        self_condition: bool = False,
        n_anchors: int = 0,
    ) -> None:
        super().__init__()
        if not traffic and n_stations is None:
            raise ConfigError("MSTDiffNet needs traffic, a trajectory (n_stations), or both")
        if d_model % heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.slices = band_slices(n_steps, level)  # raises if T is not divisible by 2^J
        self.n_steps, self.level, self.d = int(n_steps), int(level), int(d_model)
        self.traffic, self.trajectory = bool(traffic), n_stations is not None
        self.n_stations = n_stations
        self.self_condition = bool(self_condition) and self.trajectory
        self.n_anchors = int(n_anchors) if self.trajectory else 0
        self.resolutions = [n_steps >> (level - k) for k in range(level)]
        # Bands of each scale: (cA_J, cD_J) at scale 0, then cD_{J-k} at scale k.
        self.scale_bands = [[0, 1]] + [[k + 1] for k in range(1, level)]
        n_bands = level + 1
        self.TRAJ, self.CLS_A, self.CLS_B = n_bands, n_bands + 1, n_bands + 2
        d = self.d

        self.type_emb = nn.Embedding(n_bands + 3, d)
        self.pos = nn.Parameter(torch.randn(n_steps, d) * 0.02)
        # Learned CLS tokens, one per scale and stream (the authors' were unlearned random tensors).
        self.cls_traffic = nn.Parameter(torch.randn(level, d) * 0.02) if traffic else None
        self.cls_traj = nn.Parameter(torch.randn(level, d) * 0.02) if self.trajectory else None

        if traffic:
            self.t_emb = StepEmbedding(d)
            self.value_in = nn.Linear(1, d)
            self.eps_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
            self.merge_traffic = nn.ModuleList(
                nn.Sequential(nn.Linear(d * len(self.scale_bands[k]), d), nn.GELU(), nn.Linear(d, d))
                for k in range(level - 1)
            )
        if self.trajectory:
            self.s_emb = StepEmbedding(d)
            self.stations = nn.Embedding(n_stations, station_dim)
            if station_init is not None:
                init = torch.as_tensor(station_init, dtype=torch.float32)
                if init.shape != (n_stations, station_dim):
                    raise ConfigError(
                        f"station_init has shape {tuple(init.shape)}, expected {(n_stations, station_dim)}"
                    )
                # Keep the directions, at the scale of the default init, so one station does not dominate.
                init = init / init.norm(dim=1, keepdim=True).clamp_min(1e-12)
                with torch.no_grad():
                    self.stations.weight.copy_(init)
            self.station_proj = nn.Linear(station_dim, d)
            if self.self_condition:
                self.self_cond_proj = nn.Linear(station_dim, d)
            if self.n_anchors:
                self.anchor_in = nn.Sequential(
                    nn.Linear(self.n_anchors * station_dim, d), nn.GELU(), nn.Linear(d, d)
                )
                self.anchor_out = nn.Linear(d, self.n_anchors)
                # Start neutral: the pointer adds nothing until training finds it useful.
                nn.init.zeros_(self.anchor_out.weight)
                nn.init.zeros_(self.anchor_out.bias)
            self.merge_traj = nn.ModuleList(
                nn.Linear(d, d) for _ in range(level)
            )  # last: into full resolution
            self.full_blocks = nn.ModuleList(
                CoAttentionBlock(d, heads, ff_mult, dropout, False, True) for _ in range(full_res_layers)
            )
            self.logits_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, n_stations))

        self.blocks = nn.ModuleList(
            nn.ModuleList(
                CoAttentionBlock(d, heads, ff_mult, dropout, traffic, self.trajectory)
                for _ in range(layers_per_scale)
            )
            for _ in range(level)
        )

        self.vq_scales = 0
        self.vqvaes = None
        if traffic and vqvaes is not None and vq_scales > 0:
            if len(vqvaes) != n_bands:
                raise ConfigError(f"need one VQ-VAE per band ({n_bands}), got {len(vqvaes)}")
            self.vqvaes, self.vq_scales = vqvaes, min(int(vq_scales), level)
            self.freeze_vqvae = bool(freeze_vqvae)
            if self.freeze_vqvae:
                for p in vqvaes.parameters():
                    p.requires_grad_(False)
            gated = [b for k in range(self.vq_scales) for b in self.scale_bands[k]]
            self.vq_proj = nn.ModuleDict({str(b): nn.Linear(vqvaes[b].code_dim, d) for b in gated})
            self.vq_gate = nn.ModuleDict({str(b): nn.Linear(2 * d, d) for b in gated})

    # -- helpers ----------------------------------------------------------------------------------------
    def _pos(self, resolution: int) -> torch.Tensor:
        return _pool(self.pos.unsqueeze(0), resolution)  # [1, r, d]

    def _type(self, index: int) -> torch.Tensor:
        return self.type_emb.weight[index]

    def _band_tokens(self, x_t: torch.Tensor, band: int, scale: int, step: torch.Tensor) -> torch.Tensor:
        x = x_t[:, self.slices[band]]
        v = self.value_in(x.unsqueeze(-1))
        if scale < self.vq_scales:
            vq = self.vqvaes[band]
            if self.freeze_vqvae:
                with torch.no_grad():
                    z_q = vq.quantise(x)
            else:
                z_q = vq.quantise(x)
            e = self.vq_proj[str(band)](z_q)
            g = torch.sigmoid(self.vq_gate[str(band)](torch.cat([v + step, e], dim=-1)))
            v = g * e + (1.0 - g) * v
        return v + self._type(band) + self._pos(x.shape[1]) + step

    # -- forward ----------------------------------------------------------------------------------------
    def forward(
        self,
        x_t: torch.Tensor | None,
        l_s: torch.Tensor | None,
        t: torch.Tensor | None,
        s: torch.Tensor | None,
        l0_probs: torch.Tensor | None = None,
        anchors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(eps [B, T] or None, logits [B, T, N] or None)``; see the module docstring. ``l0_probs``
        ``[B, T, N]``: the previous prediction of ``l_0`` (self-conditioning only; None: no previous one).
        ``anchors`` ``long [B, k]``: the users' anchors (required with ``n_anchors = k``, else refused)."""
        if self.traffic and (x_t is None or t is None):
            raise ValueError("this network models traffic: give x_t and t")
        if self.trajectory and (l_s is None or s is None):
            raise ValueError("this network models trajectories: give l_s and s")
        ref = x_t if self.traffic else l_s
        batch = ref.shape[0]
        if ref.shape[1] != self.n_steps:
            raise ValueError(f"expected {self.n_steps} steps, got {ref.shape[1]}")

        te = self.t_emb(t).unsqueeze(1) if self.traffic else 0.0  # [B, 1, d]
        se = self.s_emb(s).unsqueeze(1) if self.trajectory else 0.0
        if l0_probs is not None and not self.self_condition:
            raise ValueError("l0_probs given to a network built without self_condition")
        if (anchors is not None) != bool(self.n_anchors):
            raise ValueError(
                f"this network takes {self.n_anchors} anchors per user: "
                + ("give anchors" if self.n_anchors else "do not give anchors")
            )
        if self.n_anchors:
            if anchors.shape != (batch, self.n_anchors):
                raise ValueError(
                    f"anchors has shape {tuple(anchors.shape)}, expected {(batch, self.n_anchors)}"
                )
            # The anchors' context rides on the trajectory's step embedding: every token and CLS that
            # carries se carries it too.
            se = se + self.anchor_in(self.stations(anchors).flatten(1)).unsqueeze(1)
        if self.trajectory:
            traj_full = self.station_proj(self.stations(l_s))  # [B, T, d]
            if self.self_condition:
                if l0_probs is None:
                    previous = traj_full.new_zeros(*l_s.shape, self.stations.embedding_dim)
                elif l0_probs.shape != (*l_s.shape, self.n_stations):
                    raise ValueError(
                        f"l0_probs has shape {tuple(l0_probs.shape)}, expected {(*l_s.shape, self.n_stations)}"
                    )
                else:
                    previous = l0_probs.to(traj_full.dtype) @ self.stations.weight
                traj_full = traj_full + self.self_cond_proj(previous)

        eps_parts: dict[int, torch.Tensor] = {}
        carry_a = carry_b = None
        cls_a = cls_b = None
        for k, r in enumerate(self.resolutions):
            a = b = None
            if self.traffic:
                bands = self.scale_bands[k]
                a_tokens = [self._band_tokens(x_t, band, k, te) for band in bands]
                if carry_a is not None:
                    a_tokens = [tok + carry_a for tok in a_tokens]
                c = self.cls_traffic[k] + self._type(self.CLS_A) + te + (se if self.trajectory else 0.0)
                c = c.expand(batch, 1, self.d)
                if cls_a is not None:
                    c = c + cls_a
                a = torch.cat([c, *a_tokens], dim=1)
            if self.trajectory:
                b_tokens = _pool(traj_full, r) + self._type(self.TRAJ) + self._pos(r) + se
                if carry_b is not None:
                    b_tokens = b_tokens + carry_b
                c = self.cls_traj[k] + self._type(self.CLS_B) + se + (te if self.traffic else 0.0)
                c = c.expand(batch, 1, self.d)
                if cls_b is not None:
                    c = c + cls_b
                b = torch.cat([c, b_tokens], dim=1)
            for block in self.blocks[k]:
                a, b = block(a, b)
            if self.traffic:
                cls_a, states = a[:, :1], a[:, 1:].split(r, dim=1)
                for band, h in zip(self.scale_bands[k], states):
                    eps_parts[band] = self.eps_out(h).squeeze(-1)
                if k + 1 < self.level:
                    carry_a = _up(self.merge_traffic[k](torch.cat(states, dim=-1)))
            if self.trajectory:
                cls_b, states_b = b[:, :1], b[:, 1:]
                factor = (self.resolutions[k + 1] if k + 1 < self.level else self.n_steps) // r
                carry_b = self.merge_traj[k](_up(states_b, factor))

        eps = torch.cat([eps_parts[i] for i in range(self.level + 1)], dim=1) if self.traffic else None
        logits = None
        if self.trajectory:
            h = traj_full + self._type(self.TRAJ) + self.pos.unsqueeze(0) + se + carry_b
            for block in self.full_blocks:
                _, h = block(None, h)
            h = self.logits_out[0](h)
            logits = self.logits_out[1](h)
            if self.n_anchors:
                index = anchors.unsqueeze(1).expand(-1, h.shape[1], -1)
                logits = logits.scatter_add_(-1, index, self.anchor_out(h))  # logits: this call's own tensor
        return eps, logits


def count_parameters(module: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)
