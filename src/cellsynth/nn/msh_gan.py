r"""MSH-GAN's networks (Li et al., TKDD 2024): a switch-mode generator for the behaviour a user shares with a
group, an individual-level BiLSTM + self-attention generator on top of it, and a discriminator, for one
user's week of traffic ``x [B, 1, T]``.

**Switch-mode generator** (group level, :class:`SwitchModeGenerator`). ``K`` behaviour modes, each a
learned vector ``m_k`` and level ``mu_k``. A group noise ``z_g [B, d_g]`` sets the initial state of a GRU
that reads the hour-of-week features ``tau_t``; its logits ``a_t [B, K]`` pick the mode of every step by a
straight-through Gumbel-softmax (Jang et al. 2017), the hard one-hot in the forward pass:

.. math::  \pi_t = \mathrm{onehot}\big(\arg\max_k (a_{t,k} + g_{t,k})\big),\quad g = -\log(-\log u),\
           u \sim U(0, 1);\qquad  \nabla \pi_t := \nabla\, \mathrm{softmax}((a_t + g_t) / \theta)

so a user switches between a few shared regimes (idle, background, heavy use...) along the week. It gives
the mode vector ``M_t = \sum_k \pi_{t,k} m_k`` and the group level ``b_t = \sum_k \pi_{t,k} \mu_k``.

**Individual generator** (:class:`MSHGenerator`). A BiLSTM over ``[M_t ; z_t ; tau_t]`` (per-step noise
``z_t``), multi-head self-attention over its states with a residual connection and layer normalisation, a
linear head: ``x_t = b_t + W [h_t + \mathrm{Attn}(h)_t]``.

**Discriminator** (:class:`MSHDiscriminator`): a BiLSTM over ``[x_t ; tau_t]``, self-attention, a score per
step averaged over the week. Its recurrent layer runs without cuDNN: the gradient penalty of WGAN-GP
differentiates the critic twice, which cuDNN's RNN does not support.

All randomness enters through :meth:`MSHGenerator.noise` ``(z_g, z, u)``, so a seeded noise gives the same
week.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MSHDiscriminator",
    "MSHGenerator",
    "SelfAttention",
    "SwitchModeGenerator",
    "straight_through_gumbel",
]


def straight_through_gumbel(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hard one-hot of ``argmax(logits + g)`` along the last axis, ``g = -log(-log u)``, with the gradient of
    ``softmax((logits + g) / temperature)`` (module docstring). ``uniform`` in (0, 1), shape of ``logits``."""
    u = uniform.clamp(1e-9, 1 - 1e-9)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


class SwitchModeGenerator(nn.Module):
    """Group-level modes of every step (module docstring): ``(z_g [B, d_g], u [B, T, K])`` ->
    ``(pi [B, T, K], M [B, T, d_m], b [B, 1, T])``."""

    def __init__(
        self,
        tau_dim: int,
        *,
        modes: int = 4,
        group_dim: int = 16,
        mode_dim: int = 16,
        hidden: int = 32,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.modes, self.temperature = modes, temperature
        self.initial = nn.Linear(group_dim, hidden)
        self.rnn = nn.GRU(tau_dim, hidden, batch_first=True)
        self.logits = nn.Linear(hidden, modes)
        self.mode_vectors = nn.Parameter(torch.randn(modes, mode_dim) / mode_dim**0.5)
        self.mode_levels = nn.Parameter(torch.zeros(modes))

    def forward(self, group_noise: torch.Tensor, uniform: torch.Tensor, tau: torch.Tensor):
        batch = group_noise.shape[0]
        h0 = torch.tanh(self.initial(group_noise))[None]  # [1, B, H]
        states, _ = self.rnn(tau.T[None].expand(batch, -1, -1), h0.contiguous())
        pi = straight_through_gumbel(self.logits(states), uniform, self.temperature)  # [B, T, K]
        return pi, pi @ self.mode_vectors, (pi @ self.mode_levels)[:, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention written out, ``softmax(Q K^T / sqrt(d_h)) V`` per head, then an output
    projection: twice differentiable everywhere (the fused kernels of ``nn.MultiheadAttention`` have no
    second derivative on the CPU, which the gradient penalty needs)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide the width ({dim})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class _AttentiveBiLSTM(nn.Module):
    """BiLSTM, then ``LayerNorm(h + MultiHeadSelfAttention(h))``: ``[B, T, in] -> [B, T, 2 hidden]``."""

    def __init__(self, in_dim: int, hidden: int, heads: int, *, cudnn: bool = True) -> None:
        super().__init__()
        self.cudnn = cudnn
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.attention = SelfAttention(2 * hidden, heads)
        self.norm = nn.LayerNorm(2 * hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=self.cudnn and torch.backends.cudnn.enabled):
            h, _ = self.rnn(x)
        return self.norm(h + self.attention(h))


class MSHGenerator(nn.Module):
    """``G(z_g, z, u) -> x`` ``[B, 1, T]``: the switch-mode generator's level plus the individual generator
    (module docstring). ``tau [D_t, T]`` (the hour-of-week features of the steps) is a non-persistent buffer.
    ``forward(noise, locations=None)``: the locations are accepted for the common GAN interface and not used
    (MSH-GAN generates traffic from time alone)."""

    def __init__(
        self,
        tau: torch.Tensor,
        *,
        noise_dim: int = 8,
        group_dim: int = 16,
        modes: int = 4,
        mode_dim: int = 16,
        hidden: int = 64,
        heads: int = 4,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.register_buffer("tau", torch.as_tensor(tau, dtype=torch.float32).clone(), persistent=False)
        self.noise_dim, self.group_dim, self.length = noise_dim, group_dim, self.tau.shape[1]
        self.switch = SwitchModeGenerator(
            self.tau.shape[0],
            modes=modes,
            group_dim=group_dim,
            mode_dim=mode_dim,
            hidden=hidden,
            temperature=temperature,
        )
        self.individual = _AttentiveBiLSTM(mode_dim + noise_dim + self.tau.shape[0], hidden, heads)
        self.output = nn.Linear(2 * hidden, 1)

    def noise(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_g [B, d_g], z [B, T, d_z], u [B, T, K])``: normal, normal, uniform."""
        t, k = self.length, self.switch.modes
        group = torch.randn((batch, self.group_dim), generator=generator, device=device)
        steps = torch.randn((batch, t, self.noise_dim), generator=generator, device=device)
        uniform = torch.rand((batch, t, k), generator=generator, device=device)
        return group, steps, uniform

    def modes(self, noise) -> torch.Tensor:
        """The one-hot mode of every step ``[B, T, K]`` for ``noise``."""
        group, _, uniform = noise
        pi = self.switch(group, uniform, self.tau)[0]
        return F.one_hot(pi.argmax(-1), pi.shape[-1]).to(pi.dtype)  # exact 0/1 (pi is, up to rounding)

    def forward(self, noise, locations: torch.Tensor | None = None) -> torch.Tensor:
        group, steps, uniform = noise
        _, vectors, level = self.switch(group, uniform, self.tau)
        tau = self.tau.T[None].expand(group.shape[0], -1, -1)
        h = self.individual(torch.cat([vectors, steps, tau], dim=-1))
        return level + self.output(h).transpose(1, 2)


class MSHDiscriminator(nn.Module):
    """``D(x) -> [B]``: BiLSTM over ``[x_t ; tau_t]``, self-attention, a score per step, the mean over the week
    (module docstring; no cuDNN in the recurrent layer, no batch normalisation). ``locations`` are accepted
    and not used."""

    def __init__(self, tau: torch.Tensor, *, hidden: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.register_buffer("tau", torch.as_tensor(tau, dtype=torch.float32).clone(), persistent=False)
        self.body = _AttentiveBiLSTM(1 + self.tau.shape[0], hidden, heads, cudnn=False)
        self.output = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, locations: torch.Tensor | None = None) -> torch.Tensor:
        tau = self.tau.T[None].expand(x.shape[0], -1, -1)
        h = self.body(torch.cat([x.transpose(1, 2), tau], dim=-1))
        return self.output(h).mean(dim=(1, 2))
